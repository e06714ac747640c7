package upstream

import (
	"bufio"
	"context"
	"errors"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

func TestPerTryDue(t *testing.T) {
	t0 := time.Unix(1_000_000, 0)
	for _, tc := range []struct {
		quiet time.Duration
		due   bool
		wait  time.Duration
	}{
		{0, false, time.Second},
		{300 * time.Millisecond, false, 700 * time.Millisecond},
		{999 * time.Millisecond, false, time.Millisecond},
		{999_999_999, false, time.Millisecond}, // a nanosecond left: at least a millisecond, no spinning
		{time.Second, true, 0},
		{time.Hour, true, 0},
		{-time.Second, false, 2 * time.Second}, // a clock that stepped back waits longer, never fires early
	} {
		due, wait := perTryDue(t0, t0.Add(tc.quiet), time.Second)
		if due != tc.due || wait != tc.wait {
			t.Errorf("quiet %v: due %v wait %v; want %v %v", tc.quiet, due, wait, tc.due, tc.wait)
		}
	}
}

// silentBackend accepts connections, reads a request head and then says
// only what the test sends on its channel.
type silentBackend struct {
	ln    net.Listener
	addr  string
	mu    sync.Mutex
	conns []net.Conn
	got   chan net.Conn
}

func startSilentBackend(t *testing.T) *silentBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &silentBackend{ln: ln, addr: ln.Addr().String(), got: make(chan net.Conn, 16)}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			b.mu.Lock()
			b.conns = append(b.conns, c)
			b.mu.Unlock()
			go func() {
				if _, err := http.ReadRequest(bufio.NewReader(c)); err == nil {
					b.got <- c
				}
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		b.mu.Lock()
		for _, c := range b.conns {
			c.Close()
		}
		b.mu.Unlock()
	})
	return b
}

// doneHandler records a response's end.
type doneHandler struct{ done chan error }

func (h *doneHandler) OnResponse(*Exchange, *http1.Response) {}
func (h *doneHandler) OnBody(*Exchange, []byte)              {}
func (h *doneHandler) OnDone(x *Exchange, err error)         { h.done <- err }

// busyConn waits until x is on a connection and returns it.
func busyConn(t *testing.T, x *Exchange) *clientConn {
	t.Helper()
	for i := 0; i < 1000; i++ {
		x.mu.Lock()
		cc := x.cc
		x.mu.Unlock()
		if cc != nil {
			return cc
		}
		time.Sleep(5 * time.Millisecond)
	}
	t.Fatal("the request never got a connection")
	return nil
}

// onLoop runs fn on cc's event loop and waits for it.
func onLoop(t *testing.T, cc *clientConn, fn func()) {
	t.Helper()
	ran := make(chan struct{})
	if !cc.dialed.Load().Post(func() { fn(); close(ran) }) {
		t.Fatal("connection closed")
	}
	<-ran
}

// TestPerTryTimeoutFakeTime drives the per-try check with the engine's
// clock: an attempt silent for less than the per-try timeout stays (the
// timer re-arms for the rest), a response byte restarts the silence, and
// the attempt fails as a per-try timeout once silent for the whole of it.
// The per-try timeout is an hour of real time, so only the calls of the
// test decide.
func TestPerTryTimeoutFakeTime(t *testing.T) {
	clk := testutil.NewFakeClock()
	t0 := clk.Now()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	b := startSilentBackend(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: -1, PerTryTimeout: time.Hour,
		Retry: RetryPolicy{MaxRetries: -1}, OutlierOff: true})
	h := &doneHandler{done: make(chan error, 1)}
	x := c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "t", nil, -1, false), Handler: h})
	cc := busyConn(t, x)
	bc := <-b.got
	if !cc.ptArmed.Load() {
		t.Fatal("per-try timer not armed for the attempt")
	}

	check := func(at time.Duration) {
		t.Helper()
		onLoop(t, cc, func() { cc.perTryCheckAt(t0.Add(at)) })
	}
	check(59 * time.Minute)
	if len(h.done) > 0 || !cc.ptArmed.Load() {
		t.Fatal("59 min of a 60 min per-try timeout: the attempt must stay, the timer armed")
	}

	// A piece of the response head at 50 min restarts the silence.
	clk.Advance(50 * time.Minute)
	if _, err := bc.Write([]byte("HTTP/1.1 200 OK\r\n")); err != nil {
		t.Fatal(err)
	}
	waitUntil(t, "the byte read on the loop", func() bool {
		return !time.Unix(0, cc.lastIO.Load()).Before(t0.Add(50 * time.Minute))
	})
	check(109 * time.Minute)
	if len(h.done) > 0 {
		t.Fatal("59 min after the last byte: the attempt must stay")
	}
	check(110 * time.Minute)
	err := <-h.done
	if FailureOf(err) != FailTimeout {
		t.Fatalf("got %v; want a timeout", err)
	}
	if st := c.Stats(); st.RqPerTryTimeout != 1 || st.RqTimeout != 0 {
		t.Errorf("rq_per_try_timeout %d, rq_timeout %d; want 1, 0", st.RqPerTryTimeout, st.RqTimeout)
	}
	if cc.ptArmed.Load() {
		t.Error("the timer is still armed after the attempt ended")
	}
}

