package schedslice

import (
	"errors"
	"fmt"
	"os"
	"runtime"
	"strconv"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/threadattr"
)

// first is New's sweep. A kernel before 6.12 accepts sched_runtime for a
// normal thread and ignores it: the sweep reads back the first thread it
// set, and first fails when that one kept the kernel's slice, or when no
// thread could be read or set at all.
func (s *Sweeper) first() error {
	r := s.sweep()
	switch {
	case r.ignored:
		return fmt.Errorf("%w: the kernel reads back a slice of %dns after setting %dns", ErrUnsupported, r.readBack, s.cfg.Slice.Nanoseconds())
	case r.err != nil && r.threads == 0:
		return fmt.Errorf("%w: %v", ErrUnsupported, r.err)
	case r.threads == 0:
		return fmt.Errorf("%w: no thread of the process could take it", ErrUnsupported)
	}
	return nil
}

// eligible reports whether a thread with these attributes gets the slice:
// a normal or batch policy at a nice value not lowered below the
// process's (base, its main thread's: a process started under nice 5 has
// every thread at 5, and tlsx's handshake workers lower themselves from
// it).
func eligible(a *unix.SchedAttr, base int32) bool {
	return (a.Policy == unix.SCHED_NORMAL || a.Policy == unix.SCHED_BATCH) && a.Nice <= base
}

// sweepThreads sets the slice on every eligible thread of the process
// that does not have it yet.
func sweepThreads(slice time.Duration) result {
	var r result
	f, err := os.Open("/proc/self/task")
	if err != nil {
		r.failed, r.err = 1, err
		return r
	}
	names, err := f.Readdirnames(-1)
	f.Close()
	if err != nil {
		r.failed, r.err = 1, err
		return r
	}
	want := uint64(slice.Nanoseconds())
	var base int32
	if a, err := unix.SchedGetAttr(os.Getpid(), 0); err == nil {
		base = a.Nice
	}
	// Each read and its write are one step against tlsx lowering a
	// handshake worker's nice (threadattr), which the write would undo.
	threadattr.Mu.Lock()
	defer threadattr.Mu.Unlock()
	for _, n := range names {
		tid, err := strconv.Atoi(n)
		if err != nil {
			continue
		}
		a, err := unix.SchedGetAttr(tid, 0)
		if err != nil {
			r.fail(err)
			continue
		}
		if !eligible(a, base) {
			continue
		}
		if a.Runtime == want {
			r.threads++
			continue
		}
		a.Runtime = want
		a.Flags &= unix.SCHED_FLAG_RESET_ON_FORK // keep it; ask nothing else
		if err := unix.SchedSetAttr(tid, a, 0); err != nil {
			r.fail(err)
			continue
		}
		if r.set == 0 {
			// The first thread set: did the kernel keep it?
			if b, err := unix.SchedGetAttr(tid, 0); err == nil && b.Runtime != want {
				r.ignored, r.readBack = true, b.Runtime
				return r
			}
		}
		r.set++
		r.threads++
	}
	return r
}

// fail counts a failure, unless the thread ended meanwhile.
func (r *result) fail(err error) {
	if errors.Is(err, unix.ESRCH) {
		return
	}
	r.failed++
	if r.err == nil {
		r.err = err
	}
}

// Supported reports whether the kernel keeps a slice set on a normal
// thread (Linux 6.12 and newer), nil if it does, an error wrapping
// ErrUnsupported if not. It tries on a thread of its own, which ends with
// the try: no thread of the caller's changes.
func Supported() error {
	errc := make(chan error, 1)
	go func() {
		runtime.LockOSThread() // not unlocked: the thread ends with the goroutine
		a, err := unix.SchedGetAttr(0, 0)
		if err != nil {
			errc <- fmt.Errorf("%w: %v", ErrUnsupported, err)
			return
		}
		want := uint64(MinSlice.Nanoseconds())
		if a.Runtime == want {
			want *= 2
		}
		a.Runtime = want
		a.Flags &= unix.SCHED_FLAG_RESET_ON_FORK
		if err := unix.SchedSetAttr(0, a, 0); err != nil {
			errc <- fmt.Errorf("%w: %v", ErrUnsupported, err)
			return
		}
		if b, err := unix.SchedGetAttr(0, 0); err != nil || b.Runtime != want {
			errc <- fmt.Errorf("%w: the kernel does not keep a thread's slice", ErrUnsupported)
			return
		}
		errc <- nil
	}()
	return <-errc
}
