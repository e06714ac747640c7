package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"reflect"
	"strconv"
	"strings"
	"testing"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/schedslice"
)

// base is process p's nice value (its main thread's).
func base(p int) int32 {
	if a, err := unix.SchedGetAttr(p, 0); err == nil {
		return a.Nice
	}
	return 0
}

// procSlices reads the slice of every normal, not lowered thread of pid
// and of its children, by process.
func procSlices(pid int) map[int][]uint64 {
	m := map[int][]uint64{}
	pids := []int{pid}
	tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", pid))
	for _, tk := range tasks {
		b, _ := os.ReadFile(fmt.Sprintf("/proc/%d/task/%s/children", pid, tk.Name()))
		for _, c := range strings.Fields(string(b)) {
			if n, err := strconv.Atoi(c); err == nil {
				pids = append(pids, n)
			}
		}
	}
	for _, p := range pids {
		tasks, _ := os.ReadDir(fmt.Sprintf("/proc/%d/task", p))
		for _, tk := range tasks {
			tid, _ := strconv.Atoi(tk.Name())
			a, err := unix.SchedGetAttr(tid, 0)
			if err == nil && (a.Policy == unix.SCHED_NORMAL || a.Policy == unix.SCHED_BATCH) && a.Nice <= base(p) {
				m[p] = append(m[p], a.Runtime)
			}
		}
	}
	return m
}

// TestServeSchedSlice: a slice out of range exits 2; with -procs 2 every
// thread of the prefork parent and of both workers reads back the slice,
// and the merged metrics carry each process's.
func TestServeSchedSlice(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"serve", "-sched-slice", "50us"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "-sched-slice") {
		t.Fatalf("serve -sched-slice 50us: exit %d, %q; want 2", code, errb.String())
	}
	if err := schedslice.Supported(); err != nil {
		t.Skip(err)
	}
	n := startServe(t, "slice", t.TempDir(), "-auth", "none", "-procs", "2", "-sched-slice", "300us")
	defer n.kill()
	const want = uint64(300 * time.Microsecond)
	var last map[int][]uint64
	eventually(t, 20*time.Second, "every thread of the parent and both workers at 300µs", func() bool {
		last = procSlices(n.proc.cmd.Process.Pid)
		if len(last) != 3 {
			return false
		}
		for _, s := range last {
			for _, ns := range s {
				if ns != want {
					return false
				}
			}
		}
		return true
	})
	if t.Failed() {
		t.Logf("slices by process: %v", last)
	}
	eventually(t, 20*time.Second, "the slice in the merged metrics", func() bool {
		resp, err := http.Get("http://" + n.admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		m := string(b)
		for _, w := range []string{"parent", "0", "1"} {
			if !strings.Contains(m, fmt.Sprintf("\nwarren_schedslice_slice_seconds{worker=%q} 0.0003\n", w)) {
				return false
			}
		}
		return true
	})
}

// TestLoadSchedSlice: a slice out of range exits 2; the workers of a
// -procs run get the parent's slice on their command line.
func TestLoadSchedSlice(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"load", "-sched-slice", "1s"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "-sched-slice") {
		t.Fatalf("load -sched-slice 1s: exit %d, %q; want 2", code, errb.String())
	}
	if got, want := loadWorkerArgs(250*time.Microsecond), []string{"load", "-worker", "-sched-slice", "250µs"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("worker args %q, want %q", got, want)
	}
	if got, want := loadWorkerArgs(0), []string{"load", "-worker"}; !reflect.DeepEqual(got, want) {
		t.Fatalf("worker args %q, want %q", got, want)
	}
}
