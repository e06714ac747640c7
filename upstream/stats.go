package upstream

import (
	"sync/atomic"
	"time"
)

// clusterStats are a cluster's counters (atomics, no lock).
type clusterStats struct {
	cxTotal, cxConnectFail, cxClosed, cxOverflow, kaRetired    atomic.Uint64
	rqTotal, rqSuccess, rqOverflow, rqTimeout, rqPerTryTimeout atomic.Uint64
	rqRetry, rqRetryReused, retryOverflow, retryRateLimited    atomic.Uint64
	rqPipelined, rqPipelineReset                               atomic.Uint64
	rqOtherLoop                                                atomic.Uint64
	hedged, hedgeWon, rqRateLimited, rqThrottled               atomic.Uint64
	pendingTotal, pendingOverflow, pendingTimeout              atomic.Uint64
	breakerRejected, ejections, drains, upgrades               atomic.Uint64
	tlsOK, tlsFail                                             atomic.Uint64 // handshakes to https hosts
	rqActive                                                   atomic.Int64
	status                                                     [6]atomic.Uint64 // by class: 1xx..5xx at 1..5
	failures                                                   [numFailures]atomic.Uint64
}

func (s *clusterStats) countStatus(code int) {
	if k := code / 100; k >= 1 && k <= 5 {
		s.status[k].Add(1)
	}
}

func (s *clusterStats) countFailure(f Failure) {
	if f < numFailures {
		s.failures[f].Add(1)
	}
}

// hostStats are a host's counters.
type hostStats struct {
	cxTotal, cxConnectFail, kaRetired, rqTotal, rqFailed atomic.Uint64
	status                                               [6]atomic.Uint64
	hcOK, hcFail                                         atomic.Uint64
	overflow                                             [numHostResources]atomic.Uint64
}

// Per-host thresholds (PoolConfig), indexes of hostStats.overflow.
const (
	hostConnections = iota // MaxConnsPerHost
	hostPending            // MaxPendingPerHost
	hostRequests           // MaxRequestsPerHost
	hostRetries            // MaxRetriesPerHost
	numHostResources
)

var hostResourceNames = [numHostResources]string{"connections", "pending", "requests", "retries"}

func (s *hostStats) countStatus(code int) {
	if k := code / 100; k >= 1 && k <= 5 {
		s.status[k].Add(1)
	}
}

// ClusterStats is a snapshot of a Cluster's counters and gauges, in the
// spirit of Envoy's cluster.<name>.upstream_cx_* and upstream_rq_*.
type ClusterStats struct {
	Name string `json:"name"`
	// Connections.
	CxTotal       uint64 `json:"cx_total"`        // dialled
	CxActive      int64  `json:"cx_active"`       // open or connecting
	CxConnectFail uint64 `json:"cx_connect_fail"` // refused, unreachable or timed out
	CxClosed      uint64 `json:"cx_closed"`       // open connections that closed
	CxOverflow    uint64 `json:"cx_overflow"`     // dials refused by Thresholds.MaxConnections
	CxKeepAlive   uint64 `json:"cx_keepalive_retired"`
	// TLSHandshakes and TLSHandshakeFail count the TLS handshakes to
	// https hosts that succeeded and failed (a failure is also a connect
	// failure).
	TLSHandshakes    uint64 `json:"tls_handshakes"`
	TLSHandshakeFail uint64 `json:"tls_handshake_fail"`
	// Requests.
	RqTotal         uint64            `json:"rq_total"`
	RqActive        int64             `json:"rq_active"`
	RqSuccess       uint64            `json:"rq_success"` // complete responses passed on
	RqPendingActive int64             `json:"rq_pending_active"`
	RqPendingTotal  uint64            `json:"rq_pending_total"`
	RqPendingOver   uint64            `json:"rq_pending_overflow"`
	RqPendingTO     uint64            `json:"rq_pending_timeout"`
	RqOverflow      uint64            `json:"rq_overflow"` // Thresholds.MaxRequests
	RqTimeout       uint64            `json:"rq_timeout"`
	RqPerTryTimeout uint64            `json:"rq_per_try_timeout"`
	RqRetry         uint64            `json:"rq_retry"`
	RqRetryReused   uint64            `json:"rq_retry_reused_conn"`
	RqRetryOverflow uint64            `json:"rq_retry_overflow"`
	RqStatus        map[string]uint64 `json:"rq_status"`   // "2xx" → count
	RqFailures      map[string]uint64 `json:"rq_failures"` // Failure → count
	Upgrades        uint64            `json:"upgrades"`
	RqHedged        uint64            `json:"rq_hedged"`       // second attempts sent after ClusterConfig.HedgeDelay
	RqHedgeWon      uint64            `json:"rq_hedge_won"`    // of them, those that answered first
	RqRateLimited   uint64            `json:"rq_rate_limited"` // refused by ClusterConfig.RateLimit (its queue full)
	RqThrottled     uint64            `json:"rq_throttled"`    // delayed to their rate limit slot (requests and retries)
	// RqRetryRateLimited counts retries and hedges not made because the
	// rate limit's bucket was full (for a hedge: had no slot at once).
	RqRetryRateLimited uint64 `json:"rq_retry_rate_limited"`
	// RqPipelined counts requests written behind others on a connection
	// (PoolConfig.MaxPipeline); RqPipelineReset those of them whose
	// connection closed before their response started (retried).
	RqPipelined     uint64 `json:"rq_pipelined"`
	RqPipelineReset uint64 `json:"rq_pipeline_reset"`
	// RqOtherLoop counts requests started on a connection of another
	// event loop than their caller's (Request.Loop): their response is
	// read, and handed to the caller, on another thread. Idle connections
	// of the caller's loop are taken first; this counts the rest.
	RqOtherLoop uint64 `json:"rq_other_loop"`
	// Resource thresholds: the cluster's (Thresholds, by Resource name;
	// "retries" is the retry budget's when it is on: the retries it
	// admits in flight now, those in flight, its refusals)
	// and each host's limits (PoolConfig, "connections", "pending",
	// "requests"; -1 for none) with the times hosts hit them.
	CircuitBreakers map[string]ThresholdStats `json:"circuit_breakers"`
	HostLimits      map[string]int64          `json:"host_limits"`
	HostOverflow    map[string]uint64         `json:"host_overflow"`
	// Policies.
	BreakerState    string `json:"breaker_state"`
	BreakerRejected uint64 `json:"breaker_rejected"`
	BreakerTrips    uint64 `json:"breaker_trips"`
	Ejections       uint64 `json:"outlier_ejections"`
	// EjectionsByKind counts the ejections by what triggered them
	// (Ejection's names: consecutive_5xx, consecutive_gateway_failure,
	// failure_percentage), Envoy's ejections_enforced_*.
	EjectionsByKind map[string]uint64 `json:"outlier_ejections_by_kind"`
	EjectedNow      int               `json:"outlier_ejected"`
	Drains          uint64            `json:"drains"`
	Panic           bool              `json:"panic"`
	Hosts           []HostStats       `json:"hosts"`
}

