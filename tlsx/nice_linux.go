package tlsx

import (
	"errors"
	"syscall"
)

// niceSupported: Linux sets a nice value per thread.
const niceSupported = true

// errMainThread: the worker runs on the process's main thread, which is
// not lowered — tools show its nice value as the process's, and the
// runtime cannot end it with the worker (it parks it for good instead).
var errMainThread = errors.New("tlsx: on the main thread")

// lowerThread sets the calling thread's nice value to n (the caller has
// locked its goroutine to the thread).
func lowerThread(n int) error {
	tid := syscall.Gettid()
	if tid == syscall.Getpid() {
		return errMainThread
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, n)
}
