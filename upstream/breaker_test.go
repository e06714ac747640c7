package upstream

import (
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

func TestResources(t *testing.T) {
	r := NewResources(Thresholds{})
	for res, want := range map[Resource]int64{ResourceConnections: 1024, ResourcePending: 1024,
		ResourceRequests: 1024, ResourceRetries: 3} {
		if got := r.Remaining(res); got != want {
			t.Errorf("%v default %d, want %d", res, got, want)
		}
	}
	for i := range 3 {
		if why := r.Acquire(ResourceRetries); why != ReasonNone {
			t.Fatalf("retry %d: %v", i, why)
		}
	}
	if why := r.Acquire(ResourceRetries); why != ReasonMaxRetries {
		t.Fatalf("fourth retry: %v", why)
	}
	if r.Count(ResourceRetries) != 3 || r.Overflows(ResourceRetries) != 1 || r.Remaining(ResourceRetries) != 0 {
		t.Fatal("counts after overflow")
	}
	r.Release(ResourceRetries)
	if why := r.Acquire(ResourceRetries); why != ReasonNone {
		t.Fatalf("after release: %v", why)
	}
	lim := NewResources(Thresholds{MaxConnections: 1, MaxPending: 1, MaxRequests: 1, MaxRetries: -1})
	for res, want := range map[Resource]Reason{ResourceConnections: ReasonMaxConnections,
		ResourcePending: ReasonMaxPending, ResourceRequests: ReasonMaxRequests} {
		lim.Acquire(res)
		if why := lim.Acquire(res); why != want {
			t.Errorf("%v over: %v, want %v", res, why, want)
		}
	}
	for range 100 {
		if lim.Acquire(ResourceRetries) != ReasonNone {
			t.Fatal("unlimited refused")
		}
	}
	if lim.Remaining(ResourceRetries) != -1 {
		t.Fatal("unlimited remaining not -1")
	}
}

// TestResourcesNeverExceed races acquirers against a small limit.
func TestResourcesNeverExceed(t *testing.T) {
	r := NewResources(Thresholds{MaxRequests: 5})
	var inFlight, peak atomic.Int64
	var wg sync.WaitGroup
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if r.Acquire(ResourceRequests) != ReasonNone {
					continue
				}
				n := inFlight.Add(1)
				for {
					p := peak.Load()
					if n <= p || peak.CompareAndSwap(p, n) {
						break
					}
				}
				inFlight.Add(-1)
				r.Release(ResourceRequests)
			}
		}()
	}
	wg.Wait()
	if peak.Load() > 5 || r.Count(ResourceRequests) != 0 {
		t.Fatalf("peak %d, count %d", peak.Load(), r.Count(ResourceRequests))
	}
}

func call(t *testing.T, b *Breaker, now time.Time, success bool) Reason {
	t.Helper()
	tk, why := b.Allow(now)
	if why == ReasonNone {
		b.Done(tk, success, now)
	}
	return why
}

func TestBreakerConsecutiveFailures(t *testing.T) {
	b := NewBreaker(BreakerConfig{FailureRatio: -1})
	for range 4 {
		call(t, b, t0, false)
	}
	call(t, b, t0, true) // breaks the run
	for range 4 {
		call(t, b, t0, false)
	}
	if s := b.State(t0); s != BreakerClosed {
		t.Fatalf("state %v after a broken run", s)
	}
	call(t, b, t0, false)
	if s := b.State(t0); s != BreakerOpen {
		t.Fatalf("state %v after 5 failures in a row", s)
	}
	if why := call(t, b, at(29*time.Second), true); why != ReasonBreakerOpen {
		t.Fatalf("open breaker: %v", why)
	}
	// After OpenTimeout: half-open, one probe at a time.
	tk, why := b.Allow(at(30 * time.Second))
	if why != ReasonNone || b.State(at(30*time.Second)) != BreakerHalfOpen {
		t.Fatalf("probe: %v in %v", why, b.State(at(30*time.Second)))
	}
	if why := call(t, b, at(30*time.Second), true); why != ReasonHalfOpenFull {
		t.Fatalf("second probe: %v", why)
	}
	// A failed probe opens again for another OpenTimeout.
	b.Done(tk, false, at(31*time.Second))
	if b.State(at(60*time.Second)) != BreakerOpen || b.State(at(61*time.Second)) != BreakerHalfOpen {
		t.Fatal("failed probe did not reopen for 30s")
	}
	// A good probe closes it.
	if why := call(t, b, at(61*time.Second), true); why != ReasonNone || b.State(at(61*time.Second)) != BreakerClosed {
		t.Fatalf("good probe: %v, %v", why, b.State(at(61*time.Second)))
	}
	s := b.Stats(at(61 * time.Second))
	if s.Trips != 2 || s.RejectedOpen != 1 || s.RejectedHalfOpen != 1 || s.State != BreakerClosed {
		t.Fatalf("stats %+v", s)
	}
}

