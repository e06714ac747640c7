//go:build linux

package main

import (
	"fmt"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/uring"
)

// The uring-epoll mode keeps the engine's readiness model and moves only
// the wait and the writes into io_uring: the epoll set stays as it is, a
// round's wait is an IORING_OP_EPOLL_WAIT (Linux 6.15) submitted with the
// sends the previous round queued, in one io_uring_enter; a readable
// socket is still read with read(). It is the smallest change the engine
// could make (docs/benchmarks.md §83): writes deferred to the round's end.

const (
	kindEpoll      = 6
	maxQueueChunks = 16 // a side with this many chunks queued stops its peer's reads
)

type uepSide struct {
	fd      int
	peer    *uepSide
	sending bool
	queue   []chunk
	paused  bool // its reads are off while its peer's queue is long
	closing bool
}

type uringEpollLoop struct {
	r           *uring.Ring
	ep          int
	lfd         int
	wake        int
	cfg         relayConfig
	st          *stats
	sides       map[int]*uepSide
	events      []unix.EpollEvent // mmapped: the kernel fills it inside io_uring_enter
	eventsMem   []byte
	mem         []byte // defaultBufCount buffers of defaultBufSize
	free        []uint16
	inflight    int
	stopping    bool
	epollArmed  bool // an IORING_OP_EPOLL_WAIT is in flight (one at a time)
	roundSends  uint32
	minWaitUsec uint32
	err         error
}

func newUringEpollLoop(lfd, wake int, cfg relayConfig, st *stats) (func() error, error) {
	r, err := newRing(defaultSQEntries, defaultCQEntries)
	if err != nil {
		return nil, err
	}
	l := &uringEpollLoop{r: r, lfd: lfd, wake: wake, cfg: cfg, st: st, sides: map[int]*uepSide{},
		minWaitUsec: uint32(cfg.MinWait / time.Microsecond)}
	fail := func(err error) (func() error, error) {
		l.release()
		return nil, err
	}
	if l.ep, err = unix.EpollCreate1(unix.EPOLL_CLOEXEC); err != nil {
		l.ep = -1
		return fail(fmt.Errorf("epoll_create1: %w", err))
	}
	const nevents = 256
	size := nevents * int(unsafe.Sizeof(unix.EpollEvent{}))
	if l.eventsMem, err = unix.Mmap(-1, 0, size, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	l.events = unsafe.Slice((*unix.EpollEvent)(unsafe.Pointer(&l.eventsMem[0])), nevents)
	if l.mem, err = unix.Mmap(-1, 0, defaultBufCount*defaultBufSize, unix.PROT_READ|unix.PROT_WRITE, unix.MAP_ANONYMOUS|unix.MAP_PRIVATE); err != nil {
		return fail(fmt.Errorf("mmap: %w", err))
	}
	for i := defaultBufCount - 1; i >= 0; i-- {
		l.free = append(l.free, uint16(i))
	}
	for _, fd := range []int{lfd, wake} {
		if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			return fail(fmt.Errorf("epoll_ctl: %w", err))
		}
	}
	return l.run, nil
}

func (l *uringEpollLoop) release() {
	l.r.Close()
	if l.ep >= 0 {
		unix.Close(l.ep)
	}
	if l.eventsMem != nil {
		unix.Munmap(l.eventsMem)
	}
	if l.mem != nil {
		unix.Munmap(l.mem)
	}
}

func (l *uringEpollLoop) prep(kind, fd int, op uint8) *uring.SQE {
	s, err := l.r.GetSQE()
	if err != nil {
		if l.err == nil {
			l.err = err
		}
		return &uring.SQE{}
	}
	s.Opcode = op
	s.Fd = int32(fd)
	s.UserData = userData(kind, fd)
	l.inflight++
	return s
}

func (l *uringEpollLoop) buf(bid uint16) []byte {
	off := int(bid) * defaultBufSize
	return l.mem[off : off+defaultBufSize : off+defaultBufSize]
}

