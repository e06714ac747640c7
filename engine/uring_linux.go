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
	complete   func(uring.CQE) // l.ringComplete, bound once

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
	l.ringSendsWaiting()
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
func (l *loop) ringComplete(cqe uring.CQE) {
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
		l.ringSendDone(cqe)
	case udRecv:
		i := int(uint32(cqe.UserData))
		c := rl.rslot[i]
		rl.rslot[i], rl.rbusy[i] = nil, false
		rl.rpending--
		l.ringReceived(c, cqe.Res, rl.rbuf[i*ringRecvSlotSize:(i+1)*ringRecvSlotSize])
	case udCancel:
	}
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
