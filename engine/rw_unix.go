//go:build linux || darwin || freebsd

package engine

import (
	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/pool"
)

// redeliver calls OnData again with pending input once dispatched work is
// done: a protocol that stopped parsing while a request was in flight (HTTP
// pipelining) resumes where it left off without waiting for new bytes.
func (l *loop) redeliver(c *Conn) {
	in := c.input()
	if len(in) == 0 || c.inflight.Load() > 0 || c.flags&(fRegistered|fWorkerBusy) != fRegistered {
		return
	}
	if !c.inline() {
		l.dispatchInput(c, in, true)
		return
	}
	// InjectInput from this OnData waits for it (inject).
	c.flags = c.flags&^fNewHandler | fInOnData
	used := l.e.callOnData(c, in)
	// A handler that hands c on (SetHandler) leaves the rest to the new
	// one, as in deliver.
	for c.flags&(fRegistered|fNewHandler|fInjected) == fRegistered|fNewHandler && used < len(in) && c.inline() {
		c.flags &^= fNewHandler
		used += l.e.callOnData(c, in[used:])
	}
	c.flags &^= fInOnData
	if l.injc == c {
		l.injected(c, in, used, true)
		return
	}
	if c.flags&fRegistered == 0 {
		return
	}
	if used > 0 {
		l.keepRest(c, in, used, true)
		l.updateState(c)
	}
	if c.flags&fNewHandler != 0 {
		c.flags &^= fNewHandler
		l.redeliver(c) // the new handler runs on the worker pool
	}
}

// onReadable reads what c's socket holds into l's shared buffer and hands
// it on. At end of file it calls OnEOF and closes c once nothing is left to
// do; on an error it closes c.
func (l *loop) onReadable(c *Conn) {
	if c.flags&fLinger != 0 {
		l.lingerRead(c) // linger_unix.go
		return
	}
	n, err := readFD(int(c.fd), l.buf)
	if n > 0 {
		l.onInput(c, l.buf[:n])
		return
	}
	if err == unix.EAGAIN {
		return
	}
	if err == nil { // end of file
		l.readEOF(c)
		return
	}
	l.closeNow(c, reasonFor(err), err)
}

// readEOF handles the end of c's input: OnEOF, then a close once nothing
// is left to do.
func (l *loop) readEOF(c *Conn) {
	c.flags |= fReadEOF
	l.updateInterest(c)
	l.e.callOnEOF(c)
	if c.flags&fRegistered == 0 {
		return
	}
	if c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
		return // updateState closes it once the work in flight is done
	}
	// Input left while work was in flight (a request pipelined behind
	// one on a worker) may not have been redelivered yet: the FIN can
	// be read before the loop handles the work's completion.
	if c.in != nil {
		l.redeliver(c)
		if c.flags&fRegistered == 0 || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
			return
		}
	}
	if l.quiet(c) {
		l.closeNow(c, ReasonPeerClosed, nil)
	} else {
		c.requestClose(ReasonPeerClosed, nil, false) // flush queued output first
	}
}

// onInput passes data read from c to OnData, after any pending input, and
// keeps what OnData leaves. A handler on the worker pool gets a pooled
// copy, and reading from c pauses until it is done (dataDone).
func (l *loop) onInput(c *Conn, data []byte) {
	n := len(data)
	c.bytesIn.Add(uint64(n))
	l.stats.bytesIn.Add(uint64(n))
	c.lastRead = stampOf(l.tick.Load())
	l.deliver(c, data)
}

// inject runs bytes already read through c's transform (InjectInput).
// Called from c's own OnData, it does not run OnData again inside it: it
// keeps a copy of pending (l.inj, bounded by MaxInputBytes) for deliver or
// redeliver to hand on once that OnData has returned (injected).
func (l *loop) inject(c *Conn, pending []byte) {
	if c.flags&fInOnData != 0 && (l.injc == nil || l.injc == c) {
		if c.flags&fRegistered == 0 {
			return
		}
		if len(l.inj)+len(pending) > l.e.cfg.MaxInputBytes {
			pool.Put(l.inj)
			l.injc, l.inj = nil, nil
			c.flags &^= fInjected
			l.closeNow(c, ReasonLimitReached, nil)
			return
		}
		l.inj = append(pool.Grow(l.inj, len(pending)), pending...)
		l.injc = c
		c.flags |= fInjected
		return
	}
	// Another connection (or c from outside its OnData): deliver now,
	// with the injection state of the OnData around this call set aside.
	injc, inj := l.injc, l.inj
	l.injc, l.inj = nil, nil
	l.deliver(c, pending)
	l.injc, l.inj = injc, inj
}

