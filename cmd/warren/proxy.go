package main

import (
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/stack"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/upstream"
)

// runProxy is warren proxy: a reverse proxy from -listen to the -upstream
// hosts, with the upstream toolkit's policies set by flags (or -config).
func runProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "listen address")
	var tcfg tlsx.Config
	stack.TLSFlags(fs, &tcfg)
	ups := fs.String("upstream", "", "backends, comma-separated: http://host:port or https://host:port,... (required)")
	utls := upstreamTLSFlags(fs)
	configFile := fs.String("config", "", "JSON file of flag values ({\"upstream\": \"http://a:80,http://b:80\", \"timeout\": \"5s\"}); command-line flags win")
	adminAddr := fs.String("admin", admin.DefaultAddr, "admin listener (metrics, /api/upstream, /debug/conns, pprof, dashboard); empty disables")
	adminToken := fs.String("admin-token", "", "bearer token for the admin listener (default $WARREN_ADMIN_TOKEN; empty: none)")
	drain := fs.Duration("drain-timeout", stack.DefaultDrainTimeout, "how long SIGTERM/SIGINT waits for connections to finish")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	name := fs.String("cluster", "default", "cluster name in metrics and the admin API")
	balancer := fs.String("balancer", "least_request", "least_request (P2C), round_robin, ring_hash or maglev (ring hash and Maglev hash the client address)")

	var ecfg engine.Config
	ecfg.BlockingPoll = true // busy loops must not wait for each other: the proxy's p99 (docs/benchmarks.md section 43)
	ecfg.LockOSThread = true // each loop on its own thread: the proxy's p99 (docs/benchmarks.md section 57)
	stack.EngineFlags(fs, &ecfg)

	var cc upstream.ClusterConfig
	var pc proxy.Config
	fs.DurationVar(&pc.IdleTimeout, "idle-timeout", proxy.DefaultIdleTimeout, "client keep-alive idle timeout (keep it above a fronting load balancer's)")
	fs.DurationVar(&pc.HeaderTimeout, "header-timeout", proxy.DefaultHeaderTimeout, "time to receive a request head once started; 408 after")
	fs.IntVar(&pc.MaxBacklog, "max-backlog", proxy.DefaultMaxBacklog, "bytes queued toward a slow peer before the other side is paused")
	fs.StringVar(&pc.Via, "via", "warren", "pseudonym in the Via header")
	fs.Int64Var(&pc.Limits.MaxBodyBytes, "max-body-bytes", 0, "request body limit, 413 over it (0: none, the backend decides)")
	fs.IntVar(&pc.Limits.MaxHeaderBytes, "max-header-bytes", http1.DefaultMaxHeaderBytes, "request head limit (and a chunked request's trailer section), 431 over it")
	fs.IntVar(&pc.Limits.MaxHeaders, "max-headers", http1.DefaultMaxHeaders, "request header field count limit (and trailer fields), 431 over it")
	fs.IntVar(&pc.Limits.MaxURIBytes, "max-uri-bytes", http1.DefaultMaxURIBytes, "request-target limit, 414 over it")
	fs.IntVar(&cc.MaxResponseHeaderBytes, "max-response-header-bytes", http1.DefaultMaxHeaderBytes, "backend response head limit (and a chunked response's trailer section); over it 502 bad_response")
	fs.IntVar(&cc.MaxResponseHeaders, "max-response-headers", http1.DefaultMaxHeaders, "backend response header field count limit (and trailer fields); over it 502 bad_response")
	fs.IntVar(&pc.MaxInterim, "max-interim", proxy.DefaultMaxInterim, "interim (1xx) responses other than 100 Continue (103 Early Hints ...) passed on per request; 0: none (CPython's http.client takes a 103 for the final response); more are dropped and counted")
	fs.IntVar(&pc.MaxInterimBytes, "max-interim-bytes", proxy.DefaultMaxInterimBytes, "bytes of the interim response heads passed on per request under -max-interim; more are dropped and counted (0: 16 KiB)")
	fs.Float64Var(&pc.RatePerIP, "rate-limit-per-ip", 0, "requests a second each client address may make; over it: 429 from the proxy itself (0: no limit)")
	fs.IntVar(&pc.BurstPerIP, "rate-limit-per-ip-burst", 0, "burst of -rate-limit-per-ip (0: the rate rounded up, at least 1)")
	fs.Var((*routeLimitsFlag)(&pc.RouteLimits), "route-limit",
		"inbound limit of a path prefix, repeatable: PREFIX=RATE[,burst=N][,header=NAME][,keys=N][,name=LABEL]; per client address, or per value of header NAME; over it: 429 with Retry-After (none by default)")

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
	fs.Float64Var(&cc.HostSet.PanicThreshold, "panic-threshold", upstream.DefaultPanicThreshold, "below this percentage of available hosts, balance over all (negative: never)")

	fs.DurationVar(&cc.Timeout, "timeout", upstream.DefaultTimeout, "request timeout, retries included; 504 after (negative: none)")
	fs.DurationVar(&cc.PerTryTimeout, "per-try-timeout", 0, "longest silence of the backend within one attempt (0: -timeout)")
	fs.IntVar(&cc.Retry.MaxRetries, "retries", 1, "retries per request (negative: none)")
	retryOn := fs.String("retry-on", "connect-failure,reset,gateway-error", "retry conditions: connect-failure, reset, 5xx, gateway-error")
	retryStatuses := fs.String("retry-statuses", "", "further statuses to retry on, comma-separated (429,409)")
	fs.BoolVar(&cc.Retry.RetryNonIdempotent, "retry-non-idempotent", false, "retry POST/PATCH that may have reached the backend")
	fs.BoolVar(&cc.RetryBudgetOff, "retry-budget-off", false, "bound retries by -cb-max-retries instead of a budget")
	fs.Float64Var(&cc.RetryBudget.Percent, "retry-budget", upstream.DefaultRetryBudgetPercent, "retries in flight as a percentage of requests in flight")
	fs.DurationVar(&cc.HedgeDelay, "hedge-delay", 0, "send a second attempt of an idempotent request to another backend when the first has not answered this long; first answer wins (0: no hedging)")
	fs.DurationVar(&cc.BackoffBase, "backoff-base", upstream.DefaultBackoffBase, "retry backoff base (full jitter, capped at 10x)")

	fs.DurationVar(&cc.Health.Interval, "hc-interval", 0, "active health check interval (0: off)")
	fs.StringVar(&cc.Health.Path, "hc-path", "", "HTTP health check path (empty: TCP connect)")
	fs.DurationVar(&cc.Health.Timeout, "hc-timeout", upstream.DefaultHealthTimeout, "health check timeout")
	fs.IntVar(&cc.Health.UnhealthyThreshold, "hc-unhealthy", upstream.DefaultHealthUnhealthyThreshold, "failed checks in a row that take a host out")
	fs.IntVar(&cc.Health.HealthyThreshold, "hc-healthy", upstream.DefaultHealthHealthyThreshold, "passed checks in a row that bring it back")
	fs.Float64Var(&cc.RateLimit.PerSecond, "rate-limit", 0, "requests a second sent to the cluster at most, spaced evenly; over it a request waits for its slot; retries and hedges take slots too (0: no limit)")
	fs.IntVar(&cc.RateLimit.Queue, "rate-limit-queue", 0, "requests waiting for their -rate-limit slot at most (with the one leaving); over it: 503 at once (0: one second's worth)")
	fs.DurationVar(&cc.ResolveInterval, "resolve-interval", upstream.DefaultResolveInterval, "re-resolve backend names this often (negative: at start only)")

	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			fmt.Fprintf(stderr, "warren proxy: -config: %v\n", err)
			return 2
		}
	}
	envDefault(fs, "admin-token", "WARREN_ADMIN_TOKEN")
	pc.PerIPv6Prefix = ecfg.PerIPv6Prefix // one setting for every per-client bound
	if err := proxy.ValidateRouteLimits(pc.RouteLimits); err != nil {
		fmt.Fprintf(stderr, "warren proxy: -route-limit: %v\n", err)
		return 2
	}
	if cc.Pool.BatchPipeline && cc.Pool.MaxPipeline < 2 {
		fmt.Fprintln(stderr, "warren proxy: -pipeline-batch needs -pipeline N (N >= 2: the requests one connection carries)")
		return 2
	}
	if *ups == "" {
		fmt.Fprintln(stderr, "warren proxy: -upstream is required (http://host:port,...)")
		return 2
	}
	for _, h := range strings.Split(*ups, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cc.Hosts = append(cc.Hosts, h)
		}
	}
	var err error
	if cc.Balancer, err = upstream.ParseBalancer(*balancer); err != nil {
		fmt.Fprintf(stderr, "warren proxy: %v\n", err)
		return 2
	}
	pc.HashClient = cc.Balancer == upstream.BalanceRingHash || cc.Balancer == upstream.BalanceMaglev
	if cc.Retry.On, err = parseRetryOn(*retryOn); err != nil {
		fmt.Fprintf(stderr, "warren proxy: -retry-on: %v\n", err)
		return 2
	}
	for _, s := range strings.Split(*retryStatuses, ",") {
		if s = strings.TrimSpace(s); s != "" {
			var code int
			if _, err := fmt.Sscanf(s, "%d", &code); err != nil || code < 100 || code > 999 {
				fmt.Fprintf(stderr, "warren proxy: -retry-statuses: bad status %q\n", s)
				return 2
			}
			cc.Retry.Statuses = append(cc.Retry.Statuses, code)
		}
	}
	cc.Name = *name

	log := newLogger(stderr, *logLevel)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	st, err := stack.New(stack.Config{Engine: ecfg, DrainTimeout: *drain, Logger: log,
		Admin: admin.Config{Addr: *adminAddr, Token: *adminToken}})
	if err != nil {
		log.Error("engine", "error", err)
		return 1
	}
	log = st.Logger()
	cc.Logger, pc.Logger = log, log
	if d, err := setupUpstreamTLS(utls, &cc, log, "warren proxy"); err != nil {
		log.Error("upstream tls", "error", err)
		st.Engine.Close()
		return 1
	} else if d != nil {
		st.AddCollector(d.Collector(""))
	}
	cl, err := upstream.NewCluster(st.Engine, cc)
	if err != nil {
		log.Error("cluster", "error", err)
		st.Engine.Close()
		return 1
	}
	defer cl.Close()
	// -tls-cert: clients reach the proxy over TLS on -listen.
	var wrap func(engine.Handler) engine.Handler
	if tcfg.CertFile != "" {
		tcfg.Logger = log
		ts, err := tlsx.New(tcfg)
		if err != nil {
			log.Error("tls", "error", err)
			st.Engine.Close()
			return 1
		}
		defer ts.Close()
		st.AddCollector(ts.Collector())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ts.Watch(ctx)  // SIGHUP and file changes reload the certificate
		wrap = ts.Handler // X-Forwarded-Proto follows: https (proxy.Config.Proto)
	}
	px := proxy.New(st.Engine, cl, pc)
	defer px.Close()
	ln, err := px.ListenWrapped(st.Addr(*listen), wrap)
	if err != nil {
		log.Error("listen", "addr", *listen, "error", err)
		st.Engine.Close()
		return 1
	}
	st.AddCollector(px.Collector(""))
	st.AddCollector(cl.Collector(""))
	for pattern, h := range upstream.AdminRoutes(cl) {
		st.AddRoute(pattern, h)
	}
	log.Info("warren proxy listening", "addr", ln.Addr().String(), "upstream", strings.Join(cc.Hosts, ","),
		"balancer", cc.Balancer.String(), "tls", tcfg.CertFile != "", "loops", st.Engine.Config().Loops)
	return st.Run(sig)
}

