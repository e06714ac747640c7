package upstream

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// loopConn hands its connection over on open, so a test can run code on
// the connection's loop (Conn.Post), as a proxy's client handler does.
type loopConn struct{ opened chan *engine.Conn }

func (h *loopConn) OnOpen(c *engine.Conn)                { h.opened <- c }
func (h *loopConn) OnData(c *engine.Conn, in []byte) int { return len(in) }

// loopConnOf returns a connection of e (kept open until the test ends) whose
// Post runs a function on its loop.
func loopConnOf(t *testing.T, e *engine.Engine) *engine.Conn {
	t.Helper()
	h := &loopConn{opened: make(chan *engine.Conn, 1)}
	addr := testutil.Listen(t, e, h)
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	select {
	case c := <-h.opened:
		return c
	case <-time.After(5 * time.Second):
		t.Fatal("the loop connection did not open")
		return nil
	}
}

// doRound starts one request per method (a GET unless it is "POST") from
// a single run on conn's loop, as a proxy does for the clients whose
// requests one poll returned; it returns their collectors and paths.
func doRound(t *testing.T, c *Cluster, conn *engine.Conn, tag string, methods []string) ([]*collector, []string) {
	t.Helper()
	cols := make([]*collector, len(methods))
	paths := make([]string, len(methods))
	for i := range cols {
		cols[i] = &collector{done: make(chan struct{}), max: 1 << 20}
		paths[i] = fmt.Sprintf("/%s%d", tag, i)
	}
	ran := make(chan struct{})
	ok := conn.Post(func() {
		defer close(ran)
		for i, m := range methods {
			var body []byte
			head := AppendRequestHead(nil, m, paths[i], "t", nil, -1, false)
			if m == "POST" {
				body = []byte("x")
				head = AppendRequestHead(nil, m, paths[i], "t", nil, 1, false)
			}
			c.Do(&Request{Method: m, Head: head, Body: body, Loop: conn.Loop(), Handler: cols[i]})
		}
	})
	if !ok {
		t.Fatal("Post failed")
	}
	<-ran
	return cols, paths
}

// startOneLoopEngine is startEngine with a single loop, so that every
// pooled connection is on the loop the requests come from.
func startOneLoopEngine(t *testing.T) *engine.Engine {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, TickInterval: 10 * time.Millisecond})
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	return e
}

// warm runs a round of n GETs on a cold pool, which dials n connections;
// they are idle when it returns.
func warm(t *testing.T, c *Cluster, conn *engine.Conn, n int) {
	t.Helper()
	methods := make([]string, n)
	for i := range methods {
		methods[i] = "GET"
	}
	cols, paths := doRound(t, c, conn, "w", methods)
	wait(t, cols, methods, paths)
	waitUntil(t, "the warm-up's connections idle", func() bool {
		s := c.Stats()
		return s.RqActive == 0 && s.Hosts[0].Idle == n
	})
}

// wait checks each collector's answer: 200 and "METHOD path".
func wait(t *testing.T, cols []*collector, methods, paths []string) {
	t.Helper()
	for i, k := range cols {
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("%s: no answer", paths[i])
		}
		if k.err != nil || k.resp.Status != 200 || string(k.resp.Body) != methods[i]+" "+paths[i] {
			t.Errorf("%s %s: %v %d %q", methods[i], paths[i], k.err, k.resp.Status, k.resp.Body)
		}
	}
}

// TestBatchPipelineOneRound: ten GETs started in one round of a loop go
// out pipelined on as few connections as MaxPipeline allows (4 + 4 + 2),
// each written once, and every answer reaches its own request; a POST in
// the same round gets a connection to itself, with nothing behind it.
func TestBatchPipelineOneRound(t *testing.T) {
	e := startOneLoopEngine(t)
	b := startRawBackend(t, inOrder)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr},
		Pool: PoolConfig{MaxPipeline: 4, BatchPipeline: true}})
	conn := loopConnOf(t, e)
	warm(t, c, conn, 11)
	conns, piped := b.conns.Load(), c.Stats().RqPipelined
	b.maxQueued.Store(0)
	methods := []string{"GET", "GET", "GET", "GET", "GET", "POST", "GET", "GET", "GET", "GET", "GET"}
	cols, paths := doRound(t, c, conn, "a", methods)
	wait(t, cols, methods, paths)
	st := c.Stats()
	t.Logf("pipelined %d; backend connections %d, most in flight on one %d, requests behind a POST %d",
		st.RqPipelined-piped, b.conns.Load()-conns, b.maxQueued.Load(), b.postCompany.Load())
	if n := st.RqPipelined - piped; n != 7 {
		t.Errorf("pipelined %d; want 7 (ten GETs on three connections: 3 + 3 + 1 behind the first of each)", n)
	}
	if n := b.conns.Load() - conns; n != 0 {
		t.Errorf("%d new backend connections; want 0 (idle ones reused)", n)
	}
	// The backend sees up to four at once (fewer if it answered the first
	// before it had read the rest), never more.
	if q := b.maxQueued.Load(); q < 2 || q > 4 {
		t.Errorf("most in flight on one connection %d; want 2..4 (MaxPipeline 4)", q)
	}
	if b.postCompany.Load() != 0 {
		t.Errorf("%d requests were written behind a POST", b.postCompany.Load())
	}
	waitUntil(t, "nothing in flight", func() bool {
		s := c.Stats()
		return s.RqActive == 0 && s.Hosts[0].Active == 0 && s.Hosts[0].Assigned == 0
	})
}

