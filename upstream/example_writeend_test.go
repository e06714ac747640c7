package upstream_test

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// bodyPrinter prints a response's status and body and signals its end.
type bodyPrinter struct{ done chan struct{} }

func (p bodyPrinter) OnResponse(x *upstream.Exchange, r *http1.Response) { fmt.Println(r.StatusCode) }
func (p bodyPrinter) OnBody(x *upstream.Exchange, data []byte)           { fmt.Println(string(data)) }
func (p bodyPrinter) OnDone(x *upstream.Exchange, err error)             { close(p.done) }

// A streamed request body: pieces go out with Write as they arrive, and
// the last one with WriteEnd, which also ends the body, so a response
// that comes as soon as the backend has it finds the body complete (and
// the connection goes back to the pool).
func ExampleExchange_WriteEnd() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "got %q", b)
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	defer cl.Close()

	head := upstream.AppendRequestHead(nil, "POST", "/upload", "api", nil, 11, false)
	p := bodyPrinter{done: make(chan struct{})}
	x := cl.Do(&upstream.Request{Method: "POST", Head: head, Stream: true, Handler: p})
	x.Write([]byte("hello "))
	x.WriteEnd([]byte("world"))
	<-p.done
	// Output:
	// 200
	// got "hello world"
}
