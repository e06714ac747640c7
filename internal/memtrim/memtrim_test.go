package memtrim

import (
	"context"
	rtmetrics "runtime/metrics"
	"testing"
	"time"
)

// step trims only after a burst of busy intervals, in a quiet one, MinGap
// after the last trim; steady allocation under Quiet never adds up to a
// burst.
func TestStep(t *testing.T) {
	tr := New(Config{Burst: 100, Quiet: 10, MinGap: time.Minute})
	for _, tc := range []struct {
		busy           uint64
		delta          uint64
		elapsed, since time.Duration
		want           bool
		wantBusy       uint64
	}{
		{200, 5, time.Second, time.Hour, true, 200},         // burst, then 5 B/s
		{50, 5, time.Second, time.Hour, false, 50},          // no burst
		{100, 100, time.Second, time.Hour, false, 200},      // still busy: counted
		{200, 5, time.Second, 30 * time.Second, false, 200}, // too soon
		{200, 15, 2 * time.Second, time.Hour, true, 200},    // 7.5 B/s
		{200, 5, 0, time.Hour, false, 200},                  // no time passed
	} {
		busy := tc.busy
		if got := tr.step(&busy, tc.delta, tc.elapsed, tc.since); got != tc.want || busy != tc.wantBusy {
			t.Errorf("step(%+v) = %v, busy %d", tc, got, busy)
		}
	}
	var busy uint64
	for i := range 1000 { // 5 B/s for 1,000 s: 5,000 B, fifty bursts' worth, all quiet
		if tr.step(&busy, 5, time.Second, time.Hour) {
			t.Fatalf("interval %d: steady allocation under Quiet trimmed", i)
		}
	}
}

var sink []byte

// A burst of allocation followed by quiet is trimmed once; a negative
// Burst never trims.
func TestRunTrimsAfterBurst(t *testing.T) {
	tr := New(Config{Interval: 20 * time.Millisecond, Burst: 8 << 20, Quiet: 64 << 20, MinGap: time.Hour})
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() { tr.Run(ctx); close(done) }()
	// Run takes its first reading when its goroutine gets to run, which on
	// a loaded machine can be after a first burst: the bursts repeat, a
	// quiet pause after each, until one is trimmed.
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().Trims == 0 && time.Now().Before(deadline) {
		for range 1024 {
			sink = make([]byte, 16<<10)
		}
		for end := time.Now().Add(200 * time.Millisecond); tr.Stats().Trims == 0 && time.Now().Before(end); {
			time.Sleep(10 * time.Millisecond)
		}
	}
	time.Sleep(100 * time.Millisecond) // MinGap holds a second trim off
	cancel()
	<-done
	if s := tr.Stats(); s.Trims != 1 {
		t.Fatalf("trims %d after a burst, want 1", s.Trims)
	}

	off := New(Config{Burst: -1})
	ctx, cancel = context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	start := time.Now()
	off.Run(ctx) // returns at once, or runs until ctx ends
	if time.Since(start) > 5*time.Second || off.Stats().Trims != 0 {
		t.Fatal("a Trimmer with a negative Burst ran")
	}
}

// forcedGCs returns the collections the process was asked for (runtime.GC,
// debug.FreeOSMemory) so far.
func forcedGCs() uint64 {
	s := []rtmetrics.Sample{{Name: "/gc/cycles/forced:gc-cycles"}}
	rtmetrics.Read(s)
	return s[0].Value.Uint64()
}

// Settle collects twice and counts itself, once per Trimmer; with
// NoSettle it does nothing.
func TestSettle(t *testing.T) {
	off := New(Config{NoSettle: true})
	before := forcedGCs()
	off.Settle()
	if n := forcedGCs() - before; n != 0 || off.Stats().Settles != 0 {
		t.Fatalf("NoSettle: %d collections, %d settles", n, off.Stats().Settles)
	}
	tr := New(Config{Burst: -1}) // the trim after bursts off: Settle is apart from it
	before = forcedGCs()
	tr.Settle()
	if n := forcedGCs() - before; n < 2 {
		t.Fatalf("Settle ran %d collections, want 2", n)
	}
	if s := tr.Stats(); s.Settles != 1 || s.Trims != 0 {
		t.Fatalf("stats %+v after Settle: want Settles 1, Trims 0", s)
	}
	before = forcedGCs()
	tr.Settle()
	if n := forcedGCs() - before; n != 0 || tr.Stats().Settles != 1 {
		t.Fatalf("a second Settle ran %d collections (settles %d)", n, tr.Stats().Settles)
	}
}
