//go:build linux || darwin || freebsd

package engine

import (
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/pool"
)

// register adds c to l: its slot in the table, its poll interest (write,
// for a connect in progress) and its counts; then OnOpen, or for a connect
// in progress its timeout. A stopping loop closes c instead.
func (l *loop) register(c *Conn) {
	e := l.e
	if l.stopping {
		unix.Close(int(c.fd))
		e.release(c)
		return
	}
	slot := fdSlot(int(c.fd))
	dialing := c.flags&fDialing != 0
	if err := l.poller.Add(int(c.fd), !dialing, dialing); err != nil {
		unix.Close(int(c.fd))
		e.release(c)
		l.stats.closed[ReasonIOError].Add(1)
		return
	}
	slot.Store(c)
	c.interest = ioRead
	if dialing {
		c.interest = ioWrite
	}
	c.flags |= fRegistered
	now := l.tick.Load()
	c.lastRead = stampOf(now)
	l.stats.accepted.Add(1)
	l.stats.conns.Add(1)
	l.stats.states[StateNew].Add(1)
	if dialing {
		l.retime(c) // the connect timeout
		return
	}
	l.opened(c)
}

// opened runs OnOpen for a connection that is ready for I/O.
func (l *loop) opened(c *Conn) {
	e := l.e
	if c.hcaps&capOpen != 0 {
		if c.inline() {
			e.callOnOpen(c)
		} else {
			c.inflight.Add(1)
			e.workers.submit(c, func() {
				defer c.taskDone()
				e.callOnOpen(c)
			}, true)
		}
	}
	if c.flags&fRegistered == 0 {
		return // closed by OnOpen
	}
	if e.draining.Load() {
		l.drainConn(c)
	}
	l.updateState(c)
	l.retime(c)
}

// quiet reports whether c has nothing in progress: no pending input, no
// handler work and no queued output.
func (l *loop) quiet(c *Conn) bool {
	if c.pending() || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
		return false
	}
	c.mu.Lock()
	empty := c.out == nil
	c.mu.Unlock()
	return empty
}

// updateState moves c between Active and Idle (or Draining), and closes a
// draining connection as soon as it is quiet, or a half-closed one once
// its last work is done.
func (l *loop) updateState(c *Conn) {
	if c.flags&(fRegistered|fLinger) != fRegistered { // a lingering close keeps StateLingering
		return
	}
	busy := c.pending() || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0
	to := StateIdle
	if c.flags&fDrainQuiet != 0 || (l.e.draining.Load() && c.State() == StateDraining) {
		to = StateDraining
	} else if busy {
		to = StateActive
	}
	l.setState(c, to)
	working := c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0
	switch {
	case c.flags&fReadEOF != 0 && !working:
		// Half-closed and nothing left to answer: a partial message can
		// no longer complete.
		c.requestClose(ReasonPeerClosed, nil, false)
	case c.flags&fDrainQuiet != 0 && !busy:
		c.requestClose(ReasonShutdown, nil, false)
	}
}

// setState moves c to state to, keeping the per-state counts, and calls
// OnStateChange.
func (l *loop) setState(c *Conn, to State) {
	from := State(c.state.Load())
	if from == to {
		return
	}
	c.state.Store(uint32(to))
	l.stats.states[from].Add(-1)
	if to != StateClosed {
		l.stats.states[to].Add(1)
	}
	l.e.callOnStateChange(c, from, to)
}

// handleClose carries out a close requested with requestClose.
func (l *loop) handleClose(c *Conn) {
	c.mu.Lock()
	abort, empty := c.cs&csAbort != 0, c.out == nil
	c.mu.Unlock()
	if abort || empty {
		l.finishClose(c)
		return
	}
	c.flags |= fFlushClose
	l.updateInterest(c)
	l.retime(c)
}

// finishClose closes c now with the reason and error requestClose
// recorded (ReasonLocal if none).
func (l *loop) finishClose(c *Conn) {
	c.mu.Lock()
	r, err := c.why(), c.closeError()
	c.mu.Unlock()
	if r == ReasonNone {
		r = ReasonLocal
	}
	l.closeNow(c, r, err)
}

