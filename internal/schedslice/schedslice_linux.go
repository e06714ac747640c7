package schedslice

import (
	"errors"
	"fmt"
	"os"
	"strconv"
	"time"

	"golang.org/x/sys/unix"
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
	}
	return nil
}

// eligible reports whether a thread with these attributes gets the slice:
// a normal or batch policy at a nice value not lowered.
func eligible(a *unix.SchedAttr) bool {
	return (a.Policy == unix.SCHED_NORMAL || a.Policy == unix.SCHED_BATCH) && a.Nice <= 0
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
		if !eligible(a) {
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