// injected hands on the bytes c's OnData injected (l.inj) once that OnData
// has returned: data[used:] is what it left of its input (c's input when
// fromIn). The injected bytes come from inside what it consumed, so they go
// through c's transform and become c's input ahead of data[used:], and
// redeliver hands that to c's handler (the new one, after SetHandler).
func (l *loop) injected(c *Conn, data []byte, used int, fromIn bool) {
	inj := l.inj
	l.injc, l.inj = nil, nil
	c.flags &^= fInjected
	defer pool.Put(inj)
	if c.flags&fRegistered == 0 {
		return // closed during OnData; closeNow released c's input
	}
	if c.flags&fTransform != 0 {
		t := c.Transform()
		plain, err := t.Open(c, inj)
		defer t.OpenDone()
		if err != nil {
			defer c.transformFailed(err)
		}
		if c.flags&fRegistered == 0 {
			return
		}
		inj = plain
	}
	n := c.joinInjected(inj, data[used:], fromIn, l.e.cfg.MaxInputBytes)
	if n < 0 {
		l.closeNow(c, ReasonLimitReached, nil)
		return
	}
	if n == 0 {
		if c.flags&fMessage == 0 {
			c.msgStart = 0
		}
	} else if c.msgStart == 0 || used > 0 {
		c.msgStart = stampOf(l.tick.Load())
		l.retime(c)
	}
	l.updateState(c)
	c.flags &^= fNewHandler
	l.redeliver(c)
}

// deliver is onInput after the counting: data goes through c's transform,
// if it has one, and on to OnData.
func (l *loop) deliver(c *Conn, data []byte) {
	e := l.e
	if c.flags&fTransform != 0 {
		t := c.Transform()
		plain, err := t.Open(c, data)
		defer t.OpenDone()
		if err != nil {
			defer c.transformFailed(err)
		}
		if len(plain) == 0 || c.flags&fRegistered == 0 {
			return
		}
		data = plain
	}
	n := len(data)
	fromIn := false
	if in := c.input(); in != nil {
		if len(in)+n > e.cfg.MaxInputBytes {
			l.closeNow(c, ReasonLimitReached, nil)
			return
		}
		in = append(pool.Grow(in, n), data...)
		c.setInput(in)
		data, fromIn = in, true
	}
	if !c.inline() {
		l.dispatchInput(c, data, fromIn)
		return
	}
	// InjectInput from this OnData waits for it (inject).
	c.flags = c.flags&^fNewHandler | fInOnData
	used := e.callOnData(c, data)
	// A handler that handed c to another (SetHandler: an HTTP upgrade)
	// leaves the rest of the input to the new one.
	for c.flags&(fRegistered|fNewHandler|fInjected) == fRegistered|fNewHandler && used < len(data) && c.inline() {
		c.flags &^= fNewHandler
		used += e.callOnData(c, data[used:])
	}
	c.flags &^= fInOnData
	if c.flags&(fRegistered|fInjected) != fRegistered {
		if l.injc == c {
			l.injected(c, data, used, fromIn)
		}
		return // closed during OnData; closeNow released c's input
	}
	l.keepRest(c, data, used, fromIn)
	l.updateState(c)
	if c.flags&fNewHandler != 0 {
		c.flags &^= fNewHandler
		l.redeliver(c) // the new handler runs on the worker pool
	}
}

// dispatchInput hands data to c's handler on the worker pool; reading from
// c pauses until it is done. fromIn says data is c's input (c.input()).
func (l *loop) dispatchInput(c *Conn, data []byte, fromIn bool) {
	buf := data
	if !fromIn {
		buf = append(pool.Get(len(data))[:0], data...)
	} else {
		c.takeInput() // buf, now the worker's
	}
	c.flags |= fWorkerBusy
	l.updateInterest(c)
	l.updateState(c)
	l.e.workers.submit(c, func() {
		used := l.e.callOnData(c, buf)
		var rest []byte
		if used < len(buf) {
			rest = buf[:copy(buf, buf[used:])]
		} else {
			pool.Put(buf)
		}
		l.post(op{kind: opDataDone, c: c, buf: rest, fn: progressMark(used > 0)})
	}, true)
}

// progressMark encodes "the handler consumed something" in an op without
// widening it: a non-nil fn.
func progressMark(progress bool) func() {
	if progress {
		return noop
	}
	return nil
}

// noop is progressMark's mark.
func noop() {}

