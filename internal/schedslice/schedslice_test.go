package schedslice

import (
	"bytes"
	"context"
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"
)

func TestNewRejectsBadValues(t *testing.T) {
	for _, d := range []time.Duration{-time.Millisecond, time.Nanosecond, 99 * time.Microsecond, 100*time.Millisecond + 1, time.Second} {
		if _, err := New(Config{Slice: d}); !errors.Is(err, ErrRange) {
			t.Errorf("New(Slice %v): %v, want ErrRange", d, err)
		}
	}
	if _, err := New(Config{Slice: time.Millisecond, Interval: -time.Second}); err == nil {
		t.Error("New with a negative interval: no error")
	}
}

// A zero slice asks for nothing: New sweeps no thread and Run returns at
// once, on every platform.
func TestZeroSliceDoesNothing(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	s.Run(ctx) // returns without ctx being done
	if st := s.Stats(); st != (Stats{}) {
		t.Fatalf("stats %+v, want none", st)
	}
	if s.Slice() != 0 || s.cfg.Interval != DefaultInterval {
		t.Fatalf("slice %v interval %v", s.Slice(), s.cfg.Interval)
	}
}

// A sweep with failures logs one line, then none until logEvery has
// passed; a sweep without failures logs nothing.
func TestFailuresLoggedAtMostOnceAMinute(t *testing.T) {
	var buf bytes.Buffer
	s, err := New(Config{Logger: slog.New(slog.NewTextHandler(&buf, nil))})
	if err != nil {
		t.Fatal(err)
	}
	now := time.Unix(1_700_000_000, 0)
	fail := result{failed: 1, err: errors.New("EPERM")}
	s.logFailures(now, fail)
	s.logFailures(now.Add(logEvery/2), fail)
	s.logFailures(now.Add(logEvery), fail)
	s.logFailures(now.Add(3*logEvery), result{})
	if n := strings.Count(buf.String(), "threads left at the kernel's slice"); n != 2 {
		t.Fatalf("%d lines, want 2:\n%s", n, buf.String())
	}
}

func TestCollector(t *testing.T) {
	s, err := New(Config{})
	if err != nil {
		t.Fatal(err)
	}
	if n := testutil.CollectAndCount(s.Collector()); n != 4 {
		t.Fatalf("%d metrics, want 4", n)
	}
	want := `
# HELP warren_schedslice_slice_seconds Time slice asked of the kernel for every thread of the process (-sched-slice; 0: the kernel's).
# TYPE warren_schedslice_slice_seconds gauge
warren_schedslice_slice_seconds 0
`
	if err := testutil.CollectAndCompare(s.Collector(), strings.NewReader(want), "warren_schedslice_slice_seconds"); err != nil {
		t.Fatal(err)
	}
}