// HostStats is one host's state and counters.
type HostStats struct {
	Name       string            `json:"name"`
	Addr       string            `json:"addr"`
	Healthy    bool              `json:"healthy"`
	Ejected    bool              `json:"ejected"`
	Draining   bool              `json:"draining"`
	Active     int64             `json:"rq_active"`
	Conns      int               `json:"cx_active"`
	Idle       int               `json:"cx_idle"`
	Pending    int               `json:"rq_pending"`
	CxTotal    uint64            `json:"cx_total"`
	CxFail     uint64            `json:"cx_connect_fail"`
	KeepAlive  uint64            `json:"cx_keepalive_retired"`
	RqTotal    uint64            `json:"rq_total"`
	RqFailed   uint64            `json:"rq_failed"`
	RqStatus   map[string]uint64 `json:"rq_status"`
	HealthOK   uint64            `json:"health_check_success"`
	HealthFail uint64            `json:"health_check_failure"`
	// Assigned counts the requests waiting for or on one of the host's
	// connections (against PoolConfig.MaxRequestsPerHost).
	Assigned int64 `json:"rq_assigned"`
	// Retrying counts the retries (and hedges) on the host now (against
	// PoolConfig.MaxRetriesPerHost).
	Retrying int64 `json:"rq_retrying"`
	// Overflow counts the times the host's thresholds were hit, by
	// "connections", "pending", "requests", "retries".
	Overflow map[string]uint64 `json:"overflow"`
}

// ThresholdStats is one of a cluster's resource thresholds: its limit (-1
// for none), the use now and the refusals so far.
type ThresholdStats struct {
	Limit    int64  `json:"limit"`
	Active   int64  `json:"active"`
	Overflow uint64 `json:"overflow"`
}

var classNames = [...]string{"", "1xx", "2xx", "3xx", "4xx", "5xx"}

