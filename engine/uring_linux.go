//go:build linux

package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"sync"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/internal/uring"
)

// ringSupported says Config.IOUring applies here.
const ringSupported = true

// ringForced turns Config.IOUring on for every engine of the process
// (WARREN_IO_URING=on): for running other packages' tests and A/B
// measurements on the ring, like WARREN_NETPOLL.
var ringForced = os.Getenv("WARREN_IO_URING") == "on"

// The io_uring mode (Config.IOUring). A loop waits with an
// IORING_OP_EPOLL_WAIT on its own epoll set, kept in flight across rounds
// (one at a time), so accept, readiness, folding's nesting, wake-ups and
// PauseRead work as with epoll_wait. A write made while the loop is awake
// and its connection has nothing queued is copied into a fresh output
// queue marked ring (outQueue.ring) instead of written; the loop learns
// of it through the opArmWrite the writer posts, and at the end of the
// round submits one IORING_OP_SEND (one buffer) or SENDMSG (several) per
// connection in the same io_uring_enter as its next wait. While a send is
// in flight (outQueue.sending) later writes queue behind it and go out
// when it completes. A send does not wait for all its bytes (no
// MSG_WAITALL): it completes with what the socket took, which leaves the
// queue at once, so only the rest counts as queued, against the write
// watermarks and MaxQueuedBytes, as after epoll's write; the rest goes
// out in the next round's send, which the kernel holds until the socket
// has room (timed by the write timeout meanwhile). An EAGAIN (not
// expected: the send is not MSG_DONTWAIT) hands the queue back to epoll
// (EPOLLOUT, onWritable); an error closes the connection with the reason
// a write's error would give.
//
// The buffers a send points at are the queue's, kept referenced by its
// slot until the send's completion: a connection that closes with a send
// in flight hands its queue to the slot (orphan) and asks the kernel to
// cancel the send; the queue goes back to its pools only at the send's
// completion, -ECANCELED included.

const (
	ringSQEntries = 256
	ringCQEntries = 4096
	ringMaxIov    = 64
	// ringMinWaitUsec bounds how long a round waits for its own sends'
	// completions besides the next event (docs/benchmarks.md §83): a send
	// to a socket with room completes inside the enter that submits it,
	// so waiting for one completion would return at once and cost a
	// second enter.
	ringMinWaitUsec = 50
	ringStopWait    = time.Second
)

// user_data: the kind in the top byte, a send slot's generation and index
// below.
const (
	udEpoll  = 1 << 56
	udSend   = 2 << 56
	udCancel = 3 << 56
	udRecv   = 4 << 56
	udKind   = 0xff << 56
)

// The read side: a round's readable connections (up to ringRecvSlots)
// are read with one IORING_OP_RECV each (MSG_DONTWAIT: a spurious
// readiness completes at once with EAGAIN), submitted together in one
// io_uring_enter that waits for their completions, into a per-loop arena
// of slots; each connection's bytes then go through onInput, as read()'s
// do. A recv whose completion comes later (it never should) keeps its
// slot until it does, and is delivered then, or dropped if its
// connection has closed meanwhile.
const (
	ringRecvSlots    = 32
	ringRecvSlotSize = 16 << 10
	ringRecvWait     = 100 * time.Millisecond
)

// ringLoop is one loop's io_uring state, owned by the loop's goroutine.
type ringLoop struct {
	r     *uring.Ring
	raw   []unix.EpollEvent // IORING_OP_EPOLL_WAIT fills it; kept while armed
	armed bool              // an IORING_OP_EPOLL_WAIT is in flight
	n     int               // events the last reap delivered into l.events
	sendq []*Conn           // connections with ring output to submit at the round's end
	slots []*sendSlot
	free  []uint32 // free slot indices
	// inflight counts entries whose completion has not been read.
	inflight   int
	roundSends uint32
	complete   func(*uring.CQE) // l.ringComplete, bound once

	// recv is on unless WARREN_URING_RECV=off (for A/B measurements).
	recv bool
	// submitted holds the send slots (index and generation) submitted in
	// the last enter: those still in flight once it has returned are
	// timed (retime), as armWrite times output queued for epoll.
	submitted []uint64
	reads     []*Conn // readable connections taken by ringRecvLater this round
	rbuf      []byte  // ringRecvSlots slots of ringRecvSlotSize bytes
	rslot     [ringRecvSlots]*Conn
	rbusy     [ringRecvSlots]bool // a recv into the slot is in flight
	rpending  int                 // recvs of this batch not yet completed
}

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

