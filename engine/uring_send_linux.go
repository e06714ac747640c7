//go:build linux

package engine

import (
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/internal/uring"
)

// sendSlot pins one send in flight: the queue whose buffers it points at
// and, for SENDMSG, the msghdr and iovecs the kernel reads.
type sendSlot struct {
	c      *Conn
	q      *outQueue
	gen    uint32
	orphan bool // c closed meanwhile: q is the slot's, released at the completion
	msg    unix.Msghdr
	iov    []unix.Iovec // ringMaxIov, made at the slot's first SENDMSG
}

// ringSendDone handles the completion of a send (udSend).
func (l *loop) ringSendDone(cqe uring.CQE) {
	rl := l.ring
	i := uint32(cqe.UserData)
	s := rl.slots[i]
	if uint32(cqe.UserData>>32)&0xffffff != s.gen {
		return // cannot happen: a slot is reused only after its completion
	}
	c, q, orphan := s.c, s.q, s.orphan
	s.c, s.q, s.orphan = nil, nil, false
	if s.msg.Iov != nil { // drop the buffers' references
		clear(s.iov[:s.msg.Iovlen])
		s.msg = unix.Msghdr{}
	}
	s.gen = (s.gen + 1) & 0xffffff
	rl.free = append(rl.free, i)
	if orphan {
		if cqe.Res > 0 { // what went out before the close still counts
			l.stats.bytesOut.Add(uint64(cqe.Res))
		}
		releaseOrphan(q)
		return
	}
	l.ringSent(c, q, cqe.Res)
}

// ringSendsWaiting, after an enter, treats the sends submitted in it that
// are still in flight as waiting for room: queued, no longer deferred,
// and timed by the write timeout.
func (l *loop) ringSendsWaiting() {
	rl := l.ring
	for i, ud := range rl.submitted {
		rl.submitted[i] = 0
		if s := rl.slots[uint32(ud)]; s.c != nil && uint64(s.gen) == ud>>32 {
			// A send still in flight after its enter waits for room:
			// its bytes are what epoll's write would have left queued,
			// no longer deferred (they count against MaxQueuedBytes
			// for other connections' queueing from now on).
			c := s.c
			c.mu.Lock()
			l.undefer(c.out)
			c.mu.Unlock()
			l.retime(c) // the write timeout, for a send that waits for room
		}
	}
	rl.submitted = rl.submitted[:0]
}

// releaseOrphan returns a closed connection's queue, whose send has
// completed, to its pools.
func releaseOrphan(q *outQueue) {
	for _, b := range q.bufs {
		pool.Put(b)
	}
	q.reset()
	q.deferred, q.sending = 0, false
	outQueuePool.Put(q)
}

// ringSubmitSends prepares a send for each connection queued in sendq
// that has ring output and no send in flight.
func (l *loop) ringSubmitSends() {
	rl := l.ring
	for i, c := range rl.sendq {
		rl.sendq[i] = nil
		c.mu.Lock()
		q := c.out
		if c.cs&csClosed != 0 || q == nil || !q.ring || q.sending || len(q.bufs) == 0 {
			c.mu.Unlock()
			continue
		}
		if c.flags&fDialing != 0 {
			// Not before the connect completes: a send on a connecting
			// socket waits for it, and a refused connect's error would
			// go to the send, leaving onWritable's sockError nil. Epoll
			// flushes the queue once connected, as without the ring.
			q.ring = false
			l.undefer(q)
			c.mu.Unlock()
			continue
		}
		if !l.ringSendLocked(c, q) {
			q.ring = false // back to epoll: onWritable flushes it
			l.undefer(q)
			c.mu.Unlock()
			l.updateInterest(c)
			continue
		}
		c.mu.Unlock()
	}
	rl.sendq = rl.sendq[:0]
}

