package upstream

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// startEngine starts an engine without a listener for a test, drained at
// its end.
func startEngine(t testing.TB) *engine.Engine { return testutil.StartDrainedEngine(t) }

// backend is a net/http server on a random port that counts the
// connections it sees open at once (the pool's bounds, checked from the
// backend's side).
type backend struct {
	srv      *http.Server
	ln       net.Listener
	addr     string
	open     atomic.Int64
	maxOpen  atomic.Int64
	accepted atomic.Int64
	requests atomic.Int64
}

func startBackend(t testing.TB, h http.Handler, opts ...func(*http.Server)) *backend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &backend{ln: ln, addr: ln.Addr().String()}
	b.srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b.requests.Add(1)
		h.ServeHTTP(w, r)
	}), ConnState: func(c net.Conn, s http.ConnState) {
		switch s {
		case http.StateNew:
			b.accepted.Add(1)
			n := b.open.Add(1)
			for {
				m := b.maxOpen.Load()
				if n <= m || b.maxOpen.CompareAndSwap(m, n) {
					break
				}
			}
		case http.StateClosed, http.StateHijacked:
			b.open.Add(-1)
		}
	}}
	for _, o := range opts {
		o(b.srv)
	}
	go b.srv.Serve(ln)
	t.Cleanup(func() { b.srv.Close() })
	return b
}

func hello(w http.ResponseWriter, r *http.Request) {
	io.WriteString(w, "hello from "+r.Host)
}

func newTestCluster(t testing.TB, e *engine.Engine, cfg ClusterConfig) *Cluster {
	t.Helper()
	c, err := NewCluster(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func get(t testing.TB, c *Cluster, path string) (*Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	head := AppendRequestHead(nil, "GET", path, "test", nil, -1, false)
	return c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 0)
}

func TestClusterGetKeepAlive(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(hello))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{"http://" + b.addr}})
	for i := range 50 {
		r, err := get(t, c, "/")
		if err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		if r.Status != 200 || string(r.Body) != "hello from test" {
			t.Fatalf("request %d: %d %q", i, r.Status, r.Body)
		}
	}
	if n := b.accepted.Load(); n != 1 {
		t.Errorf("backend accepted %d connections for 50 sequential requests; want 1 (keep-alive)", n)
	}
	st := c.Stats()
	if st.RqSuccess != 50 || st.RqStatus["2xx"] != 50 {
		t.Errorf("stats: %+v", st)
	}
}