// ringLeaks keeps rings whose sends never completed at stop, with the
// buffers they point at, referenced for good.
var ringLeaks struct {
	mu    sync.Mutex
	rings []*ringLoop
}

// startRing sets up l's ring, on l's goroutine (with LockOSThread the
// ring is single-issuer and runs completions' task work only in this
// thread's waits). When the kernel refuses, l stays on epoll and the
// engine logs it once.
func (l *loop) startRing() {
	e := l.e
	flags := uint32(uring.SetupSubmitAll | uring.SetupCoopTaskrun)
	if e.cfg.LockOSThread {
		flags = uring.SetupSubmitAll | uring.SetupSingleIssuer | uring.SetupDeferTaskrun
	}
	r, err := uring.New(ringSQEntries, ringCQEntries, flags)
	if err == nil {
		if err = r.Probe(uring.OpEpollWait, uring.OpSend, uring.OpSendmsg, uring.OpAsyncCancel, uring.OpRecv); err != nil {
			r.Close()
		}
	}
	if err != nil {
		e.ringOnce.Do(func() {
			e.log.LogAttrs(context.Background(), slog.LevelWarn, "engine: io_uring unavailable, the loops use epoll", slog.String("error", err.Error()))
		})
		return
	}
	rl := &ringLoop{r: r, raw: make([]unix.EpollEvent, len(l.events))}
	if os.Getenv("WARREN_URING_RECV") != "off" {
		rl.recv = true
		rl.rbuf = make([]byte, ringRecvSlots*ringRecvSlotSize)
	}
	rl.complete = l.ringComplete
	l.ring = rl
	l.ringUp.Store(true)
	e.ringLoops.Add(1)
}

// ringWait is poller.Wait through the ring: it submits the round's sends
// and, unless one is in flight, an IORING_OP_EPOLL_WAIT, waits up to
// timeoutMs (0: not at all) in the same io_uring_enter, then handles the
// completions and returns the events delivered into l.events.
func (l *loop) ringWait(timeoutMs int) (int, error) {
	rl := l.ring
	l.ringSubmitSends()
	if !rl.armed {
		s, err := rl.r.GetSQE()
		if err != nil {
			return 0, err
		}
		s.Opcode = uring.OpEpollWait
		s.Fd = int32(l.poller.Fd())
		s.SetAddr(unsafe.Pointer(&rl.raw[0]))
		s.Len = uint32(len(rl.raw))
		s.UserData = udEpoll
		rl.armed = true
		rl.inflight++
	}
	var err error
	if timeoutMs == 0 {
		// Poll, not a bare submit: with LockOSThread the ring defers
		// completions' task work (SetupDeferTaskrun) to enters that ask
		// for events, and a loop whose mailbox is never empty never
		// waits.
		err = rl.r.Poll()
	} else {
		wait := uint32(1)
		if rl.r.MinWait {
			wait += rl.roundSends
		}
		err = rl.r.Enter(wait, ringMinWaitUsec, time.Duration(timeoutMs)*time.Millisecond)
	}
	rl.roundSends = 0
	l.sleeping.Store(false)
	if err != nil {
		return 0, err
	}
	rl.n = 0
	rl.r.ForEachCQE(rl.complete)
	for i, ud := range rl.submitted {
		rl.submitted[i] = 0
		if s := rl.slots[uint32(ud)]; s.c != nil && uint64(s.gen) == ud>>32 {
			// A send still in flight after its enter waits for room:
			// its bytes are what epoll's write would have left queued,
			// no longer deferred (they count against MaxQueuedBytes
			// for other connections' queueing from now on).
			c := s.c
			c.mu.Lock()
			l.e.undefer(c.out)
			c.mu.Unlock()
			l.retime(c) // the write timeout, for a send that waits for room
		}
	}
	rl.submitted = rl.submitted[:0]
	return rl.n, nil
}

// ringFlush submits the round's sends now, without waiting or reading
// completions: before the loop yields its P (runtime.Gosched), which may
// leave its thread asleep for a while, its writes must not wait with it.
// The next ringWait counts their completions in its wait as usual.
func (l *loop) ringFlush() {
	l.ringSubmitSends()
	if l.ring.r.Prepared() == 0 {
		return
	}
	if err := l.ring.r.Enter(0, 0, -1); err != nil {
		l.e.errLog.Log("engine: io_uring submit", err)
	}
}

