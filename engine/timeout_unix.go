//go:build linux || darwin || freebsd

package engine

import (
	"syscall"
	"time"

	"github.com/warrenhq/warren/internal/timerwheel"
)

// retime makes sure c's timer fires no later than its earliest deadline.
func (l *loop) retime(c *Conn) {
	if c.flags&fRegistered == 0 {
		return
	}
	dl, r := l.deadline(c)
	if r == ReasonNone {
		return // the entry, if any, finds nothing due and lapses
	}
	if !c.timer.Scheduled() || dl < c.timer.Deadline() {
		l.wheel.Schedule(&c.timer, dl)
	}
}

// retimeAll re-times every connection on l after a timeout changed.
func (l *loop) retimeAll() {
	l.eachConn(l.retime)
}

// A connection's activity stamps are 32 bits (stamp, conn.go) and read back
// exactly only within 2^31 ticks of the loop's tick: 24 days at a 1 ms
// tick. A connection the wheel never looks at (no timeout), or one whose
// other stamp keeps it alive (a device that sends telemetry and is never
// written to: its lastWrite ages while lastRead stays fresh), would carry a
// stamp past that and read it back in the future, and its idle timeout
// would come weeks late. So each loop ages its stamps every
// 2^restampShift ticks (restamp): a stamp older than restampAge is set to
// that age, which is past every timeout (maxTimeoutTicks), so a deadline
// computed from it has passed, as it had before. Between sweeps a stamp
// ages at most restampAge + 2^restampShift + the loop's longest pause,
// well under 2^31.
const (
	restampShift = 28                  // a sweep every 2^28 ticks: 3.1 days at a 1 ms tick, 310 days at 100 ms
	restampAge   = maxTimeoutTicks + 2 // older than any deadline can reach back
)

// restampDue reports whether the loop's tick has crossed a sweep boundary
// since the wheel last advanced.
func (l *loop) restampDue(now int64) bool {
	return now>>restampShift != l.wheel.Now()>>restampShift
}

// restamp ages every stamp of l's connections older than restampAge to
// that age. It is O(descriptors) and runs once every 2^restampShift ticks.
func (l *loop) restamp(now int64) {
	old := stampOf(now - restampAge)
	aged := func(s stamp) bool { return s != 0 && now-s.at(now) > restampAge }
	l.eachConn(func(c *Conn) {
		if aged(c.lastRead) {
			c.lastRead = old
		}
		if aged(c.msgStart) {
			c.msgStart = old
		}
		c.mu.Lock()
		if aged(c.lastWrite) {
			c.lastWrite = old
		}
		c.mu.Unlock()
	})
}

// msTicks converts a per-connection timeout override in ms (0: def;
// negative: off) to ticks; 0 means no timeout.
func msTicks(e *Engine, ms int32, def time.Duration) int64 {
	switch {
	case ms < 0:
		return 0
	case ms > 0:
		return e.ticks(time.Duration(ms) * time.Millisecond)
	case def <= 0:
		return 0
	}
	return e.ticks(def)
}

// deadline returns c's earliest deadline in ticks and the reason it would
// close for, or ReasonNone when no timeout applies. Deadlines are one tick
// late rather than early: activity is stamped with the tick it happened in.
func (l *loop) deadline(c *Conn) (int64, CloseReason) {
	e := l.e
	now := l.tick.Load()
	c.mu.Lock()
	queued, lastWrite := c.out != nil, c.lastWrite
	c.mu.Unlock()
	lastRead := c.lastRead.at(now)
	best, why := int64(1<<62), ReasonNone
	if c.flags&fLinger != 0 {
		return l.lingerDeadline(c, queued, lastWrite.at(now)) // linger_unix.go
	}
	if c.flags&fDialing != 0 {
		if e.cfg.WriteTimeout > 0 {
			return lastRead + e.ticks(e.cfg.WriteTimeout) + 1, ReasonWriteTimeout
		}
		return best, why
	}
	if queued && e.cfg.WriteTimeout > 0 {
		best, why = lastWrite.at(now)+e.ticks(e.cfg.WriteTimeout)+1, ReasonWriteTimeout
	}
	if c.flags&fFlushClose != 0 || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
		return best, why // closing, or the handler is working: only writes are timed
	}
	idleDef, readDef := e.timeouts(c.ln)
	if c.pending() {
		if t := msTicks(e, c.readTO.Load(), readDef); t > 0 {
			if dl := c.msgStart.at(now) + t + 1; dl < best {
				best, why = dl, ReasonReadTimeout
			}
		}
	} else {
		ms, inputOnly := c.idleTimeout()
		if t := msTicks(e, ms, idleDef); t > 0 {
			last := lastRead
			if lastWrite != 0 && !inputOnly {
				last = max(last, lastWrite.at(now))
			}
			if last+t+1 < best {
				best, why = last+t+1, ReasonIdleTimeout
			}
		}
	}
	return best, why
}

// expire runs when c's timer entry fires: it closes c if a deadline has
// passed, or re-arms the entry for the next one.
func (l *loop) expire(ent *timerwheel.Entry) {
	c := connOfTimer(ent)
	if c.flags&fRegistered == 0 {
		return
	}
	now := l.tick.Load()
	dl, why := l.deadline(c)
	if why == ReasonNone {
		return
	}
	if dl > now {
		l.wheel.Schedule(&c.timer, dl)
		return
	}
	if c.flags&fLinger != 0 {
		l.lingerEnd(c, LingerTimeout) // linger_unix.go
		return
	}
	if why == ReasonWriteTimeout {
		if c.flags&fDialing != 0 {
			l.closeNow(c, ReasonIOError, syscall.ETIMEDOUT)
			return
		}
		l.closeNow(c, ReasonWriteTimeout, nil)
		return
	}
	if l.e.callOnTimeout(c, why) {
		if c.flags&fRegistered == 0 {
			return
		}
		c.lastRead = stampOf(now)
		if c.pending() {
			c.msgStart = stampOf(now)
		}
		l.retime(c)
		return
	}
	c.requestClose(why, nil, false)
}
