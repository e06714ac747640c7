//go:build linux || darwin || freebsd

package engine

import (
	"golang.org/x/sys/unix"
)

// startLinger carries out CloseLinger's opLinger on c's loop: c stops
// being its handler's and lingers (linger.go). An Abort that came first, a
// connect still in progress or a peer that has closed its side already
// get the close they would have had.
func (l *loop) startLinger(c *Conn) {
	c.mu.Lock()
	abort := c.cs&csAbort != 0
	plain := abort || c.flags&(fDialing|fReadEOF) != 0
	if !plain {
		if c.closeErr == nil {
			c.closeErr = &errBox{}
		}
		c.closeErr.linger = lingerBox{}
	}
	empty := c.out == nil
	c.mu.Unlock()
	if plain {
		l.handleClose(c)
		return
	}
	c.flags = c.flags&^fMessage | fLinger
	c.dropInput() // unconsumed input is no one's any more
	c.msgStart = 0
	l.setState(c, StateLingering)
	if empty {
		l.lingerFlushed(c)
		return
	}
	l.updateInterest(c) // flushing, and reading to throw away meanwhile
	l.retime(c)         // the write timeout
}

// lingerFlushed shuts c's write side once its output is flushed, and
// lingers until the peer closes its side or a bound is hit.
func (l *loop) lingerFlushed(c *Conn) {
	c.mu.Lock()
	shut := c.closeErr.linger.shutAt != 0
	c.mu.Unlock()
	if shut {
		return
	}
	if c.flags&fReadEOF != 0 {
		l.lingerEnd(c, LingerEOF) // the peer closed while the output went out
		return
	}
	if err := unix.Shutdown(int(c.fd), unix.SHUT_WR); err != nil {
		l.closeNow(c, reasonFor(err), err)
		return
	}
	c.mu.Lock()
	c.closeErr.linger.shutAt = l.tick.Load()
	c.mu.Unlock()
	l.updateInterest(c)
	l.retime(c) // the linger timeout
}

// lingerRead reads what a lingering c's socket holds and throws it away;
// the peer's end of stream ends the linger.
func (l *loop) lingerRead(c *Conn) {
	n, err := readFD(int(c.fd), l.buf)
	if n > 0 {
		c.bytesIn.Add(uint64(n))
		l.stats.bytesIn.Add(uint64(n))
		c.mu.Lock()
		c.closeErr.linger.discarded += int64(n)
		c.mu.Unlock()
		if l.lingerFull(c) {
			l.updateInterest(c) // stop reading: the peer's sending stalls, not its reading
		}
		return
	}
	if err == unix.EAGAIN {
		return
	}
	if err != nil {
		l.closeNow(c, reasonFor(err), err)
		return
	}
	c.flags |= fReadEOF
	c.mu.Lock()
	shut := c.closeErr.linger.shutAt != 0
	c.mu.Unlock()
	if shut {
		l.lingerEnd(c, LingerEOF)
		return
	}
	l.updateInterest(c) // still flushing: lingerFlushed ends it
}

// lingerFull reports whether a lingering c has thrown LingerBytes away.
func (l *loop) lingerFull(c *Conn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return l.e.cfg.LingerBytes > 0 && c.closeErr.linger.discarded > int64(l.e.cfg.LingerBytes)
}

// lingerWant is the poll interest of a lingering c: reading, to throw the
// input away, until the peer's end of stream or LingerBytes.
func (l *loop) lingerWant(c *Conn) uint8 {
	if c.flags&fReadEOF != 0 || l.lingerFull(c) {
		return 0
	}
	return ioRead
}

// lingerDeadline is deadline for a lingering c: the write timeout while
// its output is flushed (the linger timeout if writes have none), then
// the linger timeout from the shutdown. lastWrite is the tick of the last
// write progress; queued says output is waiting.
func (l *loop) lingerDeadline(c *Conn, queued bool, lastWrite int64) (int64, CloseReason) {
	e := l.e
	c.mu.Lock()
	shutAt := c.closeErr.linger.shutAt
	c.mu.Unlock()
	if shutAt == 0 && queued {
		wt := e.cfg.WriteTimeout
		if wt <= 0 {
			wt = e.cfg.LingerTimeout
		}
		return lastWrite + e.ticks(wt) + 1, ReasonWriteTimeout
	}
	if shutAt == 0 {
		shutAt = l.tick.Load() // not reached: an empty queue is shut at once
	}
	return shutAt + e.ticks(e.cfg.LingerTimeout) + 1, ReasonReadTimeout
}

// lingerEnd ends c's linger with outcome o, counted once, and closes c:
// cleanly after the peer's end of stream, with a reset when a bound was
// hit, so that no orphaned socket keeps unsent output or waits in
// FIN_WAIT_2 for a peer that does not answer.
func (l *loop) lingerEnd(c *Conn, o LingerOutcome) {
	if o == LingerTimeout && l.lingerFull(c) {
		o = LingerBytes // the time ran out after the bytes did
	}
	c.flags &^= fLinger
	l.e.lingers[o].Add(1)
	if o != LingerEOF {
		_ = unix.SetsockoptLinger(int(c.fd), unix.SOL_SOCKET, unix.SO_LINGER, &unix.Linger{Onoff: 1, Linger: 0})
	}
	l.finishClose(c)
}

// lingerCut counts a linger that closeNow ends before lingerEnd could:
// an I/O error (err) or an abort.
func (l *loop) lingerCut(c *Conn, err error) {
	c.flags &^= fLinger
	o := LingerAborted
	if err != nil {
		o = LingerError
	}
	l.e.lingers[o].Add(1)
}
