package tlsx

import (
	"errors"
	"syscall"

	"github.com/warrenhq/warren/internal/threadattr"
)

// niceSupported: Linux sets a nice value per thread.
const niceSupported = true

// errMainThread: the worker runs on the process's main thread, which is
// not lowered — tools show its nice value as the process's, and the
// runtime cannot end it with the worker (it parks it for good instead).
var errMainThread = errors.New("tlsx: on the main thread")

// errLowest: the thread is at nice 19 already; there is nothing to lower.
var errLowest = errors.New("tlsx: the process runs at the lowest priority already")

// lowerThread lowers the calling thread's priority by n nice levels from
// the one it has (the process's: the runtime starts threads from its
// template thread), to 19 at most — relative, so that a gateway started
// at nice 15 does not raise its handshakes above its loops (raising
// succeeds with CAP_SYS_NICE). The caller has locked its goroutine to
// the thread.
func lowerThread(n int) error {
	tid := syscall.Gettid()
	if tid == syscall.Getpid() {
		return errMainThread
	}
	threadattr.Mu.Lock() // against a -sched-slice sweep writing back the nice it read
	defer threadattr.Mu.Unlock()
	prio, err := syscall.Getpriority(syscall.PRIO_PROCESS, tid) // the raw system call: 20 - nice
	if err != nil {
		return err
	}
	cur := 20 - prio
	to := min(cur+n, 19)
	if to <= cur {
		return errLowest
	}
	return syscall.Setpriority(syscall.PRIO_PROCESS, tid, to)
}