// ringSendLocked prepares the send of q's head (up to ringMaxIov
// buffers); c.mu is held. It reports false when the ring has no room.
func (l *loop) ringSendLocked(c *Conn, q *outQueue) bool {
	rl := l.ring
	sqe, err := rl.r.GetSQE()
	if err != nil {
		return false
	}
	var i uint32
	if k := len(rl.free); k > 0 {
		i = rl.free[k-1]
		rl.free = rl.free[:k-1]
	} else {
		i = uint32(len(rl.slots))
		rl.slots = append(rl.slots, &sendSlot{})
	}
	s := rl.slots[i]
	s.c, s.q = c, q
	bufs := q.bufs
	if len(bufs) > ringMaxIov {
		bufs = bufs[:ringMaxIov]
	}
	sqe.Fd = c.fd
	sqe.OpFlags = unix.MSG_NOSIGNAL
	sqe.UserData = udSend | uint64(s.gen)<<32 | uint64(i)
	if len(bufs) == 1 {
		sqe.Opcode = uring.OpSend
		sqe.SetAddr(unsafe.Pointer(&bufs[0][0]))
		sqe.Len = uint32(len(bufs[0]))
	} else {
		if s.iov == nil {
			s.iov = make([]unix.Iovec, ringMaxIov)
		}
		for j, b := range bufs {
			s.iov[j].Base = &b[0]
			s.iov[j].SetLen(len(b))
		}
		s.msg = unix.Msghdr{Iov: &s.iov[0]}
		s.msg.SetIovlen(len(bufs))
		sqe.Opcode = uring.OpSendmsg
		sqe.SetAddr(unsafe.Pointer(&s.msg))
	}
	q.sending, q.slot = true, i
	rl.submitted = append(rl.submitted, uint64(s.gen)<<32|uint64(i))
	rl.inflight++
	rl.roundSends++
	l.stats.ringSends.Add(1)
	return true
}

// ringSent handles the completion of c's send from q: res bytes went out,
// or -errno.
func (l *loop) ringSent(c *Conn, q *outQueue, res int32) {
	e := l.e
	rl := l.ring
	c.mu.Lock()
	q.sending = false
	// The deferred head (q.deferred) was never in Engine.queued: what
	// the send took of it leaves the loop's deferred count, what it did
	// not take becomes queued, and what it took beyond it leaves queued.
	// A send of deferred bytes only, taken whole (the common case),
	// touches no engine-wide counter. Bytes moving to Engine.queued are
	// added there before they leave the loop's count (Stats reads the
	// loops' counts first, so it may overcount for a moment, never
	// undercount).
	sent := 0
	if res > 0 {
		sent = int(res)
	}
	if d := q.deferred; d != 0 {
		q.deferred = 0
		if d != sent {
			e.queued.Add(int64(d - sent))
		}
		l.stats.deferred.Add(-int64(d))
	} else if sent > 0 {
		e.queued.Add(-int64(sent))
	}
	if sent > 0 {
		c.bytesOut.Add(uint64(sent))
		l.stats.bytesOut.Add(uint64(sent))
		c.lastWrite = stampOf(l.tick.Load())
		q.bytes -= sent
		c.consumeOutLocked(sent)
	}
	if res < 0 {
		errno := unix.Errno(-res)
		if errno == unix.EAGAIN || errno == unix.EINTR {
			q.ring = false // epoll's EPOLLOUT takes over (onWritable)
			c.mu.Unlock()
			l.updateInterest(c)
			return
		}
		c.mu.Unlock()
		l.closeNow(c, reasonFor(errno), errno)
		return
	}
	empty := len(q.bufs) == 0
	if empty {
		c.freeOutLocked()
	} else {
		rl.sendq = append(rl.sendq, c)
	}
	queued := c.out.len()
	c.mu.Unlock()
	if empty && l.flushedEnd(c) {
		return
	}
	if c.flags&fSlowPaused != 0 && queued <= e.cfg.WriteLowWater {
		c.flags &^= fSlowPaused
		l.updateInterest(c) // reading again
	}
	if !empty {
		l.retime(c) // more to send: the write timeout goes on
	}
	// Ring output never changes the poll interest, nor whether c is busy:
	// only a half-closed or draining connection, which may be waiting for
	// its output to end, needs updateState here.
	if empty && c.flags&(fReadEOF|fDrainQuiet) != 0 {
		if c.flags&fReadEOF != 0 && c.in != nil {
			// Half-closed with input a finished task left (a request
			// pipelined behind one on a worker, whose opQuiet is still
			// in the mailbox): offer it before updateState takes c for
			// done, as readEOF does. A deferred send completes sooner
			// after the task than an epoll flush would.
			l.redeliver(c)
			if c.flags&fRegistered == 0 {
				return
			}
		}
		l.updateState(c)
	}
}

