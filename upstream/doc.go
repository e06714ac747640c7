// Package upstream is warren's outbound toolkit: the policies that decide
// where a request goes and whether it goes at all — rate limiters,
// balancers, outlier detection, circuit breaking and retries — for the
// connection pools, the reverse proxy and the gateway's per-device limits.
//
// # Scope
//
// This package holds the policy maths only: no networking, no goroutines,
// no timers. Connection pools, the outbound HTTP client, active health
// checks and the reverse proxy come next and are built on it.
//
// Every policy takes the time as an argument, in x/time/rate's AllowN(t, n)
// style, and never reads the clock, so it runs on the engine's clock and
// tests advance a fixed time instead of sleeping. Nothing blocks: a policy
// answers at once, refusing with a typed Reason (its String is the metric
// label) where another library would wait. Every type is safe for
// concurrent use, most with one short mutex or lock-free atomics; the hot
// calls (AllowN, Check, Pick, Record, Acquire, Allow/Done, TryRetry,
// Decide, Backoff) do not allocate.
//
// # Rate limiting
//
// TokenBucket is golang.org/x/time/rate's Limiter with a "when may I"
// answer (WhenN) added. LeakyBucket is what x/time/rate lacks: a leaky
// bucket as a bounded queue, whose ReserveN hands out departure slots
// spaced exactly at the rate (a shaper). KeyedLimiter is a token bucket per
// key (device, IP, route) in a bounded LRU table that evicts idle keys and
// counts evictions and refusals by reason; each key's bucket is one int64
// (the generic cell rate algorithm), not a rate.Limiter.
//
//	KeyedConfig.Rate            10 per second
//	KeyedConfig.Burst           max(1, Rate) rounded up
//	KeyedConfig.MaxKeys         65536
//	KeyedConfig.EvictBusy       false: a full table of busy keys refuses new keys
//
// # Balancing
//
// A HostSet is a fixed list of hosts with live health and ejection flags and
// per-host active request counts. The balancers over it skip unhealthy and
// ejected hosts, unless fewer than HostSetConfig.PanicThreshold percent are
// available, when they pick among all of them (panic mode):
//
//	HostSetConfig.PanicThreshold       50 (percent; negative disables)
//	RoundRobin                         smooth weighted round robin
//	LeastRequestConfig.Choices         2 (power of two choices)
//	LeastRequestConfig.Rand            the runtime's generator
//	RingHashConfig.MinRingSize         1024 points
//	RingHashConfig.MaxRingSize         8M points
//	MaglevConfig.TableSize             65537 (must be prime)
//
// Ring hash and Maglev take a key hashed with HashKey (stable across
// processes). Removing a host moves about its own share of keys (exactly
// that with ring hash), and ejecting a host moves none but its own.
//
// # Outlier detection
//
// OutlierDetector is passive health checking as a state machine driven by
// Record(host, result, now) and Ejected(host, now); Apply copies its
// ejections to a HostSet. Envoy's defaults, all enforced:
//
//	Consecutive5xx                     5
//	ConsecutiveGatewayFailure          5 (502, 503, 504, connect failures)
//	FailurePercentageThreshold         85 (percent)
//	FailurePercentageRequestVolume     50 requests within Interval
//	FailurePercentageMinimumHosts      5
//	Interval                           10s
//	BaseEjectionTime                   30s, times the recent ejections
//	MaxEjectionTime                    300s
//	MaxEjectionPercent                 10 (at least one host)
//
// # Circuit breaking
//
// Resources counts connections, pending requests, requests and retries
// against Thresholds (Envoy's circuit breakers) and refuses over them with
// ReasonMaxConnections and its siblings. Breaker is the classic breaker,
// two-step (Allow, then Done with the outcome) and on injected time;
// sony/gobreaker was considered and not used because it reads time.Now
// inside and allocates a closure per call (see Breaker).
//
//	Thresholds.MaxConnections          1024
//	Thresholds.MaxPending              1024
//	Thresholds.MaxRequests             1024
//	Thresholds.MaxRetries              3
//	BreakerConfig.ConsecutiveFailures  5
//	BreakerConfig.FailureRatio         0.5 of at least MinRequests 20 in Window
//	BreakerConfig.Window               10s in Buckets 10
//	BreakerConfig.OpenTimeout          30s
//	BreakerConfig.HalfOpenProbes       1
//
// # Retries
//
// RetryPolicy.Decide says whether an attempt is retried: its outcome must
// match a condition (connect failure, reset before a response, 5xx, gateway
// error, listed statuses), and a non-idempotent request that may have
// reached the backend is never retried unless the policy allows it. A
// retry then needs room in a RetryBudget (or Thresholds.MaxRetries) and
// waits Backoff, exponential with full jitter.
//
//	RetryPolicy.On                     connect failure, reset, gateway error
//	RetryPolicy.MaxRetries             1
//	RetryPolicy.RetryNonIdempotent     false
//	RetryBudgetConfig.Percent          20 (percent of active requests)
//	RetryBudgetConfig.MinConcurrency   3
//	Backoff base, cap                  25ms, 10×base
package upstream
