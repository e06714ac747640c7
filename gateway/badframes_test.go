package gateway

import (
	"testing"
	"time"
)

// TestBadFrameWindow: addBad counts a session's bad frames per fixed
// window from its start, not over its life: a device that errs nine times
// a minute for an hour stays under a bound of 10, ten in one window reach
// it, and the count leaves the flags alone. With no window it counts
// over the whole life, as before; the count saturates at
// MaxBadFramesLimit.
func TestBadFrameWindow(t *testing.T) {
	t0 := time.Date(2026, 12, 7, 1, 0, 0, 0, time.UTC)
	s := &Session{since: t0.UnixNano()}
	s.setPaused()
	for m := range 60 {
		for i := range 9 {
			at := t0.Add(time.Duration(m)*time.Minute + time.Duration(i)*time.Second)
			if n := s.addBad(at, time.Minute); n != int32(i+1) {
				t.Fatalf("minute %d, bad frame %d: count %d, want %d", m, i+1, n, i+1)
			}
		}
	}
	at := t0.Add(90 * time.Minute)
	for i := range 10 {
		if n := s.addBad(at, time.Minute); n != int32(i+1) {
			t.Fatalf("ten in one window: %d at the %dth", n, i+1)
		}
	}
	if !s.paused() || s.gone() {
		t.Fatal("addBad changed the session's flags")
	}
	// The next window starts again.
	if n := s.addBad(at.Add(time.Minute), time.Minute); n != 1 {
		t.Fatalf("next window: %d, want 1", n)
	}

	life := &Session{since: t0.UnixNano()}
	for i := range 30 {
		if n := life.addBad(t0.Add(time.Duration(i)*time.Hour), -1); n != int32(i+1) {
			t.Fatalf("whole life: %d at the %dth", n, i+1)
		}
	}
	sat := &Session{since: t0.UnixNano()}
	for range MaxBadFramesLimit + 10 {
		sat.addBad(t0, time.Minute)
	}
	if n := sat.addBad(t0, time.Minute); n != MaxBadFramesLimit {
		t.Fatalf("saturated count %d, want %d", n, MaxBadFramesLimit)
	}
}

// TestBadFrameConfig: the gateway takes MaxBadFrames and BadFrameWindow
// (default one minute), a MaxBadFrames past the count's limit treated as
// the limit.
func TestBadFrameConfig(t *testing.T) {
	g := startGateway(t, "n0", BusConfig{})
	if g.ws.badWindow != DefaultBadFrameWindow || g.ws.maxBad != 10 {
		t.Fatalf("defaults: window %v, max %d", g.ws.badWindow, g.ws.maxBad)
	}
	g = startGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.MaxBadFrames, c.BadFrameWindow = 1<<20, -1 })
	if g.ws.badWindow >= 0 || g.ws.maxBad != MaxBadFramesLimit {
		t.Fatalf("set: window %v, max %d", g.ws.badWindow, g.ws.maxBad)
	}
}
