package upstream_test

import (
	"fmt"
	"net/http"
	"net/http/httptest"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// releaser prints a response's status and body, and hands its exchange
// back from OnDone, its last use of it.
type releaser struct{ done chan struct{} }

func (p releaser) OnResponse(x *upstream.Exchange, r *http1.Response) { fmt.Println(r.StatusCode) }
func (p releaser) OnBody(x *upstream.Exchange, data []byte)           { fmt.Println(string(data)) }
func (p releaser) OnDone(x *upstream.Exchange, err error) {
	x.Release() // no call on x after this: the cluster may reuse it
	p.done <- struct{}{}
}

// A caller that makes many requests hands each exchange back once it is
// done with it, so the cluster reuses it instead of allocating another.
func ExampleExchange_Release() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprint(w, "hello")
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()

	p := releaser{done: make(chan struct{})}
	head := upstream.AppendRequestHead(nil, "GET", "/", "api", nil, -1, false)
	for range 2 {
		cl.Do(&upstream.Request{Method: "GET", Head: head, Handler: p})
		<-p.done
	}
	// Output:
	// 200
	// hello
	// 200
	// hello
}