// ringComplete handles one completion.
func (l *loop) ringComplete(cqe *uring.CQE) {
	rl := l.ring
	rl.inflight--
	switch cqe.UserData & udKind {
	case udEpoll:
		// Reaped mid-round (ringRecvs), its events are dropped by the
		// next ringWait's rl.n = 0, not handled a round late: epoll is
		// level-triggered and reports what is still ready again, and a
		// descriptor closed and reused meanwhile gets no stale event.
		rl.armed = false
		if cqe.Res > 0 {
			rl.n = l.poller.Events(rl.raw[:cqe.Res], l.events)
		} else if cqe.Res < 0 && cqe.Res != -int32(unix.EINTR) && cqe.Res != -int32(unix.ECANCELED) {
			l.e.errLog.Log("engine: io_uring epoll wait", unix.Errno(-cqe.Res))
		}
	case udSend:
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
	case udRecv:
		i := int(uint32(cqe.UserData))
		c := rl.rslot[i]
		rl.rslot[i], rl.rbusy[i] = nil, false
		rl.rpending--
		l.ringReceived(c, cqe.Res, rl.rbuf[i*ringRecvSlotSize:(i+1)*ringRecvSlotSize])
	case udCancel:
	}
}

// ringRecvLater takes readable c's read for the round's batch of recvs
// (ringRecvs), reporting false when the batch is full or the ring does
// not read (the caller reads now).
func (l *loop) ringRecvLater(c *Conn) bool {
	rl := l.ring
	if !rl.recv || c.flags&fLinger != 0 {
		return false
	}
	if rl.rpending > 0 && rl.recvPending(c) {
		// A recv of c's from an earlier round is still in flight: a
		// read now would overtake its bytes. Its completion comes
		// first; level-triggered epoll reports c again.
		return true
	}
	if len(rl.reads) >= ringRecvSlots {
		return false
	}
	rl.reads = append(rl.reads, c)
	return true
}

// recvPending reports whether a recv into one of rl's slots is in flight
// for c.
func (rl *ringLoop) recvPending(c *Conn) bool {
	for i, b := range rl.rbusy {
		if b && rl.rslot[i] == c {
			return true
		}
	}
	return false
}

// ringRecvs reads the connections ringRecvLater took, one recv each in
// one io_uring_enter, and hands each one's bytes on as onReadable does.
func (l *loop) ringRecvs() {
	rl := l.ring
	if len(rl.reads) == 0 {
		return
	}
	slot, batch := 0, 0
	for k, c := range rl.reads {
		rl.reads[k] = nil
		if c.flags&fRegistered == 0 || c.interest&ioRead == 0 || c.flags&fLinger != 0 {
			continue
		}
		for slot < ringRecvSlots && rl.rbusy[slot] {
			slot++
		}
		if slot == ringRecvSlots {
			l.onReadable(c) // no free slot: read() as without the ring
			continue
		}
		sqe, err := rl.r.GetSQE()
		if err != nil {
			l.onReadable(c) // no recv of c's is pending (ringRecvLater)
			continue
		}
		sqe.Opcode = uring.OpRecv
		sqe.Fd = c.fd
		sqe.SetAddr(unsafe.Pointer(&rl.rbuf[slot*ringRecvSlotSize]))
		sqe.Len = ringRecvSlotSize
		sqe.OpFlags = unix.MSG_DONTWAIT
		sqe.UserData = udRecv | uint64(slot)
		rl.rslot[slot], rl.rbusy[slot] = c, true
		rl.rpending++
		rl.inflight++
		batch++
		slot++
		l.stats.ringRecvs.Add(1)
	}
	rl.reads = rl.reads[:0]
	if batch == 0 {
		return
	}
	// Wait for this batch only: a recv left from an earlier batch (its
	// entry not submitted then) must not hold every later round.
	if err := rl.r.Enter(uint32(batch), 0, ringRecvWait); err != nil {
		l.e.errLog.Log("engine: io_uring recv", err)
	}
	rl.r.ForEachCQE(rl.complete)
}

// ringReceived hands on what a recv into buf read for c: res bytes, 0 at
// end of file, or -errno; as onReadable does after its read().
func (l *loop) ringReceived(c *Conn, res int32, buf []byte) {
	if c.flags&fRegistered == 0 || c.flags&fLinger != 0 {
		return // closed, or lingering, since: its input is no one's
	}
	switch {
	case res > 0:
		l.onInput(c, buf[:res])
	case res == 0:
		l.readEOF(c)
	case res == -int32(unix.EAGAIN) || res == -int32(unix.EINTR):
	default:
		err := unix.Errno(-res)
		l.closeNow(c, reasonFor(err), err)
	}
}

