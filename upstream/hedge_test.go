package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/http1"
)

// slowFast starts a backend that answers "slow" after d (or when the
// client goes away, which it counts) and one that answers "fast" at once.
func slowFast(t *testing.T, d time.Duration) (slow, fast *backend, gone *atomic.Int64) {
	gone = new(atomic.Int64)
	slow = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(d):
			io.WriteString(w, "slow")
		case <-r.Context().Done():
			gone.Add(1)
		}
	}))
	fast = startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		io.WriteString(w, "fast")
	}))
	return slow, fast, gone
}

// TestHedgeFastWins: requests alternate between a slow host, which never
// answers, and a fast one; those sent to the slow host are hedged to the
// fast one after 30 ms, the fast answer wins, and the slow host sees each
// losing request's connection closed. Every request is answered "fast"
// (unhedged, it would wait for the slow host until its 10 s timeout); the
// pool ends with no connection to the slow host and nothing in flight.
//
// No figure here depends on the machine's speed: a request sent to the
// fast host is hedged too (to the slow one, and loses) when the fast
// answer takes over 30 ms, as it can on a loaded machine, and a request to
// the slow host can be won before its bytes reach that host.
func TestHedgeFastWins(t *testing.T) {
	e := startEngine(t)
	slow, fast, gone := slowFast(t, time.Hour)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{slow.addr, fast.addr}, Balancer: BalanceRoundRobin,
		HedgeDelay: 30 * time.Millisecond, OutlierOff: true})
	const n = 10
	for i := range n {
		r, err := get(t, c, "/")
		if err != nil || r.Status != 200 || string(r.Body) != "fast" {
			t.Fatalf("request %d: %v %+v", i, err, r)
		}
	}
	st := c.Stats()
	t.Logf("hedged %d, won %d, slow backend requests %d, fast %d", st.RqHedged, st.RqHedgeWon, slow.requests.Load(), fast.requests.Load())
	// Round robin sends n/2 requests to the slow host first: each was won
	// by its hedge. The other hedges were of requests to the fast host.
	if st.RqHedgeWon != n/2 || st.RqHedged < st.RqHedgeWon || st.RqHedged > n {
		t.Errorf("hedged %d, won %d; want %d won (every request to the slow host) and no more hedges than requests",
			st.RqHedged, st.RqHedgeWon, n/2)
	}
	if st.RqSuccess != n || st.RqTotal != n || st.RqStatus["2xx"] != n {
		t.Errorf("requests %d, success %d, 2xx %d; want %d each (counted once per request)", st.RqTotal, st.RqSuccess, st.RqStatus["2xx"], n)
	}
	waitUntil(t, "the losers' connections closed at the slow backend", func() bool {
		return gone.Load() == slow.requests.Load() && slow.open.Load() == 0
	})
	if got := slow.requests.Load(); got > int64(n/2)+int64(st.RqHedged-st.RqHedgeWon) {
		t.Errorf("the slow backend got %d requests; at most %d were sent to it", got, int64(n/2)+int64(st.RqHedged-st.RqHedgeWon))
	}
	waitUntil(t, "pool and counters settled", func() bool {
		s := c.Stats()
		return s.RqActive == 0 && s.Hosts[0].Conns == 0 && s.Hosts[0].Assigned == 0 && s.Hosts[1].Assigned == 0 &&
			int64(s.Hosts[1].Conns) == fast.open.Load() && s.CircuitBreakers["retries"].Active == 0 &&
			c.bud.Active() == 0 && c.bud.Retries() == 0
	})
	if f := st.RqFailures["canceled"]; f != 0 {
		t.Errorf("a canceled loser was counted as a failed request (%d)", f)
	}
}

// TestHedgeNeverNonIdempotent: a POST, and a GET marked not idempotent,
// are never hedged: they wait for the slow host.
func TestHedgeNeverNonIdempotent(t *testing.T) {
	e := startEngine(t)
	slow, _, _ := slowFast(t, 300*time.Millisecond)
	slow2, _, _ := slowFast(t, 300*time.Millisecond)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{slow.addr, slow2.addr}, Balancer: BalanceRoundRobin,
		HedgeDelay: 10 * time.Millisecond, OutlierOff: true})
	ctx := context.Background()
	for i := range 4 {
		body := []byte("payload")
		head := AppendRequestHead(nil, "POST", "/", "x", nil, int64(len(body)), false)
		r, err := c.RoundTrip(ctx, &Request{Method: "POST", Head: head, Body: body}, 0)
		if err != nil || string(r.Body) != "slow" {
			t.Fatalf("POST %d: %v %+v", i, err, r)
		}
		head = AppendRequestHead(nil, "GET", "/", "x", nil, -1, false)
		r, err = c.RoundTrip(ctx, &Request{Method: "GET", Head: head, Idempotent: -1}, 0)
		if err != nil || string(r.Body) != "slow" {
			t.Fatalf("GET (not idempotent) %d: %v %+v", i, err, r)
		}
	}
	if h := c.Stats().RqHedged; h != 0 {
		t.Errorf("%d non-idempotent requests hedged", h)
	}
	if n := slow.requests.Load() + slow2.requests.Load(); n != 8 {
		t.Errorf("backends got %d requests for 8", n)
	}
	// The same GET, idempotent, is hedged.
	head := AppendRequestHead(nil, "GET", "/", "x", nil, -1, false)
	if _, err := c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 0); err != nil {
		t.Fatal(err)
	}
	if h := c.Stats().RqHedged; h != 1 {
		t.Errorf("an idempotent GET to slow hosts: hedged %d, want 1", h)
	}
}

