package tlsx

import (
	"runtime/debug"
	"testing"
	"time"
)

// TestBurstGC drives the burst detection with made-up times: BurstRate
// handshakes within a second raise the collector's target to
// BurstGCPercent, a later second with fewer puts the target found back,
// and so does the quiet second (collect) and Close; a target already that
// high, or one changed by someone else meanwhile, is left alone.
func TestBurstGC(t *testing.T) {
	old := debug.SetGCPercent(25)
	defer debug.SetGCPercent(old)
	s, _, _ := testServer(t, Config{BurstRate: 10, BurstGCPercent: 150, CollectAfter: -1})
	t0 := time.Unix(1000, 0)
	for i := range 9 {
		s.noteHandshake(t0.Add(time.Duration(i) * time.Millisecond))
	}
	if got := gcPercent(); got != 25 {
		t.Fatalf("9 handshakes in a second (rate 10): GOGC %d, want 25", got)
	}
	s.noteHandshake(t0.Add(900 * time.Millisecond))
	if got := gcPercent(); got != 150 || !s.inBurst() {
		t.Fatalf("10 handshakes in a second: GOGC %d (burst %v), want 150", got, s.inBurst())
	}
	// The next window: a full one keeps it, a thin one ends it.
	for i := range 10 {
		s.noteHandshake(t0.Add(time.Second + time.Duration(i)*time.Millisecond))
	}
	s.noteHandshake(t0.Add(2500 * time.Millisecond)) // the second window had 10
	if got := gcPercent(); got != 150 {
		t.Fatalf("a second full window: GOGC %d, want 150", got)
	}
	s.noteHandshake(t0.Add(3600 * time.Millisecond)) // the third had 1
	if got := gcPercent(); got != 25 || s.inBurst() {
		t.Fatalf("after a thin window: GOGC %d (burst %v), want 25", got, s.inBurst())
	}
	// The quiet second ends a burst too.
	for i := range 10 {
		s.noteHandshake(t0.Add(10*time.Second + time.Duration(i)*time.Millisecond))
	}
	if got := gcPercent(); got != 150 {
		t.Fatalf("second burst: GOGC %d, want 150", got)
	}
	s.collect()
	if got := gcPercent(); got != 25 {
		t.Fatalf("after the quiet second: GOGC %d, want 25", got)
	}
	// Someone else's change during a burst is kept.
	for i := range 10 {
		s.noteHandshake(t0.Add(20*time.Second + time.Duration(i)*time.Millisecond))
	}
	debug.SetGCPercent(300)
	s.Close()
	if got := gcPercent(); got != 300 {
		t.Fatalf("a target changed during the burst: GOGC %d after it, want 300 kept", got)
	}
	// A target already above BurstGCPercent is not lowered nor held.
	s2, _, _ := testServer(t, Config{BurstRate: 1, BurstGCPercent: 150, CollectAfter: -1})
	s2.noteHandshake(t0)
	if got := gcPercent(); got != 300 || s2.inBurst() {
		t.Fatalf("GOGC 300 already: %d (burst %v)", got, s2.inBurst())
	}
}