func TestClusterBodies(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		if r.URL.Path == "/chunked" {
			w.(http.Flusher).Flush() // forces chunked
			for range 3 {
				w.Write(body)
				w.(http.Flusher).Flush()
			}
			return
		}
		fmt.Fprintf(w, "%s %d %s", r.Method, len(body), r.Header.Get("X-Test"))
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	ctx := context.Background()
	body := bytes.Repeat([]byte("abcdefgh"), 100_000)
	head := AppendRequestHead(nil, "POST", "/len", "x", []string{"X-Test", "yes"}, int64(len(body)), false)
	r, err := c.RoundTrip(ctx, &Request{Method: "POST", Head: head, Body: body}, 0)
	if err != nil || string(r.Body) != "POST 800000 yes" {
		t.Fatalf("content-length body: %v %+v", err, r)
	}
	// Chunked both ways, the request streamed.
	done := make(chan *Response, 1)
	col := &collector{done: make(chan struct{}), max: 1 << 20}
	head = AppendRequestHead(nil, "POST", "/chunked", "x", nil, -1, true)
	x := c.Do(&Request{Method: "POST", Head: head, Stream: true, Handler: col})
	for _, p := range []string{"he", "llo"} {
		if err := x.Write([]byte(fmt.Sprintf("%x\r\n%s\r\n", len(p), p))); err != nil {
			t.Fatal(err)
		}
	}
	x.Write([]byte("0\r\n\r\n"))
	x.End()
	go func() { <-col.done; done <- &col.resp }()
	select {
	case r := <-done:
		if col.err != nil || r.Status != 200 || string(r.Body) != "hellohellohello" {
			t.Fatalf("chunked: %v %d %q", col.err, r.Status, r.Body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("chunked exchange never finished")
	}
	// HEAD has no body whatever Content-Length says.
	head = AppendRequestHead(nil, "HEAD", "/len", "x", nil, -1, false)
	r, err = c.RoundTrip(ctx, &Request{Method: "HEAD", Head: head}, 0)
	if err != nil || r.Status != 200 || len(r.Body) != 0 {
		t.Fatalf("HEAD: %v %+v", err, r)
	}
	// And the connection is still good.
	if r, err := get(t, c, "/len"); err != nil || string(r.Body) != "GET 0 " {
		t.Fatalf("after HEAD: %v %+v", err, r)
	}
}

// TestClusterPoolBounds: many concurrent requests against a slow backend
// never open more than MaxConnsPerHost connections (seen by the backend),
// the rest wait in the pending queue, and past its bound they fail fast.
func TestClusterPoolBounds(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr},
		Pool: PoolConfig{MaxConnsPerHost: 4, MaxPendingPerHost: 10}})
	var wg sync.WaitGroup
	var ok, overflow, other atomic.Int64
	launch := func(n int) {
		for range n {
			wg.Add(1)
			go func() {
				defer wg.Done()
				_, err := get(t, c, "/")
				switch {
				case err == nil:
					ok.Add(1)
				case errors.Is(err, ErrOverflow):
					overflow.Add(1)
				default:
					t.Log(err)
					other.Add(1)
				}
			}()
		}
	}
	waitFor := func(what string, cond func() bool) {
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s", what)
			}
			time.Sleep(2 * time.Millisecond)
		}
	}
	launch(4)
	waitFor("4 requests at the backend", func() bool { return b.requests.Load() == 4 })
	launch(16)
	waitFor("10 pending and 6 refused", func() bool {
		return c.Stats().RqPendingActive == 10 && overflow.Load() == 6
	})
	close(release)
	wg.Wait()
	t.Logf("ok=%d overflow=%d other=%d maxOpen=%d", ok.Load(), overflow.Load(), other.Load(), b.maxOpen.Load())
	if m := b.maxOpen.Load(); m > 4 {
		t.Errorf("backend saw %d connections open at once; the bound is 4", m)
	}
	if ok.Load() != 14 || overflow.Load() != 6 || other.Load() != 0 {
		t.Errorf("ok=%d overflow=%d other=%d; want 14 served (4 in flight + 10 pending) and 6 refused", ok.Load(), overflow.Load(), other.Load())
	}
}

// TestClusterKeepAliveTimeout: a backend that announces a short keep-alive
// timeout and closes idle connections at it, behind a pool with a long
// idle timeout: the pool retires connections before the backend would, so
// sparse requests never fail.
func TestClusterKeepAliveTimeout(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Keep-Alive", "timeout=1")
		io.WriteString(w, "ok")
	}), func(s *http.Server) { s.IdleTimeout = time.Second })
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Retry: RetryPolicy{MaxRetries: -1},
		Pool: PoolConfig{IdleTimeout: time.Minute}})
	rounds := 6
	if testing.Short() {
		rounds = 4
	}
	for i := range rounds {
		if _, err := get(t, c, "/"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		// Sleep across the backend's timeout on odd rounds, just under
		// the pool's retirement on even ones.
		if i%2 == 0 {
			time.Sleep(1100 * time.Millisecond)
		} else {
			time.Sleep(300 * time.Millisecond)
		}
	}
	st := c.Stats()
	if st.RqRetryReused != 0 {
		t.Errorf("%d requests were retried after the backend closed a reused connection; the pool should have retired it first", st.RqRetryReused)
	}
	// The pool retired connections for the announced keep-alive (0.5 s,
	// the margin being half of a timeout under 2 s), at least after each
	// 1.1 s pause; without it the backend's close alone would keep the
	// figures above clean.
	if st.CxKeepAlive == 0 {
		t.Errorf("no connection retired for the backend's Keep-Alive timeout (%d dialled)", st.CxTotal)
	}
	t.Logf("connections dialled %d, retired for keep-alive %d", st.CxTotal, st.CxKeepAlive)
}