// Stats returns a snapshot of the cluster's figures.
func (c *Cluster) Stats() ClusterStats {
	now := c.now()
	s := &c.st
	out := ClusterStats{Name: c.name,
		CxTotal: s.cxTotal.Load(), CxActive: c.res.Count(ResourceConnections), CxConnectFail: s.cxConnectFail.Load(),
		CxClosed: s.cxClosed.Load(), CxOverflow: s.cxOverflow.Load(), CxKeepAlive: s.kaRetired.Load(),
		RqTotal: s.rqTotal.Load(), RqActive: s.rqActive.Load(), RqSuccess: s.rqSuccess.Load(),
		RqPendingActive: c.res.Count(ResourcePending), RqPendingTotal: s.pendingTotal.Load(),
		RqPendingOver: s.pendingOverflow.Load(), RqPendingTO: s.pendingTimeout.Load(), RqOverflow: s.rqOverflow.Load(),
		RqTimeout: s.rqTimeout.Load(), RqPerTryTimeout: s.rqPerTryTimeout.Load(), RqRetry: s.rqRetry.Load(),
		RqRetryReused: s.rqRetryReused.Load(), RqRetryOverflow: s.retryOverflow.Load(),
		RqStatus: map[string]uint64{}, RqFailures: map[string]uint64{}, Upgrades: s.upgrades.Load(),
		BreakerRejected: s.breakerRejected.Load(), Ejections: s.ejections.Load(), Drains: s.drains.Load(),
		Panic: c.set.Panic(), BreakerState: "off", RqHedged: s.hedged.Load(), RqHedgeWon: s.hedgeWon.Load(),
		RqRateLimited: s.rqRateLimited.Load(), RqThrottled: s.rqThrottled.Load(), RqRetryRateLimited: s.retryRateLimited.Load(),
		RqPipelined: s.rqPipelined.Load(), RqPipelineReset: s.rqPipelineReset.Load(), RqOtherLoop: s.rqOtherLoop.Load(),
		TLSHandshakes: s.tlsOK.Load(), TLSHandshakeFail: s.tlsFail.Load(),
		CircuitBreakers: map[string]ThresholdStats{}, HostOverflow: map[string]uint64{},
		HostLimits: map[string]int64{"connections": int64(max(-1, c.pool.MaxConnsPerHost)),
			"pending": int64(c.pool.MaxPendingPerHost), "requests": int64(max(-1, c.pool.MaxRequestsPerHost)),
			"retries": int64(max(-1, c.pool.MaxRetriesPerHost))}}
	for r := ResourceConnections; r < numResources; r++ {
		out.CircuitBreakers[r.String()] = ThresholdStats{Limit: c.res.limit[r], Active: c.res.Count(r), Overflow: c.res.Overflows(r)}
	}
	if c.bud != nil {
		// The retry budget, not Thresholds.MaxRetries, bounds retries.
		out.CircuitBreakers[ResourceRetries.String()] = ThresholdStats{Limit: c.bud.Allowed(), Active: c.bud.Retries(), Overflow: c.bud.Refused()}
	}
	for _, n := range hostResourceNames {
		out.HostOverflow[n] = 0
	}
	for k := 1; k <= 5; k++ {
		out.RqStatus[classNames[k]] = s.status[k].Load()
	}
	for _, f := range Failures() {
		out.RqFailures[f.String()] = s.failures[f].Load()
	}
	if c.brk != nil {
		out.BreakerState = c.brk.State(now).String()
		out.BreakerTrips = c.brk.Stats(now).Trips
	}
	out.EjectionsByKind = map[string]uint64{}
	for e := EjectConsecutive5xx; e < numEjections; e++ {
		out.EjectionsByKind[e.String()] = 0
	}
	if c.out != nil {
		os := c.out.Stats(now)
		out.EjectedNow = os.Ejected
		for e := EjectConsecutive5xx; e < numEjections; e++ {
			out.EjectionsByKind[e.String()] = os.Ejections(e)
		}
	}
	for i, hp := range c.hosts {
		conns, idle, pending := hp.counts()
		h := HostStats{Name: hp.name, Addr: hp.addr.Load().String(), Healthy: c.set.Healthy(i), Ejected: c.set.Ejected(i),
			Draining: hp.draining.Load(), Active: c.set.Active(i), Conns: conns, Idle: idle, Pending: pending,
			CxTotal: hp.st.cxTotal.Load(), CxFail: hp.st.cxConnectFail.Load(), KeepAlive: hp.st.kaRetired.Load(),
			RqTotal: hp.st.rqTotal.Load(), RqFailed: hp.st.rqFailed.Load(), RqStatus: map[string]uint64{},
			HealthOK: hp.st.hcOK.Load(), HealthFail: hp.st.hcFail.Load(), Assigned: hp.requests.Load(), Retrying: hp.retries.Load(),
			Overflow: map[string]uint64{}}
		for k, n := range hostResourceNames {
			v := hp.st.overflow[k].Load()
			h.Overflow[n] = v
			out.HostOverflow[n] += v
		}
		for k := 1; k <= 5; k++ {
			h.RqStatus[classNames[k]] = hp.st.status[k].Load()
		}
		out.Hosts = append(out.Hosts, h)
	}
	return out
}

var _ = time.Second
