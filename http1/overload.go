package http1

import (
	"math"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/internal/procstat"
)

// Overload adapts keep-alive to pressure, in the spirit of Envoy's overload
// actions reduce_timeouts and disable_http_keepalive. Pressure is the
// larger of open connections / Engine.MaxConns and process RSS /
// MemoryLimit, sampled every Interval. From ReduceAt up to full pressure the
// idle timeout shrinks linearly from IdleTimeout to MinIdleTimeout; at
// DisableKeepAliveAt responses carry Connection: close. Each level is left
// once pressure falls 0.05 below where it was entered. The zero value is
// enabled with the defaults below.
type Overload struct {
	// Disabled turns the policy off.
	Disabled bool
	// MemoryLimit is the process RSS, in bytes, counted as full memory
	// pressure. Zero means memory is not watched.
	MemoryLimit int64
	// ReduceAt is the pressure where the idle timeout starts to shrink.
	// Zero means 0.8.
	ReduceAt float64
	// DisableKeepAliveAt is the pressure where keep-alive is switched off.
	// Zero means 0.95.
	DisableKeepAliveAt float64
	// MinIdleTimeout is the idle timeout at full pressure. Zero means 1 s.
	MinIdleTimeout time.Duration
	// Interval is how often pressure is sampled. Zero means 1 s.
	Interval time.Duration
}

func (o Overload) withDefaults() Overload {
	if o.ReduceAt <= 0 {
		o.ReduceAt = 0.8
	}
	if o.DisableKeepAliveAt <= 0 {
		o.DisableKeepAliveAt = 0.95
	}
	if o.MinIdleTimeout <= 0 {
		o.MinIdleTimeout = time.Second
	}
	if o.Interval <= 0 {
		o.Interval = time.Second
	}
	return o
}

// OverloadStatus is the adaptive keep-alive policy's current decision.
type OverloadStatus struct {
	// Pressure is the last sampled pressure, 0 to 1 (or more).
	Pressure float64
	// Reducing reports that the idle timeout is shrunk.
	Reducing bool
	// KeepAlive reports whether connections are kept alive.
	KeepAlive bool
	// IdleTimeout is the effective idle timeout.
	IdleTimeout time.Duration
}

// Level returns 0 for normal, 1 while the idle timeout is reduced and 2
// while keep-alive is off, for a metric.
func (s OverloadStatus) Level() int {
	switch {
	case !s.KeepAlive:
		return 2
	case s.Reducing:
		return 1
	}
	return 0
}

type overloadState struct {
	s         *Server
	keepAlive atomic.Bool
	reducing  atomic.Bool
	pressure  atomic.Uint64 // float64 bits
	idle      atomic.Int64  // keep-alive idle timeout applied, ns; 0 before the first sample
	rss       func() int64
}

func (o *overloadState) init(s *Server) {
	o.s = s
	o.keepAlive.Store(true)
	o.rss = processRSS
}

func (o *overloadState) run() {
	cfg := o.s.cfg.Overload
	if cfg.Disabled {
		return
	}
	t := time.NewTicker(cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-o.s.stopOv:
			return
		case <-o.s.eng.Done():
			return
		case <-t.C:
			o.sample()
		}
	}
}

// sample measures pressure and applies the policy.
func (o *overloadState) sample() {
	s := o.s
	cfg := s.cfg.Overload
	p := 0.0
	if max := s.eng.Config().MaxConns; max > 0 {
		p = float64(s.eng.NumConns()) / float64(max)
	}
	if cfg.MemoryLimit > 0 {
		if m := float64(o.rss()) / float64(cfg.MemoryLimit); m > p {
			p = m
		}
	}
	o.apply(p)
}

// apply sets the policy for pressure p, with hysteresis.
func (o *overloadState) apply(p float64) {
	s := o.s
	cfg := s.cfg.Overload
	o.pressure.Store(math.Float64bits(p))
	const hyst = 0.05
	ka := o.keepAlive.Load()
	if ka && p >= cfg.DisableKeepAliveAt {
		ka = false
	} else if !ka && p < cfg.DisableKeepAliveAt-hyst {
		ka = true
	}
	o.keepAlive.Store(ka)
	red := o.reducing.Load()
	if !red && p >= cfg.ReduceAt {
		red = true
	} else if red && p < cfg.ReduceAt-hyst {
		red = false
	}
	o.reducing.Store(red)
	base := s.cfg.IdleTimeout
	if base <= 0 {
		return
	}
	idle := base
	if red {
		f := (p - cfg.ReduceAt) / (1 - cfg.ReduceAt)
		f = math.Max(0, math.Min(1, f))
		idle = base - time.Duration(f*float64(base-cfg.MinIdleTimeout))
		if idle < cfg.MinIdleTimeout {
			idle = cfg.MinIdleTimeout
		}
		idle = idle.Round(100 * time.Millisecond)
	}
	o.idle.Store(int64(idle))
	for _, ln := range s.listeners() {
		ln.SetIdleTimeout(idle)
	}
}

// Overload returns the adaptive keep-alive policy's current decision.
func (s *Server) Overload() OverloadStatus {
	return OverloadStatus{
		Pressure:    math.Float64frombits(s.ov.pressure.Load()),
		Reducing:    s.ov.reducing.Load(),
		KeepAlive:   s.ov.keepAlive.Load(),
		IdleTimeout: s.ov.idleTimeout(),
	}
}

// idleTimeout returns the keep-alive idle timeout in force.
func (o *overloadState) idleTimeout() time.Duration {
	if d := o.idle.Load(); d != 0 {
		return time.Duration(d)
	}
	return o.s.cfg.IdleTimeout
}

// processRSS returns the process's resident set size in bytes.
func processRSS() int64 { return int64(procstat.RSS()) }
