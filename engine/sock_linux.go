//go:build linux

package engine

import (
	"net/netip"
	"unsafe"

	"golang.org/x/sys/unix"
)

func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func socketFD(family int) (int, error) {
	return unix.Socket(family, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
}

// bindNoPort defers the choice of the local port to connect, so many
// connections from one source address share ports across destinations.
func bindNoPort(fd int) {
	unix.SetsockoptInt(fd, unix.IPPROTO_IP, unix.IP_BIND_ADDRESS_NO_PORT, 1)
}

// acceptScratch is a loop's buffer for the peer address of accept4, so
// accepting allocates nothing (unix.Accept4 allocates a Sockaddr).
type acceptScratch struct {
	rsa unix.RawSockaddrAny
	len uint32
}

// acceptConn accepts one connection, non-blocking and close-on-exec.
func (l *loop) acceptConn(lfd int) (int, netip.AddrPort, error) {
	s := &l.scratch
	s.len = unix.SizeofSockaddrAny
	r, _, errno := unix.Syscall6(unix.SYS_ACCEPT4, uintptr(lfd), uintptr(unsafe.Pointer(&s.rsa)),
		uintptr(unsafe.Pointer(&s.len)), unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0, 0)
	if errno != 0 {
		return -1, netip.AddrPort{}, errno
	}
	return int(r), rawToAddrPort(&s.rsa), nil
}

func rawToAddrPort(rsa *unix.RawSockaddrAny) netip.AddrPort {
	switch rsa.Addr.Family {
	case unix.AF_INET:
		sa := (*unix.RawSockaddrInet4)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom4(sa.Addr), uint16(p[0])<<8|uint16(p[1]))
	case unix.AF_INET6:
		sa := (*unix.RawSockaddrInet6)(unsafe.Pointer(rsa))
		p := (*[2]byte)(unsafe.Pointer(&sa.Port))
		return netip.AddrPortFrom(netip.AddrFrom16(sa.Addr).Unmap(), uint16(p[0])<<8|uint16(p[1]))
	}
	return netip.AddrPort{}
}