// TestClusterReusedConnClosed: a backend that closes a kept-alive
// connection when the next request arrives on it, without answering (the
// race of a keep-alive timeout): a GET sent on the closing connection is
// retried at once on a fresh one, free (counted in rq_retry_reused_conn),
// and the caller sees no failure; a POST with a body that reached the
// backend that way is not sent again.
func TestClusterReusedConnClosed(t *testing.T) {
	e := startEngine(t)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	var posts atomic.Int64
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				br := bufio.NewReader(conn)
				for n := 0; ; n++ {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					io.Copy(io.Discard, req.Body)
					if req.Method == "POST" {
						posts.Add(1)
					}
					if n == 1 {
						return // the second request on a connection: closed unanswered
					}
					conn.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
				}
			}()
		}
	}()
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{ln.Addr().String()}, OutlierOff: true, BreakerOff: true})
	for i := range 5 {
		if r, err := get(t, c, "/"); err != nil || r.Status != 200 {
			t.Fatalf("request %d: %v", i, err)
		}
	}
	if st := c.Stats(); st.RqRetryReused < 4 || st.RqRetry != 0 {
		t.Errorf("free retries on a reused connection %d, policy retries %d; want 4 (one per request but the first), 0",
			st.RqRetryReused, st.RqRetry)
	}
	// The idle connection has answered one request: a POST on it reaches
	// the backend, which closes; it may have been applied, so it fails.
	body := []byte("payload")
	head := AppendRequestHead(nil, "POST", "/", "test", nil, int64(len(body)), false)
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	_, err = c.RoundTrip(ctx, &Request{Method: "POST", Head: head, Body: body}, 0)
	if FailureOf(err) != FailReset {
		t.Errorf("POST on a connection closed under it: %v; want upstream_reset", err)
	}
	if n := posts.Load(); n != 1 {
		t.Errorf("the backend saw the POST %d times; want once (not resent)", n)
	}
}

func TestClusterConnectFailureRetries(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(hello))
	deadAddr := testutil.RefusedAddr(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{deadAddr, b.addr}, Balancer: BalanceRoundRobin,
		Retry: RetryPolicy{MaxRetries: 2}})
	for i := range 20 {
		if r, err := get(t, c, "/"); err != nil || r.Status != 200 {
			t.Fatalf("request %d: %v %+v", i, err, r)
		}
	}
	st := c.Stats()
	if st.Hosts[0].CxFail == 0 || st.RqRetry == 0 {
		t.Errorf("expected connect failures and retries: %+v", st)
	}
	if !st.Hosts[0].Ejected {
		t.Errorf("the dead host was not ejected after %d connect failures", st.Hosts[0].CxFail)
	}
}

func TestClusterFailFastNoHost(t *testing.T) {
	e := startEngine(t)
	addr := testutil.RefusedAddr(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{addr}})
	_, err := get(t, c, "/")
	if FailureOf(err) != FailConnect || FailureOf(err).Status() != 502 {
		t.Fatalf("err = %v; want a connect failure (502)", err)
	}
	c.Drain(0)
	_, err = get(t, c, "/")
	if !errors.Is(err, ErrNoHost) && !errors.Is(err, ErrConnect) {
		t.Fatalf("err = %v after draining the only host", err)
	}
}

