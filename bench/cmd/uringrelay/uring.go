//go:build linux

package main

import (
	"net/netip"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
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
	opAsyncCancel = 14
	cancelAny     = 1 << 2 // IORING_ASYNC_CANCEL_ANY
	pollIn        = 0x1
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
	r        *ring
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
	if err := r.registerBufRing(defaultBufCount, defaultBufSize); err != nil {
		r.close()
		return nil, err
	}
	l := &uringLoop{r: r, lfd: lfd, wake: wake, backend: cfg.Backend, st: st, sides: map[int]*uringSide{},
		minWaitUsec: uint32(cfg.MinWait / time.Microsecond)}
	return l.run, nil
}

func userData(kind, fd int) uint64 { return uint64(kind)<<32 | uint64(uint32(fd)) }

// prep returns a fresh SQE for kind on fd, counted as in flight.
func (l *uringLoop) prep(kind, fd int, op uint8) *sqe {
	s, err := l.r.getSQE()
	if err != nil {
		if l.err == nil {
			l.err = err
		}
		return &sqe{} // the caller fills a throw-away entry; the loop stops on l.err
	}
	s.opcode = op
	s.fd = int32(fd)
	s.userData = userData(kind, fd)
	l.inflight++
	return s
}

func (l *uringLoop) armAccept() {
	s := l.prep(kindAccept, l.lfd, opAccept)
	s.ioprio = acceptMultishot
	s.opFlags = unix.SOCK_NONBLOCK | unix.SOCK_CLOEXEC
}

func (l *uringLoop) armRecv(x *uringSide) {
	s := l.prep(kindRecv, x.fd, opRecv)
	s.ioprio = recvMultishot
	s.flags = sqeBufferSelect
	s.bufGroup = ringBufGroup
	x.recvArmed = true
}

// send puts x's oldest chunk (or what is left of it) in a send SQE: it
// reaches the kernel with the next io_uring_enter, at the round's end.
func (l *uringLoop) send(x *uringSide) {
	c := x.queue[0]
	b := l.r.bufs.buf(c.bid, c.size)[c.off:]
	s := l.prep(kindSend, x.fd, opSend)
	s.addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	s.len = uint32(len(b))
	// MSG_WAITALL: the kernel retries a short send itself, so a send
	// completes with all its bytes or an error.
	s.opFlags = unix.MSG_NOSIGNAL | unix.MSG_WAITALL
	x.sending = true
	l.roundSends++
	l.st.writes.Add(1)
}

func (l *uringLoop) recycle(bid uint16) {
	l.r.bufs.add(bid)
	l.recycled = true
}

func (l *uringLoop) run() error {
	defer l.r.close()
	l.armAccept()
	s := l.prep(kindWake, l.wake, opPollAdd)
	s.opFlags = pollIn
	for l.inflight > 0 && l.err == nil {
		if l.recycled {
			l.r.bufs.publish()
			l.recycled = false
		}
		wait := uint32(1)
		if l.minWaitUsec > 0 && l.r.minWait {
			wait += l.roundSends
		}
		err := l.r.enter(wait, l.minWaitUsec)
		l.roundSends = 0
		l.st.enters.Add(1)
		l.st.rounds.Add(1)
		if err != nil {
			l.err = err
			break
		}
		n := l.r.forEachCQE(l.complete)
		l.st.events.Add(uint64(n))
	}
	for _, x := range l.sides {
		unix.Close(x.fd)
	}
	unix.Close(l.lfd)
	return l.err
}

func (l *uringLoop) complete(c *cqe) {
	kind, fd := int(c.userData>>32), int(int32(uint32(c.userData)))
	more := c.flags&cqeFMore != 0
	if !more {
		l.inflight--
	}
	switch kind {
	case kindWake:
		l.stop()
	case kindCancel:
	case kindAccept:
		if c.res >= 0 {
			l.accepted(int(c.res))
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
	s := l.prep(kindCancel, 0, opAsyncCancel)
	s.opFlags = cancelAny
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

func (l *uringLoop) received(x *uringSide, c *cqe, more bool) {
	if c.flags&cqeFBuffer != 0 {
		bid := uint16(c.flags >> cqeBufferShift)
		if c.res > 0 && !x.closing {
			l.st.reads.Add(1)
			p := x.peer
			p.queue = append(p.queue, chunk{bid: bid, size: int(c.res)})
			if !p.sending {
				l.send(p)
			}
		} else {
			l.recycle(bid)
		}
	}
	switch {
	case c.res == -int32(unix.ENOBUFS):
		l.st.nobufs.Add(1)
	case c.res <= 0:
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

func (l *uringLoop) sent(x *uringSide, c *cqe) {
	x.sending = false
	if c.res < 0 {
		l.closePair(x)
	} else {
		x.queue[0].off += int(c.res)
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
