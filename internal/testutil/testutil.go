// Package testutil is warren's shared test harness: a clock tests move by
// hand, polling for a condition with a deadline, and starting an engine on a
// free loopback port. It is internal: only warren's own tests use it.
package testutil

import (
	"context"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// FakeClock is an engine.Clock that moves only when told. It is safe for
// concurrent use.
type FakeClock struct {
	mu  sync.Mutex
	now time.Time
}

var _ engine.Clock = (*FakeClock)(nil)

// NewFakeClock returns a clock stopped at a fixed, arbitrary instant.
func NewFakeClock() *FakeClock { return &FakeClock{now: time.Unix(1_700_000_000, 0)} }

// Now returns the clock's time.
func (f *FakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

// Advance moves the clock forward by d.
func (f *FakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

// Eventually polls cond every few milliseconds until it holds, failing the
// test with what if it does not within d (10 s when d is zero: generous,
// as a loaded 2-core machine running the race detector may take seconds
// for what takes milliseconds on a quiet one; it costs only on failure).
func Eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	if d == 0 {
		d = 10 * time.Second
	}
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// StartEngine starts an engine with cfg (two loops unless cfg says) and no
// listener, closed when the test ends. Add listeners with Listen.
func StartEngine(t testing.TB, cfg engine.Config) *engine.Engine {
	t.Helper()
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	e, err := engine.New(cfg, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(""); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	return e
}

// StartDrainedEngine is StartEngine with a 10 ms tick whose cleanup drains
// the engine (Shutdown, at most 5 s) before it is closed: for tests of
// clients on the engine (upstream, proxy), whose connections end with it.
func StartDrainedEngine(t testing.TB) *engine.Engine {
	t.Helper()
	e := StartEngine(t, engine.Config{TickInterval: 10 * time.Millisecond})
	t.Cleanup(func() { // runs before StartEngine's Close
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	return e
}

// Listen adds a listener with h on a free loopback port of e and returns
// its address.
func Listen(t testing.TB, e *engine.Engine, h engine.Handler) string {
	t.Helper()
	ln, err := e.Listen("127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String()
}