// closeNow closes c's descriptor and runs OnClose. It is idempotent.
func (l *loop) closeNow(c *Conn, r CloseReason, err error) {
	if c.flags&fRegistered == 0 {
		return
	}
	e := l.e
	if c.flags&fLinger != 0 {
		l.lingerCut(c, err) // linger_unix.go: counted once, as cut short
	}
	c.mu.Lock()
	if c.why() != ReasonNone {
		r, err = c.why(), c.closeError()
	} else {
		c.setWhy(r)
		c.setCloseError(err)
	}
	detail := c.closeDetail()
	c.cs |= csClosed | csClosing
	if c.out != nil && c.out.sending {
		l.ringOrphan(c) // uring_linux.go: its buffers stay pinned until the send completes
	}
	c.releaseOutLocked(e)
	c.mu.Unlock()

	c.flags &^= fRegistered
	fdSlot(int(c.fd)).Store(nil)
	// Counted before the descriptor closes, so a peer that saw the close
	// sees it counted.
	l.stats.observeDuration(time.Duration(e.cfg.Clock.Now().UnixNano() - c.created))
	l.stats.conns.Add(-1)
	l.stats.closed[r].Add(1)
	if detail != nil {
		e.countDetail(c, r, detail)
	}
	unix.Close(int(c.fd))
	l.wheel.Remove(&c.timer)
	c.dropInput()
	l.setState(c, StateClosed)
	e.release(c)
	if c.hcaps&capClose != 0 {
		if h := c.h; c.inline() {
			e.callOnClose(c, h, r, err)
		} else {
			e.workers.submit(c, func() { e.callOnClose(c, h, r, err) }, true)
		}
	}
}

// drainConn starts a connection's goodbye: its protocol's OnDrain, then,
// unless the protocol closes c itself, a close as soon as c is quiet. The
// engine tracks quiet for whichever handler is current, so a response
// finishing on a worker while the drain starts cannot leave c open.
func (l *loop) drainConn(c *Conn) {
	if c.flags&fLinger != 0 {
		return // closing already, within the linger's bounds
	}
	l.setState(c, StateDraining)
	if l.e.callOnDrain(c) {
		return
	}
	if c.flags&fRegistered == 0 {
		return
	}
	c.flags |= fDrainQuiet
	l.updateState(c)
}

// drainAll starts the drain of every connection on l (Shutdown).
func (l *loop) drainAll() {
	l.eachConn(func(c *Conn) {
		if c.flags&fRegistered != 0 {
			l.drainConn(c)
		}
	})
}

// stopAccepting closes l's listening sockets.
func (l *loop) stopAccepting() {
	for _, ln := range l.lns {
		if !ln.paused {
			l.poller.Del(ln.fd)
		}
		unix.Close(ln.fd)
		ln.fd, ln.paused = -1, true
	}
	l.lns = nil
}

// closeAll closes every connection on l at once, with ReasonShutdown.
func (l *loop) closeAll() {
	l.eachConn(func(c *Conn) { l.closeNow(c, ReasonShutdown, nil) })
}

// stop ends l: it closes its listeners and connections, closes the
// mailbox and settles what was left in it (connections waiting to be
// registered are closed, a folding loop is handed back), and closes the
// poller, which ends run.
func (l *loop) stop() {
	l.stopAccepting()
	l.closeAll()
	l.stopping = true
	l.mbMu.Lock()
	l.closedMB = true
	rest := l.mb
	l.mb = nil
	l.mbMu.Unlock()
	for i := range rest {
		o := &rest[i]
		if o.kind == opRegister {
			unix.Close(int(o.c.fd))
			l.e.release(o.c)
		} else if o.kind == opAdopt {
			o.fn() // hands the folding loop straight back
		} else if o.buf != nil {
			pool.Put(o.buf)
		}
	}
	if l.ring != nil {
		l.stopRing() // uring_linux.go
	}
	l.poller.Close()
}