// keepRest stores the unconsumed tail of data as c's pending input.
func (l *loop) keepRest(c *Conn, data []byte, used int, fromIn bool) {
	rest := len(data) - used
	if rest == 0 {
		c.dropInput()
		if c.flags&fMessage == 0 {
			c.msgStart = 0
		}
		return
	}
	if rest > l.e.cfg.MaxInputBytes {
		l.closeNow(c, ReasonLimitReached, nil)
		return
	}
	if fromIn {
		c.setInput(data[:copy(data, data[used:])])
	} else {
		c.newInput(data[used:])
	}
	if c.msgStart == 0 || used > 0 {
		c.msgStart = stampOf(l.tick.Load())
		l.retime(c)
	}
}

// dataDone takes back a connection whose OnData ran on the worker pool.
func (l *loop) dataDone(c *Conn, rest []byte, progress bool) {
	c.flags &^= fWorkerBusy
	if c.flags&(fRegistered|fLinger) != fRegistered { // closed, or lingering: input is thrown away
		if rest != nil {
			pool.Put(rest)
		}
		return
	}
	c.setInput(rest) // an empty rest goes back to the pool
	if len(rest) == 0 {
		c.msgStart = 0
	} else if c.msgStart == 0 || progress {
		c.msgStart = stampOf(l.tick.Load())
	}
	l.updateInterest(c)
	l.updateState(c)
	l.retime(c)
	if c.flags&fNewHandler != 0 {
		c.flags &^= fNewHandler
		l.redeliver(c)
	}
}

// onWritable completes a connect in progress, or flushes c's queued
// output: it closes c when it was waiting for the flush, and resumes
// reading below the low watermark.
func (l *loop) onWritable(c *Conn) {
	e := l.e
	if c.flags&fDialing != 0 {
		if err := sockError(int(c.fd)); err != nil {
			l.closeNow(c, ReasonIOError, err)
			return
		}
		c.flags &^= fDialing
		c.lastRead = stampOf(l.tick.Load())
		l.updateInterest(c)
		l.opened(c)
		return
	}
	c.mu.Lock()
	if c.out != nil && c.out.ring {
		c.mu.Unlock()
		return // the ring sends it (uring_linux.go)
	}
	empty, err := c.flushLocked(l)
	queued := c.out.len()
	c.mu.Unlock()
	if err != nil {
		l.closeNow(c, reasonFor(err), err)
		return
	}
	if empty && l.flushedEnd(c) {
		return
	}
	if c.flags&fSlowPaused != 0 && queued <= e.cfg.WriteLowWater {
		c.flags &^= fSlowPaused
	}
	if empty || c.flags&fSlowPaused == 0 {
		l.updateInterest(c)
	}
	if empty {
		l.updateState(c)
	}
}

// armWrite carries out the opArmWrite a writer posted when its output got
// queued: it polls c for writability, pauses reading past the high
// watermark under SlowPause, and times the write.
func (l *loop) armWrite(c *Conn) {
	e := l.e
	c.mu.Lock()
	c.cs &^= csArmPending
	queued := c.out.len()
	ring := c.out != nil && c.out.ring
	c.mu.Unlock()
	if ring {
		l.ringQueue(c) // uring_linux.go: sent at the round's end
		if queued <= e.cfg.WriteHighWater {
			// Poll interest is unchanged, and the write timeout is set
			// for a send still in flight at the next round (ringWait).
			return
		}
	}
	if queued > e.cfg.WriteHighWater && e.cfg.SlowPolicy == SlowPause {
		c.flags |= fSlowPaused
	}
	l.updateInterest(c)
	l.retime(c)
}

// updateInterest registers the poll interest c needs now.
func (l *loop) updateInterest(c *Conn) {
	if c.flags&fRegistered == 0 {
		return
	}
	if c.flags&fDialing != 0 {
		return
	}
	var want uint8
	if c.flags&fLinger != 0 {
		want = l.lingerWant(c) // linger_unix.go
	} else if c.flags&(fUserPaused|fSlowPaused|fWorkerBusy|fReadEOF|fFlushClose) == 0 {
		want = ioRead
	}
	c.mu.Lock()
	if c.out != nil && !c.out.ring { // the ring sends ring output (uring_linux.go)
		want |= ioWrite
	}
	c.mu.Unlock()
	if want == c.interest {
		return
	}
	c.interest = want
	if err := l.poller.Mod(int(c.fd), want&ioRead != 0, want&ioWrite != 0); err != nil {
		l.closeNow(c, ReasonIOError, err)
	}
}

// flushedEnd carries out what c's output running empty ends: a linger's
// flush or a close that waited for its output. It reports whether c is
// done with (closed, or lingering on).
func (l *loop) flushedEnd(c *Conn) bool {
	if c.flags&fLinger != 0 {
		l.lingerFlushed(c) // linger_unix.go
		return true
	}
	if c.flags&fFlushClose != 0 {
		l.finishClose(c)
		return true
	}
	return false
}
