//go:build darwin || freebsd

package engine

import (
	"net/netip"

	"golang.org/x/sys/unix"
)

func acceptFD(lfd int) (int, unix.Sockaddr, error) {
	fd, sa, err := unix.Accept(lfd)
	if err != nil {
		return -1, nil, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, nil, err
	}
	return fd, sa, nil
}

func dupCloexec(fd int) (int, error) {
	return unix.FcntlInt(uintptr(fd), unix.F_DUPFD_CLOEXEC, 0)
}

func socketFD(family int) (int, error) {
	fd, err := unix.Socket(family, unix.SOCK_STREAM, 0)
	if err != nil {
		return -1, err
	}
	unix.CloseOnExec(fd)
	if err := unix.SetNonblock(fd, true); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

func bindNoPort(int) {}

type acceptScratch struct{}

// acceptConn accepts one connection, non-blocking and close-on-exec.
func (l *loop) acceptConn(lfd int) (int, netip.AddrPort, error) {
	fd, sa, err := acceptFD(lfd)
	if err != nil {
		return -1, netip.AddrPort{}, err
	}
	return fd, sockaddrToAddrPort(sa), nil
}
