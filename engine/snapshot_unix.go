//go:build linux || darwin || freebsd

package engine

import (
	"net/netip"
	"time"

	"golang.org/x/sys/unix"
)

// snapshot describes l's connections for Engine.Conns; it runs on l.
func (l *loop) snapshot() []ConnInfo {
	var out []ConnInfo
	l.walkInfo(func(ci *ConnInfo) bool {
		out = append(out, *ci)
		return true
	})
	return out
}

// walkInfo calls fn with a description of each of l's connections, in one
// ConnInfo reused from call to call, until fn returns false; it runs on l
// (Engine.EachConnInfo).
func (l *loop) walkInfo(fn func(ci *ConnInfo) bool) {
	now := l.tick.Load()
	var ci ConnInfo
	l.eachConnWhile(func(c *Conn) bool {
		l.infoOf(c, now, &ci)
		return fn(&ci)
	})
}

// infoOf describes c, one of l's connections, in ci at l's tick now; it
// runs on l.
func (l *loop) infoOf(c *Conn, now int64, ci *ConnInfo) {
	e := l.e
	c.mu.Lock()
	queued, lw := c.out.len(), c.lastWrite
	c.mu.Unlock()
	last := c.lastRead.at(now)
	if lw != 0 {
		last = max(last, lw.at(now))
	}
	// Accepted connections on a listener bound to one address share
	// its local address: spare a getsockname per connection.
	local := c.LocalAddr()
	*ci = ConnInfo{
		ID: c.id, Loop: l.idx, Remote: c.RemoteAddr(), Local: local, State: c.State(),
		Protocol: c.Protocol(), Label: labelOf(c), Listener: int(c.ln), Outbound: c.flags&fOutbound != 0,
		Created:    time.Unix(0, c.created),
		LastActive: e.start.Add(time.Duration(last-1) * e.tickDur),
		BytesIn:    c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Served: c.served.Load(),
		ReadBuffer: len(c.input()), WriteBuffer: queued,
	}
}

// sockName looks c's local address up with getsockname.
func sockName(c *Conn) netip.AddrPort {
	sa, err := unix.Getsockname(int(c.fd))
	if err != nil {
		return netip.AddrPort{}
	}
	return sockaddrToAddrPort(sa)
}

// sockaddrToAddrPort converts an address from the socket calls.
func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}
