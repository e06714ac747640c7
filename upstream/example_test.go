package upstream_test

import (
	"fmt"
	"math/rand/v2"
	"time"

	"github.com/warrenhq/warren/upstream"
)

var start = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func ExampleTokenBucket() {
	b := upstream.NewTokenBucket(10, 2) // 10 per second, bursts of 2
	fmt.Println(b.AllowN(start, 1), b.AllowN(start, 1), b.AllowN(start, 1))
	when, _ := b.WhenN(start, 1)
	fmt.Println("next token in", when.Sub(start))
	// Output:
	// true true false
	// next token in 100ms
}

func ExampleLeakyBucket() {
	// Shape a burst to 5 per second with room for 3 queued.
	b := upstream.NewLeakyBucket(5, 3)
	for i := range 4 {
		if slot, ok := b.ReserveN(start, 1); ok {
			fmt.Printf("request %d goes at +%v\n", i, slot.Sub(start))
		} else {
			fmt.Printf("request %d refused: queue full\n", i)
		}
	}
	// Output:
	// request 0 goes at +0s
	// request 1 goes at +200ms
	// request 2 goes at +400ms
	// request 3 refused: queue full
}

func ExampleKeyedLimiter() {
	// Per-device limits: 1 message per second, bursts of 2, at most 100000
	// devices tracked.
	l := upstream.NewKeyedLimiter[string](upstream.KeyedConfig{Rate: 1, Burst: 2, MaxKeys: 100000})
	for i := range 3 {
		fmt.Println("dev-1 message", i, l.Check("dev-1", start, 1))
	}
	fmt.Println("dev-2 message 0", l.Check("dev-2", start, 1))
	retry, _ := l.WhenN("dev-1", start, 1)
	fmt.Println("dev-1 may send again in", retry.Sub(start))
	// Output:
	// dev-1 message 0 none
	// dev-1 message 1 none
	// dev-1 message 2 rate_limited
	// dev-2 message 0 none
	// dev-1 may send again in 1s
}

func ExampleKeyedLimiter_CheckWait() {
	// An inbound limit of 2 requests a second per client, answering 429
	// with a Retry-After from the bucket.
	l := upstream.NewKeyedLimiter[string](upstream.KeyedConfig{Rate: 2, Burst: 1})
	for _, at := range []time.Duration{0, 100 * time.Millisecond, 500 * time.Millisecond} {
		r, wait := l.CheckWait("10.0.0.9", start.Add(at), 1)
		fmt.Printf("at +%v: %v, retry after %v\n", at, r, wait)
	}
	// Output:
	// at +0s: none, retry after 0s
	// at +100ms: rate_limited, retry after 400ms
	// at +500ms: none, retry after 0s
}

func ExampleRingHash() {
	set := upstream.NewHostSet([]upstream.Host{{Addr: "10.0.0.1:80"}, {Addr: "10.0.0.2:80"}, {Addr: "10.0.0.3:80"}},
		upstream.HostSetConfig{})
	ring := upstream.NewRingHash(set, upstream.RingHashConfig{})
	key := upstream.HashKey("device-42")
	h := ring.Pick(key)
	fmt.Println("same host for the same device:", ring.Pick(key) == h)
	set.SetEjected(h, true)
	fmt.Println("moves while its host is ejected:", ring.Pick(key) != h)
	set.SetEjected(h, false)
	fmt.Println("and comes back:", ring.Pick(key) == h)
	// Output:
	// same host for the same device: true
	// moves while its host is ejected: true
	// and comes back: true
}

func ExampleLeastRequest() {
	set := upstream.NewHostSet([]upstream.Host{{Addr: "a"}, {Addr: "b"}}, upstream.HostSetConfig{})
	lr := upstream.NewLeastRequest(set, upstream.LeastRequestConfig{Rand: rand.NewPCG(1, 2)})
	for range 3 {
		set.Start(0) // host a is busy
	}
	h := lr.Pick(0)
	set.Start(h)
	fmt.Println("picked", set.Host(h).Addr)
	set.Done(h)
	// Output:
	// picked b
}

