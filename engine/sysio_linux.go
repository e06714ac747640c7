//go:build linux

package engine

import (
	"syscall"
	"unsafe"

	"golang.org/x/sys/unix"
)

// The loops' descriptors are all non-blocking, so read and write return
// at once: they are issued as raw system calls, without telling the Go
// scheduler that the thread is entering a system call. A thread that is
// only briefly in the kernel keeps its P; with the scheduled variant the
// runtime's monitor hands the P of a loop preempted inside a loopback
// write over to another thread, and wakes itself every 20 µs to check.

// syscall.RawSyscall rather than unix.RawSyscall: it is nosplit and keeps
// its pointer arguments alive on every architecture, so the iovec array on
// the stack cannot move under the call.

// maxIovecs bounds one writev; the caller queues what was not written.
const maxIovecs = 64

func sysRead(fd int, p []byte) (int, error)  { return rawRW(unix.SYS_READ, fd, p) }
func sysWrite(fd int, p []byte) (int, error) { return rawRW(unix.SYS_WRITE, fd, p) }

// rawRW is read or write (trap) on fd as a raw system call.
func rawRW(trap uintptr, fd int, p []byte) (int, error) {
	r, _, e := syscall.RawSyscall(trap, uintptr(fd), uintptr(unsafe.Pointer(unsafe.SliceData(p))), uintptr(len(p)))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(r), nil
}

func writev(fd int, bufs [][]byte) (int, error) {
	var iov [maxIovecs]unix.Iovec
	n := 0
	for _, b := range bufs {
		if len(b) == 0 {
			continue
		}
		if n == len(iov) {
			break
		}
		iov[n].Base = unsafe.SliceData(b)
		iov[n].SetLen(len(b))
		n++
	}
	if n == 0 {
		return 0, nil
	}
	r, _, e := syscall.RawSyscall(unix.SYS_WRITEV, uintptr(fd), uintptr(unsafe.Pointer(&iov[0])), uintptr(n))
	if e != 0 {
		return 0, errnoErr(e)
	}
	return int(r), nil
}

// errnoErr returns the common errors without boxing a new value.
func errnoErr(e unix.Errno) error {
	switch e {
	case unix.EAGAIN:
		return unix.EAGAIN
	case unix.EINTR:
		return unix.EINTR
	}
	return e
}
