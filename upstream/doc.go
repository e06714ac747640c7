// Package upstream is warren's outbound toolkit: the policies that decide
// where a request goes and whether it goes at all — rate limiters,
// balancers, outlier detection, circuit breaking and retries — for the
// connection pools, the reverse proxy and the gateway's per-device limits.
//
// # Clusters, pools and the client
//
// A Cluster (NewCluster) is a named set of backend hosts on an engine's
// loops, each with its own connection pool: max connections, max idle,
// idle timeout, max lifetime, max requests per connection, connect
// timeout, and a bounded pending queue with a wait timeout (over its
// bound a request fails at once with FailOverflow, never waits without
// bound). Cluster.Do sends an HTTP/1.1 request without blocking and
// hands the response to a ResponseHandler on the upstream connection's
// loop, as it arrives (Content-Length, chunked and close-delimited bodies,
// 1xx, 101 upgrades); Cluster.RoundTrip is the blocking convenience.
// Connections are kept alive (no pipelining) and retired before the
// backend's announced Keep-Alive timeout; a request that fails on a
// reused connection before any response byte is retried at once when that
// is safe. Every request passes the breaker, the resource thresholds and
// the balancer, and its result feeds outlier detection; active health
// checks and un-ejection run on one maintenance goroutine per cluster,
// DNS re-resolution on a goroutine of its own (one round at a time, so a
// silent DNS server delays neither). Cluster.Drain takes a host out of
// rotation: excluded, it is never picked, panic mode included.
// Hosts given as https:// URLs are reached over TLS through
// ClusterConfig.DialTLS, which package upstreamtls fills (upstream itself
// does not import the TLS layer); a failed handshake is a connect failure.
// Each host also has resource thresholds of its own (PoolConfig:
// MaxConnsPerHost, MaxPendingPerHost, MaxRequestsPerHost,
// MaxRetriesPerHost), each with a
// typed Reason and counted per host. With ClusterConfig.HedgeDelay an
// idempotent request that has not been answered in time is hedged: a second
// attempt goes to another host, the first answer wins and the other attempt
// is canceled; the hedge counts as a retry (Hedgeable says which requests
// qualify). ClusterConfig.RateLimit throttles what the cluster sends
// (client-side throttling toward a rate-limited API): requests leave
// evenly spaced at the rate, one over it waits for its slot without
// blocking, and a bounded queue refuses the rest with ReasonRateLimited;
// retries and hedges take slots too (a hedge only a free one).
// ClusterConfig.PerTryTimeout is timed exactly, by a timer per busy
// connection, not by the engine's tick. Failures are *Error values with a Failure (their String is the
// metric label and the proxy's X-Warren-Reason). Package proxy is the reverse
// proxy built on it; docs/upstream.md lists every setting and default
// and how the timeouts line up with the backend's and a load balancer's.
//
// A Batcher groups messages by count, bytes and time (128 messages / 50 ms
// by default); an HTTPSink delivers its batches through a Cluster.
//
// The policies below are the maths: no networking, no goroutines, no
// timers.
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
// available, when they pick among all of them (panic mode); an excluded
// host (HostSet.SetExcluded: a drained one) is never picked and does not
// count toward the threshold:
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
//	PoolConfig.MaxConnsPerHost         256 (per host)
//	PoolConfig.MaxPendingPerHost       1024 (per host)
//	PoolConfig.MaxRequestsPerHost      1024 (per host)
//	PoolConfig.MaxRetriesPerHost       none (per host; the retry budget bounds the cluster's)
//	PoolConfig.MaxPipeline             0 (no pipelining; N >= 2: up to N in flight per connection,
//	                                   only once MaxConnsPerHost is reached)
//	PoolConfig.BatchPipeline           false (with MaxPipeline >= 2: a loop's requests of one round
//	                                   share a connection and one write)
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
//	ClusterConfig.HedgeDelay           0 (no hedging)
//	ClusterConfig.PerTryTimeout        = Timeout (15s)
//	ClusterConfig.RateLimit.PerSecond  0 (no limit)
//	ClusterConfig.RateLimit.Queue      PerSecond (a second's wait), at least 1
package upstream
