package proxy_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/http/httptrace"
	"net/textproto"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream"
)

// A reverse proxy: an engine, a cluster of backends, a listener.
func Example() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "via %s for %s", r.Header.Get("Via"), r.Header.Get("X-Forwarded-For"))
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()
	p := proxy.New(eng, cl, proxy.Config{})
	defer p.Close()
	ln, _ := p.Listen("127.0.0.1:0")

	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(resp.StatusCode, string(body))
	// Output: 200 via 1.1 warren for 127.0.0.1
}

// An inbound limit per client address: a burst of 2, then 1 request a
// second; over it the proxy answers 429 itself, and the backend is not
// asked.
func ExampleConfig_ratePerIP() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()
	p := proxy.New(eng, cl, proxy.Config{RatePerIP: 1, BurstPerIP: 2})
	defer p.Close()
	ln, _ := p.Listen("127.0.0.1:0")

	for range 3 {
		resp, err := http.Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if why := resp.Header.Get("X-Warren-Reason"); why != "" {
			fmt.Println(resp.StatusCode, why)
		} else {
			fmt.Println(resp.StatusCode)
		}
	}
	fmt.Println("rate limited", p.Stats().RateLimited)
	// Output:
	// 200
	// 200
	// 429 rate_limited
	// rate limited 1
}

// Inbound limits by route: /api/ at 1 request a second per device (the
// X-Device-Id header), the rest unlimited. Over a limit the proxy answers
// 429 with Retry-After from the device's bucket.
func ExampleConfig_routeLimits() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "ok")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()
	api, _ := proxy.ParseRouteLimit("/api/=1,header=X-Device-Id") // the -route-limit syntax
	p := proxy.New(eng, cl, proxy.Config{RouteLimits: []proxy.RouteLimit{api}})
	defer p.Close()
	ln, _ := p.Listen("127.0.0.1:0")

	for _, path := range []string{"/api/a", "/api/b", "/other"} {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+path, nil)
		req.Header.Set("X-Device-Id", "dev-7")
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			fmt.Println(err)
			return
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if ra := resp.Header.Get("Retry-After"); ra != "" {
			fmt.Println(path, resp.StatusCode, "Retry-After:", ra)
		} else {
			fmt.Println(path, resp.StatusCode)
		}
	}
	fmt.Println("refused on /api/:", p.Stats().Routes["/api/"].Refused["rate_limited"])
	// Output:
	// /api/a 200
	// /api/b 429 Retry-After: 1
	// /other 200
	// refused on /api/: 1
}

// Interim responses and trailers go through: a backend's 103 Early Hints
// reach the client before the final response (at most Config.MaxInterim
// of them per request), and a chunked response's trailer fields after its
// body.
func ExampleConfig_maxInterim() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Link", "</app.css>; rel=preload")
		w.WriteHeader(http.StatusEarlyHints)
		w.Header().Set("Trailer", "X-Checksum")
		w.WriteHeader(http.StatusOK)
		io.WriteString(w, "page")
		w.(http.Flusher).Flush() // chunked, so the trailer can follow
		w.Header().Set("X-Checksum", "c0ffee")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()
	p := proxy.New(eng, cl, proxy.Config{MaxInterim: 4})
	defer p.Close()
	ln, _ := p.Listen("127.0.0.1:0")

	var hints []string
	trace := &httptrace.ClientTrace{Got1xxResponse: func(code int, h textproto.MIMEHeader) error {
		hints = append(hints, fmt.Sprint(code, " ", h.Get("Link")))
		return nil
	}}
	req, _ := http.NewRequestWithContext(httptrace.WithClientTrace(context.Background(), trace), "GET",
		"http://"+ln.Addr().String()+"/", nil)
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		fmt.Println(err)
		return
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(hints)
	fmt.Println(resp.StatusCode, string(body), resp.Trailer.Get("X-Checksum"))
	// Output:
	// [103 </app.css>; rel=preload]
	// 200 page c0ffee
}
