//go:build linux || darwin || freebsd

package engine

import (
	"errors"
	"syscall"

	"golang.org/x/sys/unix"
)

// readFD reads once. It returns (0, nil) at end of file and (0, EAGAIN)
// when nothing is waiting.
func readFD(fd int, buf []byte) (int, error) {
	for {
		n, err := sysRead(fd, buf)
		if err == unix.EINTR {
			continue
		}
		if n < 0 {
			n = 0
		}
		return n, err
	}
}

// writeFD writes bufs with one writev. EAGAIN is not an error: it returns
// the bytes written, possibly zero.
func writeFD(fd int, bufs [][]byte) (int, error) {
	for {
		var n int
		var err error
		if len(bufs) == 1 {
			n, err = sysWrite(fd, bufs[0])
		} else {
			n, err = writev(fd, bufs)
		}
		if n < 0 {
			n = 0
		}
		switch err {
		case unix.EINTR:
			continue
		case unix.EAGAIN:
			return n, nil
		}
		return n, err
	}
}

// reasonFor maps an I/O error to a close reason.
func reasonFor(err error) CloseReason {
	switch {
	case err == nil:
		return ReasonPeerClosed
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonPeerReset
	case errors.Is(err, syscall.ETIMEDOUT):
		return ReasonIOError
	}
	return ReasonIOError
}

// sockError returns the error pending on socket fd (SO_ERROR), or nil.
func sockError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return syscall.Errno(v)
	}
	return nil
}
