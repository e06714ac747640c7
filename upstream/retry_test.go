package upstream

import (
	"math/rand/v2"
	"sync"
	"testing"
	"time"
)

// fixedSource returns the same value every time: 0 gives the shortest
// backoff, MaxUint64 the longest.
type fixedSource uint64

func (f fixedSource) Uint64() uint64 { return uint64(f) }

func TestBackoffBounds(t *testing.T) {
	const base, maxD = 10 * time.Millisecond, 500 * time.Millisecond
	for attempt, ceiling := range []time.Duration{10, 20, 40, 80, 160, 320, 500, 500} {
		ceiling *= time.Millisecond
		if attempt == 6 || attempt == 7 {
			ceiling = maxD
		}
		if got := Backoff(attempt, base, maxD, fixedSource(0)); got != 0 {
			t.Errorf("attempt %d low: %v", attempt, got)
		}
		got := Backoff(attempt, base, maxD, fixedSource(^uint64(0)))
		if got >= ceiling || got < ceiling-time.Microsecond {
			t.Errorf("attempt %d high: %v, want just under %v", attempt, got, ceiling)
		}
	}
	// Huge attempts saturate at max without overflow; defaults apply.
	if got := Backoff(1000, base, maxD, fixedSource(^uint64(0))); got >= maxD || got < maxD-time.Microsecond {
		t.Errorf("attempt 1000: %v", got)
	}
	if got := Backoff(100, 0, 0, fixedSource(^uint64(0))); got >= 250*time.Millisecond || got < 249*time.Millisecond {
		t.Errorf("defaults (25ms, 250ms cap): %v", got)
	}
	if Backoff(-1, base, maxD, nil) != 0 {
		t.Error("negative attempt")
	}
}

// TestBackoffFullJitter checks the distribution with a fixed seed: uniform
// over [0, ceiling), mean near half the ceiling.
func TestBackoffFullJitter(t *testing.T) {
	rnd := rand.NewPCG(5, 6)
	const n = 20000
	var sum time.Duration
	for range n {
		d := Backoff(3, 10*time.Millisecond, time.Second, rnd)
		if d < 0 || d >= 80*time.Millisecond {
			t.Fatalf("out of range: %v", d)
		}
		sum += d
	}
	if mean := sum / n; mean < 38*time.Millisecond || mean > 42*time.Millisecond {
		t.Fatalf("mean %v, want ~40ms", mean)
	}
}

func TestRetryBudget(t *testing.T) {
	b := NewRetryBudget(RetryBudgetConfig{}) // 20%, at least 3
	for i := range 3 {
		if !b.TryRetry() {
			t.Fatalf("retry %d with nothing active refused: minimum is 3", i)
		}
	}
	if b.TryRetry() {
		t.Fatal("fourth retry with nothing active")
	}
	for range 50 {
		b.Begin()
	}
	// 20% of 50 is 10.
	for i := 3; i < 10; i++ {
		if !b.TryRetry() {
			t.Fatalf("retry %d of 10 refused", i+1)
		}
	}
	if b.TryRetry() {
		t.Fatal("eleventh retry with 50 active")
	}
	b.DoneRetry()
	if !b.TryRetry() {
		t.Fatal("refused after DoneRetry")
	}
	for range 50 {
		b.End()
	}
	if b.Active() != 0 || b.Retries() != 10 || b.Refused() != 2 {
		t.Fatalf("active %d retries %d refused %d", b.Active(), b.Retries(), b.Refused())
	}
}

func TestRetryBudgetConcurrent(t *testing.T) {
	b := NewRetryBudget(RetryBudgetConfig{MinConcurrency: 2})
	var wg sync.WaitGroup
	var mu sync.Mutex
	peak, cur := int64(0), int64(0)
	for range 8 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 2000 {
				if !b.TryRetry() {
					continue
				}
				mu.Lock()
				cur++
				peak = max(peak, cur)
				cur--
				mu.Unlock()
				b.DoneRetry()
			}
		}()
	}
	wg.Wait()
	if peak > 2 || b.Retries() != 0 {
		t.Fatalf("peak %d retries %d", peak, b.Retries())
	}
}