func (l *uringEpollLoop) run() error {
	defer l.release()
	for l.err == nil {
		if !l.stopping && !l.epollArmed {
			s := l.prep(kindEpoll, l.ep, uring.OpEpollWait)
			s.Addr = uint64(uintptr(unsafe.Pointer(&l.events[0])))
			s.Len = uint32(len(l.events))
			l.epollArmed = true
		} else if l.stopping && l.inflight == 0 {
			break
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

func (l *uringEpollLoop) complete(c uring.CQE) {
	kind, fd := int(c.UserData>>32), int(int32(uint32(c.UserData)))
	l.inflight--
	switch kind {
	case kindEpoll:
		l.epollArmed = false
		switch {
		case c.Res > 0:
			l.ready(int(c.Res))
		case c.Res < 0 && c.Res != -int32(unix.EINTR) && c.Res != -int32(unix.ECANCELED) && l.err == nil:
			l.err = fmt.Errorf("IORING_OP_EPOLL_WAIT: %w", unix.Errno(-c.Res))
		}
	case kindSend:
		l.sent(l.sides[fd], c)
	}
}

func (l *uringEpollLoop) ready(n int) {
	for i := range n {
		ev := l.events[i]
		fd := int(ev.Fd)
		switch fd {
		case l.wake:
			l.stop()
			return
		case l.lfd:
			l.accept()
			continue
		}
		if s := l.sides[fd]; s != nil && !s.closing && !s.paused {
			l.read(s)
		}
	}
}

func (l *uringEpollLoop) stop() {
	l.stopping = true
	s := l.prep(kindCancel, 0, uring.OpAsyncCancel)
	s.OpFlags = uring.CancelAny
	for _, x := range l.sides {
		if !x.closing {
			l.closePair(x)
		}
	}
}

func (l *uringEpollLoop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return
		}
		l.st.accepts.Add(1)
		if err := setupConn(cfd); err != nil {
			unix.Close(cfd)
			continue
		}
		bfd, err := dial(l.cfg.Backend)
		if err != nil {
			unix.Close(cfd)
			continue
		}
		c := &uepSide{fd: cfd}
		b := &uepSide{fd: bfd, peer: c}
		c.peer = b
		l.sides[cfd], l.sides[bfd] = c, b
		for _, fd := range []int{cfd, bfd} {
			if err := unix.EpollCtl(l.ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
				l.closePair(c)
				break
			}
		}
	}
}

// read reads once from s into a free buffer and queues it to s's peer.
func (l *uringEpollLoop) read(s *uepSide) {
	if len(l.free) == 0 {
		return // every buffer is on its way out; the level-triggered event repeats
	}
	bid := l.free[len(l.free)-1]
	n, err := rawRW(unix.SYS_READ, s.fd, l.buf(bid))
	l.st.reads.Add(1)
	if err == unix.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		l.closePair(s)
		return
	}
	l.free = l.free[:len(l.free)-1]
	p := s.peer
	p.queue = append(p.queue, chunk{bid: bid, size: n})
	if !p.sending {
		l.send(p)
	}
	if len(p.queue) >= maxQueueChunks {
		s.paused = true
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, s.fd, &unix.EpollEvent{Fd: int32(s.fd)})
	}
}

func (l *uringEpollLoop) send(x *uepSide) {
	c := x.queue[0]
	b := l.buf(c.bid)[c.off:c.size]
	s := l.prep(kindSend, x.fd, uring.OpSend)
	s.Addr = uint64(uintptr(unsafe.Pointer(&b[0])))
	s.Len = uint32(len(b))
	s.OpFlags = unix.MSG_NOSIGNAL | unix.MSG_WAITALL
	x.sending = true
	l.roundSends++
	l.st.writes.Add(1)
}

func (l *uringEpollLoop) sent(x *uepSide, c uring.CQE) {
	x.sending = false
	if c.Res < 0 {
		l.closePair(x)
	} else {
		x.queue[0].off += int(c.Res)
		if x.queue[0].off == x.queue[0].size {
			l.free = append(l.free, x.queue[0].bid)
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
	if p := x.peer; p.paused && len(x.queue) < maxQueueChunks/2 {
		p.paused = false
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, p.fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(p.fd)})
	}
}

// closePair takes both sockets out of the epoll set and shuts them down
// (a send in flight ends with an error); they are closed once no send of
// theirs is in flight.
func (l *uringEpollLoop) closePair(x *uepSide) {
	if x.closing {
		return
	}
	for _, y := range []*uepSide{x, x.peer} {
		y.closing = true
		unix.EpollCtl(l.ep, unix.EPOLL_CTL_DEL, y.fd, nil)
		unix.Shutdown(y.fd, unix.SHUT_RDWR)
	}
	l.maybeFinish(x)
}

func (l *uringEpollLoop) maybeFinish(x *uepSide) {
	p := x.peer
	if x.sending || p.sending {
		return
	}
	for _, y := range []*uepSide{x, p} {
		for _, c := range y.queue {
			l.free = append(l.free, c.bid)
		}
		y.queue = nil
		if l.sides[y.fd] == y {
			delete(l.sides, y.fd)
			unix.Close(y.fd)
		}
	}
}