// TestClusterExpectContinue: a body held for 100 Continue goes once the
// backend asks for it, and is never sent when the backend refuses first.
func TestClusterExpectContinue(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/refuse" {
			w.WriteHeader(417)
			return
		}
		body, _ := io.ReadAll(r.Body) // net/http sends 100 Continue here
		fmt.Fprintf(w, "%d", len(body))
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	ctx := context.Background()
	body := []byte("0123456789")
	for _, path := range []string{"/read", "/refuse", "/read"} {
		// A body that waits for ContinueTimeout (1 s) makes every round
		// trip take over 900 ms; a loaded machine can stretch one of
		// them that far: only three slow ones in a row fail.
		var took []time.Duration
		for len(took) < 3 {
			head := AppendRequestHead(nil, "PUT", path, "x", []string{"Expect", "100-continue"}, int64(len(body)), false)
			t0 := time.Now()
			r, err := c.RoundTrip(ctx, &Request{Method: "PUT", Head: head, Body: body, Expect100: true}, 0)
			if err != nil {
				t.Fatalf("%s: %v", path, err)
			}
			if path == "/read" && (r.Status != 200 || string(r.Body) != "10") {
				t.Fatalf("%s: %d %q", path, r.Status, r.Body)
			}
			if path == "/refuse" && r.Status != 417 {
				t.Fatalf("%s: %d", path, r.Status)
			}
			d := time.Since(t0)
			if d <= 900*time.Millisecond {
				break
			}
			took = append(took, d)
		}
		if len(took) == 3 {
			t.Errorf("%s took %v: the body waited for the continue timeout", path, took)
		}
	}
	// The refused request's connection was not reused (its framing was
	// unfinished): at least two connections.
	if n := b.accepted.Load(); n < 2 {
		t.Errorf("backend accepted %d connections", n)
	}
}

// TestClusterPoolPolicyFakeTime checks the pool's retirement rules on the
// engine's clock, without sleeping: the backend's announced keep-alive
// (less the margin), the pool's idle timeout and max lifetime, and max
// requests per connection each make the next request use a new
// connection.
func TestClusterPoolPolicyFakeTime(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/ka" {
			w.Header().Set("Keep-Alive", "timeout=5")
		}
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: -1,
		Pool: PoolConfig{IdleTimeout: 30 * time.Second, MaxLifetime: 100 * time.Second, MaxRequestsPerConn: 3}})
	step := func(path string, advance time.Duration, wantConns int64, why string) {
		t.Helper()
		clk.Advance(advance)
		if _, err := get(t, c, path); err != nil {
			t.Fatalf("%s: %v", why, err)
		}
		if n := b.accepted.Load(); n != wantConns {
			t.Fatalf("%s: backend saw %d connections; want %d", why, n, wantConns)
		}
	}
	step("/", 0, 1, "first request")
	step("/", 29*time.Second, 1, "idle 29s of 30s: reused")
	step("/", 31*time.Second, 2, "idle 31s: retired")
	step("/ka", 0, 2, "reused; the backend announces 5s")
	step("/", 3900*time.Millisecond, 2, "3.9s of 5s less 1s margin: reused")
	step("/", 0, 3, "max 3 requests per connection: retired")
	step("/ka", 4100*time.Millisecond, 3, "reused (announces 5s again)")
	step("/", 4100*time.Millisecond, 4, "4.1s of 5s less 1s margin: retired")
	step("/", 101*time.Second, 5, "past max lifetime (and idle): retired")
	if st := c.Stats(); st.CxKeepAlive == 0 {
		t.Errorf("no keep-alive retirement counted: %+v", st)
	}
}

// TestClusterAccountingBalances runs a storm of mixed outcomes — success,
// 503 (retried), slow answers cut by the timeout, cancels, a dead host —
// and checks that every counter of things in use returns to zero: no
// request, pending slot, retry or active count leaks.
func TestClusterAccountingBalances(t *testing.T) { accountingBalances(t, 0) }

// TestClusterAccountingBalancesHedged is the same storm with hedging on
// (a 20 ms hedge delay; a third of the requests are slow).
func TestClusterAccountingBalancesHedged(t *testing.T) { accountingBalances(t, 20*time.Millisecond) }

