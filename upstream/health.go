package upstream

import (
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// HealthConfig configures active health checks. They run when Interval is
// positive: every Interval (plus up to Jitter) each host gets a check on
// its own connection on the engine's loops, never a pooled one.
type HealthConfig struct {
	// Interval between checks of a host. Zero or negative disables active
	// checks.
	Interval time.Duration
	// Timeout bounds one check, connect (and TLS handshake) included; the
	// check then fails. It is read on the engine's clock by the cluster's
	// maintenance loop, so a check ends up to 100ms after it. Zero means
	// 1s.
	Timeout time.Duration
	// Jitter adds a random delay up to this much to each interval, so
	// hosts are not checked in lockstep. Zero means a tenth of Interval;
	// negative means none.
	Jitter time.Duration
	// Path makes the check an HTTP GET of this path, healthy on a 2xx or
	// 3xx; empty makes it a TCP connect.
	Path string
	// Host is the Host header of HTTP checks. Empty means the host's
	// "host:port".
	Host string
	// UnhealthyThreshold is the failed checks in a row that mark a host
	// unhealthy (out of rotation, idle connections closed). Zero means 2.
	UnhealthyThreshold int
	// HealthyThreshold is the passed checks in a row that bring it back.
	// Zero means 2.
	HealthyThreshold int
}

// Defaults of HealthConfig.
const (
	DefaultHealthTimeout            = time.Second
	DefaultHealthUnhealthyThreshold = 2
	DefaultHealthHealthyThreshold   = 2
)

type healthChecker struct {
	c     *Cluster
	cfg   HealthConfig
	hosts []hcHost
	wg    sync.WaitGroup
}

type hcHost struct {
	next     time.Time
	inFlight atomic.Bool
	// probe is the last check started and deadline when it times out;
	// only the maintenance goroutine touches them.
	probe     *probe
	deadline  time.Time
	mu        sync.Mutex // guards the counts and state
	fails, ok int
	unhealthy bool
}

func newHealthChecker(c *Cluster, cfg HealthConfig) *healthChecker {
	if cfg.Timeout <= 0 {
		cfg.Timeout = DefaultHealthTimeout
	}
	if cfg.Jitter == 0 {
		cfg.Jitter = cfg.Interval / 10
	}
	if cfg.UnhealthyThreshold <= 0 {
		cfg.UnhealthyThreshold = DefaultHealthUnhealthyThreshold
	}
	if cfg.HealthyThreshold <= 0 {
		cfg.HealthyThreshold = DefaultHealthHealthyThreshold
	}
	return &healthChecker{c: c, cfg: cfg, hosts: make([]hcHost, len(c.hosts))}
}

// run times out the checks in flight past their deadline at now and
// starts the checks that are due; the maintenance goroutine calls it.
func (h *healthChecker) run(now time.Time) {
	for i := range h.hosts {
		hh := &h.hosts[i]
		if hh.probe != nil && hh.inFlight.Load() && !now.Before(hh.deadline) {
			hh.probe.timeout()
		}
		if h.due(i, now) {
			h.check(i, now)
		}
	}
}

// due reports whether host i's check is due at now: its time has come and
// its last check is done. It then marks the check in flight and schedules
// the next one Interval plus a random jitter in [0, Jitter) after now.
// Only the maintenance goroutine (or a test in its place) calls it.
func (h *healthChecker) due(i int, now time.Time) bool {
	hh := &h.hosts[i]
	if now.Before(hh.next) || hh.inFlight.Load() {
		return false
	}
	hh.next = now.Add(h.cfg.Interval + h.c.jitter(h.cfg.Jitter))
	hh.inFlight.Store(true)
	return true
}

// stop ends the checks in flight, without a result; the maintenance
// goroutine calls it when the cluster closes.
func (h *healthChecker) stop() {
	for i := range h.hosts {
		if p := h.hosts[i].probe; p != nil {
			p.cancel()
		}
	}
}

// check starts one check of host i at now.
func (h *healthChecker) check(i int, now time.Time) {
	hp := h.c.hosts[i]
	p := &probe{h: h, i: i}
	h.hosts[i].probe, h.hosts[i].deadline = p, now.Add(h.cfg.Timeout)
	if h.cfg.Path != "" {
		host := h.cfg.Host
		if host == "" {
			host = hp.name
		}
		p.req = []byte("GET " + h.cfg.Path + " HTTP/1.1\r\nHost: " + host +
			"\r\nUser-Agent: warren-health-check\r\nConnection: close\r\n\r\n")
	}
	conn, err := h.c.eng.DialHandler(*hp.addr.Load(), netip.Addr{}, hp.dialHandler(p))
	if err != nil {
		p.done(false)
		return
	}
	p.conn.Store(conn)
}

// result applies one check's outcome to host i.
func (h *healthChecker) result(i int, ok bool) {
	c := h.c
	hp := c.hosts[i]
	hh := &h.hosts[i]
	hh.mu.Lock()
	var flip, nowHealthy bool
	if ok {
		hp.st.hcOK.Add(1)
		hh.ok++
		hh.fails = 0
		if hh.unhealthy && hh.ok >= h.cfg.HealthyThreshold {
			hh.unhealthy, flip, nowHealthy = false, true, true
		}
	} else {
		hp.st.hcFail.Add(1)
		hh.fails++
		hh.ok = 0
		if !hh.unhealthy && hh.fails >= h.cfg.UnhealthyThreshold {
			hh.unhealthy, flip = true, true
		}
	}
	hh.mu.Unlock()
	if !flip {
		return
	}
	if nowHealthy {
		c.set.SetHealthy(i, true)
		c.log.Info("upstream: host healthy", "host", hp.name)
		return
	}
	c.set.SetHealthy(i, false)
	hp.closeIdle()
	c.log.Warn("upstream: host unhealthy", "host", hp.name)
}

// probe is one health check's connection handler.
type probe struct {
	engine.NopHandler
	h      *healthChecker
	i      int
	req    []byte
	conn   atomic.Pointer[engine.Conn]
	once   sync.Once
	parser http1.ResponseParser
	resp   http1.Response
}

// Inline runs the probe on the loop.
func (p *probe) Inline() bool { return true }

// Protocol names health check connections.
func (p *probe) Protocol() string { return "health_check" }

func (p *probe) OnOpen(c *engine.Conn) {
	if p.req == nil {
		p.done(true)
		c.CloseWithReason(engine.ReasonLocal)
		return
	}
	c.Write(p.req)
}

func (p *probe) OnData(c *engine.Conn, in []byte) int {
	if p.req == nil {
		return len(in)
	}
	n, err := p.parser.Parse(in, "GET", &p.resp, nil)
	if err != nil {
		p.done(false)
		c.Abort(engine.ReasonProtocolError)
		return len(in)
	}
	if n == 0 {
		return 0
	}
	if p.resp.StatusCode < 200 {
		return n
	}
	p.done(p.resp.StatusCode < 400)
	c.CloseWithReason(engine.ReasonLocal)
	return len(in)
}

func (p *probe) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	p.done(false) // no-op when the result is in
}

// timeout fails the check and closes its connection.
func (p *probe) timeout() {
	p.done(false)
	if c := p.conn.Load(); c != nil {
		c.Abort(engine.ReasonLocal)
	}
}

// cancel ends the check without a result (the cluster closes).
func (p *probe) cancel() {
	p.once.Do(func() { p.h.hosts[p.i].inFlight.Store(false) })
	if c := p.conn.Load(); c != nil {
		c.Abort(engine.ReasonLocal)
	}
}

func (p *probe) done(ok bool) {
	p.once.Do(func() {
		p.h.result(p.i, ok)
		p.h.hosts[p.i].inFlight.Store(false)
	})
}
