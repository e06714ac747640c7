//go:build linux

package main

import (
	"fmt"
	"net/netip"
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// epollSide is one socket of a client–backend pair on an epoll loop.
type epollSide struct {
	fd   int
	peer *epollSide
	// pend holds bytes read from peer that fd's socket did not take at
	// once; while it is non-empty the peer is not read (its interest is
	// dropped), so it stays bounded by one read buffer.
	pend []byte
}

type epollLoop struct {
	ep      int
	lfd     int
	wake    int
	backend netip.AddrPort
	st      *stats
	sides   map[int]*epollSide
	buf     []byte
	events  []unix.EpollEvent
}

func newEpollLoop(lfd, wake int, cfg relayConfig, st *stats) (func() error, error) {
	ep, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, fmt.Errorf("epoll_create1: %w", err)
	}
	l := &epollLoop{ep: ep, lfd: lfd, wake: wake, backend: cfg.Backend, st: st, sides: map[int]*epollSide{},
		buf: make([]byte, defaultBufSize), events: make([]unix.EpollEvent, 256)}
	for _, fd := range []int{lfd, wake} {
		if err := unix.EpollCtl(ep, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(fd)}); err != nil {
			unix.Close(ep)
			return nil, fmt.Errorf("epoll_ctl: %w", err)
		}
	}
	return l.run, nil
}

func (l *epollLoop) run() error {
	defer l.shutdown()
	for {
		n, err := unix.EpollWait(l.ep, l.events, -1)
		l.st.enters.Add(1)
		l.st.rounds.Add(1)
		if err == unix.EINTR {
			continue
		}
		if err != nil {
			return fmt.Errorf("epoll_wait: %w", err)
		}
		l.st.events.Add(uint64(n))
		for i := range n {
			ev := l.events[i]
			fd := int(ev.Fd)
			switch fd {
			case l.wake:
				return nil
			case l.lfd:
				l.accept()
				continue
			}
			s := l.sides[fd]
			if s == nil {
				continue // closed earlier in this round
			}
			if ev.Events&unix.EPOLLOUT != 0 && len(s.pend) > 0 {
				l.flush(s)
				if l.sides[fd] == nil {
					continue
				}
			}
			if ev.Events&(unix.EPOLLIN|unix.EPOLLHUP|unix.EPOLLERR) != 0 && len(s.peer.pend) == 0 {
				l.relay(s)
			}
		}
	}
}

func (l *epollLoop) accept() {
	for {
		cfd, _, err := unix.Accept4(l.lfd, unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC)
		if err != nil {
			return // EAGAIN, or an error the next readiness retries
		}
		l.st.accepts.Add(1)
		if err := setupConn(cfd); err != nil {
			unix.Close(cfd)
			continue
		}
		bfd, err := dial(l.backend)
		if err != nil {
			unix.Close(cfd)
			continue
		}
		c := &epollSide{fd: cfd}
		b := &epollSide{fd: bfd, peer: c}
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

// relay reads once from s and writes the bytes to its peer.
func (l *epollLoop) relay(s *epollSide) {
	n, err := rawRW(unix.SYS_READ, s.fd, l.buf)
	l.st.reads.Add(1)
	if err == unix.EAGAIN {
		return
	}
	if err != nil || n == 0 {
		l.closePair(s)
		return
	}
	p := s.peer
	w, err := rawRW(unix.SYS_WRITE, p.fd, l.buf[:n])
	l.st.writes.Add(1)
	if err != nil && err != unix.EAGAIN {
		l.closePair(s)
		return
	}
	if w < 0 {
		w = 0
	}
	if w < n {
		// The peer's socket is full: keep the rest, wait for it to drain,
		// and stop reading s until then.
		p.pend = append(p.pend[:0], l.buf[w:n]...)
		l.interest(p, unix.EPOLLIN|unix.EPOLLOUT)
		l.interest(s, 0)
	}
}

// flush writes s's pending bytes; once they are all out, s is read again
// and its peer too.
func (l *epollLoop) flush(s *epollSide) {
	w, err := rawRW(unix.SYS_WRITE, s.fd, s.pend)
	l.st.writes.Add(1)
	if err != nil && err != unix.EAGAIN {
		l.closePair(s)
		return
	}
	if w > 0 {
		s.pend = s.pend[w:]
	}
	if len(s.pend) == 0 {
		s.pend = nil
		l.interest(s, unix.EPOLLIN)
		l.interest(s.peer, unix.EPOLLIN)
	}
}

func (l *epollLoop) interest(s *epollSide, events uint32) {
	unix.EpollCtl(l.ep, unix.EPOLL_CTL_MOD, s.fd, &unix.EpollEvent{Events: events, Fd: int32(s.fd)})
}

// closePair closes both sockets of s's pair (closing removes them from
// the epoll set).
func (l *epollLoop) closePair(s *epollSide) {
	for _, x := range []*epollSide{s, s.peer} {
		if l.sides[x.fd] == x {
			delete(l.sides, x.fd)
			unix.Close(x.fd)
		}
	}
}

func (l *epollLoop) shutdown() {
	for _, s := range l.sides {
		l.closePair(s)
	}
	unix.Close(l.lfd)
	unix.Close(l.ep)
}

// rawRW is read or write (trap) on a non-blocking socket as a raw system
// call, without telling the Go scheduler, as warren's engine makes them
// (engine/sysio_linux.go).
func rawRW(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}
