package upstream

import (
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync/atomic"
	"time"
)

// Default Backoff values (Envoy's).
const (
	DefaultBackoffBase = 25 * time.Millisecond
	// DefaultBackoffMaxFactor is the default cap as a multiple of base.
	DefaultBackoffMaxFactor = 10
)

// Backoff returns how long to wait before retry number attempt (0 for the
// first retry): exponential backoff with full jitter, a uniform random
// duration in [0, min(maxDelay, base<<attempt)). Full jitter spreads clients that
// failed together, so their retries do not arrive together. A base of zero
// or less means 25ms; a maxDelay of zero or less means 10×base. rnd supplies the
// randomness; nil means the runtime's generator (safe for concurrent use).
// A given rnd is used without a lock: share it only under the caller's own.
func Backoff(attempt int, base, maxDelay time.Duration, rnd rand.Source) time.Duration {
	if base <= 0 {
		base = DefaultBackoffBase
	}
	if maxDelay <= 0 {
		maxDelay = DefaultBackoffMaxFactor * base
	}
	if attempt < 0 {
		return 0
	}
	ceiling := maxDelay
	if attempt < 62 && base <= maxDelay>>attempt {
		ceiling = base << attempt
	}
	var r uint64
	if rnd == nil {
		r = rand.Uint64()
	} else {
		r = rnd.Uint64()
	}
	hi, _ := bits.Mul64(r, uint64(ceiling))
	return time.Duration(hi)
}

// RetryBudgetConfig configures a RetryBudget. The zero value gives Envoy's
// defaults.
type RetryBudgetConfig struct {
	// Percent is the share of active requests that may be retries at once.
	// Zero means 20.
	Percent float64
	// MinConcurrency is the retries allowed at once however few requests
	// are active, so a quiet cluster can still retry. Zero means 3.
	MinConcurrency int
}

// Default RetryBudgetConfig values (Envoy's).
const (
	DefaultRetryBudgetPercent        = 20
	DefaultRetryBudgetMinConcurrency = 3
)

// RetryBudget bounds concurrent retries to a share of the active requests
// (Envoy's retry budget): unlike a fixed Thresholds.MaxRetries it scales
// with traffic, and unlike per-request retry counts it stops a failing
// cluster from being hit with a multiple of its load. Begin and End count
// every request attempt, first tries and retries alike; TryRetry admits a
// retry and DoneRetry ends it. The budget is about concurrency, not time,
// so no method takes one. It is safe for concurrent use (atomics, no lock).
type RetryBudget struct {
	percent float64
	minimum int64

	active  atomic.Int64
	retries atomic.Int64
	refused atomic.Uint64
}

// NewRetryBudget returns an empty budget.
func NewRetryBudget(cfg RetryBudgetConfig) *RetryBudget {
	if cfg.Percent <= 0 {
		cfg.Percent = DefaultRetryBudgetPercent
	}
	if cfg.MinConcurrency <= 0 {
		cfg.MinConcurrency = DefaultRetryBudgetMinConcurrency
	}
	return &RetryBudget{percent: cfg.Percent, minimum: int64(cfg.MinConcurrency)}
}

// Begin counts a request attempt starting.
func (b *RetryBudget) Begin() { b.active.Add(1) }

// End counts a request attempt finishing; pair it with Begin.
func (b *RetryBudget) End() { b.active.Add(-1) }

