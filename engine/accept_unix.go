//go:build linux || darwin || freebsd

package engine

import (
	"context"
	"errors"
	"net"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// listener is one listening socket on a loop.
type listener struct {
	fd      int
	spec    *Listener
	paused  bool
	backoff time.Duration
}

// listenLoops opens sp's sockets — one per loop with ReusePort, else one on
// loop 0, which hands accepted connections out with pick — and adds them
// to the running loops. It sets sp.addr.
func listenLoops(e *Engine, sp *Listener, addr string) error {
	cfg := &e.cfg
	var fds []int
	fail := func(err error) error {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return err
	}
	var bound net.Addr
	if sp.ln != nil {
		fd, err := dupListener(sp.ln, cfg.Backlog)
		bound = sp.ln.Addr()
		sp.ln.Close()
		sp.ln = nil
		if err != nil {
			return fail(err)
		}
		fds = append(fds, fd)
	} else {
		count := 1
		if cfg.ReusePort {
			count = len(e.loops)
		}
		for i := 0; i < count; i++ {
			fd, a, err := listenFD(addr, cfg.ReusePort, cfg.Backlog)
			if err != nil {
				return fail(err)
			}
			if bound == nil {
				bound = a
				addr = a.String() // later reuse-port sockets bind the chosen port
			}
			fds = append(fds, fd)
		}
	}
	// Each loop adds its socket to its own poller: the loops are running.
	errs := make(chan error, len(fds))
	for i, fd := range fds {
		l := e.loops[i]
		ln := &listener{fd: fd, spec: sp}
		if !l.postFunc(func() {
			if l.stopping {
				unix.Close(ln.fd)
				errs <- ErrServerClosed
				return
			}
			if err := l.poller.Add(ln.fd, true, false); err != nil {
				unix.Close(ln.fd)
				errs <- err
				return
			}
			l.lns = append(l.lns, ln)
			errs <- nil
		}) {
			unix.Close(fd)
			errs <- ErrServerClosed
		}
	}
	var first error
	for range fds {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		// Sockets already added stay until the engine stops; none accept
		// for long, since the caller sees the error.
		return first
	}
	sp.fds = fds
	sp.addr = bound
	return nil
}

// listenerOf returns l's listener on descriptor fd, or nil.
func (l *loop) listenerOf(fd int) *listener {
	for _, ln := range l.lns {
		if ln.fd == fd {
			return ln
		}
	}
	return nil
}

// accept takes pending connections off ln, applies admission and hands each
// to a loop. A bounded batch keeps connections on this loop served.
func (l *loop) accept(ln *listener) {
	e := l.e
	for i := 0; i < 256; i++ {
		fd, remote, err := l.acceptConn(ln.fd)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				ln.backoff = 0
				return
			case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				l.stats.rejected[BoundDescriptors].Add(1)
				e.errLog.Log("engine: accept: out of descriptors or memory; backing off", err)
				l.pauseListener(ln)
				return
			default:
				e.errLog.Log("engine: accept", err)
				l.pauseListener(ln)
				return
			}
		}
		ln.backoff = 0
		if b, ok := e.admit(remote.Addr()); !ok {
			// Count before closing, so a peer that saw the close sees it
			// counted.
			l.stats.rejected[b].Add(1)
			l.stats.closed[ReasonLimitReached].Add(1)
			unix.Close(fd)
			continue
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := e.newConn(fd, remote, ln.spec.h, ln.spec.inline)
		c.ln = ln.spec.idx
		target := l.pick()
		c.host = target
		if target == l {
			l.register(c)
		} else if !target.post(op{kind: opRegister, c: c}) {
			unix.Close(fd)
			e.release(c)
		}
	}
}

// pauseListener stops polling ln for a while after an accept error, so a
// descriptor shortage never turns into a busy loop.
func (l *loop) pauseListener(ln *listener) {
	if ln.paused {
		return
	}
	if ln.backoff == 0 {
		ln.backoff = 5 * time.Millisecond
	} else if ln.backoff *= 2; ln.backoff > time.Second {
		ln.backoff = time.Second
	}
	ln.paused = true
	l.poller.Del(ln.fd)
	time.AfterFunc(ln.backoff, func() {
		l.postFunc(func() {
			if ln.paused && ln.fd >= 0 {
				ln.paused = false
				l.poller.Add(ln.fd, true, false)
			}
		})
	})
}

// pick chooses the loop for a connection l accepted: l itself with
// ReusePort or a single loop, else the loop with the fewest connections
// (LeastConnections) or the next in turn.
func (l *loop) pick() *loop {
	e := l.e
	if e.cfg.ReusePort || len(e.loops) == 1 {
		return l
	}
	if e.cfg.Balance == LeastConnections {
		best := e.loops[0]
		for _, o := range e.loops[1:] {
			if o.stats.conns.Load() < best.stats.conns.Load() {
				best = o
			}
		}
		return best
	}
	return e.loops[e.rr.Add(1)%uint64(len(e.loops))]
}

// listenFD opens a listening socket with Go's resolver and dials the
// options, then takes a non-blocking duplicate of its descriptor.
func listenFD(addr string, reusePort bool, backlog int) (int, net.Addr, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return -1, nil, err
	}
	defer ln.Close()
	fd, err := dupListener(ln, backlog)
	return fd, ln.Addr(), err
}

// dupListener takes a non-blocking, close-on-exec duplicate of ln's
// descriptor and raises its backlog; ln stays the caller's to close.
func dupListener(ln net.Listener, backlog int) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("engine: listener has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = dupCloexec(int(fd)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	unix.Listen(nfd, backlog) // raise the backlog; harmless if refused
	return nfd, nil
}