// releaseOrphan returns a closed connection's queue, whose send has
// completed, to its pools.
func releaseOrphan(q *outQueue) {
	for _, b := range q.bufs {
		pool.Put(b)
	}
	clear(q.bufs)
	q.bufs, q.bytes, q.deferred = q.bufs[:0], 0, 0
	q.ring, q.sending = false, false
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
			l.e.undefer(q)
			c.mu.Unlock()
			continue
		}
		if !l.ringSendLocked(c, q) {
			q.ring = false // back to epoll: onWritable flushes it
			l.e.undefer(q)
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
	if res > 0 {
		n := int(res)
		c.bytesOut.Add(uint64(n))
		l.stats.bytesOut.Add(uint64(n))
		c.lastWrite = stampOf(l.tick.Load())
		q.bytes -= n
		e.queued.Add(-int64(n))
		c.consumeOutLocked(n)
	}
	// After queued's decrement, so that queued less deferred never
	// passes what is really queued.
	e.undefer(q)
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
	if q.bytes > 0 {
		l.e.queued.Add(-int64(q.bytes))
		q.bytes = 0
	}
	l.e.undefer(q)
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
		// Deferred bytes count as queued (and as deferred, first, so
		// that another connection's enqueueLocked never sees them queued
		// but not deferred), but must not make c look slow or trip the
		// engine's bound: past it, write now instead.
		// The deferred bytes of all connections are held to a quarter of
		// MaxQueuedBytes: those whose sends then wait for room become
		// queued for real (ringWait), and a real queueing does not count
		// the round's deferred bytes, so queued output passes the bound
		// by at most that quarter, for a round.
		d := e.deferred.Add(int64(total))
		if cfg.MaxQueuedBytes > 0 {
			if d > cfg.MaxQueuedBytes/4 {
				e.deferred.Add(-int64(total))
				return 0, nil, false
			}
			if e.queued.Add(int64(total)) > cfg.MaxQueuedBytes {
				e.queued.Add(-int64(total))
				e.deferred.Add(-int64(total))
				return 0, nil, false
			}
		} else {
			e.queued.Add(int64(total))
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
		cfg.MaxQueuedBytes > 0 && e.queued.Load()+int64(total) > cfg.MaxQueuedBytes) {
		// Only deferred bytes are queued: write them now rather than
		// count them against c's watermark or the engine's bound.
		d := q.deferred
		q.deferred = 0
		_, err = c.flushLocked(l) // q may be back in its pool after
		e.deferred.Add(-int64(d))
		if err != nil {
			c.mu.Unlock()
			c.requestClose(reasonFor(err), err, true)
			return 0, err, true
		}
	}
	return 0, nil, false
}

// stopRing ends l's ring once its connections are closed (their sends
// orphaned): it cancels what is in flight, the epoll wait included, and
// reads completions until none is left, for ringStopWait at most. A ring
// whose sends never complete is kept, with the buffers it points at, for
// good.
func (l *loop) stopRing() {
	rl := l.ring
	if sqe, err := rl.r.GetSQE(); err == nil {
		sqe.Opcode = uring.OpAsyncCancel
		sqe.OpFlags = uring.CancelAny
		sqe.UserData = udCancel
		rl.inflight++
	}
	l.ringSubmitSends() // nothing: every connection is closed
	deadline := time.Now().Add(ringStopWait)
	for rl.inflight > 0 {
		left := time.Until(deadline)
		if left <= 0 {
			break
		}
		if err := rl.r.Enter(1, 0, left); err != nil {
			break
		}
		rl.r.ForEachCQE(rl.complete)
	}
	l.ringUp.Store(false)
	l.e.ringLoops.Add(-1)
	l.ring = nil // what is left of the round must not touch a closed ring
	if rl.inflight > 0 {
		l.e.errLog.Log("engine: io_uring stop", fmt.Errorf("%d operations still in flight: %w", rl.inflight, errRingStuck))
		ringLeaks.mu.Lock()
		ringLeaks.rings = append(ringLeaks.rings, rl)
		ringLeaks.mu.Unlock()
		return
	}
	rl.r.Close()
}

var errRingStuck = errors.New("engine: io_uring operations did not complete")
