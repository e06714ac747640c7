//go:build linux

package engine

import (
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/uring"
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
