//go:build linux || darwin || freebsd

package prefork

import (
	"io"
	"net"
	"net/netip"
	"strconv"

	"golang.org/x/sys/unix"
)

// reservePort binds (without listening) a SO_REUSEPORT socket on addr, so
// the port is the workers' and no connection is queued to the parent.
func reservePort(addr string) (string, io.Closer, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil {
		return "", nil, err
	}
	if host == "" {
		host = "0.0.0.0"
	}
	ips, err := net.LookupIP(host)
	if err != nil || len(ips) == 0 {
		return "", nil, err
	}
	ip, _ := netip.AddrFromSlice(ips[0])
	ip = ip.Unmap()
	p, err := strconv.Atoi(port)
	if err != nil {
		return "", nil, err
	}
	family := unix.AF_INET
	var sa unix.Sockaddr = &unix.SockaddrInet4{Port: p, Addr: ip.As4()}
	if ip.Is6() {
		family = unix.AF_INET6
		sa = &unix.SockaddrInet6{Port: p, Addr: ip.As16()}
	}
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return "", nil, err
	}
	unix.CloseOnExec(fd)
	unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1)
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return "", nil, err
	}
	if err := unix.Bind(fd, sa); err != nil {
		unix.Close(fd)
		return "", nil, err
	}
	bound, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return "", nil, err
	}
	switch b := bound.(type) {
	case *unix.SockaddrInet4:
		p = b.Port
	case *unix.SockaddrInet6:
		p = b.Port
	}
	return net.JoinHostPort(ip.String(), strconv.Itoa(p)), fdCloser(fd), nil
}

type fdCloser int

func (f fdCloser) Close() error { return unix.Close(int(f)) }
