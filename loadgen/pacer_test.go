package loadgen

import (
	"context"
	"math/rand/v2"
	"slices"
	"testing"
	"time"
)

// fakeClock is a clock the test drives: sleepUntil jumps to the wake-up
// time plus whatever lag the test injects, as a scheduler stalled by the
// machine would see it.
type fakeClock struct {
	t      int64
	sleeps int
	lag    func(sleep int) int64
}

func (c *fakeClock) now() int64 { return c.t }

func (c *fakeClock) sleepUntil(ctx context.Context, t int64) {
	c.sleeps++
	c.t = max(c.t, t)
	if c.lag != nil {
		c.t += c.lag(c.sleeps)
	}
}

func TestPacerCountBy(t *testing.T) {
	r := rand.New(rand.NewPCG(1, 2))
	for range 200 {
		rate := 1 + r.Float64()*100000
		shards := 1 + r.IntN(8)
		shard := r.IntN(shards)
		p := newPacer(int64(r.IntN(1e9)), rate, shard, shards)
		for range 20 {
			at := p.start + int64(r.Float64()*2e9) - 1e8
			var brute int64
			for i := int64(0); p.due(i) <= at; i++ {
				brute++
			}
			if got := p.countBy(at); got != brute {
				t.Fatalf("rate %v shard %d/%d: countBy(%d) = %d, want %d", rate, shard, shards, at, got, brute)
			}
		}
	}
}

// TestPaceSchedule runs every shard of a 1000/s schedule for one second
// and checks that together they send each millisecond's request once, on
// time.
func TestPaceSchedule(t *testing.T) {
	const shards = 3
	var dues []int64
	for s := range shards {
		clk := &fakeClock{}
		p := newPacer(0, 1000, s, shards)
		sent := pace(context.Background(), clk, p, int64(time.Second), int64(time.Second), one(func(due int64) bool {
			if clk.now() != due {
				t.Fatalf("sent at %d, due %d", clk.now(), due)
			}
			dues = append(dues, due)
			return true
		}), func(int64) { t.Fatal("dropped") })
		if sent < 333 || sent > 334 {
			t.Fatalf("shard %d sent %d", s, sent)
		}
	}
	slices.Sort(dues)
	if len(dues) != 1000 {
		t.Fatalf("sent %d, want 1000", len(dues))
	}
	for i, d := range dues {
		if d != int64(i)*int64(time.Millisecond) {
			t.Fatalf("request %d due at %d", i, d)
		}
	}
}

// TestPaceLatencyFromIntendedTime stalls the scheduler for 50 ms and checks
// that the requests it sends late keep their intended times, so that a
// response's latency, measured from the intended time, includes the stall
// (no coordinated omission).
func TestPaceLatencyFromIntendedTime(t *testing.T) {
	const stall = 50 * int64(time.Millisecond)
	clk := &fakeClock{lag: func(sleep int) int64 {
		if sleep == 100 {
			return stall
		}
		return 0
	}}
	p := newPacer(0, 1000, 0, 1)
	// The server answers instantly: latency is the send's delay.
	var lat []int64
	sent := pace(context.Background(), clk, p, int64(time.Second), int64(time.Second), one(func(due int64) bool {
		lat = append(lat, clk.now()-due)
		return true
	}), func(int64) { t.Fatal("dropped") })
	if sent != 1000 {
		t.Fatalf("sent %d, want 1000: the stall must not lose requests", sent)
	}
	var h Histogram
	late := 0
	for _, l := range lat {
		h.Record(time.Duration(l))
		if l > 0 {
			late++
		}
	}
	// The 50 requests due during the stall go out at its end, 50 ms … 1 ms
	// late.
	if late != 50 || h.Max() != time.Duration(stall) {
		t.Fatalf("late %d, max %v", late, h.Max())
	}
	if p99 := h.Quantile(0.99); p99 < 39*time.Millisecond {
		t.Fatalf("p99 %v hides the stall", p99)
	}
}

// TestPaceBlockedWaitsThenDrops makes every connection busy for a while:
// requests wait, keep their intended times, and those older than the
// timeout are given up as unsent.
func TestPaceBlockedWaitsThenDrops(t *testing.T) {
	clk := &fakeClock{}
	p := newPacer(0, 1000, 0, 1)
	const timeout = 100 * int64(time.Millisecond)
	busyUntil := 300 * int64(time.Millisecond)
	var lat []int64
	var dropped int64
	sent := pace(context.Background(), clk, p, int64(time.Second), timeout, one(func(due int64) bool {
		if clk.now() < busyUntil {
			return false
		}
		lat = append(lat, clk.now()-due)
		return true
	}), func(n int64) { dropped += n })
	if sent+dropped != 1000 {
		t.Fatalf("sent %d + dropped %d != 1000", sent, dropped)
	}
	// Requests due before 200 ms are over the 100 ms timeout at 300 ms.
	if dropped < 195 || dropped > 205 {
		t.Fatalf("dropped %d, want about 200", dropped)
	}
	if slices.Max(lat) > timeout || lat[0] < timeout-int64(time.Millisecond) {
		t.Fatalf("first latency %d, max %d", lat[0], slices.Max(lat))
	}
}

func TestPaceStopsWithContext(t *testing.T) {
	ctx, cancel := context.WithCancel(context.Background())
	clk := &fakeClock{}
	n := 0
	sent := pace(ctx, clk, newPacer(0, 1000, 0, 1), int64(time.Hour), int64(time.Second), one(func(int64) bool {
		if n++; n == 10 {
			cancel()
		}
		return true
	}), func(int64) {})
	if sent != 10 {
		t.Fatalf("sent %d after cancel", sent)
	}
}

// one adapts a send of one request to pace's batches: it takes the first
// request of each batch, or none.
func one(f func(due int64) bool) func([]int64) int {
	return func(dues []int64) int {
		if f(dues[0]) {
			return 1
		}
		return 0
	}
}

// TestPaceBatches stalls the scheduler and checks that the requests due
// meanwhile are offered together, oldest first, each with its own due
// time, and that a partial take is offered again.
func TestPaceBatches(t *testing.T) {
	clk := &fakeClock{lag: func(sleep int) int64 {
		if sleep == 10 {
			return 20 * int64(time.Millisecond)
		}
		return 0
	}}
	var dues []int64
	maxLen := 0
	sent := pace(context.Background(), clk, newPacer(0, 1000, 0, 1), int64(100*time.Millisecond), int64(time.Second),
		func(batch []int64) int {
			maxLen = max(maxLen, len(batch))
			take := min(len(batch), 3) // a connection with room for three
			dues = append(dues, batch[:take]...)
			return take
		}, func(int64) { t.Fatal("dropped") })
	if sent != 100 || len(dues) != 100 || maxLen < 20 {
		t.Fatalf("sent %d, largest batch %d", sent, maxLen)
	}
	for i, d := range dues {
		if d != int64(i)*int64(time.Millisecond) {
			t.Fatalf("request %d due %d", i, d)
		}
	}
}
