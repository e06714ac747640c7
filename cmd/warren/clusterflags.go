package main

import (
	"flag"
	"fmt"
	"strconv"
	"strings"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream"
)

// clusterFlags holds the cluster policy flags that need parsing after
// the command line (or a config file) is read: clusterPolicyFlags'
// values that are not a ClusterConfig field as they stand.
type clusterFlags struct {
	balancer, hashHeader   *string
	retryOn, retryStatuses *string
	weights                *string
}

// clusterPolicyFlags registers warren proxy's cluster policy flags on fs,
// writing into cc: pool, thresholds, breaker, outlier detection, panic
// threshold, timeouts, retries, hedging, health checks, outbound rate
// limit, re-resolution, the balancer and its hash key. warren serve's
// -upstream-config file takes the same names (serveUpstreamConfig), so
// the legacy cluster of a gateway is configured as warren proxy's is.
// finish completes cc (and the proxy's hashing in pc) once fs is parsed.
func clusterPolicyFlags(fs *flag.FlagSet, cc *upstream.ClusterConfig) *clusterFlags {
	f := &clusterFlags{}
	f.balancer = fs.String("balancer", "least_request", "least_request (P2C), round_robin, ring_hash or maglev (ring hash and Maglev hash the client address, or -hash-header's value)")
	f.weights = fs.String("weights", "", "round-robin weights of the -upstream hosts, comma-separated in the same order (\"3,1,1\"; empty: 1 each); with -balancer round_robin")
	f.hashHeader = fs.String("hash-header", "", "with -balancer ring_hash or maglev: the request header whose value is the hash key (a device id); requests without it, and the default (empty), hash the client address")
	p := &cc.Pool
	fs.IntVar(&p.MaxConnsPerHost, "max-conns-per-host", upstream.DefaultMaxConnsPerHost, "connections per backend (negative: only -cb-max-connections)")
	fs.IntVar(&p.MaxIdlePerHost, "max-idle-per-host", upstream.DefaultMaxIdlePerHost, "idle keep-alive connections kept per backend")
	fs.DurationVar(&p.IdleTimeout, "pool-idle-timeout", upstream.DefaultPoolIdleTimeout, "close pooled connections idle this long (keep it below the backend's keep-alive timeout; its Keep-Alive header is honoured anyway)")
	fs.DurationVar(&p.MaxLifetime, "max-lifetime", upstream.DefaultMaxLifetime, "retire backend connections this old (negative: never)")
	fs.IntVar(&p.MaxRequestsPerConn, "max-requests-per-conn", 0, "retire a backend connection after this many requests (0: no limit)")
	fs.DurationVar(&p.ConnectTimeout, "connect-timeout", upstream.DefaultConnectTimeout, "backend connect timeout")
	fs.IntVar(&p.MaxPendingPerHost, "max-pending-per-host", upstream.DefaultMaxPendingPerHost, "requests waiting for a connection per backend; over it: 503 at once")
	fs.IntVar(&p.MaxRequestsPerHost, "max-requests-per-host", upstream.DefaultMaxRequestsPerHost, "requests waiting for or on a connection per backend; a full backend's requests go to another, else 503 at once (negative: no limit)")
	fs.IntVar(&p.MaxRetriesPerHost, "max-retries-per-host", 0, "retries (and hedges) in flight per backend; a full backend's retries go to another, else 503 at once (0: no per-host limit, the retry budget bounds them)")
	fs.DurationVar(&p.PendingTimeout, "pending-timeout", upstream.DefaultPendingTimeout, "longest wait for a backend connection; 503 after")
	fs.IntVar(&p.MaxPipeline, "pipeline", 0, "HTTP/1.1 pipelining: requests in flight per backend connection, used only when a backend has no idle connection and -max-conns-per-host (or -cb-max-connections) is reached; idempotent requests without a body only (0 or 1: off)")
	fs.BoolVar(&p.BatchPipeline, "pipeline-batch", false, "with -pipeline N: the requests a loop reads in one round of events share a backend connection (up to N) and one write, even while idle connections are free; fewer system calls per request, but those requests are answered one after another")
	fs.DurationVar(&p.KeepAliveMargin, "keepalive-margin", upstream.DefaultKeepAliveMargin, "retire pooled connections this long before the backend's Keep-Alive timeout")

	t := &cc.Thresholds
	fs.IntVar(&t.MaxConnections, "cb-max-connections", upstream.DefaultMaxConnections, "circuit breaker: connections to the cluster (negative: no limit)")
	fs.IntVar(&t.MaxPending, "cb-max-pending", upstream.DefaultMaxPending, "circuit breaker: requests waiting for a connection")
	fs.IntVar(&t.MaxRequests, "cb-max-requests", upstream.DefaultMaxRequests, "circuit breaker: requests in flight")
	fs.IntVar(&t.MaxRetries, "cb-max-retries", upstream.DefaultMaxRetries, "circuit breaker: retries in flight (used with -retry-budget-off)")

	fs.BoolVar(&cc.BreakerOff, "breaker-off", false, "disable the classic breaker")
	fs.BoolVar(&cc.BreakerOn5xx, "breaker-5xx", false, "breaker: count every 5xx response as a failure (default: only 502, 503 and 504, with connect failures, resets and timeouts)")
	fs.IntVar(&cc.Breaker.ConsecutiveFailures, "breaker-failures", upstream.DefaultBreakerConsecutiveFailures, "breaker: consecutive failed attempts that open it")
	fs.Float64Var(&cc.Breaker.FailureRatio, "breaker-ratio", upstream.DefaultBreakerFailureRatio, "breaker: failure ratio over the window that opens it")
	fs.IntVar(&cc.Breaker.MinRequests, "breaker-min-requests", upstream.DefaultBreakerMinRequests, "breaker: attempts in the window before the ratio counts")
	fs.DurationVar(&cc.Breaker.Window, "breaker-window", upstream.DefaultBreakerWindow, "breaker: rolling window")
	fs.DurationVar(&cc.Breaker.OpenTimeout, "breaker-open-timeout", upstream.DefaultBreakerOpenTimeout, "breaker: time open before a half-open probe")
	fs.IntVar(&cc.Breaker.HalfOpenProbes, "breaker-probes", upstream.DefaultBreakerHalfOpenProbes, "breaker: half-open probes that must succeed")

	fs.BoolVar(&cc.OutlierOff, "outlier-off", false, "disable outlier detection")
	fs.IntVar(&cc.Outlier.Consecutive5xx, "outlier-5xx", upstream.DefaultConsecutive5xx, "eject a host after this many 5xx or connect failures in a row")
	fs.IntVar(&cc.Outlier.ConsecutiveGatewayFailure, "outlier-gateway", upstream.DefaultConsecutiveGatewayFailure, "eject a host after this many 502/503/504 or connect failures in a row")
	fs.DurationVar(&cc.Outlier.BaseEjectionTime, "outlier-base-ejection", upstream.DefaultBaseEjectionTime, "first ejection's length (times the ejection count)")
	fs.DurationVar(&cc.Outlier.MaxEjectionTime, "outlier-max-ejection", upstream.DefaultMaxEjectionTime, "longest ejection")
	fs.IntVar(&cc.Outlier.MaxEjectionPercent, "outlier-max-percent", upstream.DefaultMaxEjectionPercent, "most hosts ejected at once, percent (one always may be)")
	fs.IntVar(&cc.Outlier.FailurePercentageThreshold, "outlier-failure-percent", upstream.DefaultFailurePercentageThreshold, "eject a host whose failures reach this percentage of its requests in -outlier-interval (negative: off)")
	fs.IntVar(&cc.Outlier.FailurePercentageRequestVolume, "outlier-failure-volume", upstream.DefaultFailurePercentageRequestVolume, "requests a host needs in -outlier-interval before -outlier-failure-percent counts (negative: no minimum)")
	fs.IntVar(&cc.Outlier.FailurePercentageMinimumHosts, "outlier-failure-min-hosts", upstream.DefaultFailurePercentageMinimumHosts, "hosts the cluster needs for -outlier-failure-percent to apply (negative: no minimum)")
	fs.DurationVar(&cc.Outlier.Interval, "outlier-interval", upstream.DefaultOutlierInterval, "window of -outlier-failure-percent, and the period after which a host that stays in lowers its ejection multiplier")
	fs.Float64Var(&cc.HostSet.PanicThreshold, "panic-threshold", upstream.DefaultPanicThreshold, "below this percentage of available hosts, balance over all (negative: never)")

	fs.DurationVar(&cc.Timeout, "timeout", upstream.DefaultTimeout, "request timeout, retries included; 504 after (negative: none)")
	fs.DurationVar(&cc.PerTryTimeout, "per-try-timeout", 0, "longest silence of the backend within one attempt (0: -timeout)")
	fs.IntVar(&cc.Retry.MaxRetries, "retries", 1, "retries per request (negative: none)")
	f.retryOn = fs.String("retry-on", "connect-failure,reset,gateway-error", "retry conditions: connect-failure, reset, 5xx, gateway-error")
	f.retryStatuses = fs.String("retry-statuses", "", "further statuses to retry on, comma-separated (429,409)")
	fs.BoolVar(&cc.Retry.RetryNonIdempotent, "retry-non-idempotent", false, "retry POST/PATCH that may have reached the backend")
	fs.BoolVar(&cc.RetryBudgetOff, "retry-budget-off", false, "bound retries by -cb-max-retries instead of a budget")
	fs.Float64Var(&cc.RetryBudget.Percent, "retry-budget", upstream.DefaultRetryBudgetPercent, "retries in flight as a percentage of requests in flight")
	fs.DurationVar(&cc.HedgeDelay, "hedge-delay", 0, "send a second attempt of an idempotent request to another backend when the first has not answered this long; first answer wins (0: no hedging)")
	fs.DurationVar(&cc.BackoffBase, "backoff-base", upstream.DefaultBackoffBase, "retry backoff base (full jitter, capped at -backoff-max)")
	fs.DurationVar(&cc.BackoffMax, "backoff-max", 0, "longest retry backoff (0: 10x -backoff-base)")

	fs.DurationVar(&cc.Health.Interval, "hc-interval", 0, "active health check interval (0: off)")
	fs.StringVar(&cc.Health.Path, "hc-path", "", "HTTP health check path (empty: TCP connect)")
	fs.DurationVar(&cc.Health.Timeout, "hc-timeout", upstream.DefaultHealthTimeout, "health check timeout")
	fs.IntVar(&cc.Health.UnhealthyThreshold, "hc-unhealthy", upstream.DefaultHealthUnhealthyThreshold, "failed checks in a row that take a host out")
	fs.IntVar(&cc.Health.HealthyThreshold, "hc-healthy", upstream.DefaultHealthHealthyThreshold, "passed checks in a row that bring it back")
	fs.DurationVar(&cc.Health.Jitter, "hc-jitter", 0, "random delay up to this much added to each check interval, so hosts are not checked in lockstep (0: a tenth of -hc-interval; negative: none)")
	fs.StringVar(&cc.Health.Host, "hc-host", "", "Host header of HTTP health checks (empty: the host's host:port)")
	fs.Float64Var(&cc.RateLimit.PerSecond, "rate-limit", 0, "requests a second sent to the cluster at most, spaced evenly; over it a request waits for its slot; retries and hedges take slots too (0: no limit)")
	fs.IntVar(&cc.RateLimit.Queue, "rate-limit-queue", 0, "requests waiting for their -rate-limit slot at most (with the one leaving); over it: 503 at once (0: one second's worth)")
	fs.DurationVar(&cc.ResolveInterval, "resolve-interval", upstream.DefaultResolveInterval, "re-resolve backend names this often (negative: at start only)")
	return f
}

