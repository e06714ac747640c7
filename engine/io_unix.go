//go:build linux || darwin || freebsd

package engine

import (
	"errors"
	"log/slog"
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

// raiseFileLimit lifts the soft RLIMIT_NOFILE to the hard limit.
func raiseFileLimit(log *slog.Logger) {
	var rl unix.Rlimit
	if err := unix.Getrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
		return
	}
	if rl.Cur < rl.Max {
		old := rl.Cur
		rl.Cur = rl.Max
		if err := unix.Setrlimit(unix.RLIMIT_NOFILE, &rl); err != nil {
			log.Warn("engine: cannot raise open-file limit", "soft", old, "hard", rl.Max, "error", err)
		}
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
