package upstream

import (
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// fakeClockEngine starts a one-loop engine on a fake clock that never
// advances unless told: every rate limit slot is computed from one
// instant, so the slots taken are exact.
func fakeClockEngine(t *testing.T) (*engine.Engine, *testutil.FakeClock) {
	t.Helper()
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	return e, clk
}

// TestRetryTakesRateLimitSlot: at 20 requests a second with a bucket of 2
// and a backend that always answers 503, a request goes at once, its first
// retry waits for the next slot (50 ms later, by the backend's clock too),
// and its second retry finds the bucket full: it is not made, the 503 goes
// to the client, and the refusal is counted. The backend never sees more
// than the rate.
func TestRetryTakesRateLimitSlot(t *testing.T) {
	e, _ := fakeClockEngine(t)
	var mu sync.Mutex
	var at []time.Time
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		at = append(at, time.Now())
		mu.Unlock()
		w.WriteHeader(503)
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: -1, OutlierOff: true, BreakerOff: true,
		Retry:     RetryPolicy{MaxRetries: 3, On: RetryOn5xx},
		RateLimit: RateLimitConfig{PerSecond: 20, Queue: 2}})
	r, err := get(t, c, "/")
	if err != nil || r.Status != 503 {
		t.Fatalf("got %v %+v; want the backend's 503", err, r)
	}
	st := c.Stats()
	if st.RqRetry != 1 || st.RqRetryRateLimited != 1 || st.RqThrottled != 1 {
		t.Errorf("rq_retry %d, rq_retry_rate_limited %d, rq_throttled %d; want 1, 1, 1",
			st.RqRetry, st.RqRetryRateLimited, st.RqThrottled)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(at) != 2 {
		t.Fatalf("backend got %d requests; want 2 (the request and one retry)", len(at))
	}
	if gap := at[1].Sub(at[0]); gap < 45*time.Millisecond {
		t.Errorf("the retry reached the backend %v after the request; want at least its slot, 50ms", gap)
	}
	if st.RqActive != 0 || c.bud.Retries() != 0 {
		t.Errorf("rq_active %d, budget retries %d after the end", st.RqActive, c.bud.Retries())
	}
}

// TestConnectRetryTakesRateLimitSlot: connect failures' retries (outside
// the budget) take slots too: to a port nobody listens on, at 20 a second
// with a bucket of 2 and no backoff to speak of (a backoff takes the slot
// at its end, by when the bucket has drained), one retry is made and the
// second is refused.
func TestConnectRetryTakesRateLimitSlot(t *testing.T) {
	e, _ := fakeClockEngine(t)
	dead := testutil.RefusedAddr(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{dead}, Timeout: -1, OutlierOff: true, BreakerOff: true,
		Retry: RetryPolicy{MaxRetries: 3}, BackoffBase: time.Nanosecond, BackoffMax: time.Nanosecond,
		RateLimit: RateLimitConfig{PerSecond: 20, Queue: 2}})
	_, err := get(t, c, "/")
	if FailureOf(err) != FailConnect {
		t.Fatalf("got %v; want a connect failure", err)
	}
	if st := c.Stats(); st.RqRetry != 1 || st.RqRetryRateLimited != 1 {
		t.Errorf("rq_retry %d, rq_retry_rate_limited %d; want 1, 1", st.RqRetry, st.RqRetryRateLimited)
	}
}

// TestHedgeTakesRateLimitSlot: a hedge is sent only when the rate limit
// has a slot for it at once. At 1 request a second the request's own slot
// leaves none 20 ms later: no hedge, counted. At 50 a second (a slot every
// 20 ms) with an 80 ms hedge delay the bucket has drained by then: the
// hedge goes.
func TestHedgeTakesRateLimitSlot(t *testing.T) {
	e := startEngine(t)
	slow1, _, _ := slowFast(t, 300*time.Millisecond)
	slow2, _, _ := slowFast(t, 300*time.Millisecond)
	hosts := []string{slow1.addr, slow2.addr}
	c := newTestCluster(t, e, ClusterConfig{Hosts: hosts, OutlierOff: true, HedgeDelay: 20 * time.Millisecond,
		RateLimit: RateLimitConfig{PerSecond: 1, Queue: 5}})
	if r, err := get(t, c, "/"); err != nil || string(r.Body) != "slow" {
		t.Fatalf("got %v %+v", err, r)
	}
	if st := c.Stats(); st.RqHedged != 0 || st.RqRetryRateLimited != 1 {
		t.Errorf("at 1/s: hedged %d, rq_retry_rate_limited %d; want 0, 1", st.RqHedged, st.RqRetryRateLimited)
	}
	if n := slow1.requests.Load() + slow2.requests.Load(); n != 1 {
		t.Errorf("at 1/s the backends got %d requests; want 1", n)
	}
	c2 := newTestCluster(t, e, ClusterConfig{Hosts: hosts, OutlierOff: true, HedgeDelay: 80 * time.Millisecond,
		RateLimit: RateLimitConfig{PerSecond: 50, Queue: 5}})
	if _, err := get(t, c2, "/"); err != nil {
		t.Fatal(err)
	}
	if st := c2.Stats(); st.RqHedged != 1 || st.RqRetryRateLimited != 0 {
		t.Errorf("at 50/s: hedged %d, rq_retry_rate_limited %d; want 1, 0", st.RqHedged, st.RqRetryRateLimited)
	}
}

// TestLeakyBucketReserveWithin: a reservation bounded in its wait pours
// nothing when its slot would start later.
func TestLeakyBucketReserveWithin(t *testing.T) {
	b := NewLeakyBucket(10, 5) // a slot every 100 ms
	t0 := time.Unix(1000, 0)
	if _, r := b.reserveWithin(t0, 1, 0); r != ReasonNone {
		t.Fatalf("empty bucket: %v", r)
	}
	if _, r := b.reserveWithin(t0, 1, 0); r != ReasonRateLimited {
		t.Fatalf("second at once: %v; want rate_limited", r)
	}
	if w, r := b.reserveWithin(t0, 1, int64(100*time.Millisecond)); r != ReasonNone || w != int64(100*time.Millisecond) {
		t.Fatalf("within 100ms: wait %v, %v", time.Duration(w), r)
	}
	if lv := b.Level(t0); lv != 2 {
		t.Errorf("level %v; want 2 (the refused one poured nothing)", lv)
	}
	if _, r := b.reserveWithin(t0.Add(200*time.Millisecond), 1, 0); r != ReasonNone {
		t.Errorf("after the bucket drained: %v", r)
	}
}
