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
