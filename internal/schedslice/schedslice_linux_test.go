package schedslice

import (
	"context"
	"errors"
	"os"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/threadattr"

	wtest "github.com/warrenhq/warren/internal/testutil"
)

const testSlice = 300 * time.Microsecond

// start is New, skipping the test on a kernel that cannot keep a
// per-thread slice (before 6.12: ErrUnsupported); it puts every thread
// back at the kernel's slice when the test ends.
func start(t *testing.T, cfg Config) *Sweeper {
	t.Helper()
	s, err := New(cfg)
	if errors.Is(err, ErrUnsupported) {
		t.Skipf("this kernel: %v", err)
	}
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(resetAll)
	return s
}

// resetAll puts every thread of the test process back at the kernel's
// slice, for the tests after this one.
func resetAll() {
	names, _ := os.ReadDir("/proc/self/task")
	for _, n := range names {
		tid, _ := strconv.Atoi(n.Name())
		if a, err := unix.SchedGetAttr(tid, 0); err == nil && eligible(a, baseNice()) {
			a.Runtime, a.Flags = 0, a.Flags&unix.SCHED_FLAG_RESET_ON_FORK
			unix.SchedSetAttr(tid, a, 0)
		}
	}
}

// baseNice is the test process's nice value (its main thread's).
func baseNice() int32 {
	a, err := unix.SchedGetAttr(os.Getpid(), 0)
	if err != nil {
		return 0
	}
	return a.Nice
}

// threadSlices reads every eligible thread's slice.
func threadSlices(t *testing.T) map[int]uint64 {
	t.Helper()
	names, err := os.ReadDir("/proc/self/task")
	if err != nil {
		t.Fatal(err)
	}
	m := map[int]uint64{}
	for _, n := range names {
		tid, _ := strconv.Atoi(n.Name())
		a, err := unix.SchedGetAttr(tid, 0)
		if err == nil && eligible(a, baseNice()) {
			m[tid] = a.Runtime
		}
	}
	return m
}

// New sets the slice on every thread of the process at once.
func TestNewSetsEveryThread(t *testing.T) {
	s := start(t, Config{Slice: testSlice, Interval: time.Hour})
	got := threadSlices(t)
	if len(got) == 0 {
		t.Fatal("no thread read")
	}
	for tid, ns := range got {
		if ns != uint64(testSlice) {
			t.Errorf("thread %d: slice %dns, want %d", tid, ns, testSlice.Nanoseconds())
		}
	}
	st := s.Stats()
	if st.Sweeps != 1 || st.Threads < len(got) || st.Failed != 0 {
		t.Fatalf("stats %+v after New, %d threads", st, len(got))
	}
}

// onThread runs f on a goroutine locked to its own OS thread, which ends
// with it, and returns f's result.
func onThread[T any](f func(tid int) T) T {
	ch := make(chan T)
	go func() {
		runtime.LockOSThread()
		if tid := unix.Gettid(); tid != unix.Getpid() {
			ch <- f(tid) // never unlocked: the thread exits with the goroutine
			return
		}
		// The process's main thread, whose nice value is the process's
		// base (eligible): f goes to another thread while this one is
		// held, and this one goes back to the scheduler.
		ch <- onThread(f)
		runtime.UnlockOSThread()
	}()
	return <-ch
}

// A thread whose slice is not the Sweeper's (one the runtime starts
// later, here one that put itself back at the kernel's) gets it at the
// next sweep; a thread at a lowered priority keeps the kernel's; after Run
// returns, no sweep happens.
func TestRunSweepsLaterThreadsAndStops(t *testing.T) {
	s := start(t, Config{Slice: testSlice, Interval: 10 * time.Millisecond})
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	ran := make(chan struct{})
	go func() { defer close(ran); s.Run(ctx) }()
	base := baseNice()

	late := make(chan struct{})
	done := make(chan struct{})
	type res struct{ before, after uint64 }
	var reset, niced res
	var twg sync.WaitGroup
	for i, r := range []*res{&reset, &niced} {
		twg.Add(1)
		go func() {
			defer twg.Done()
			*r = onThread(func(tid int) res {
				// One step against the sweep, as tlsx lowers a thread.
				threadattr.Mu.Lock()
				a, err := unix.SchedGetAttr(0, 0)
				if err != nil {
					threadattr.Mu.Unlock()
					t.Error(err)
					return res{}
				}
				if i == 1 {
					// A lowered priority: the sweep leaves the thread alone.
					if err := unix.Setpriority(unix.PRIO_PROCESS, 0, int(base)+5); err != nil {
						t.Error(err)
					}
					a.Nice = base + 5
				}
				a.Runtime, a.Flags = 0, 0 // the kernel's slice
				if err := unix.SchedSetAttr(0, a, 0); err != nil {
					t.Error(err)
				}
				b, _ := unix.SchedGetAttr(0, 0)
				threadattr.Mu.Unlock()
				before := b.Runtime
				late <- struct{}{}
				<-done
				b, _ = unix.SchedGetAttr(0, 0)
				return res{before, b.Runtime}
			})
		}()
	}
	<-late
	<-late
	sweeps := s.Stats().Sweeps
	// Two sweeps after both threads were at the kernel's slice: the reset
	// one is at the Sweeper's again.
	wtest.Eventually(t, 10*time.Second, "two more sweeps", func() bool { return s.Stats().Sweeps >= sweeps+2 })
	close(done)
	twg.Wait()
	if reset.before == uint64(testSlice) || reset.after != uint64(testSlice) {
		t.Errorf("reset thread: slice %dns, then %dns after the sweeps; want the kernel's, then %d", reset.before, reset.after, testSlice.Nanoseconds())
	}
	if niced.after != niced.before || niced.after == uint64(testSlice) {
		t.Errorf("niced thread: slice %dns, then %dns; want the kernel's kept", niced.before, niced.after)
	}
	if st := s.Stats(); st.Set < 2 || st.Failed != 0 { // New's threads, the reset one
		t.Errorf("stats %+v", st)
	}

	cancel()
	select {
	case <-ran:
	case <-time.After(5 * time.Second):
		t.Fatal("Run did not return within 5 s of its context's end")
	}
	n := s.Stats().Sweeps
	time.Sleep(30 * time.Millisecond) // three of its intervals
	// Run has returned: a thread put back at the kernel's slice stays
	// there, and the count of sweeps no longer moves.
	got := onThread(func(int) uint64 {
		a, _ := unix.SchedGetAttr(0, 0)
		a.Runtime, a.Flags = 0, 0
		unix.SchedSetAttr(0, a, 0)
		b, _ := unix.SchedGetAttr(0, 0)
		return b.Runtime
	})
	if got == uint64(testSlice) || s.Stats().Sweeps != n {
		t.Fatalf("after Run: slice %dns, sweeps %d then %d", got, n, s.Stats().Sweeps)
	}
}

// The nice value and the policy survive: only the slice changes.
func TestSweepKeepsNiceAndPolicy(t *testing.T) {
	start(t, Config{Slice: testSlice, Interval: time.Hour})
	a, err := unix.SchedGetAttr(0, 0)
	if err != nil {
		t.Fatal(err)
	}
	if a.Policy != unix.SCHED_NORMAL || a.Nice != baseNice() || a.Runtime != uint64(testSlice) {
		t.Fatalf("attributes %+v", a)
	}
}