// TestHedgeBudget: hedges are retries. Ten concurrent requests to two
// hosts that hold them: with Thresholds.MaxRetries 2 (the budget off) only
// two are hedged and eight hedges are refused as retry overflows; with
// RetryPolicy.MaxRetries negative none is. Past the overall timeout every
// request fails as a timeout and every counter returns to zero.
func TestHedgeBudget(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	var g1, g2 gauge
	b1, b2 := blockingBackend(t, release, &g1), blockingBackend(t, release, &g2)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b1.addr, b2.addr}, HedgeDelay: 20 * time.Millisecond,
		RetryBudgetOff: true, Thresholds: Thresholds{MaxRetries: 2}, OutlierOff: true, BreakerOff: true})
	wait := launchGets(t, c, 10)
	deadline := time.Now().Add(5 * time.Second)
	for {
		s := c.Stats()
		if s.RqHedged == 2 && s.RqRetryOverflow == 8 && g1.now.Load()+g2.now.Load() == 12 {
			break
		}
		if time.Now().After(deadline) {
			t.Fatalf("hedged %d, retry overflow %d, at the backends %d; want 2, 8, 12", s.RqHedged, s.RqRetryOverflow, g1.now.Load()+g2.now.Load())
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	if got := wait(); got["ok"] != 10 {
		t.Errorf("results %v; want 10 ok", got)
	}
	if n := b1.requests.Load() + b2.requests.Load(); n != 12 {
		t.Errorf("backends got %d requests; want 10 and 2 hedges", n)
	}

	// No retries allowed: no hedge.
	slowHold := make(chan struct{})
	var g3, g4 gauge
	b3, b4 := blockingBackend(t, slowHold, &g3), blockingBackend(t, slowHold, &g4)
	c3 := newTestCluster(t, e, ClusterConfig{Hosts: []string{b3.addr, b4.addr}, HedgeDelay: 5 * time.Millisecond,
		Retry: RetryPolicy{MaxRetries: -1}, OutlierOff: true, BreakerOff: true, Timeout: 150 * time.Millisecond})
	got := launchGets(t, c3, 4)()
	if got["upstream_timeout/none"] != 4 {
		t.Errorf("results %v; want 4 timeouts", got)
	}
	if h := c3.Stats().RqHedged; h != 0 {
		t.Errorf("hedged %d with no retries allowed", h)
	}
	close(slowHold)

	// Hedged, both attempts past the overall timeout.
	hold := make(chan struct{})
	defer close(hold)
	var g5, g6 gauge
	b5, b6 := blockingBackend(t, hold, &g5), blockingBackend(t, hold, &g6)
	c4 := newTestCluster(t, e, ClusterConfig{Hosts: []string{b5.addr, b6.addr}, HedgeDelay: 20 * time.Millisecond,
		OutlierOff: true, BreakerOff: true, Timeout: 200 * time.Millisecond})
	got = launchGets(t, c4, 3)()
	s := c4.Stats()
	if got["upstream_timeout/none"] != 3 || s.RqHedged != 3 || s.RqTimeout != 3 || s.RqFailures["upstream_timeout"] != 3 {
		t.Errorf("results %v, hedged %d, timeouts %d, failures %v; want 3 hedged requests timed out, counted once each",
			got, s.RqHedged, s.RqTimeout, s.RqFailures)
	}
	waitUntil(t, "counters back to zero and the attempts' connections closed", func() bool {
		s := c4.Stats()
		return s.RqActive == 0 && s.CxActive == 0 && c4.bud.Active() == 0 && c4.bud.Retries() == 0 &&
			s.Hosts[0].Assigned == 0 && s.Hosts[1].Assigned == 0 && g5.now.Load()+g6.now.Load() == 0
	})
}

// TestHedgeCancel: canceling a hedged request cancels both attempts.
func TestHedgeCancel(t *testing.T) {
	e := startEngine(t)
	hold := make(chan struct{})
	defer close(hold)
	var g1, g2 gauge
	b1, b2 := blockingBackend(t, hold, &g1), blockingBackend(t, hold, &g2)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b1.addr, b2.addr}, HedgeDelay: 10 * time.Millisecond,
		OutlierOff: true, BreakerOff: true})
	ctx, cancel := context.WithCancel(context.Background())
	var wg sync.WaitGroup
	var err error
	wg.Add(1)
	go func() {
		defer wg.Done()
		head := AppendRequestHead(nil, "GET", "/", "x", nil, -1, false)
		_, err = c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 0)
	}()
	waitUntil(t, "both attempts at the backends", func() bool { return g1.now.Load()+g2.now.Load() == 2 })
	cancel()
	wg.Wait()
	if !errors.Is(err, ErrCanceled) {
		t.Errorf("err %v; want canceled", err)
	}
	waitUntil(t, "both attempts gone", func() bool {
		s := c.Stats()
		return g1.now.Load()+g2.now.Load() == 0 && s.CxActive == 0 && s.RqActive == 0
	})
}