func TestBreakerFailureRatio(t *testing.T) {
	b := NewBreaker(BreakerConfig{ConsecutiveFailures: -1}) // 50% of >= 20 in 10s
	// Alternate: 50% failures, but only 19 calls: under the volume.
	for i := range 19 {
		call(t, b, at(time.Duration(i)*100*time.Millisecond), i%2 == 0)
	}
	if b.State(at(2*time.Second)) != BreakerClosed {
		t.Fatal("tripped under MinRequests")
	}
	call(t, b, at(2*time.Second), false) // 20th call, 10 of 20 failed
	if b.State(at(2*time.Second)) != BreakerOpen {
		t.Fatal("did not trip at 50% of 20")
	}

	// Old calls roll out of the window: 20 successes and 19 failures at 0s
	// (49%), then 19 failures 11s later. Counted together that is 65% of 58
	// and would trip; the window holds only the 19, under MinRequests.
	b2 := NewBreaker(BreakerConfig{ConsecutiveFailures: -1})
	for range 20 {
		call(t, b2, t0, true)
	}
	for range 19 {
		call(t, b2, t0, false)
	}
	later := at(11 * time.Second)
	for range 19 {
		call(t, b2, later, false)
	}
	if b2.State(later) != BreakerClosed {
		t.Fatal("counted calls older than the window")
	}
}

func TestBreakerProbesAndStaleOutcomes(t *testing.T) {
	b := NewBreaker(BreakerConfig{ConsecutiveFailures: 1, HalfOpenProbes: 2, OpenTimeout: time.Second})
	old, _ := b.Allow(t0)              // let through while closed
	call(t, b, t0, false)              // trips
	b.Done(old, false, t0)             // stale: ignored
	p1, r1 := b.Allow(at(time.Second)) // half-open
	p2, r2 := b.Allow(at(time.Second))
	if r1 != ReasonNone || r2 != ReasonNone {
		t.Fatalf("two probes: %v %v", r1, r2)
	}
	if why := call(t, b, at(time.Second), true); why != ReasonHalfOpenFull {
		t.Fatalf("third probe: %v", why)
	}
	b.Done(p1, true, at(time.Second))
	if b.State(at(time.Second)) != BreakerHalfOpen {
		t.Fatal("closed after one of two probes")
	}
	b.Done(p2, true, at(time.Second))
	if b.State(at(time.Second)) != BreakerClosed {
		t.Fatal("not closed after two good probes")
	}
	if s := b.Stats(at(time.Second)); s.Trips != 1 {
		t.Fatalf("stale outcome tripped again: %+v", s)
	}
}

func TestBreakerConcurrent(t *testing.T) {
	b := NewBreaker(BreakerConfig{OpenTimeout: 10 * time.Millisecond})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				now := at(time.Duration(i) * time.Millisecond)
				if tk, why := b.Allow(now); why == ReasonNone {
					b.Done(tk, (i+g)%3 != 0, now)
				}
				b.State(now)
			}
		}()
	}
	wg.Wait()
	b.Stats(at(time.Hour))
}
