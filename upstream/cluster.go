package upstream

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"math/rand/v2"
	"net"
	"net/netip"
	"net/url"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// PoolConfig bounds each host's connection pool. The zero value works;
// every field says what zero means.
type PoolConfig struct {
	// MaxConnsPerHost caps the connections (open and connecting) to one
	// host. Zero means 256; negative means only Thresholds.MaxConnections
	// bounds them.
	MaxConnsPerHost int
	// MaxIdlePerHost caps the idle keep-alive connections kept per host;
	// a connection released beyond it is closed. Zero means 64.
	MaxIdlePerHost int
	// IdleTimeout closes a pooled connection idle this long. Zero means
	// 60s; negative keeps idle connections until the backend closes them
	// (or its Keep-Alive timeout, below, passes). Set it below the
	// backend's keep-alive timeout and any load balancer's idle timeout
	// between them (docs/upstream.md).
	IdleTimeout time.Duration
	// MaxLifetime retires a connection this old at its next release, so
	// that DNS and load-balancer changes are picked up. Zero means 10m;
	// negative means no limit.
	MaxLifetime time.Duration
	// MaxRequestsPerConn retires a connection after this many requests.
	// Zero or negative means no limit.
	MaxRequestsPerConn int
	// ConnectTimeout bounds a connect. Zero means 5s.
	ConnectTimeout time.Duration
	// MaxPendingPerHost caps the requests waiting for a connection to one
	// host; over it, and over Thresholds.MaxPending for the cluster, a
	// request fails at once with FailOverflow. Zero means 1024.
	MaxPendingPerHost int
	// MaxRequestsPerHost caps the requests assigned to one host, waiting
	// for a connection or on one (Envoy's per-host thresholds, beside
	// Thresholds.MaxRequests for the cluster). A request whose host is
	// full goes to another host with room; with none it fails at once
	// with FailOverflow and ReasonHostMaxRequests. Zero means 1024;
	// negative means no per-host limit.
	MaxRequestsPerHost int
	// MaxRetriesPerHost caps the retries (a hedge counts as one) in
	// flight to one host, so the retries of requests that failed elsewhere
	// cannot pile onto a single survivor. A retry whose host is full goes
	// to another host with room; with none it fails at once with
	// FailOverflow and ReasonHostMaxRetries. Zero or negative means no
	// per-host limit (the default: the retry budget, or
	// Thresholds.MaxRetries, bounds retries for the cluster).
	MaxRetriesPerHost int
	// PendingTimeout bounds a request's wait for a connection; it then
	// fails with FailPendingTimeout. Zero means 5s.
	PendingTimeout time.Duration
	// KeepAliveMargin is how long before the backend's announced
	// keep-alive timeout ("Keep-Alive: timeout=N") a pooled connection is
	// retired, so a request is never sent on a connection the backend is
	// closing. Zero means 1s, or half the announced timeout when that is
	// shorter than 2s.
	KeepAliveMargin time.Duration
	// MaxPipeline turns on HTTP/1.1 pipelining and bounds the requests in
	// flight on one connection (the one whose response is being read and
	// those written behind it). Pipelining is used only instead of
	// waiting: when a host has no idle connection and may not open
	// another (MaxConnsPerHost or Thresholds.MaxConnections reached), an
	// idempotent request with a complete body is written behind the
	// requests on a busy connection with fewer than MaxPipeline in
	// flight, rather than queued. A request that is not pipelinable
	// (Pipelinable) has its connection to itself. When a pipelined
	// connection dies, the request whose response had started fails and
	// those behind it, whose responses had not, are retried. Zero or 1
	// means no pipelining (the default).
	MaxPipeline int
	// BatchPipeline, with MaxPipeline >= 2, pipelines requests that
	// arrive together even while idle connections are free: the
	// pipelinable requests an event loop hands to a host in one round of
	// events (a proxy's clients whose requests were read in the same
	// poll) share one connection of that loop, up to MaxPipeline, and go
	// out in one write when the round ends (engine.Conn.Post) instead of
	// one connection and one write each. The proxy and the backend then
	// make fewer system calls and send fewer segments per request; the
	// price is that those requests are answered one after another on one
	// connection (a slow response delays the ones behind it). A request
	// that has no company in its round is written, alone, at the round's
	// end. False (the default): idle connections first, pipelining only
	// at the connection bound.
	BatchPipeline bool
}

