package upstream

// Reason says why a policy refused something: a limiter a request, a
// resource threshold an acquisition, a breaker a call, the retry rules a
// retry. ReasonNone means it was not refused. The same values label metrics
// and log attributes (String gives the snake_case name).
type Reason uint8

const (
	// ReasonNone is no refusal: the request, acquisition or retry goes ahead.
	ReasonNone Reason = iota
	// ReasonRateLimited is a rate limiter whose bucket holds too few tokens
	// now; WhenN says when it will hold enough.
	ReasonRateLimited
	// ReasonOverBurst is a request for more tokens than the bucket can ever
	// hold (n greater than the burst or capacity); it never succeeds.
	ReasonOverBurst
	// ReasonKeyTableFull is a KeyedLimiter whose table holds MaxKeys keys,
	// none of them idle, refusing a key it has not seen.
	ReasonKeyTableFull
	// ReasonMaxConnections is Thresholds.MaxConnections reached.
	ReasonMaxConnections
	// ReasonMaxPending is Thresholds.MaxPending reached.
	ReasonMaxPending
	// ReasonMaxRequests is Thresholds.MaxRequests reached.
	ReasonMaxRequests
	// ReasonMaxRetries is Thresholds.MaxRetries reached.
	ReasonMaxRetries
	// ReasonRetryBudget is a RetryBudget with no room for another retry.
	ReasonRetryBudget
	// ReasonBreakerOpen is a Breaker in BreakerOpen refusing calls.
	ReasonBreakerOpen
	// ReasonHalfOpenFull is a Breaker in BreakerHalfOpen whose probes are all
	// in flight.
	ReasonHalfOpenFull
	// ReasonNotRetriable is an attempt whose outcome matches none of the
	// RetryPolicy's conditions (or that succeeded).
	ReasonNotRetriable
	// ReasonNonIdempotent is a non-idempotent request that may have reached
	// the backend, which the RetryPolicy does not allow to be retried.
	ReasonNonIdempotent
	// ReasonRetriesExhausted is a request that already used
	// RetryPolicy.MaxRetries retries.
	ReasonRetriesExhausted
	// ReasonHostMaxConnections is a host at PoolConfig.MaxConnsPerHost: a
	// request for it waits in the host's pending queue instead of
	// dialling (counted; it is refused only when that queue is full).
	ReasonHostMaxConnections
	// ReasonHostMaxPending is a host whose pending queue holds
	// PoolConfig.MaxPendingPerHost requests: the request is refused.
	ReasonHostMaxPending
	// ReasonHostMaxRequests is a host with PoolConfig.MaxRequestsPerHost
	// requests assigned (waiting for or on a connection), and no other
	// host with room: the request is refused.
	ReasonHostMaxRequests
	// ReasonHostMaxRetries is a retry for a host with
	// PoolConfig.MaxRetriesPerHost retries in flight, and no other host
	// with room: the retry is refused.
	ReasonHostMaxRetries
	numReasons
)

var reasonNames = [...]string{"none", "rate_limited", "over_burst", "key_table_full", "max_connections",
	"max_pending", "max_requests", "max_retries", "retry_budget", "breaker_open", "half_open_full",
	"not_retriable", "non_idempotent", "retries_exhausted", "host_max_connections", "host_max_pending",
	"host_max_requests", "host_max_retries"}

// String returns the snake_case name used in metrics and logs.
func (r Reason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// Reasons lists every Reason but ReasonNone, for metric labels.
func Reasons() []Reason {
	rs := make([]Reason, 0, numReasons-1)
	for r := ReasonRateLimited; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}
