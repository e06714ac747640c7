package memtrim

import (
	"context"
	"testing"
	"time"
)

// decide trims only after a burst, in a quiet interval, MinGap after the
// last trim.
func TestDecide(t *testing.T) {
	tr := New(Config{Burst: 100, Quiet: 10, MinGap: time.Minute})
	for _, tc := range []struct {
		base, prev, cur uint64
		elapsed, since  time.Duration
		want            bool
	}{
		{0, 200, 205, time.Second, time.Hour, true},         // burst, then 5 B/s
		{0, 50, 55, time.Second, time.Hour, false},          // no burst
		{0, 100, 200, time.Second, time.Hour, false},        // still busy
		{0, 200, 205, time.Second, 30 * time.Second, false}, // too soon
		{0, 200, 215, 2 * time.Second, time.Hour, true},     // 7.5 B/s
		{1000, 1050, 1055, time.Second, time.Hour, false},   // burst counted from base
		{0, 200, 205, 0, time.Hour, false},                  // no time passed
	} {
		if got := tr.decide(tc.base, tc.prev, tc.cur, tc.elapsed, tc.since); got != tc.want {
			t.Errorf("decide(%+v) = %v", tc, got)
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
	for range 1024 {
		sink = make([]byte, 16<<10)
	}
	deadline := time.Now().Add(10 * time.Second)
	for tr.Stats().Trims == 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(100 * time.Millisecond) // MinGap holds a second trim off
	cancel()
	<-done
	if s := tr.Stats(); s.Trims != 1 {
		t.Fatalf("trims %d after a burst, want 1", s.Trims)
	}

	off := New(Config{Burst: -1})
	ctx, cancel = context.WithTimeout(context.Background(), time.Second)
	defer cancel()
	start := time.Now()
	off.Run(ctx)
	if time.Since(start) > 500*time.Millisecond || off.Stats().Trims != 0 {
		t.Fatal("a Trimmer with a negative Burst ran")
	}
}