func ExampleOutlierDetector() {
	set := upstream.NewHostSet([]upstream.Host{{Addr: "a"}, {Addr: "b"}}, upstream.HostSetConfig{})
	od := upstream.NewOutlierDetector(set.Len(), upstream.OutlierConfig{})
	var why upstream.Ejection
	for range 5 {
		why = od.Record(0, upstream.ResultFromStatus(503), start)
	}
	od.Apply(set, start)
	until, _ := od.EjectedUntil(0, start)
	fmt.Println(why, set.Ejected(0), until.Sub(start))
	od.Apply(set, start.Add(30*time.Second))
	fmt.Println("back:", !set.Ejected(0))
	// Output:
	// consecutive_gateway_failure true 30s
	// back: true
}

func ExampleBreaker() {
	b := upstream.NewBreaker(upstream.BreakerConfig{ConsecutiveFailures: 2, OpenTimeout: 5 * time.Second})
	for range 2 {
		tk, _ := b.Allow(start)
		b.Done(tk, false, start) // the call failed
	}
	_, why := b.Allow(start)
	fmt.Println(b.State(start), why)
	tk, why := b.Allow(start.Add(5 * time.Second)) // a probe
	fmt.Println(b.State(start.Add(5*time.Second)), why)
	b.Done(tk, true, start.Add(5*time.Second))
	fmt.Println(b.State(start.Add(5 * time.Second)))
	// Output:
	// open breaker_open
	// half_open none
	// closed
}

func ExampleResources() {
	r := upstream.NewResources(upstream.Thresholds{MaxRequests: 1})
	fmt.Println(r.Acquire(upstream.ResourceRequests))
	fmt.Println(r.Acquire(upstream.ResourceRequests))
	r.Release(upstream.ResourceRequests)
	fmt.Println(r.Remaining(upstream.ResourceRequests), r.Overflows(upstream.ResourceRequests))
	// Output:
	// none
	// max_requests
	// 1 1
}

// ExampleRetryPolicy shows the retry decision: the policy, then the budget,
// then the backoff.
func ExampleRetryPolicy() {
	policy := upstream.RetryPolicy{MaxRetries: 2}
	budget := upstream.NewRetryBudget(upstream.RetryBudgetConfig{})
	rnd := rand.NewPCG(7, 7) // seeded for a stable output; nil in production
	attempts := []upstream.Attempt{
		{Status: 503, Idempotent: upstream.Idempotent("GET")},
		{Status: 503, Idempotent: upstream.Idempotent("POST")},
		{ConnectFailed: true, Idempotent: upstream.Idempotent("POST")},
		{Status: 200, Idempotent: true},
	}
	for _, a := range attempts {
		retry, why := policy.Decide(a)
		if retry && budget.TryRetry() {
			wait := upstream.Backoff(a.Retries, 25*time.Millisecond, 250*time.Millisecond, rnd)
			fmt.Println("retry after", wait.Round(time.Millisecond))
			budget.DoneRetry()
			continue
		}
		fmt.Println("no retry:", why)
	}
	// Output:
	// retry after 24ms
	// no retry: non_idempotent
	// retry after 0s
	// no retry: not_retriable
}

// A Batcher closes batches by count, bytes or time; the time is an
// argument, so the caller's timer (or a test) decides when "now" is.
func ExampleBatcher() {
	b := upstream.NewBatcher(upstream.BatcherConfig{MaxCount: 2, MaxDelay: 50 * time.Millisecond})
	t0 := time.Unix(0, 0)
	b.Add([]byte(`{"t":1}`), t0)
	full, _ := b.Add([]byte(`{"t":2}`), t0)
	fmt.Println(len(full.Messages), full.Why)
	b.Add([]byte(`{"t":3}`), t0)
	late, _ := b.Due(t0.Add(50 * time.Millisecond))
	fmt.Println(len(late.Messages), late.Why)
	// Output:
	// 2 count
	// 1 time
}
