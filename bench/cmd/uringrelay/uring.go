//go:build linux

package main

import (
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/uring"
)

// What a completion is for: the kind in user_data's high 32 bits, the
// socket in the low 32.
const (
	kindAccept = 1 + iota
	kindRecv
	kindSend
	kindWake
	kindCancel
)

const (
	pollIn = 0x1
)

// chunk is a received buffer on its way to the other socket of the pair.
type chunk struct {
	bid  uint16
	off  int
	size int
}

// uringSide is one socket of a client–backend pair on an io_uring loop.
type uringSide struct {
	fd        int
	peer      *uringSide
	recvArmed bool    // a multishot recv is armed (until its last completion)
	sending   bool    // queue[0] is in a send the kernel has not completed
	queue     []chunk // received from peer, to send on fd, oldest first
	closing   bool
}

type uringLoop struct {
	r        *uring.Ring
	bufs     *uring.BufRing
	lfd      int
	wake     int
	backend  netip.AddrPort
	st       *stats
	sides    map[int]*uringSide
	inflight int // requests whose last completion has not come
	stopping bool
	recycled bool // buffers handed back since the last publish
	// roundSends counts the sends prepared in this round. A send to a
	// socket with room completes inside the io_uring_enter that submits
	// it, so the enter waits for those completions and one more: waiting
	// for one would return at once with the sends' own completions and
	// cost a second enter a round. A send that has to wait for room may
	// be the one completion that can still come, so that wait is bounded
	// by minWaitUsec, after which any completion ends it.
	roundSends  uint32
	minWaitUsec uint32
	err         error
}

func newUringLoop(lfd, wake int, cfg relayConfig, st *stats) (func() error, error) {
	r, err := newRing(defaultSQEntries, defaultCQEntries)
	if err != nil {
		return nil, err
	}
	bufs, err := r.RegisterBufRing(defaultBufCount, defaultBufSize)
	if err != nil {
		r.Close()
		return nil, err
	}
	l := &uringLoop{r: r, bufs: bufs, lfd: lfd, wake: wake, backend: cfg.Backend, st: st, sides: map[int]*uringSide{},
		minWaitUsec: uint32(cfg.MinWait / time.Microsecond)}
	return l.run, nil
}

func userData(kind, fd int) uint64 { return uint64(kind)<<32 | uint64(uint32(fd)) }

// prep returns a fresh SQE for kind on fd, counted as in flight.
func (l *uringLoop) prep(kind, fd int, op uint8) *uring.SQE {
	s, err := l.r.GetSQE()
	if err != nil {
		if l.err == nil {
			l.err = err
		}
		return &uring.SQE{} // the caller fills a throw-away entry; the loop stops on l.err
	}
	s.Opcode = op
	s.Fd = int32(fd)
	s.UserData = userData(kind, fd)
	l.inflight++
	return s
}

func (l *uringLoop) armAccept() {
	s := l.prep(kindAccept, l.lfd, uring.OpAccept)
	s.Ioprio = uring.AcceptMultishot
	s.OpFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
}

func (l *uringLoop) armRecv(x *uringSide) {
	s := l.prep(kindRecv, x.fd, uring.OpRecv)
	s.Ioprio = uring.RecvMultishot
	s.Flags = uring.SQEBufferSelect
	s.BufGroup = 0 /* buffer group 0 */
	x.recvArmed = true
}

// send puts x's oldest chunk (or what is left of it) in a send SQE: it
// reaches the kernel with the next io_uring_enter, at the round's end.
func (l *uringLoop) send(x *uringSide) {
	c := x.queue[0]
	b := l.bufs.Buf(c.bid, c.size)[c.off:]
	s := l.prep(kindSend, x.fd, uring.OpSend)
	s.Addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	s.Len = uint32(len(b))
	// MSG_WAITALL: the kernel retries a short send itself, so a send
	// completes with all its bytes or an error.
	s.OpFlags = unix.MSG_NOSIGNAL | unix.MSG_WAITALL
	x.sending = true
	l.roundSends++
	l.st.writes.Add(1)
}

func (l *uringLoop) recycle(bid uint16) {
	l.bufs.Add(bid)
	l.recycled = true
}