// TryRetry reports whether a retry fits in the budget now, and if so counts
// it until DoneRetry. When it does not, the refusal is counted (Refused) and
// the reason to report is ReasonRetryBudget.
func (b *RetryBudget) TryRetry() bool {
	allowed := b.Allowed()
	for {
		n := b.retries.Load()
		if n >= allowed {
			b.refused.Add(1)
			return false
		}
		if b.retries.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// Allowed returns the retries the budget admits in flight now: its
// percentage of the attempts in flight, at least its minimum.
func (b *RetryBudget) Allowed() int64 {
	return max(b.minimum, int64(b.percent*float64(b.active.Load())/100))
}

// DoneRetry ends a retry TryRetry admitted.
func (b *RetryBudget) DoneRetry() { b.retries.Add(-1) }

// Active returns the request attempts in flight.
func (b *RetryBudget) Active() int64 { return b.active.Load() }

// Retries returns the retries in flight.
func (b *RetryBudget) Retries() int64 { return b.retries.Load() }

// Refused returns how many retries TryRetry refused.
func (b *RetryBudget) Refused() uint64 { return b.refused.Load() }

// RetryOn is a set of conditions under which a RetryPolicy retries.
type RetryOn uint16

const (
	// RetryOnConnectFailure retries when no connection could be made (or
	// the backend refused the request before processing it): the request
	// never reached the backend, so it is safe for any method.
	RetryOnConnectFailure RetryOn = 1 << iota
	// RetryOnReset retries when the request was sent but no response came:
	// the connection was reset or closed, or the attempt timed out. The
	// backend may have acted on it.
	RetryOnReset
	// RetryOn5xx retries on any 5xx response.
	RetryOn5xx
	// RetryOnGatewayError retries on 502, 503 and 504.
	RetryOnGatewayError
	// RetryOnStatuses retries on the statuses in RetryPolicy.Statuses.
	RetryOnStatuses
)

// DefaultRetryOn is RetryPolicy.On's default.
const DefaultRetryOn = RetryOnConnectFailure | RetryOnReset | RetryOnGatewayError

// RetryPolicy decides whether a failed attempt is retried. The zero value
// retries once on connect failure, reset and gateway errors, and never
// retries a non-idempotent request that may have reached the backend.
type RetryPolicy struct {
	// On is the conditions that allow a retry. Zero means DefaultRetryOn.
	On RetryOn
	// Statuses lists further status codes to retry on (429, 409...);
	// listing any sets RetryOnStatuses.
	Statuses []int
	// MaxRetries is the retries per request. Zero means 1 (Envoy's default);
	// negative means none.
	MaxRetries int
	// RetryNonIdempotent allows retrying a non-idempotent request (POST,
	// PATCH) even when it may have reached the backend, where the retry can
	// apply it twice. Off by default; safe when the backend deduplicates
	// (an idempotency key). A connect failure is retried either way.
	RetryNonIdempotent bool
}

// Attempt is how a request attempt ended, for RetryPolicy.Decide.
type Attempt struct {
	// ConnectFailed is no connection made, or a request refused before
	// processing (HTTP/2 REFUSED_STREAM): it did not reach the backend.
	ConnectFailed bool
	// Reset is a request sent with no response: reset, closed or timed out.
	Reset bool
	// Status is the response status when there was a response.
	Status int
	// Idempotent is whether the request may safely be applied twice (see
	// Idempotent for methods; an idempotency key also makes it so).
	Idempotent bool
	// Retries is how many retries of this request were already made.
	Retries int
}

// Decide says whether to retry after attempt a. retry is true with
// ReasonNone; otherwise why is ReasonNotRetriable (a success, or an outcome
// outside p.On), ReasonNonIdempotent, or ReasonRetriesExhausted. The
// checks run in that order. A retry that Decide allows still has to fit in
// the RetryBudget or Thresholds.MaxRetries, and should wait Backoff.
func (p RetryPolicy) Decide(a Attempt) (retry bool, why Reason) {
	on := p.On
	if on == 0 {
		on = DefaultRetryOn
	}
	if len(p.Statuses) > 0 {
		on |= RetryOnStatuses
	}
	match := false
	switch {
	case a.ConnectFailed:
		match = on&RetryOnConnectFailure != 0
	case a.Reset:
		match = on&RetryOnReset != 0
	case a.Status >= 500 && a.Status <= 599 && on&RetryOn5xx != 0:
		match = true
	case (a.Status == 502 || a.Status == 503 || a.Status == 504) && on&RetryOnGatewayError != 0:
		match = true
	case on&RetryOnStatuses != 0 && slices.Contains(p.Statuses, a.Status):
		match = true
	}
	if !match {
		return false, ReasonNotRetriable
	}
	if !a.ConnectFailed && !a.Idempotent && !p.RetryNonIdempotent {
		return false, ReasonNonIdempotent
	}
	maxRetries := p.MaxRetries
	if maxRetries == 0 {
		maxRetries = 1
	}
	if a.Retries >= maxRetries {
		return false, ReasonRetriesExhausted
	}
	return true, ReasonNone
}

// Idempotent reports whether an HTTP method is idempotent (RFC 9110
// 9.2.2): GET, HEAD, OPTIONS, TRACE, PUT and DELETE.
func Idempotent(method string) bool {
	switch method {
	case "GET", "HEAD", "OPTIONS", "TRACE", "PUT", "DELETE":
		return true
	}
	return false
}