// parseRetryOn parses -retry-on.
func parseRetryOn(s string) (upstream.RetryOn, error) {
	var on upstream.RetryOn
	for _, v := range strings.Split(s, ",") {
		switch strings.TrimSpace(v) {
		case "connect-failure":
			on |= upstream.RetryOnConnectFailure
		case "reset":
			on |= upstream.RetryOnReset
		case "5xx":
			on |= upstream.RetryOn5xx
		case "gateway-error":
			on |= upstream.RetryOnGatewayError
		case "":
		default:
			return 0, fmt.Errorf("unknown condition %q", v)
		}
	}
	return on, nil
}

// repeatable is a flag that may be given more than once; in a -config
// file its value is a JSON array, one element a Set.
type repeatable interface{ repeatable() bool }

// routeLimitsFlag is -route-limit, repeatable.
type routeLimitsFlag []proxy.RouteLimit

func (f *routeLimitsFlag) repeatable() bool { return true }

func (f *routeLimitsFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(*f))
	for i, rl := range *f {
		s[i] = rl.String()
	}
	return strings.Join(s, " ")
}

func (f *routeLimitsFlag) Set(s string) error {
	rl, err := proxy.ParseRouteLimit(s)
	if err != nil {
		return err
	}
	*f = append(*f, rl)
	return nil
}

// applyConfigFile sets the flags named in a JSON object, unless the
// command line set them. A repeatable flag (-route-limit) takes an array.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		return err
	}
	for k, v := range m {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("unknown setting %q (settings are the flag names)", k)
		}
		if flagSet(fs, k) || k == "config" {
			continue
		}
		if r, ok := fs.Lookup(k).Value.(repeatable); ok && r.repeatable() {
			vs, ok := v.([]any)
			if !ok {
				vs = []any{v}
			}
			for _, e := range vs {
				if err := fs.Set(k, fmt.Sprint(e)); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
			continue
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}