func accountingBalances(t *testing.T, hedge time.Duration) {
	e := startEngine(t)
	var n atomic.Int64
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch n.Add(1) % 4 {
		case 0:
			w.WriteHeader(503)
		case 1:
			select {
			case <-time.After(400 * time.Millisecond):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	deadAddr := testutil.RefusedAddr(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr, deadAddr}, Timeout: 200 * time.Millisecond,
		Retry: RetryPolicy{MaxRetries: 2}, BreakerOff: true, Pool: PoolConfig{MaxConnsPerHost: 8}, HedgeDelay: hedge})
	var wg sync.WaitGroup
	for i := range 200 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			ctx, cancel := context.WithTimeout(context.Background(), time.Duration(50+i%300)*time.Millisecond)
			defer cancel()
			head := AppendRequestHead(nil, "GET", "/", "x", nil, -1, false)
			if _, err := c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 0); FailureOf(err) == FailBadResponse {
				t.Errorf("bad response from a well-behaved backend: %v", err)
			}
		}()
	}
	wg.Wait()
	deadline := time.Now().Add(5 * time.Second)
	for {
		st := c.Stats()
		busy := st.RqActive != 0 || st.RqPendingActive != 0 || c.Resources().Count(ResourceRequests) != 0 ||
			c.Resources().Count(ResourceRetries) != 0 || c.set.Active(0) != 0 || c.set.Active(1) != 0 ||
			c.hosts[0].requests.Load() != 0 || c.hosts[1].requests.Load() != 0 ||
			(c.bud != nil && (c.bud.Active() != 0 || c.bud.Retries() != 0))
		if !busy {
			t.Logf("requests %d, retries %d, hedged %d, failures %v, connections dialled %d", st.RqTotal, st.RqRetry, st.RqHedged, st.RqFailures, st.CxTotal)
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("counters did not return to zero: %+v requests=%d retries=%d active0=%d active1=%d",
				st, c.Resources().Count(ResourceRequests), c.Resources().Count(ResourceRetries), c.set.Active(0), c.set.Active(1))
		}
		time.Sleep(10 * time.Millisecond)
	}
	// The connections count matches what the pool holds.
	deadline = time.Now().Add(5 * time.Second)
	for {
		conns, idle, _ := c.hosts[0].counts()
		if int64(conns) == c.Resources().Count(ResourceConnections) && conns == idle {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("host 0: %d connections, %d idle, cluster counts %d", conns, idle, c.Resources().Count(ResourceConnections))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestClusterActiveHealthHTTP: an HTTP health check takes a host out of
// rotation after UnhealthyThreshold failures (closing its idle
// connections) and back after HealthyThreshold passes.
func TestClusterActiveHealthHTTP(t *testing.T) {
	e := startEngine(t)
	var sick atomic.Bool
	var checks atomic.Int64
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" {
			checks.Add(1)
			if r.Header.Get("User-Agent") != "warren-health-check" {
				w.WriteHeader(400)
				return
			}
			if sick.Load() {
				w.WriteHeader(503)
				return
			}
		}
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true,
		HostSet: HostSetConfig{PanicThreshold: -1},
		Health:  HealthConfig{Interval: 50 * time.Millisecond, Path: "/healthz", UnhealthyThreshold: 2, HealthyThreshold: 2}})
	if _, err := get(t, c, "/"); err != nil {
		t.Fatal(err)
	}
	waitUntil := func(what string, cond func() bool) {
		t.Helper()
		deadline := time.Now().Add(5 * time.Second)
		for !cond() {
			if time.Now().After(deadline) {
				t.Fatalf("timed out waiting for %s (%d checks)", what, checks.Load())
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	waitUntil("a few checks", func() bool { return checks.Load() >= 2 })
	sick.Store(true)
	waitUntil("unhealthy", func() bool { return !c.HostSet().Healthy(0) })
	if _, idle, _ := c.hosts[0].counts(); idle != 0 {
		t.Errorf("%d idle connections kept to an unhealthy host", idle)
	}
	if _, err := get(t, c, "/"); !errors.Is(err, ErrNoHost) {
		t.Errorf("request to a cluster whose only host is unhealthy (panic mode off): %v", err)
	}
	sick.Store(false)
	waitUntil("healthy again", func() bool { return c.HostSet().Healthy(0) })
	if _, err := get(t, c, "/"); err != nil {
		t.Fatal(err)
	}
	st := c.Stats()
	if st.Hosts[0].HealthFail < 2 || st.Hosts[0].HealthOK < 2 {
		t.Errorf("health counters: %+v", st.Hosts[0])
	}
}

// TestClusterOverallTimeoutReused: the overall-timeout timers are pooled
// and re-armed; a reused timer must time out only its own exchange, never
// before its own deadline. (A quick request that times out after its
// deadline is the machine stalling, not the pool: it is logged, not
// failed.) The per-try timeout, which defaults to the overall one, is
// checked on the engine's tick and may fire up to a tick early.
func TestClusterOverallTimeoutReused(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if d, err := time.ParseDuration(r.URL.Query().Get("sleep")); err == nil {
			select {
			case <-time.After(d):
			case <-r.Context().Done():
			}
		}
		io.WriteString(w, "ok")
	}))
	const timeout = 300 * time.Millisecond
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{"http://" + b.addr}, Timeout: timeout,
		Retry: RetryPolicy{MaxRetries: -1}})
	var timeouts atomic.Int64
	round := func(path string) (time.Duration, error) {
		start := time.Now()
		r, err := get(t, c, path)
		d := time.Since(start)
		if err == nil && (r.Status != 200 || string(r.Body) != "ok") {
			return d, fmt.Errorf("%d %q", r.Status, r.Body)
		}
		if FailureOf(err) == FailTimeout {
			timeouts.Add(1)
			if d < timeout-20*time.Millisecond {
				return d, fmt.Errorf("timed out after %v, before the %v deadline: %w", d, timeout, err)
			}
			if path == "/?sleep=1ms" {
				t.Logf("%s timed out after %v (machine stall)", path, d)
			}
			return d, nil
		}
		return d, err
	}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 40 {
				// Every fourth request outlives the timeout, so fired and
				// stopped timers alternate in the pool.
				path := "/?sleep=1ms"
				if i%4 == 3 {
					path = "/?sleep=2s"
				}
				if _, err := round(path); err != nil {
					t.Errorf("goroutine %d request %d: %v", g, i, err)
					return
				}
			}
		}()
	}
	wg.Wait()
	if n := timeouts.Load(); n < 40 {
		t.Errorf("%d timeouts; want at least the 40 slow requests", n)
	}
	d, err := round("/?sleep=3s")
	if err != nil || d < timeout-20*time.Millisecond || d > 2*time.Second {
		t.Errorf("slow request: %v after %v; want a timeout after about %v", err, d, timeout)
	}
	if st := c.Stats(); st.RqTimeout+st.RqPerTryTimeout != uint64(timeouts.Load()) {
		t.Errorf("rq_timeout %d + rq_per_try_timeout %d; counted %d", st.RqTimeout, st.RqPerTryTimeout, timeouts.Load())
	}
}

// TestHostURLRefused: a backend URL with a path, query or user info is
// refused at start rather than used as its host and port alone (the
// path and credentials silently dropped); a bare trailing slash is
// accepted.
func TestHostURLRefused(t *testing.T) {
	for _, h := range []string{"http://127.0.0.1:8000/base", "http://127.0.0.1:8000/base/", "http://127.0.0.1:8000?x=1",
		"http://127.0.0.1:8000/?", "http://u:secret@127.0.0.1:8000", "https://u@127.0.0.1:8443", "http://127.0.0.1:8000/#f"} {
		_, _, err := hostPort(h)
		if err == nil {
			t.Errorf("%q accepted", h)
		} else if strings.Contains(err.Error(), "secret") {
			t.Errorf("%q: the password is in the error: %v", h, err)
		}
	}
	for h, want := range map[string]string{"http://127.0.0.1:8000/": "127.0.0.1:8000", "http://h": "h:80", "https://h/": "h:443", "h:1": "h:1"} {
		if got, _, err := hostPort(h); err != nil || got != want {
			t.Errorf("%q: %q %v; want %q", h, got, err, want)
		}
	}
}