// orderCheck is a ResponseHandler that records its calls and fails the
// test on a call after OnDone or out of order.
type orderCheck struct {
	t    *testing.T
	mu   sync.Mutex
	resp int
	body []byte
	err  error
	done chan struct{}
}

func (o *orderCheck) OnResponse(x *Exchange, resp *http1.Response) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.done == nil || o.resp > 0 || isClosed(o.done) {
		o.t.Errorf("OnResponse out of order")
	}
	o.resp = resp.StatusCode
}

func (o *orderCheck) OnBody(x *Exchange, data []byte) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if o.resp == 0 || isClosed(o.done) {
		o.t.Errorf("OnBody out of order")
	}
	o.body = append(o.body, data...)
}

func (o *orderCheck) OnDone(x *Exchange, err error) {
	o.mu.Lock()
	defer o.mu.Unlock()
	if isClosed(o.done) {
		o.t.Errorf("OnDone twice")
		return
	}
	o.err = err
	close(o.done)
}

func isClosed(c chan struct{}) bool {
	select {
	case <-c:
		return true
	default:
		return false
	}
}

// TestHedgeTimeoutAfterAnswer: the hedge answers with a head and part of
// the body, then stalls; the overall timeout ends the request through the
// winner's own connection, so the handler's calls stay in order (response,
// body, done with FailTimeout) and none comes after OnDone.
func TestHedgeTimeoutAfterAnswer(t *testing.T) {
	e := startEngine(t)
	stall := func(w http.ResponseWriter, r *http.Request) { <-r.Context().Done() }
	partial := func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Length", "100")
		w.WriteHeader(200)
		io.WriteString(w, "part")
		w.(http.Flusher).Flush()
		<-r.Context().Done()
	}
	var n atomic.Int64
	h := func(w http.ResponseWriter, r *http.Request) { // each backend: the first request stalls, the next answers in part
		if n.Add(1)%2 == 1 {
			stall(w, r)
		} else {
			partial(w, r)
		}
	}
	b1, b2 := startBackend(t, http.HandlerFunc(h)), startBackend(t, http.HandlerFunc(h))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b1.addr, b2.addr}, HedgeDelay: 20 * time.Millisecond,
		Timeout: 300 * time.Millisecond, OutlierOff: true, BreakerOff: true})
	o := &orderCheck{t: t, done: make(chan struct{})}
	c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "x", nil, -1, false), Handler: o})
	select {
	case <-o.done:
	case <-time.After(5 * time.Second):
		t.Fatal("no OnDone")
	}
	o.mu.Lock()
	if FailureOf(o.err) != FailTimeout || o.resp != 200 || string(o.body) != "part" {
		t.Errorf("status %d, body %q, err %v; want 200, \"part\", a timeout", o.resp, o.body, o.err)
	}
	o.mu.Unlock()
	st := c.Stats()
	if st.RqHedged != 1 || st.RqHedgeWon != 1 || st.RqTimeout != 1 || st.RqFailures["upstream_timeout"] != 1 {
		t.Errorf("hedged %d won %d timeouts %d failures %v", st.RqHedged, st.RqHedgeWon, st.RqTimeout, st.RqFailures)
	}
	waitUntil(t, "counters back to zero", func() bool {
		s := c.Stats()
		return s.RqActive == 0 && s.CxActive == 0 && c.bud.Retries() == 0 && b1.open.Load()+b2.open.Load() == 0
	})
	time.Sleep(50 * time.Millisecond) // a late call would show now
}
