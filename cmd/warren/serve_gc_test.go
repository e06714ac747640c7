//go:build !windows

package main

import (
	"fmt"
	"io"
	"net/http"
	"os"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestParseBytes: -gomemlimit's sizes.
func TestParseBytes(t *testing.T) {
	for in, want := range map[string]int64{"512MiB": 512 << 20, "1GiB": 1 << 30, "4096": 4096, "10KB": 10_000,
		"3MB": 3_000_000, "7B": 7, "2KiB": 2048} {
		if got, err := parseBytes(in); err != nil || got != want {
			t.Errorf("parseBytes(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	for _, in := range []string{"", "MiB", "-1MiB", "1.5GiB", "lots", "99999999999GiB"} {
		if n, err := parseBytes(in); err == nil {
			t.Errorf("parseBytes(%q) = %d, want an error", in, n)
		}
	}
}

// TestServeGCFlags: a bad -gomemlimit exits 2 before anything starts;
// -gogc and -gomemlimit reach the runtime of a real warren serve (its
// go_gc_gogc_percent and go_gc_gomemlimit_bytes metrics), and with
// neither flag nor $GOGC the target is DefaultServeGOGC; the trim after
// bursts (-memtrim-burst) reports its metrics; the collection at the end
// of start-up ran once, or not at all with -memtrim-start=false.
func TestServeGCFlags(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"serve", "-gomemlimit", "lots"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "-gomemlimit") {
		t.Errorf("serve -gomemlimit lots: exit %d, %q; want 2", code, errb.String())
	}
	for _, tc := range []struct {
		args []string
		want []string
	}{
		{[]string{"-gogc", "37", "-gomemlimit", "300MiB"}, []string{"go_gc_gogc_percent 37", "go_gc_gomemlimit_bytes 3.145728e+08",
			"warren_memtrim_start_trims_total 1"}},
		{nil, []string{"go_gc_gogc_percent " + strconv.Itoa(DefaultServeGOGC), "warren_memtrim_start_trims_total 1"}},
		{[]string{"-memtrim-start=false"}, []string{"warren_memtrim_start_trims_total 0"}},
	} {
		if tc.args == nil && os.Getenv("GOGC") != "" {
			continue // $GOGC is -gogc's default then
		}
		n := startServe(t, "gc", t.TempDir(), append([]string{"-auth", "none"}, tc.args...)...)
		var metrics string
		eventually(t, 10*time.Second, "the admin's metrics", func() bool {
			resp, err := http.Get("http://" + n.admin + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			metrics = string(b)
			return resp.StatusCode == 200
		})
		for _, w := range tc.want {
			if !strings.Contains(metrics, "\n"+w+"\n") {
				t.Errorf("serve %v: metrics lack %q", tc.args, w)
			}
		}
		for _, w := range []string{"\nwarren_memtrim_trims_total ", "\nwarren_memtrim_released_bytes_total "} {
			if !strings.Contains(metrics, w) {
				t.Errorf("serve %v: metrics lack %q", tc.args, w[1:])
			}
		}
		n.kill()
	}
}

// TestServeParentGOGC: with -procs, -parent-gogc is the prefork parent's
// collector target and -gogc the workers', each read from the merged
// metrics (the parent's runtime is labelled worker="parent"); with
// neither flag nor $GOGC they are DefaultServeParentGOGC and
// DefaultServeGOGC. Every process (the parent and each worker) ran its
// collection at the end of start-up.
func TestServeParentGOGC(t *testing.T) {
	for _, tc := range []struct {
		args            []string
		parent, workers int
	}{
		{[]string{"-gogc", "37", "-parent-gogc", "137"}, 137, 37},
		{nil, DefaultServeParentGOGC, DefaultServeGOGC},
	} {
		if tc.args == nil && os.Getenv("GOGC") != "" {
			continue // $GOGC is both flags' default then
		}
		n := startServe(t, "pgc", t.TempDir(), append([]string{"-auth", "none", "-procs", "2"}, tc.args...)...)
		want := []string{fmt.Sprintf(`go_gc_gogc_percent{worker="parent"} %d`, tc.parent),
			fmt.Sprintf(`go_gc_gogc_percent{worker="0"} %d`, tc.workers), fmt.Sprintf(`go_gc_gogc_percent{worker="1"} %d`, tc.workers),
			// Every process collected at the end of its start-up.
			`warren_memtrim_start_trims_total{worker="parent"} 1`, `warren_memtrim_start_trims_total{worker="0"} 1`,
			`warren_memtrim_start_trims_total{worker="1"} 1`}
		var metrics string
		eventually(t, 20*time.Second, fmt.Sprintf("serve %v: the parent's and both workers' collector targets", tc.args), func() bool {
			resp, err := http.Get("http://" + n.admin + "/metrics")
			if err != nil {
				return false
			}
			defer resp.Body.Close()
			b, _ := io.ReadAll(resp.Body)
			metrics = string(b)
			for _, w := range want {
				if !strings.Contains(metrics, "\n"+w+"\n") {
					return false
				}
			}
			return true
		})
		n.kill()
	}
}

// FuzzParseBytes: any input gives a size or an error, never a panic nor a
// negative or overflowed size; a plain number of bytes is itself.
func FuzzParseBytes(f *testing.F) {
	for _, s := range []string{"512MiB", "1GiB", "4096", "10KB", "-1", "9223372036854775807GiB", "B"} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, s string) {
		n, err := parseBytes(s)
		if err != nil {
			return
		}
		if n < 0 {
			t.Fatalf("parseBytes(%q) = %d", s, n)
		}
		if v, perr := strconv.ParseInt(s, 10, 64); perr == nil && v != n {
			t.Fatalf("parseBytes(%q) = %d, want %d", s, n, v)
		}
	})
}

// TestWorkerGOMAXPROCS: prefork workers divide the machine's CPUs among
// them unless the flag or $GOMAXPROCS says otherwise.
func TestWorkerGOMAXPROCS(t *testing.T) {
	for _, c := range []struct {
		flag, procs, cpus int
		env               string
		want              int
	}{
		{0, 6, 2, "", 1},  // six workers on two cores: one each
		{0, 2, 8, "", 4},  // two workers on eight cores: four each
		{0, 3, 8, "", 2},  // rounded down
		{0, 6, 2, "4", 0}, // the operator's $GOMAXPROCS stays
		{3, 6, 2, "4", 3}, // the flag wins
		{-1, 6, 2, "", 0}, // Go's default
		{0, 1, 2, "", 0},  // no workers
	} {
		if got := workerGOMAXPROCS(c.flag, c.procs, c.cpus, c.env); got != c.want {
			t.Errorf("workerGOMAXPROCS(%d, %d, %d, %q) = %d, want %d", c.flag, c.procs, c.cpus, c.env, got, c.want)
		}
	}
}