// ringOrphan hands the queue of c, which closes with a send in flight, to
// the send's slot and asks the kernel to cancel the send; c.mu is held.
// The queue's bytes stop counting as queued now; its buffers stay pinned
// until the send's completion.
func (l *loop) ringOrphan(c *Conn) {
	rl := l.ring
	q := c.out
	s := rl.slots[q.slot]
	s.orphan, s.c = true, nil
	c.out = nil
	if n := q.bytes - q.deferred; n > 0 {
		l.e.queued.Add(-int64(n))
	}
	q.bytes = 0
	if q.deferred != 0 {
		l.stats.deferred.Add(-int64(q.deferred))
		q.deferred = 0
	}
	if sqe, err := rl.r.GetSQE(); err == nil {
		sqe.Opcode = uring.OpAsyncCancel
		sqe.Addr = udSend | uint64(s.gen)<<32 | uint64(q.slot)
		sqe.UserData = udCancel
		rl.inflight++
	}
	// Without room for the cancel, the send ends only when the peer
	// reads or resets, or at stopRing's cancel: the ring holds its own
	// reference to the socket, so closing the descriptor does not end it.
}

// ringQueue notes, on opArmWrite, that c's output is the ring's to send.
func (l *loop) ringQueue(c *Conn) { l.ring.sendq = append(l.ring.sendq, c) }

// ringWriteLocked is writeLocked's io_uring path; c.mu is held. ok false
// leaves the write to the epoll path, c.mu still held; ok true means the
// write is done (c.mu released) with n and err.
func (c *Conn) ringWriteLocked(l *loop, bufs [][]byte, total int) (n int, err error, ok bool) {
	e := l.e
	cfg := &e.cfg
	q := c.out
	if q == nil {
		if !l.ringUp.Load() || l.sleeping.Load() || total > cfg.WriteHighWater {
			return 0, nil, false // the loop is not in a round: write now
		}
		// Deferred bytes are counted by the loop (loopStats.deferred),
		// not in Engine.queued: they must not make c look slow or count
		// against the engine's bound, and a round's writes must not
		// contend on an engine-wide counter (docs/benchmarks.md §94).
		// The loops' deferred bytes are held to a quarter of
		// MaxQueuedBytes, each loop to its share (zero, so no deferral,
		// when MaxQueuedBytes/4 < Loops): those whose sends then wait
		// for room become queued (ringSendsWaiting), so queued output
		// passes the bound by at most that quarter, for a round. A
		// deferral that would take Engine.queued plus this loop's
		// deferred bytes past MaxQueuedBytes, or the loop past its
		// share, is written now instead.
		d := l.stats.deferred.Add(int64(total))
		if limit := cfg.MaxQueuedBytes; limit > 0 &&
			(d > limit/4/int64(cfg.Loops) || e.queued.Load()+d > limit) {
			l.stats.deferred.Add(-int64(total))
			return 0, nil, false
		}
		q = outQueuePool.Get().(*outQueue)
		q.ring = true
		c.out = q
		c.lastWrite = stampOf(l.tick.Load())
		c.appendOutLocked(bufs, 0)
		q.bytes, q.deferred = total, total
		arm := c.cs&csArmPending == 0
		if arm {
			c.cs |= csArmPending
		}
		c.mu.Unlock()
		if arm {
			l.post(op{kind: opArmWrite, c: c})
		}
		return total, nil, true
	}
	if q.ring && !q.sending && (q.bytes+total > cfg.WriteHighWater ||
		cfg.MaxQueuedBytes > 0 && e.queued.Load()+int64(q.bytes+total) > cfg.MaxQueuedBytes) {
		// Only deferred bytes are queued: write them now rather than
		// count them against c's watermark or the engine's bound.
		l.undefer(q)              // queued now, as flushLocked counts them
		_, err = c.flushLocked(l) // q may be back in its pool after
		if err != nil {
			c.mu.Unlock()
			c.requestClose(reasonFor(err), err, true)
			return 0, err, true
		}
	}
	return 0, nil, false
}