// TestBatchPipelineOff: without BatchPipeline (MaxPipeline alone) the
// same round takes a connection per request and pipelines nothing.
func TestBatchPipelineOff(t *testing.T) {
	e := startOneLoopEngine(t)
	b := startRawBackend(t, inOrder)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Pool: PoolConfig{MaxPipeline: 4}})
	conn := loopConnOf(t, e)
	warm(t, c, conn, 6)
	conns, piped := b.conns.Load(), c.Stats().RqPipelined
	b.maxQueued.Store(0)
	methods := []string{"GET", "GET", "GET", "GET", "GET", "GET"}
	cols, paths := doRound(t, c, conn, "o", methods)
	wait(t, cols, methods, paths)
	if n, q, nc := c.Stats().RqPipelined-piped, b.maxQueued.Load(), b.conns.Load()-conns; n != 0 || q != 1 || nc != 0 {
		t.Errorf("pipelined %d, most in flight %d, new connections %d; want 0, 1, 0", n, q, nc)
	}
}

// TestBatchPipelineConnectionDies: the backend takes a round's four GETs
// on one connection and closes it after answering the first: the three
// behind it are retried on another connection and answered; none is lost.
func TestBatchPipelineConnectionDies(t *testing.T) {
	e := startOneLoopEngine(t)
	b := startRawBackend(t, func(conn net.Conn, n int64, reqs <-chan *http.Request) {
		for req := range reqs {
			if req.URL.Path != "/d0" {
				if answer(conn, req, req.Method+" "+req.URL.Path) != nil {
					return
				}
				continue
			}
			// The round's first request: the three behind it came with
			// it; answer it alone and close.
			for range 3 {
				select {
				case <-reqs:
				case <-time.After(5 * time.Second):
				}
			}
			answer(conn, req, req.Method+" "+req.URL.Path)
			time.Sleep(5 * time.Millisecond)
			return // closes the connection
		}
	})
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true,
		Pool: PoolConfig{MaxPipeline: 4, BatchPipeline: true}})
	conn := loopConnOf(t, e)
	warm(t, c, conn, 2)
	methods := []string{"GET", "GET", "GET", "GET"}
	cols, paths := doRound(t, c, conn, "d", methods)
	wait(t, cols, methods, paths)
	st := c.Stats()
	t.Logf("pipelined %d, pipeline resets %d, reused-connection retries %d, backend requests %d on %d connections",
		st.RqPipelined, st.RqPipelineReset, st.RqRetryReused, b.requests.Load(), b.conns.Load())
	// The next in line was being answered when the connection closed (a
	// reused connection's retry); the two behind it are pipeline resets.
	if st.RqPipelineReset != 2 || st.RqRetryReused < 1 {
		t.Errorf("pipeline resets %d, reused-connection retries %d; want 2, at least 1", st.RqPipelineReset, st.RqRetryReused)
	}
	if n := b.requests.Load(); n != 2+4+3 {
		t.Errorf("backend got %d requests; want 9 (2 warm-up, 4, the 3 unanswered again)", n)
	}
	waitUntil(t, "nothing in flight", func() bool {
		s := c.Stats()
		return s.RqActive == 0 && s.Hosts[0].Active == 0 && s.Hosts[0].Assigned == 0
	})
}

// TestBatchPipelineGoBackend: many rounds of GETs against net/http, which
// answers pipelined requests in order; every answer is right.
func TestBatchPipelineGoBackend(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Method+" "+r.URL.Path)
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Pool: PoolConfig{MaxPipeline: 8, BatchPipeline: true}})
	conn := loopConnOf(t, e)
	methods := make([]string, 12)
	for i := range methods {
		methods[i] = "GET"
	}
	for r := range 20 {
		cols, paths := doRound(t, c, conn, fmt.Sprintf("r%d-", r), methods)
		wait(t, cols, methods, paths)
	}
	st := c.Stats()
	t.Logf("pipelined %d of %d; backend connections %d", st.RqPipelined, 20*len(methods), b.accepted.Load())
	if st.RqPipelined == 0 {
		t.Error("nothing was pipelined")
	}
}

// TestStreamedBodyWriteEnd: streamed POSTs whose last bytes go out with
// WriteEnd, to a backend that answers as soon as it has the body, all
// reuse one connection: the response never finds the body unfinished
// (with Write then End it sometimes did, and the connection was closed).
func TestStreamedBodyWriteEnd(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		w.Write(body)
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	for i := range 50 {
		want := fmt.Sprintf("body %d", i)
		head := AppendRequestHead(nil, "POST", "/p", "t", nil, int64(len(want)), false)
		k := &collector{done: make(chan struct{}), max: 1 << 20}
		x := c.Do(&Request{Method: "POST", Head: head, Stream: true, Handler: k})
		x.Write([]byte(want[:3]))
		x.WriteEnd([]byte(want[3:]))
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d: no answer", i)
		}
		if k.err != nil || k.resp.Status != 200 || string(k.resp.Body) != want {
			t.Fatalf("request %d: %v %d %q", i, k.err, k.resp.Status, k.resp.Body)
		}
		if err := x.Write([]byte("x")); err == nil {
			t.Fatalf("request %d: Write after WriteEnd succeeded", i)
		}
	}
	waitUntil(t, "the connection idle", func() bool { return c.Stats().Hosts[0].Idle == 1 })
	if n := c.Stats().CxTotal; n != 1 {
		t.Errorf("%d connections for 50 sequential streamed requests; want 1 (reused)", n)
	}
}