// Defaults of PoolConfig.
const (
	DefaultMaxConnsPerHost    = 256
	DefaultMaxIdlePerHost     = 64
	DefaultPoolIdleTimeout    = 60 * time.Second
	DefaultMaxLifetime        = 10 * time.Minute
	DefaultConnectTimeout     = 5 * time.Second
	DefaultMaxPendingPerHost  = 1024
	DefaultMaxRequestsPerHost = 1024
	DefaultPendingTimeout     = 5 * time.Second
	DefaultKeepAliveMargin    = time.Second
)

func (c PoolConfig) withDefaults() PoolConfig {
	if c.MaxConnsPerHost == 0 {
		c.MaxConnsPerHost = DefaultMaxConnsPerHost
	}
	if c.MaxIdlePerHost <= 0 {
		c.MaxIdlePerHost = DefaultMaxIdlePerHost
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = DefaultPoolIdleTimeout
	}
	if c.MaxLifetime == 0 {
		c.MaxLifetime = DefaultMaxLifetime
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	if c.MaxPendingPerHost <= 0 {
		c.MaxPendingPerHost = DefaultMaxPendingPerHost
	}
	if c.MaxRequestsPerHost == 0 {
		c.MaxRequestsPerHost = DefaultMaxRequestsPerHost
	}
	if c.PendingTimeout <= 0 {
		c.PendingTimeout = DefaultPendingTimeout
	}
	if c.KeepAliveMargin <= 0 {
		c.KeepAliveMargin = DefaultKeepAliveMargin
	}
	return c
}

// BalancerKind chooses a Cluster's Balancer.
type BalancerKind uint8

const (
	// BalanceLeastRequest is least request with two random choices
	// (Envoy's default).
	BalanceLeastRequest BalancerKind = iota
	// BalanceRoundRobin is smooth weighted round robin.
	BalanceRoundRobin
	// BalanceRingHash is consistent hashing on Request.Key.
	BalanceRingHash
	// BalanceMaglev is Maglev hashing on Request.Key.
	BalanceMaglev
)

var balancerNames = [...]string{"least_request", "round_robin", "ring_hash", "maglev"}

// String returns the snake_case name.
func (k BalancerKind) String() string {
	if int(k) < len(balancerNames) {
		return balancerNames[k]
	}
	return "unknown"
}

// ParseBalancer parses a BalancerKind's name (also "lr", "rr").
func ParseBalancer(s string) (BalancerKind, error) {
	switch strings.ReplaceAll(strings.ToLower(s), "-", "_") {
	case "least_request", "lr", "":
		return BalanceLeastRequest, nil
	case "round_robin", "rr":
		return BalanceRoundRobin, nil
	case "ring_hash":
		return BalanceRingHash, nil
	case "maglev":
		return BalanceMaglev, nil
	}
	return 0, fmt.Errorf("upstream: unknown balancer %q (least_request, round_robin, ring_hash, maglev)", s)
}

// ClusterConfig configures a Cluster. Only Hosts is required; every other
// field's zero value gives the default it documents.
type ClusterConfig struct {
	// Name names the cluster in metrics and logs. Zero means "default".
	Name string
	// Hosts lists the backends as "host:port", "http://host:port" or
	// "https://host:port" (the default port 80, or 443 for https). A name
	// is resolved when the cluster starts (its first IPv4 address, else
	// its first), and again every ResolveInterval. http and https hosts may be mixed in one
	// cluster; an https host needs DialTLS.
	Hosts []string
	// DialTLS runs TLS on the connections to https:// hosts, health
	// checks included: it returns the handler to dial with, which does
	// the client handshake for serverName (the URL's host name, without
	// the port) and then hands the connection to h, whose OnOpen runs
	// only once the handshake is done. A failed handshake closes the
	// connection before h's OnOpen, and counts as a connect failure (for
	// outlier detection and retries) and in the TLS handshake figures.
	// The package upstreamtls makes one from a tls.Config, with
	// verification and session resumption per host name. Nil refuses
	// https:// hosts.
	DialTLS func(serverName string, h engine.Handler) engine.Handler
	// Weights gives each host's weight for round robin (same order as
	// Hosts); missing or zero weights are 1.
	Weights []int
	// ResolveInterval re-resolves host names this often, off the
	// maintenance loop (one round at a time; a lookup takes at most 5s). A
	// host keeps its address while it is among the name's answers, in any
	// order; a host whose address is no longer among them moves to the
	// new one: new connections go there, idle ones close, and busy ones
	// retire as they are released. A failed lookup keeps the address. Zero
	// means 30s; negative resolves only at start.
	ResolveInterval time.Duration
	// Pool bounds each host's connection pool.
	Pool PoolConfig
	// Thresholds are the cluster's Envoy-style circuit breakers
	// (connections, pending, requests, retries).
	Thresholds Thresholds
	// Breaker configures the classic breaker that gates every request;
	// BreakerOff disables it.
	Breaker    BreakerConfig
	BreakerOff bool
	// BreakerOn5xx makes every 5xx response a failure for the breaker. By
	// default only the gateway class is (502, 503 and 504), with connect
	// failures, resets and timeouts: the breaker gates the whole
	// cluster, and a 500 from one route of a working backend is that
	// route's answer, not the backend failing (Envoy's outlier detection
	// makes the same split: consecutive_5xx against
	// consecutive_gateway_failure).
	BreakerOn5xx bool
	// Outlier configures passive health checking from request results;
	// OutlierOff disables it.
	Outlier    OutlierConfig
	OutlierOff bool
	// HostSet sets the panic threshold.
	HostSet HostSetConfig
	// Balancer picks a host per request. Zero means least request.
	Balancer BalancerKind
	// Retry decides which failed attempts are retried.
	Retry RetryPolicy
	// RetryBudget bounds concurrent retries to a share of active requests
	// (Envoy: 20%, minimum 3). RetryBudgetOff uses Thresholds.MaxRetries
	// instead.
	RetryBudget    RetryBudgetConfig
	RetryBudgetOff bool
	// BackoffBase and BackoffMax shape the wait before a retry,
	// exponential with full jitter. Zero means 25ms and ten times the base.
	BackoffBase, BackoffMax time.Duration
	// Timeout bounds a request from Do until its response is complete,
	// retries included. Zero means 15s (Envoy's route timeout); negative
	// means none.
	Timeout time.Duration
	// PerTryTimeout bounds how long one attempt may go without a byte
	// from the backend (Envoy's per-try idle timeout), timed exactly by a
	// timer per busy connection (not the engine's tick); the attempt then
	// fails as a timeout and is retried when the policy allows. Zero means
	// Timeout (and then no timer: the overall timeout comes first);
	// negative means none.
	PerTryTimeout time.Duration
	// HedgeDelay, when positive, hedges requests: an idempotent request
	// with a complete body (Hedgeable) that has had no response head this
	// long after it was sent gets a second attempt on another host; the
	// first response wins and the other attempt is canceled (its
	// connection closed). The hedge counts as one of the request's
	// retries (RetryPolicy.MaxRetries) and needs room in the retry budget
	// or Thresholds.MaxRetries, like a retry. Zero or negative means no
	// hedging (the default). Set it near the backend's p95 or p99 latency.
	HedgeDelay time.Duration
	// RateLimit throttles the requests the cluster sends (client-side
	// throttling toward a rate-limited API); off unless
	// RateLimit.PerSecond is positive.
	RateLimit RateLimitConfig
	// Health configures active health checks; they are off unless
	// Health.Interval is positive.
	Health HealthConfig
	// MaxResponseHeaderBytes bounds a response head, and a chunked
	// response's trailer section: over it the response fails as
	// FailBadResponse (http1.ErrHeaderTooLarge, ErrTrailerTooLarge). Zero
	// means 64 KiB.
	MaxResponseHeaderBytes int
	// MaxResponseHeaders bounds the fields of a response head, and of a
	// trailer section: over it the response fails as FailBadResponse
	// (http1.ErrTooManyHeaders, ErrTrailerTooLarge). Zero means 100.
	MaxResponseHeaders int
	// Logger receives the cluster's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// RateLimitConfig is a cluster's outbound rate limit: requests leave at
// most PerSecond a second, spaced evenly (a LeakyBucket as a shaper, so a
// rate-limited API sees no bursts). A request over the rate waits for its
// slot without blocking anyone — its dispatch is scheduled — while fewer
// than Queue requests are in the bucket (the longest wait is
// Queue/PerSecond, and the overall Timeout covers it); beyond that it is
// refused at once with FailOverflow and ReasonRateLimited. Every attempt
// sent takes a slot: a retry waits for the later of its backoff and its
// slot, and is not made when the bucket is full (the request ends with its
// last failure or response); a hedge is sent only when a slot is free at
// once. Both refusals count in rq_retry_rate_limited. The limit is the
// cluster's, not per host.
type RateLimitConfig struct {
	// PerSecond is the rate; zero or negative means no limit.
	PerSecond float64
	// Queue bounds the requests in the bucket: the one leaving now and
	// those waiting for their slots. Zero means PerSecond (at most a
	// second's wait), at least 1.
	Queue int
}

// Defaults of ClusterConfig.
const (
	DefaultResolveInterval = 30 * time.Second
	DefaultTimeout         = 15 * time.Second
)

// Cluster is a named set of backend hosts, each with its own connection
// pool on an engine's loops, and the policies that pick a host and gate a
// request: balancer, resource thresholds, breaker, outlier detection,
// active health checks and retries. Do sends a request without blocking;
// RoundTrip is the blocking convenience. A Cluster is safe for concurrent
// use.
type Cluster struct {
	eng   *engine.Engine
	cfg   ClusterConfig
	pool  PoolConfig
	name  string
	log   *slog.Logger
	hosts []*hostPool
	set   *HostSet
	bal   Balancer
	res   *Resources
	brk   *Breaker         // nil when off
	out   *OutlierDetector // nil when off
	bud   *RetryBudget     // nil when off
	hc    *healthChecker   // nil when off
	st    clusterStats
	// perTry is the per-try timeout when it can fire before the overall
	// one, or 0: an attempt can never be silent longer than its request
	// is old, so a per-try timeout not below Timeout needs no timer.
	perTry time.Duration
	rl     *LeakyBucket // ClusterConfig.RateLimit; nil when off

	limits http1.Limits // response parsing: head bounded, body streamed

	// overall are the overall timeouts' lists (overallOf); empty when
	// Timeout is off.
	overall []overallTimeouts
	// sysClock: eng's clock is the system clock (engine.SystemClock), so
	// the time Do reads for an exchange's start is the time.Now its
	// overall timer is armed from.
	sysClock bool
	// xfree are the free lists of exchanges, one a loop (newExchange).
	xfree []xFree
	rndMu sync.Mutex
	rnd   *rand.PCG

	closed atomic.Bool
	stop   chan struct{}
	wg     sync.WaitGroup
}

// NewCluster makes a cluster on eng, which must be started (Start("")
// starts loops without a listener), resolves its hosts and starts its
// maintenance goroutine (outlier un-ejection, health checks, DNS). Close
// stops it.
func NewCluster(eng *engine.Engine, cfg ClusterConfig) (*Cluster, error) {
	if len(cfg.Hosts) == 0 {
		return nil, errors.New("upstream: cluster without hosts")
	}
	if cfg.Name == "" {
		cfg.Name = "default"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ResolveInterval == 0 {
		cfg.ResolveInterval = DefaultResolveInterval
	}
	if cfg.Timeout == 0 {
		cfg.Timeout = DefaultTimeout
	}
	if cfg.PerTryTimeout == 0 {
		cfg.PerTryTimeout = cfg.Timeout
	}
	var perTry time.Duration
	if cfg.PerTryTimeout > 0 && (cfg.Timeout < 0 || cfg.PerTryTimeout < cfg.Timeout) {
		perTry = cfg.PerTryTimeout
	}
	if cfg.BackoffBase <= 0 {
		cfg.BackoffBase = DefaultBackoffBase
	}
	if cfg.BackoffMax <= 0 {
		cfg.BackoffMax = 10 * cfg.BackoffBase
	}
	c := &Cluster{eng: eng, sysClock: eng.SystemClock(), cfg: cfg, pool: cfg.Pool.withDefaults(), name: cfg.Name, perTry: perTry,
		log: cfg.Logger.With("cluster", cfg.Name), stop: make(chan struct{}),
		rnd: rand.NewPCG(uint64(time.Now().UnixNano()), 0x9e3779b97f4a7c15)}
	if eng.EventLoops() {
		c.xfree = make([]xFree, max(1, eng.Config().Loops))
	}
	if cfg.Timeout > 0 {
		// One list per loop (Request.Loop) and one for the rest.
		c.overall = make([]overallTimeouts, max(1, eng.Config().Loops)+1)
		for i := range c.overall {
			c.overall[i].d, c.overall[i].run = cfg.Timeout, (*Exchange).onOverallTimeout
		}
	}
	hs := make([]Host, len(cfg.Hosts))
	for i, h := range cfg.Hosts {
		name, secure, err := hostPort(h)
		if err != nil {
			return nil, err
		}
		if secure && cfg.DialTLS == nil {
			return nil, fmt.Errorf("upstream: host %q: an https:// host needs ClusterConfig.DialTLS", h)
		}
		addr, err := resolve(name)
		if err != nil {
			return nil, fmt.Errorf("upstream: host %q: %w", h, err)
		}
		hp := &hostPool{c: c, idx: i, name: name, idle: make([][]*clientConn, max(1, eng.Config().Loops))}
		hp.batch = make([]*clientConn, len(hp.idle))
		if secure {
			hp.sni, _, _ = net.SplitHostPort(name)
		}
		hp.addr.Store(&addr)
		c.hosts = append(c.hosts, hp)
		hs[i] = Host{Addr: name}
		if i < len(cfg.Weights) {
			hs[i].Weight = cfg.Weights[i]
		}
	}
	c.set = NewHostSet(hs, cfg.HostSet)
	if r := cfg.RateLimit; r.PerSecond > 0 {
		q := r.Queue
		if q <= 0 {
			q = max(1, int(math.Min(r.PerSecond, math.MaxInt32)))
		}
		c.rl = NewLeakyBucket(r.PerSecond, q)
	}
	switch cfg.Balancer {
	case BalanceRoundRobin:
		c.bal = NewRoundRobin(c.set)
	case BalanceRingHash:
		c.bal = NewRingHash(c.set, RingHashConfig{})
	case BalanceMaglev:
		m, err := NewMaglev(c.set, MaglevConfig{})
		if err != nil {
			return nil, err
		}
		c.bal = m
	default:
		c.bal = NewLeastRequest(c.set, LeastRequestConfig{})
	}
	c.limits = http1.Limits{MaxHeaderBytes: cfg.MaxResponseHeaderBytes, MaxHeaders: cfg.MaxResponseHeaders, MaxBodyBytes: -1}
	c.res = NewResources(cfg.Thresholds)
	if !cfg.BreakerOff {
		c.brk = NewBreaker(cfg.Breaker)
	}
	if !cfg.OutlierOff {
		c.out = NewOutlierDetector(len(hs), cfg.Outlier)
	}
	if !cfg.RetryBudgetOff {
		c.bud = NewRetryBudget(cfg.RetryBudget)
	}
	if cfg.Health.Interval > 0 {
		c.hc = newHealthChecker(c, cfg.Health)
	}
	c.wg.Add(1)
	go c.maintain()
	return c, nil
}

// hostPort turns "http://h:p", "https://h:p", "h:p" or "h" into "h:p",
// and reports whether the host is https.
func hostPort(s string) (string, bool, error) {
	secure := false
	port := "80"
	if strings.Contains(s, "://") {
		u, err := url.Parse(s)
		if err != nil {
			return "", false, fmt.Errorf("upstream: host %q: %w", s, err)
		}
		switch u.Scheme {
		case "http":
		case "https":
			secure, port = true, "443"
		default:
			return "", false, fmt.Errorf("upstream: host %q: only http:// and https:// backends are supported", s)
		}
		if u.Host == "" {
			return "", false, fmt.Errorf("upstream: host %q: no host", s)
		}
		// A path, query or credentials would be dropped without a word
		// (a request's target goes to the backend as received, and no
		// Authorization is added), which is not what a URL that names
		// them asks for: refused.
		if (u.Path != "" && u.Path != "/") || u.RawQuery != "" || u.ForceQuery || u.Fragment != "" || u.User != nil {
			return "", false, fmt.Errorf("upstream: host %q: only scheme://host[:port] (a path, query or user info is not supported)", redact(u))
		}
		s = u.Host
	}
	if _, _, err := net.SplitHostPort(s); err != nil {
		s = net.JoinHostPort(strings.Trim(s, "[]"), port)
	}
	return s, secure, nil
}

// redact is u for an error message, a password in it masked.
func redact(u *url.URL) string { return u.Redacted() }

// dialHandler is the handler to dial hp with: h, or h below TLS for an
// https host.
func (hp *hostPool) dialHandler(h engine.Handler) engine.Handler {
	if hp.sni == "" {
		return h
	}
	return hp.c.cfg.DialTLS(hp.sni, h)
}

// lookupNetIP looks a host name up; tests replace it (before they make a
// cluster) with a fake resolver.
var lookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
	return net.DefaultResolver.LookupNetIP(ctx, "ip", host)
}

// resolveTimeout bounds one lookup of a host name.
const resolveTimeout = 5 * time.Second

// resolve returns the address to dial for "host:port": an IPv4 address of
// the name's if it has one (most backends listen there), else its first.
func resolve(hp string) (netip.AddrPort, error) {
	addrs, err := resolveAll(context.Background(), hp)
	if err != nil {
		return netip.AddrPort{}, err
	}
	return preferred(addrs), nil
}

// resolveAll returns every address of "host:port" (one for an address
// literal); a lookup takes at most resolveTimeout, and ends with ctx.
func resolveAll(ctx context.Context, hp string) ([]netip.AddrPort, error) {
	if ap, err := netip.ParseAddrPort(hp); err == nil {
		return []netip.AddrPort{ap}, nil
	}
	host, port, err := net.SplitHostPort(hp)
	if err != nil {
		return nil, err
	}
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return nil, fmt.Errorf("bad port %q", port)
	}
	ctx, cancel := context.WithTimeout(ctx, resolveTimeout)
	defer cancel()
	addrs, err := lookupNetIP(ctx, host)
	if err != nil {
		return nil, err
	}
	if len(addrs) == 0 {
		return nil, fmt.Errorf("no address for %q", host)
	}
	aps := make([]netip.AddrPort, len(addrs))
	for i, a := range addrs {
		aps[i] = netip.AddrPortFrom(a.Unmap(), uint16(p))
	}
	return aps, nil
}

// preferred picks the address to dial among addrs (not empty): the first
// IPv4 one, else the first.
func preferred(addrs []netip.AddrPort) netip.AddrPort {
	for _, a := range addrs {
		if a.Addr().Is4() {
			return a
		}
	}
	return addrs[0]
}

// Name returns the cluster's name.
func (c *Cluster) Name() string { return c.name }

// Engine returns the engine the cluster's connections live on.
func (c *Cluster) Engine() *engine.Engine { return c.eng }

// HostSet returns the cluster's hosts with their health and ejection
// flags.
func (c *Cluster) HostSet() *HostSet { return c.set }

// Resources returns the cluster's resource counters.
func (c *Cluster) Resources() *Resources { return c.res }

// Breaker returns the cluster's breaker, or nil when it is off.
func (c *Cluster) Breaker() *Breaker { return c.brk }

// now reads the engine's clock.
func (c *Cluster) now() time.Time { return c.eng.Now() }

// jitter returns a random duration in [0, d).
func (c *Cluster) jitter(d time.Duration) time.Duration {
	if d <= 0 {
		return 0
	}
	c.rndMu.Lock()
	v := c.rnd.Uint64()
	c.rndMu.Unlock()
	return time.Duration(v % uint64(d))
}

// backoff returns the wait before retry number attempt (1-based).
func (c *Cluster) backoff(attempt int) time.Duration {
	c.rndMu.Lock()
	defer c.rndMu.Unlock()
	return Backoff(attempt, c.cfg.BackoffBase, c.cfg.BackoffMax, c.rnd)
}

// Drain takes host i out of rotation, lets its requests in flight finish
// and closes its idle connections; Undrain puts it back. It is what the
// admin API's drain does. A drained host is excluded from the HostSet
// (HostSet.SetExcluded): no new request goes to it, in panic mode
// included, and it does not count among the hosts when the panic
// threshold is computed. Its health is left alone: active checks go on
// and decide its health when it returns.
func (c *Cluster) Drain(i int) {
	hp := c.hosts[i]
	hp.draining.Store(true)
	c.set.SetExcluded(i, true)
	hp.closeIdle()
	c.st.drains.Add(1)
}

// Undrain returns host i, drained by Drain, to rotation (unless a health
// check or outlier detection holds it out).
func (c *Cluster) Undrain(i int) {
	hp := c.hosts[i]
	hp.draining.Store(false)
	c.set.SetExcluded(i, false)
}

// HostIndex returns the index of the host named name ("host:port" as
// configured), or -1.
func (c *Cluster) HostIndex(name string) int {
	for i, hp := range c.hosts {
		if hp.name == name {
			return i
		}
	}
	return -1
}

// Close stops the cluster's maintenance and health checks, fails its
// waiting requests with FailShutdown and closes its idle connections;
// requests in flight finish (or end with the engine).
func (c *Cluster) Close() error {
	if !c.closed.CompareAndSwap(false, true) {
		return nil
	}
	close(c.stop)
	c.wg.Wait()
	for _, hp := range c.hosts {
		hp.failPending(&Error{Failure: FailShutdown, Host: hp.name})
		hp.closeIdle()
	}
	for i := range c.overall {
		c.overall[i].idle()
	}
	return nil
}

// maintain runs the cluster's periodic work: outlier un-ejection, health
// checks and DNS re-resolution. A re-resolution round runs on a goroutine
// of its own, one round at a time, so that a slow or silent DNS server
// delays neither health checks nor un-ejection; Close cancels its lookups
// and waits for it.
func (c *Cluster) maintain() {
	defer c.wg.Done()
	tick := 100 * time.Millisecond
	t := time.NewTicker(tick)
	defer t.Stop()
	ctx, cancel := context.WithCancel(context.Background())
	var round chan struct{} // the running round's, closed when it ends; nil when none runs
	defer func() {
		cancel()
		if round != nil {
			<-round
		}
	}()
	var lastResolve time.Time
	for {
		select {
		case <-c.stop:
			if c.hc != nil {
				c.hc.stop()
			}
			return
		case <-t.C:
		}
		now := c.now()
		if c.out != nil {
			c.out.Apply(c.set, now)
		}
		if c.hc != nil {
			c.hc.run(now)
		}
		if round != nil {
			select {
			case <-round:
				round = nil
			default:
			}
		}
		if c.cfg.ResolveInterval > 0 && round == nil && now.Sub(lastResolve) >= c.cfg.ResolveInterval {
			if !lastResolve.IsZero() {
				round = make(chan struct{})
				go func(done chan struct{}) {
					defer close(done)
					c.reresolve(ctx)
				}(round)
			}
			lastResolve = now
		}
	}
}

// reresolve looks every named host up again, one after another. A host
// keeps its address while the address is still among the name's answers
// (a DNS server that rotates its answers does not churn the pool); when
// it is not, the host moves to the new preferred address: its idle
// connections close and the busy ones retire at release.
func (c *Cluster) reresolve(ctx context.Context) {
	for _, hp := range c.hosts {
		if _, err := netip.ParseAddrPort(hp.name); err == nil {
			continue
		}
		addrs, err := resolveAll(ctx, hp.name)
		if ctx.Err() != nil {
			return // closing
		}
		if err != nil {
			c.log.Warn("upstream: re-resolve failed; keeping the old address", "host", hp.name, "error", err)
			continue
		}
		old := hp.addr.Load()
		if slices.Contains(addrs, *old) {
			continue
		}
		ap := preferred(addrs)
		hp.addr.Store(&ap)
		hp.gen.Add(1) // connections to the old address retire at release
		hp.closeIdle()
		c.log.Info("upstream: host address changed", "host", hp.name, "old", old.String(), "new", ap.String())
	}
}

// pick chooses a host for a request with key, avoiding the host of a
// failed attempt when it can.
func (c *Cluster) pick(key uint64, avoid int) int {
	i := c.bal.Pick(key)
	if i >= 0 && i == avoid && len(c.hosts) > 1 {
		if j := c.bal.Pick(key + 1); j >= 0 {
			i = j
		}
	}
	if i >= 0 && c.hosts[i].draining.Load() {
		return -1
	}
	return i
}

// record feeds an attempt's result to outlier detection and the host's
// counters.
func (c *Cluster) record(hp *hostPool, r Result) { c.recordAt(hp, r, time.Time{}) }

// recordAt is record with the clock already read (zero: read it if
// needed).
func (c *Cluster) recordAt(hp *hostPool, r Result, now time.Time) {
	if c.out == nil {
		return
	}
	if now.IsZero() {
		now = c.now()
	}
	if e := c.out.Record(hp.idx, r, now); e != EjectNone {
		c.out.Apply(c.set, now)
		c.st.ejections.Add(1)
		c.log.Warn("upstream: host ejected", "host", hp.name, "why", e.String())
		hp.closeIdle()
	}
}
