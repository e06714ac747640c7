package proxy

import (
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// TestProxyPipeline: through the proxy with one backend connection and
// PoolConfig.MaxPipeline 4, concurrent GETs from Go's client are pipelined
// on that connection and each gets its own answer; a POST among them is
// not pipelined and is answered too.
func TestProxyPipeline(t *testing.T) {
	e := startEngine(t)
	addr, conns := methodBackend(t, time.Millisecond)
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr},
		Pool: upstream.PoolConfig{MaxConnsPerHost: 1, MaxPipeline: 4}}, Config{})
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			echoRequest(t, http.DefaultClient, paddr, fmt.Sprintf("/x%d", i), i%8 == 3)
		}()
	}
	wg.Wait()
	st := p.Cluster().Stats()
	t.Logf("pipelined %d; backend connections %d", st.RqPipelined, conns.Load())
	if st.RqPipelined == 0 {
		t.Error("nothing pipelined")
	}
	if conns.Load() != 1 {
		t.Errorf("backend connections %d; want 1", conns.Load())
	}
}

// TestProxyBatchPipeline: through the proxy with PoolConfig.BatchPipeline,
// 32 keep-alive clients sending GETs (and some POSTs) at once, many
// rounds: each gets its own answer, whether its request shared a backend
// connection and a write with others of its loop's round or not; a POST
// is never written behind another request.
func TestProxyBatchPipeline(t *testing.T) {
	e := startEngine(t)
	addr, conns := methodBackend(t, 0)
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr},
		Pool: upstream.PoolConfig{MaxPipeline: 8, BatchPipeline: true}}, Config{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 32}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	for i := range 32 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for r := range 20 {
				if !echoRequest(t, client, paddr, fmt.Sprintf("/c%d/r%d", i, r), (i+r)%9 == 4) {
					return
				}
			}
		}()
	}
	wg.Wait()
	st := p.Cluster().Stats()
	t.Logf("pipelined %d of %d; backend connections %d; pipeline resets %d", st.RqPipelined, 32*20, conns.Load(), st.RqPipelineReset)
}

// methodBackend starts a Go HTTP server answering "<method> <path> <body>"
// after delay; conns counts the connections it accepted.
func methodBackend(t *testing.T, delay time.Duration) (addr string, conns *atomic.Int64) {
	t.Helper()
	conns = new(atomic.Int64)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		time.Sleep(delay)
		fmt.Fprintf(w, "%s %s %s", r.Method, r.URL.Path, body)
	}), ConnState: func(_ net.Conn, s http.ConnState) {
		if s == http.StateNew {
			conns.Add(1)
		}
	}}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), conns
}

// echoRequest sends a GET (or a POST with body "body") for path through
// the proxy at paddr and checks that the answer is its own; false when it
// failed (reported).
func echoRequest(t *testing.T, client *http.Client, paddr, path string, post bool) bool {
	method, want := "GET", "GET "+path+" "
	var resp *http.Response
	var err error
	if post {
		method, want = "POST", "POST "+path+" body"
		resp, err = client.Post("http://"+paddr+path, "text/plain", strings.NewReader("body"))
	} else {
		resp, err = client.Get("http://" + paddr + path)
	}
	if err != nil {
		t.Error(err)
		return false
	}
	got, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(got) != want {
		t.Errorf("%s %s: %d %q; want %q", method, path, resp.StatusCode, got, want)
	}
	return true
}
