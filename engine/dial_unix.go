//go:build linux || darwin || freebsd

package engine

import (
	"errors"
	"net/netip"

	"golang.org/x/sys/unix"
)

// dial opens a non-blocking outbound connection and hands it to a loop.
func (e *Engine) dial(loops []*loop, raddr netip.AddrPort, laddr netip.Addr, h Handler, value any) (*Conn, error) {
	if len(loops) == 0 {
		return nil, errors.New("engine: Dial before Start")
	}
	if e.draining.Load() {
		return nil, ErrServerClosed
	}
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	family := unix.AF_INET
	if raddr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := socketFD(family)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Conn, error) {
		unix.Close(fd)
		return nil, err
	}
	if laddr.IsValid() {
		bindNoPort(fd)
		if err := unix.Bind(fd, toSockaddr(netip.AddrPortFrom(laddr.Unmap(), 0))); err != nil {
			return fail(err)
		}
	}
	if err := unix.Connect(fd, toSockaddr(raddr)); err != nil && err != unix.EINPROGRESS {
		return fail(err)
	}
	if n := e.conns.Add(1); e.cfg.MaxConns > 0 && n > int64(e.cfg.MaxConns) {
		e.conns.Add(-1)
		return fail(ErrLimit)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := e.newConn(fd, raddr, h, e.cfg.Inline)
	c.flags |= fDialing | fOutbound
	if value != nil {
		c.SetContext(value)
	}
	target := loops[e.rr.Add(1)%uint64(len(loops))]
	c.host = target
	if !target.post(op{kind: opRegister, c: c}) {
		e.conns.Add(-1)
		return fail(ErrServerClosed)
	}
	return c, nil
}

// toSockaddr converts ap for the socket calls.
func toSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
