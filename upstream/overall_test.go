package upstream

import (
	"errors"
	"fmt"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

// firedLog records the exchanges an overallTimeouts timed out, in order.
type firedLog struct {
	mu sync.Mutex
	xs []*Exchange
}

func (f *firedLog) add(x *Exchange) {
	f.mu.Lock()
	f.xs = append(f.xs, x)
	f.mu.Unlock()
}

func (f *firedLog) get() []*Exchange {
	f.mu.Lock()
	defer f.mu.Unlock()
	return append([]*Exchange(nil), f.xs...)
}

// TestOverallTimeoutsLazyTimer: an exchange stopped before its deadline
// never times out, even when it was first in the list (the timer, armed
// for it, then finds nothing due and is armed again for the next one);
// the others time out in deadline order, and their stop reports false.
func TestOverallTimeoutsLazyTimer(t *testing.T) {
	var log firedLog
	o := &overallTimeouts{d: 200 * time.Millisecond, run: log.add}
	x1, x2, x3 := &Exchange{}, &Exchange{}, &Exchange{}
	base := time.Now()
	o.armAt(x1, base)
	// Due after x1's deadline, for which the timer is armed: they time
	// out only if the timer is armed again after it found nothing due.
	// (x1's stop below has 200 ms to come before its deadline.)
	later := base.Add(50 * time.Millisecond)
	o.armAt(x2, later)
	o.armAt(x3, later)
	if !o.stop(x1) {
		t.Fatal("stop before the deadline reported false")
	}
	deadline := time.Now().Add(10 * time.Second)
	for len(log.get()) < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	got := log.get()
	if len(got) != 2 || got[0] != x2 || got[1] != x3 {
		t.Fatalf("timed out %v; want x2 then x3 (x1 %p x2 %p x3 %p)", got, x1, x2, x3)
	}
	if o.stop(x2) || o.stop(x3) {
		t.Fatal("stop after the timeout fired reported true")
	}
	o.mu.Lock()
	empty := o.head == nil && o.tail == nil && !o.armed
	o.mu.Unlock()
	if !empty {
		t.Fatal("list or timer left armed after every deadline passed")
	}
	// Armed again after it went idle.
	x4 := &Exchange{}
	o.arm(x4)
	for len(log.get()) < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if got := log.get(); len(got) != 3 || got[2] != x4 {
		t.Fatalf("an exchange armed on an idle list never timed out: %v", got)
	}
}

// TestOverallTimeoutsOrder: an exchange whose deadline is earlier than
// the tail's (two loops' clock reads crossing on the way to the lock) goes
// before it, and one earlier than the timer's moves the timer.
func TestOverallTimeoutsOrder(t *testing.T) {
	o := &overallTimeouts{d: time.Hour, run: func(*Exchange) {}}
	t0 := time.Now()
	a, b, c := &Exchange{}, &Exchange{}, &Exchange{}
	o.armAt(a, t0.Add(2*time.Second))
	o.armAt(b, t0.Add(3*time.Second))
	o.armAt(c, t0.Add(time.Second))
	o.mu.Lock()
	var got []*Exchange
	for x := o.head; x != nil; x = x.toNext {
		got = append(got, x)
	}
	at := o.at
	tailOK := o.tail == b
	o.mu.Unlock()
	if len(got) != 3 || got[0] != c || got[1] != a || got[2] != b || !tailOK {
		t.Fatalf("list %v; want c %p, a %p, b %p", got, c, a, b)
	}
	if at != c.toDue {
		t.Fatalf("timer at %v; want the earliest deadline %v", at, c.toDue)
	}
	for _, x := range []*Exchange{a, c, b} {
		if !o.stop(x) || o.stop(x) {
			t.Fatal("stop: want true once, then false")
		}
	}
	o.mu.Lock()
	empty := o.head == nil && o.tail == nil
	o.mu.Unlock()
	if !empty {
		t.Fatal("list not empty after every exchange stopped")
	}
	o.t.Stop()
}

// TestOverallTimeoutsIdle: idle (Cluster.Close) stops the timer of an
// empty list, which the next arm starts again, and leaves a list with
// exchanges alone.
func TestOverallTimeoutsIdle(t *testing.T) {
	o := &overallTimeouts{d: time.Hour, run: func(*Exchange) {}}
	a, b := &Exchange{}, &Exchange{}
	o.arm(a)
	o.idle()
	o.mu.Lock()
	armed := o.armed
	o.mu.Unlock()
	if !armed {
		t.Fatal("idle stopped the timer of a list with an exchange")
	}
	o.stop(a)
	o.idle()
	o.mu.Lock()
	armed = o.armed
	o.mu.Unlock()
	if armed || o.t.Stop() {
		t.Fatal("idle left the timer of an empty list running")
	}
	o.arm(b)
	o.mu.Lock()
	armed = o.armed
	o.mu.Unlock()
	if !armed || !o.t.Stop() {
		t.Fatal("arm after idle did not start the timer again")
	}
}

// TestOverallTimeoutClockRead: on an engine with the system clock an
// exchange's overall deadline is counted from the time Do read for its
// start (no second clock read); on an injected clock, whose times a
// time.Timer cannot use, from time.Now as before.
func TestOverallTimeoutClockRead(t *testing.T) {
	b := stallingBackend(t)
	const timeout = time.Hour
	for _, fake := range []bool{false, true} {
		e := startEngine(t)
		if fake {
			e = testutil.StartEngine(t, engine.Config{Loops: 1, Clock: testutil.NewFakeClock()})
		}
		if e.SystemClock() == fake {
			t.Fatalf("fake %v: SystemClock() = %v", fake, e.SystemClock())
		}
		c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: timeout})
		before := time.Now()
		x := c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "test", nil, -1, false),
			Handler: discardHandler{}})
		after := time.Now()
		o := c.overallOf(x.loop)
		o.mu.Lock()
		due, on := x.toDue, x.toOn
		// Deadlines are nanoseconds on the list's clock.
		begun, lo, hi := o.clock.nanos(x.begun)+int64(timeout), o.clock.nanos(before)+int64(timeout), o.clock.nanos(after)+int64(timeout)
		o.mu.Unlock()
		if !on {
			t.Fatalf("fake %v: the overall timeout is not armed", fake)
		}
		if !fake && due != begun {
			t.Errorf("system clock: due %v; want begun + %v: %v", due, timeout, begun)
		}
		if fake && (due < lo || due > hi) {
			t.Errorf("injected clock: due %v; want time.Now + %v, between %v and %v", due, timeout, lo, hi)
		}
		x.Cancel()
	}
}

