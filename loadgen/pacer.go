package loadgen

import (
	"context"
	"math"
	"time"
)

// clock is the time source of the open-loop schedule: monotonic
// nanoseconds since the run started, and a way to wait for a moment.
// Tests inject one that they drive.
type clock interface {
	now() int64
	// sleepUntil waits until t (or returns at once when t has passed) or
	// ctx ends.
	sleepUntil(ctx context.Context, t int64)
}

// realClock measures from start with the monotonic clock.
type realClock struct {
	start time.Time
	timer *time.Timer
}

func newRealClock(start time.Time) *realClock { return &realClock{start: start} }

func (c *realClock) now() int64 { return int64(time.Since(c.start)) }

func (c *realClock) sleepUntil(ctx context.Context, t int64) {
	d := time.Duration(t - c.now())
	if d <= 0 {
		return
	}
	if c.timer == nil {
		c.timer = time.NewTimer(d)
	} else {
		c.timer.Reset(d)
	}
	select {
	case <-c.timer.C:
	case <-ctx.Done():
		c.timer.Stop()
	}
}

// pacer is one shard's part of an open-loop schedule at a total rate over
// shards shards: its request i is due at start + (i·shards + shard)/rate,
// so the shards interleave evenly and together keep the total rate.
type pacer struct {
	start    int64   // ns
	interval float64 // ns between requests of the whole schedule
	shard    int64
	shards   int64
}

func newPacer(start int64, rate float64, shard, shards int) pacer {
	return pacer{start: start, interval: 1e9 / rate, shard: int64(shard), shards: int64(shards)}
}

// due returns when request i of this shard is due.
func (p pacer) due(i int64) int64 {
	return p.start + int64(math.Round(float64(i*p.shards+p.shard)*p.interval))
}

// countBy returns how many of this shard's requests are due at or before t.
func (p pacer) countBy(t int64) int64 {
	if t < p.start {
		return 0
	}
	// Global slots k with start + k·interval ≤ t, of which ours are
	// k ≡ shard (mod shards).
	k := int64(math.Floor(float64(t-p.start)/p.interval)) + 1 // slots 0 … k-1
	n := (k - p.shard + p.shards - 1) / p.shards
	// Rounding in due may put a boundary request either side; settle it.
	for n > 0 && p.due(n-1) > t {
		n--
	}
	for p.due(n) <= t {
		n++
	}
	return n
}

// maxBatch bounds the requests pace hands to send at once.
const maxBatch = 64

// pace runs one shard of an open-loop schedule from p.start until end:
// each request, numbered from zero, is handed to send with the time it was
// due, so its latency is measured from then however late it goes out.
// Requests already due are handed over together, oldest first; send
// returns how many of them it took (a connection may take several, which
// then go out in one write), and taking fewer than offered means no
// connection has room now: pace waits a little and offers the rest again.
// A request still unsent a timeout after it was due is given up with drop
// (it would have timed out anyway), which bounds the backlog. pace returns
// the number sent.
func pace(ctx context.Context, clk clock, p pacer, end, timeout int64,
	send func(dues []int64) int, drop func(n int64)) (sent int64) {
	var next int64 // next request to send
	const retry = int64(200 * time.Microsecond)
	batch := make([]int64, 0, maxBatch)
	for ctx.Err() == nil {
		now := clk.now()
		limit := p.countBy(min(now, end-1)) // requests due so far, within the phase
		blocked := false
		for next < limit {
			if now-p.due(next) > timeout {
				// Give up everything that is already too late in one step.
				stale := p.countBy(now - timeout - 1)
				stale = min(max(stale, next+1), limit)
				drop(stale - next)
				next = stale
				continue
			}
			batch = batch[:0]
			for i := next; i < limit && len(batch) < maxBatch; i++ {
				batch = append(batch, p.due(i))
			}
			for len(batch) > 0 {
				k := send(batch)
				next += int64(k)
				sent += int64(k)
				batch = batch[k:]
				if k == 0 {
					break
				}
			}
			if len(batch) > 0 {
				blocked = true
				break
			}
		}
		nextDue := p.due(next)
		if nextDue >= end {
			return sent
		}
		wake := nextDue
		if blocked {
			wake = now + retry
		}
		clk.sleepUntil(ctx, wake)
	}
	return sent
}
