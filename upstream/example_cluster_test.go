package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// A Cluster on a started engine; RoundTrip is the blocking convenience.
func ExampleCluster_RoundTrip() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("") // loops, no listener
	defer eng.Close()
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{
		Name:  "api",
		Hosts: []string{backend.URL},
		Pool:  upstream.PoolConfig{MaxConnsPerHost: 64, IdleTimeout: 30 * time.Second},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	head := upstream.AppendRequestHead(nil, "GET", "/", "api.internal", nil, -1, false)
	resp, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, string(resp.Body))
	// Output: 200 hello
}

// printer is a ResponseHandler: its calls run on the upstream
// connection's event loop and must not block.
type printer struct{ done chan struct{} }

func (p printer) OnResponse(x *upstream.Exchange, resp *http1.Response) {
	fmt.Println("status", resp.StatusCode)
}
func (p printer) OnBody(x *upstream.Exchange, data []byte) { fmt.Printf("body %q\n", data) }
func (p printer) OnDone(x *upstream.Exchange, err error) {
	fmt.Println("done", err)
	close(p.done)
}

// Do sends without blocking; the handler gets the response as it arrives.
func ExampleCluster_Do() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hi")
	}))
	defer backend.Close()
	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()

	p := printer{done: make(chan struct{})}
	cl.Do(&upstream.Request{Method: "GET", Head: upstream.AppendRequestHead(nil, "GET", "/", "x", nil, -1, false), Handler: p})
	<-p.done
	// Output:
	// status 200
	// body "hi"
	// done <nil>
}

// Hedging: a GET that has had no answer from one backend after HedgeDelay
// is also sent to another; the first answer wins and the slow attempt is
// canceled. A POST is never hedged (Hedgeable).
func ExampleClusterConfig_hedgeDelay() {
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(2 * time.Second):
		case <-r.Context().Done(): // the hedge won: this attempt's connection closed
			return
		}
		io.WriteString(w, "slow")
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "fast")
	}))
	defer fast.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{
		Hosts:      []string{slow.URL, fast.URL},
		Balancer:   upstream.BalanceRoundRobin, // the first request's first attempt goes to slow
		HedgeDelay: 50 * time.Millisecond,      // near the backends' p99
	})
	defer cl.Close()
	for range 2 {
		head := upstream.AppendRequestHead(nil, "GET", "/", "x", nil, -1, false)
		resp, _ := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
		fmt.Println(string(resp.Body), "retries", resp.Retries)
	}
	st := cl.Stats()
	fmt.Println("hedged", st.RqHedged, "won", st.RqHedgeWon)
	fmt.Println(upstream.Hedgeable(&upstream.Request{Method: "POST"}), upstream.Hedgeable(&upstream.Request{Method: "GET"}))
	// Output:
	// fast retries 1
	// fast retries 0
	// hedged 1 won 1
	// false true
}

// Outbound rate limiting: toward an API that allows 2 requests a second,
// requests leave evenly spaced; one over the rate waits for its slot
// (without blocking a goroutine or a loop), and with the queue full the
// next is refused at once.
func ExampleClusterConfig_rateLimit() {
	api := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer api.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{
		Hosts:     []string{api.URL},
		RateLimit: upstream.RateLimitConfig{PerSecond: 2, Queue: 2}, // at most half a second's wait
	})
	defer cl.Close()
	results := make(chan string, 3)
	for range 3 {
		go func() {
			head := upstream.AppendRequestHead(nil, "GET", "/", "api", nil, -1, false)
			_, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
			results <- fmt.Sprint(err)
		}()
	}
	var refused int
	for range 3 {
		if <-results != "<nil>" {
			refused++
		}
	}
	st := cl.Stats()
	fmt.Println("refused", refused, "rate_limited", st.RqRateLimited, "throttled", st.RqThrottled)
	// Output:
	// refused 1 rate_limited 1 throttled 1
}

// A chunked response's trailer fields come after its body: RoundTrip
// collects them in Response.Trailer (a ResponseHandler gets them by
// implementing TrailerHandler).
func ExampleTrailerHandler() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Trailer", "X-Checksum")
		io.WriteString(w, "data")
		w.(http.Flusher).Flush()
		w.Header().Set("X-Checksum", "c0ffee")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	head := upstream.AppendRequestHead(nil, "GET", "/", "api.internal", nil, -1, false)
	resp, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	for _, h := range resp.Trailer {
		fmt.Printf("%s %s: %s\n", resp.Body, h.Name, h.Value)
	}
	// Output: data X-Checksum: c0ffee
}