// discardHandler ignores the response.
type discardHandler struct{}

func (discardHandler) OnResponse(*Exchange, *http1.Response) {}
func (discardHandler) OnBody(*Exchange, []byte)              {}
func (discardHandler) OnDone(*Exchange, error)               {}

// TestClusterMaxLifetimeFakeTime: a connection kept busy (never idle
// long) is retired once it is MaxLifetime old, not before, on the engine's
// clock.
func TestClusterMaxLifetimeFakeTime(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	b := startBackend(t, http.HandlerFunc(hello))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: -1,
		Pool: PoolConfig{IdleTimeout: time.Hour, MaxLifetime: 10 * time.Second}})
	step := func(advance time.Duration, wantConns int64, why string) {
		t.Helper()
		clk.Advance(advance)
		if _, err := get(t, c, "/"); err != nil {
			t.Fatalf("%s: %v", why, err)
		}
		if n := b.accepted.Load(); n != wantConns {
			t.Fatalf("%s: backend saw %d connections; want %d", why, n, wantConns)
		}
	}
	step(0, 1, "first request")
	for i := range 3 {
		step(3*time.Second, 1, fmt.Sprintf("%ds of 10s: reused", 3*(i+1)))
	}
	step(999*time.Millisecond, 1, "9.999s of 10s: reused")
	step(time.Millisecond, 2, "10s: retired")
}

// TestDoRequestNow: a Request with Now starts its exchange then, without
// reading the clock: begun is Now and, on the system clock, the overall
// timeout is due Now + Timeout.
func TestDoRequestNow(t *testing.T) {
	b := stallingBackend(t)
	const timeout = time.Hour
	e := startEngine(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: timeout})
	at := time.Now().Add(-time.Minute) // a reading the caller made earlier
	x := c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "test", nil, -1, false),
		Handler: discardHandler{}, Now: at})
	defer x.Cancel()
	if !x.begun.Equal(at) {
		t.Errorf("begun %v, want the request's Now %v", x.begun, at)
	}
	o := c.overallOf(x.loop)
	o.mu.Lock()
	due, on := x.toDue, x.toOn
	want := o.clock.nanos(at) + int64(timeout) // deadlines are nanoseconds on the list's clock
	o.mu.Unlock()
	if !on || due != want {
		t.Errorf("overall timeout armed %v, due %v; want due Now + %v = %v", on, due, timeout, want)
	}
	if el := x.Elapsed(time.Now()); el < time.Minute {
		t.Errorf("Elapsed %v, want at least a minute from Now", el)
	}
}

// TestOverallTimeoutFromRequestNow: the overall timeout counts from
// Request.Now, not from Do, also for the exchange whose arm sets the
// timer (review rv-upx3: the timer waited Timeout from the arm). Timeout
// 2 s from a Now 1.9 s old: the timeout comes about 0.1 s after Do,
// never near 2 s.
func TestOverallTimeoutFromRequestNow(t *testing.T) {
	b := stallingBackend(t)
	e := startEngine(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: 2 * time.Second})
	h := &doneHandler{done: make(chan error, 1)}
	start := time.Now()
	x := c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/", "test", nil, -1, false),
		Handler: h, Now: start.Add(-1900 * time.Millisecond)})
	defer x.Cancel()
	var err error
	select {
	case err = <-h.done:
	case <-time.After(10 * time.Second):
		t.Fatal("no timeout")
	}
	if !errors.Is(err, ErrTimeout) {
		t.Fatalf("ended with %v, want the overall timeout", err)
	}
	if el := time.Since(start); el >= 1500*time.Millisecond {
		t.Fatalf("timed out %v after Do; want about 0.1 s (2 s from a Now 1.9 s old)", el)
	}
}

// stallingBackend starts a backend that answers nothing: each request
// waits until the test ends or its client goes.
func stallingBackend(t *testing.T) *backend {
	block := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-block:
		case <-r.Context().Done():
		}
	}))
	t.Cleanup(func() { close(block) }) // before the backend's own cleanup (last in, first out)
	return b
}