// TestPerTryTimeoutNotOnTick checks that the per-try timeout does not
// wait for the engine's timing wheel: with a 10 s tick and a 5 s overall
// timeout, a 50 ms per-try timeout still ends a silent attempt as a
// per-try timeout (the wheel alone would have let the overall timeout
// fire first), and a retry goes to the next connection.
func TestPerTryTimeoutNotOnTick(t *testing.T) {
	e, err := engine.New(engine.Config{Loops: 2, TickInterval: 10 * time.Second}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(""); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	b := startSilentBackend(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: 5 * time.Second,
		PerTryTimeout: 50 * time.Millisecond, Retry: RetryPolicy{MaxRetries: 1}, OutlierOff: true, BreakerOff: true})
	ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
	defer cancel()
	_, err = c.RoundTrip(ctx, &Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "t", nil, -1, false)}, 0)
	var ue *Error
	if !errors.As(err, &ue) || ue.Failure != FailTimeout {
		t.Fatalf("got %v; want a timeout", err)
	}
	st := c.Stats()
	if st.RqPerTryTimeout != 2 || st.RqTimeout != 0 || st.RqRetry != 1 {
		t.Errorf("rq_per_try_timeout %d, rq_timeout %d, rq_retry %d; want 2, 0, 1 (both attempts cut by the per-try timeout)",
			st.RqPerTryTimeout, st.RqTimeout, st.RqRetry)
	}
	if len(b.got) != 2 {
		t.Errorf("backend got %d requests; want 2", len(b.got))
	}
}

// TestClusterRateLimitFakeTime checks ClusterConfig.RateLimit on the
// engine's clock: at 1 request a second with a queue of 2, the first
// request goes at once, the second waits for its slot a second later
// (canceled here while it waits: it never reaches the backend), the third
// is refused at once as rate_limited; two seconds on, the bucket has
// drained and a request goes at once again.
func TestClusterRateLimitFakeTime(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	b := startBackend(t, http.HandlerFunc(hello))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: -1,
		RateLimit: RateLimitConfig{PerSecond: 1, Queue: 2}})
	do := func() (*Exchange, *doneHandler) {
		h := &doneHandler{done: make(chan error, 1)}
		return c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "t", nil, -1, false), Handler: h}), h
	}
	_, h1 := do()
	if err := <-h1.done; err != nil {
		t.Fatalf("first request: %v", err)
	}
	x2, h2 := do()
	_, h3 := do()
	if err := <-h3.done; FailureOf(err) != FailOverflow || !errors.Is(err, ErrOverflow) {
		t.Fatalf("third request: %v; want overflow (rate_limited)", err)
	} else if ue := (*Error)(nil); errors.As(err, &ue) && ue.Reason != ReasonRateLimited {
		t.Fatalf("third request refused for %v; want rate_limited", ue.Reason)
	}
	x2.Cancel()
	if err := <-h2.done; FailureOf(err) != FailCanceled {
		t.Fatalf("second request: %v; want canceled while it waited", err)
	}
	clk.Advance(2 * time.Second)
	_, h4 := do()
	if err := <-h4.done; err != nil {
		t.Fatalf("request after the bucket drained: %v", err)
	}
	st := c.Stats()
	if st.RqRateLimited != 1 || st.RqThrottled != 1 {
		t.Errorf("rq_rate_limited %d, rq_throttled %d; want 1, 1", st.RqRateLimited, st.RqThrottled)
	}
	if n := b.requests.Load(); n != 2 {
		t.Errorf("backend got %d requests; want 2 (the throttled one was canceled before its slot)", n)
	}
	if st.RqActive != 0 {
		t.Errorf("rq_active %d after all ended", st.RqActive)
	}
}

// TestClusterRateLimitThrottles: requests over the rate wait for their
// slots and then all complete (20 a second, a queue of 5: five at once
// are one sent and four throttled, none refused); a sixth is refused.
func TestClusterRateLimitThrottles(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(hello))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, RateLimit: RateLimitConfig{PerSecond: 20, Queue: 5}})
	hs := make([]*doneHandler, 6)
	for i := range hs {
		hs[i] = &doneHandler{done: make(chan error, 1)}
		c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "t", nil, -1, false), Handler: hs[i]})
	}
	for i, h := range hs {
		err := <-h.done
		if i < 5 && err != nil {
			t.Errorf("request %d: %v", i, err)
		}
		if i == 5 && !errors.Is(err, ErrOverflow) {
			t.Errorf("request 5: %v; want refused (rate_limited)", err)
		}
	}
	if st := c.Stats(); st.RqThrottled != 4 || st.RqRateLimited != 1 || b.requests.Load() != 5 {
		t.Errorf("rq_throttled %d, rq_rate_limited %d, backend requests %d; want 4, 1, 5", st.RqThrottled, st.RqRateLimited, b.requests.Load())
	}
}
