package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
)

// Pipelining toward a backend that gets one connection: requests beyond
// the first are written behind it (up to four in flight) instead of
// waiting. Only idempotent requests with a complete body are pipelined.
func ExamplePoolConfig_pipelining() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(20 * time.Millisecond)
		io.WriteString(w, r.URL.Path)
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL},
		Pool: upstream.PoolConfig{MaxConnsPerHost: 1, MaxPipeline: 4}})
	defer cl.Close()

	var wg sync.WaitGroup
	answers := make([]string, 6)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/%d", i)
			head := upstream.AppendRequestHead(nil, "GET", path, "api", nil, -1, false)
			r, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
			if err == nil {
				answers[i] = string(r.Body)
			}
		}()
	}
	wg.Wait()
	fmt.Println(answers)
	fmt.Println("pipelined:", cl.Stats().RqPipelined > 0)
	fmt.Println("GET pipelinable:", upstream.Pipelinable(&upstream.Request{Method: "GET"}),
		"POST:", upstream.Pipelinable(&upstream.Request{Method: "POST"}))
	// Output:
	// [/0 /1 /2 /3 /4 /5]
	// pipelined: true
	// GET pipelinable: true POST: false
}

// Batched pipelining: with BatchPipeline, the idempotent requests that an
// event loop hands to a host in one round of events (a proxy's clients
// whose requests one poll returned) share one of that loop's connections,
// up to MaxPipeline, and go out in one write when the round ends, even
// while idle connections are free. A request alone in its round is
// written alone, so answers are the same either way; the saving is in
// system calls and segments per request (warren proxy -pipeline 8
// -pipeline-batch; docs/upstream.md).
func ExamplePoolConfig_batchPipeline() {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.URL.Path)
	}))
	defer backend.Close()

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, _ := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL},
		Pool: upstream.PoolConfig{MaxPipeline: 8, BatchPipeline: true}})
	defer cl.Close()

	var wg sync.WaitGroup
	answers := make([]string, 4)
	for i := range answers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			head := upstream.AppendRequestHead(nil, "GET", fmt.Sprintf("/%d", i), "api", nil, -1, false)
			r, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
			if err == nil {
				answers[i] = string(r.Body)
			}
		}()
	}
	wg.Wait()
	fmt.Println(answers)
	// Output:
	// [/0 /1 /2 /3]
}