// TestRetryDecide is the decision table, the idempotency rule included.
func TestRetryDecide(t *testing.T) {
	def := RetryPolicy{}
	all := RetryPolicy{On: RetryOnConnectFailure | RetryOnReset | RetryOn5xx, MaxRetries: 3}
	listed := RetryPolicy{Statuses: []int{429}}
	post := RetryPolicy{RetryNonIdempotent: true}
	tests := []struct {
		name  string
		p     RetryPolicy
		a     Attempt
		retry bool
		why   Reason
	}{
		{"success", def, Attempt{Status: 200, Idempotent: true}, false, ReasonNotRetriable},
		{"404", def, Attempt{Status: 404, Idempotent: true}, false, ReasonNotRetriable},
		{"connect failure GET", def, Attempt{ConnectFailed: true, Idempotent: true}, true, ReasonNone},
		{"connect failure POST", def, Attempt{ConnectFailed: true}, true, ReasonNone},
		{"reset GET", def, Attempt{Reset: true, Idempotent: true}, true, ReasonNone},
		{"reset POST", def, Attempt{Reset: true}, false, ReasonNonIdempotent},
		{"reset POST allowed", post, Attempt{Reset: true}, true, ReasonNone},
		{"503 GET", def, Attempt{Status: 503, Idempotent: true}, true, ReasonNone},
		{"503 POST", def, Attempt{Status: 503}, false, ReasonNonIdempotent},
		{"500 default", def, Attempt{Status: 500, Idempotent: true}, false, ReasonNotRetriable},
		{"500 with 5xx", all, Attempt{Status: 500, Idempotent: true}, true, ReasonNone},
		{"504 with 5xx", all, Attempt{Status: 504, Idempotent: true}, true, ReasonNone},
		{"429 listed", listed, Attempt{Status: 429, Idempotent: true}, true, ReasonNone},
		{"429 listed keeps defaults", listed, Attempt{Status: 502, Idempotent: true}, true, ReasonNone},
		{"429 not listed", def, Attempt{Status: 429, Idempotent: true}, false, ReasonNotRetriable},
		{"exhausted default 1", def, Attempt{Status: 503, Idempotent: true, Retries: 1}, false, ReasonRetriesExhausted},
		{"under max 3", all, Attempt{Reset: true, Idempotent: true, Retries: 2}, true, ReasonNone},
		{"exhausted max 3", all, Attempt{Reset: true, Idempotent: true, Retries: 3}, false, ReasonRetriesExhausted},
		{"no retries", RetryPolicy{MaxRetries: -1}, Attempt{ConnectFailed: true}, false, ReasonRetriesExhausted},
		{"connect failure not on", RetryPolicy{On: RetryOn5xx}, Attempt{ConnectFailed: true}, false, ReasonNotRetriable},
	}
	for _, tc := range tests {
		retry, why := tc.p.Decide(tc.a)
		if retry != tc.retry || why != tc.why {
			t.Errorf("%s: got %v %v, want %v %v", tc.name, retry, why, tc.retry, tc.why)
		}
	}
}

func TestIdempotent(t *testing.T) {
	for m, want := range map[string]bool{"GET": true, "HEAD": true, "OPTIONS": true, "TRACE": true,
		"PUT": true, "DELETE": true, "POST": false, "PATCH": false, "CONNECT": false, "get": false} {
		if Idempotent(m) != want {
			t.Errorf("%s: %v", m, !want)
		}
	}
}

func TestReasonNames(t *testing.T) {
	seen := map[string]bool{}
	for _, r := range append(Reasons(), ReasonNone) {
		s := r.String()
		if s == "unknown" || seen[s] {
			t.Fatalf("reason %d named %q", r, s)
		}
		seen[s] = true
	}
	if len(reasonNames) != int(numReasons) || len(resultNames) != int(numResults) ||
		len(ejectionNames) != int(numEjections) || len(resourceNames) != int(numResources) {
		t.Fatal("a names table is out of step with its constants")
	}
	if Reason(200).String() != "unknown" || BreakerHalfOpen.String() != "half_open" ||
		EjectFailurePercentage.String() != "failure_percentage" || ResourceRetries.String() != "retries" ||
		ResultConnectFailure.String() != "connect_failure" {
		t.Fatal("names")
	}
}
