package loadgen_test

import (
	"context"
	"fmt"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/loadgen"
)

// ExampleRun drives a closed-loop HTTP load with two pipelined requests per
// connection against a server in this process.
func ExampleRun() {
	addr, stop := helloServer()
	defer stop()

	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:      "http://" + addr + "/",
		Conns:    10,
		Rate:     1000,
		Duration: 200 * time.Millisecond,
		Inflight: 2,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("connections:", rep.Connects)
	fmt.Println("all answered:", rep.Requests > 0 && rep.Requests == rep.Sent)
	fmt.Println("p99 within max:", rep.Latency.P99 <= rep.Latency.Max)
	fmt.Println("errors:", rep.TotalErrors())
	// rep.WriteSummary(os.Stdout) prints the table; rep.WriteSVG(dir) draws
	// the charts.

	// Output:
	// connections: 10
	// all answered: true
	// p99 within max: true
	// errors: 0
}

// helloServer starts an HTTP server in this process that answers every
// GET / with "hello", and returns its address and a function that stops it.
func helloServer() (addr string, stop func()) {
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("hello") }))
	eng, err := engine.New(engine.Config{}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	srv, err := http1.NewServer(eng, http1.Config{}, r)
	if err != nil {
		panic(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln.Addr().String(), func() { eng.Close() }
}

// ExampleMerge combines the reports of two processes; histograms merge
// exactly, so percentiles are those of all the requests together.
func ExampleMerge() {
	a := &loadgen.Report{Requests: 3, TrafficSeconds: 1, LatencyHist: &loadgen.Histogram{},
		Errors: map[string]int64{"timeout": 1}}
	b := &loadgen.Report{Requests: 2, TrafficSeconds: 1, LatencyHist: &loadgen.Histogram{},
		Errors: map[string]int64{"closed": 2}}
	for _, ms := range []int{1, 2, 3} {
		a.LatencyHist.Record(time.Duration(ms) * time.Millisecond)
	}
	for _, ms := range []int{10, 20} {
		b.LatencyHist.Record(time.Duration(ms) * time.Millisecond)
	}
	m := loadgen.Merge(a, b)
	fmt.Println("processes:", m.Procs)
	fmt.Println("requests:", m.Requests, "at", m.Throughput, "per second")
	fmt.Printf("p50 %.1fms, max %.1fms\n", m.Latency.P50, m.Latency.Max)
	fmt.Println("errors:", m.Errors)
	// Output:
	// processes: 2
	// requests: 5 at 5 per second
	// p50 3.0ms, max 20.0ms
	// errors: map[closed:2 timeout:1]
}
