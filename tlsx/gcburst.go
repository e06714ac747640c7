package tlsx

import (
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"sync"
	"time"
)

// The garbage collector's target during a burst of handshakes
// (Config.BurstGCPercent). A full handshake leaves tens of kilobytes of
// garbage (crypto/tls's key shares, transcript hashes, messages); a
// process holding a small live heap under a low GOGC — warren serve's
// default is 25 — then collects every few tens of milliseconds through a
// reconnect storm, its mark phase running most of the time and charging
// assists to whatever goroutine allocates, the event loops included
// (docs/benchmarks.md §26). The target is process-wide, so the raise is
// too: the first Server to see a burst saves the percent it finds and
// sets its own; the last to see its burst end puts the saved one back,
// unless someone else changed it meanwhile.
var gcRaise struct {
	mu      sync.Mutex
	holders int // Servers in a burst
	prev    int // the percent found by the first holder
	set     int // the percent set (the highest a holder asked)
}

// gcPercent reads the garbage collector's current target.
func gcPercent() int {
	s := []rtmetrics.Sample{{Name: "/gc/gogc:percent"}}
	rtmetrics.Read(s)
	if s[0].Value.Kind() != rtmetrics.KindUint64 {
		return -1
	}
	return int(s[0].Value.Uint64())
}

// holdGC raises the target to at least pct; it reports false (nothing
// held) when the collector is off or its target already that high.
func holdGC(pct int) bool {
	gcRaise.mu.Lock()
	defer gcRaise.mu.Unlock()
	if gcRaise.holders == 0 {
		cur := gcPercent()
		if cur < 0 || cur >= pct || debug.SetGCPercent(pct) < 0 {
			return false
		}
		gcRaise.prev, gcRaise.set = cur, pct
	} else if pct > gcRaise.set {
		debug.SetGCPercent(pct)
		gcRaise.set = pct
	}
	gcRaise.holders++
	return true
}

// releaseGC ends a holdGC; the last holder puts the saved target back if
// the target is still the one set.
func releaseGC() {
	gcRaise.mu.Lock()
	defer gcRaise.mu.Unlock()
	gcRaise.holders--
	if gcRaise.holders == 0 && gcPercent() == gcRaise.set {
		debug.SetGCPercent(gcRaise.prev)
	}
}

// noteHandshake counts a handshake starting at now toward a burst: the
// first second window with Config.BurstRate of them raises the
// collector's target, and a window that ends with fewer puts it back (as
// does the quiet second after the last handshake, in collect).
func (s *Server) noteHandshake(now time.Time) {
	if s.cfg.BurstGCPercent <= 0 {
		return
	}
	s.burstMu.Lock()
	defer s.burstMu.Unlock()
	if now.Sub(s.winStart) >= time.Second {
		if s.raised && s.winCount < s.cfg.BurstRate {
			s.raised = false
			releaseGC()
		}
		s.winStart, s.winCount = now, 0
	}
	s.winCount++
	if !s.raised && s.winCount >= s.cfg.BurstRate && holdGC(s.cfg.BurstGCPercent) {
		s.raised = true
		s.m.bursts.Inc()
	}
}

// endBurst puts the collector's target back if this Server raised it.
func (s *Server) endBurst() {
	s.burstMu.Lock()
	defer s.burstMu.Unlock()
	if s.raised {
		s.raised = false
		releaseGC()
	}
	s.winCount = 0
}

// inBurst reports whether this Server holds the collector's target raised.
func (s *Server) inBurst() bool {
	s.burstMu.Lock()
	defer s.burstMu.Unlock()
	return s.raised
}