func (l *uringLoop) run() error {
	defer l.r.Close()
	l.armAccept()
	s := l.prep(kindWake, l.wake, uring.OpPollAdd)
	s.OpFlags = pollIn
	for l.inflight > 0 && l.err == nil {
		if l.recycled {
			l.bufs.Publish()
			l.recycled = false
		}
		wait := uint32(1)
		if l.minWaitUsec > 0 && l.r.MinWait {
			wait += l.roundSends
		}
		err := l.r.Enter(wait, l.minWaitUsec, -1)
		l.roundSends = 0
		l.st.enters.Add(1)
		l.st.rounds.Add(1)
		if err != nil {
			l.err = err
			break
		}
		n := l.r.ForEachCQE(l.complete)
		l.st.events.Add(uint64(n))
	}
	for _, x := range l.sides {
		unix.Close(x.fd)
	}
	unix.Close(l.lfd)
	return l.err
}

func (l *uringLoop) complete(c uring.CQE) {
	kind, fd := int(c.UserData>>32), int(int32(uint32(c.UserData)))
	more := c.Flags&uring.CQEFMore != 0
	if !more {
		l.inflight--
	}
	switch kind {
	case kindWake:
		l.stop()
	case kindCancel:
	case kindAccept:
		if c.Res >= 0 {
			l.accepted(int(c.Res))
		}
		if !more && !l.stopping {
			l.armAccept()
		}
	case kindRecv:
		l.received(l.sides[fd], c, more)
	case kindSend:
		l.sent(l.sides[fd], c)
	}
}

// stop cancels every request; the loop ends when the last completes.
func (l *uringLoop) stop() {
	if l.stopping {
		return
	}
	l.stopping = true
	s := l.prep(kindCancel, 0, uring.OpAsyncCancel)
	s.OpFlags = uring.CancelAny
	for _, x := range l.sides {
		x.closing = true
	}
}

func (l *uringLoop) accepted(cfd int) {
	l.st.accepts.Add(1)
	if l.stopping {
		unix.Close(cfd)
		return
	}
	if err := setupConn(cfd); err != nil {
		unix.Close(cfd)
		return
	}
	bfd, err := dial(l.backend)
	if err != nil {
		unix.Close(cfd)
		return
	}
	c := &uringSide{fd: cfd}
	b := &uringSide{fd: bfd, peer: c}
	c.peer = b
	l.sides[cfd], l.sides[bfd] = c, b
	l.armRecv(c)
	l.armRecv(b)
}

func (l *uringLoop) received(x *uringSide, c uring.CQE, more bool) {
	if c.Flags&uring.CQEFBuffer != 0 {
		bid := uint16(c.Flags >> uring.CQEBufferShift)
		if c.Res > 0 && !x.closing {
			l.st.reads.Add(1)
			p := x.peer
			p.queue = append(p.queue, chunk{bid: bid, size: int(c.Res)})
			if !p.sending {
				l.send(p)
			}
		} else {
			l.recycle(bid)
		}
	}
	switch {
	case c.Res == -int32(unix.ENOBUFS):
		l.st.nobufs.Add(1)
	case c.Res <= 0:
		l.closePair(x)
	}
	if !more {
		x.recvArmed = false
		if !x.closing {
			l.armRecv(x)
		}
	}
	l.maybeFinish(x)
}

func (l *uringLoop) sent(x *uringSide, c uring.CQE) {
	x.sending = false
	if c.Res < 0 {
		l.closePair(x)
	} else {
		x.queue[0].off += int(c.Res)
		if x.queue[0].off == x.queue[0].size {
			l.recycle(x.queue[0].bid)
			x.queue = x.queue[1:]
		}
	}
	if x.closing {
		l.maybeFinish(x)
		return
	}
	if len(x.queue) > 0 {
		l.send(x)
	}
}

// closePair shuts both sockets of x's pair down, which ends their
// multishot recvs; they are closed once nothing of theirs is in flight.
func (l *uringLoop) closePair(x *uringSide) {
	if x.closing {
		return
	}
	for _, y := range []*uringSide{x, x.peer} {
		y.closing = true
		unix.Shutdown(y.fd, unix.SHUT_RDWR)
	}
}

func (l *uringLoop) maybeFinish(x *uringSide) {
	p := x.peer
	if !x.closing || x.recvArmed || x.sending || p.recvArmed || p.sending {
		return
	}
	for _, y := range []*uringSide{x, p} {
		for _, c := range y.queue {
			l.recycle(c.bid)
		}
		y.queue = nil
		if l.sides[y.fd] == y {
			delete(l.sides, y.fd)
			unix.Close(y.fd)
		}
	}
}