// finish parses the flags clusterPolicyFlags kept as text into cc, and
// sets pc's hashing for a ring hash or Maglev balancer.
func (f *clusterFlags) finish(cc *upstream.ClusterConfig, pc *proxy.Config) error {
	if cc.Pool.BatchPipeline && cc.Pool.MaxPipeline < 2 {
		return fmt.Errorf("-pipeline-batch needs -pipeline N (N >= 2: the requests one connection carries)")
	}
	var err error
	if cc.Balancer, err = upstream.ParseBalancer(*f.balancer); err != nil {
		return err
	}
	pc.HashClient = cc.Balancer == upstream.BalanceRingHash || cc.Balancer == upstream.BalanceMaglev
	pc.HashHeader = strings.TrimSpace(*f.hashHeader)
	if pc.HashHeader != "" && !pc.HashClient {
		return fmt.Errorf("-hash-header needs -balancer ring_hash or maglev")
	}
	if pc.HashHeader != "" && !http1.IsToken(pc.HashHeader) {
		return fmt.Errorf("-hash-header: %q is not a header field name", pc.HashHeader)
	}
	if cc.Retry.On, err = parseRetryOn(*f.retryOn); err != nil {
		return fmt.Errorf("-retry-on: %w", err)
	}
	cc.Weights = nil
	if *f.weights != "" {
		if cc.Balancer != upstream.BalanceRoundRobin {
			return fmt.Errorf("-weights needs -balancer round_robin")
		}
		for _, w := range strings.Split(*f.weights, ",") {
			n, err := strconv.Atoi(strings.TrimSpace(w))
			if err != nil || n < 1 {
				return fmt.Errorf("-weights: bad weight %q (a whole number, at least 1)", w)
			}
			cc.Weights = append(cc.Weights, n)
		}
		if len(cc.Hosts) > 0 && len(cc.Weights) != len(cc.Hosts) {
			return fmt.Errorf("-weights: %d weights for %d hosts", len(cc.Weights), len(cc.Hosts))
		}
	}
	cc.Retry.Statuses = nil
	for _, s := range strings.Split(*f.retryStatuses, ",") {
		if s = strings.TrimSpace(s); s != "" {
			var code int
			if _, err := fmt.Sscanf(s, "%d", &code); err != nil || code < 100 || code > 999 {
				return fmt.Errorf("-retry-statuses: bad status %q", s)
			}
			cc.Retry.Statuses = append(cc.Retry.Statuses, code)
		}
	}
	return nil
}
