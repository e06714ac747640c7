package loadgen

import (
	"context"
	"sync"
	"sync/atomic"
	"time"
)

// ramper is the connection ramp both runners share (the HTTP/WebSocket
// runner and the devices runner): it paces the first connects at
// Config.Rate within Config's bound, then serves redials until the run
// ends. C is the runner's connection slot type.
type ramper[C any] struct {
	connecting chan struct{} // semaphore: connects in progress
	redial     chan C
	rampDone   chan struct{} // closed by the runner when every slot connected or failed
	inRamp     atomic.Bool   // connects count as ramp connects
	extra      time.Duration // added to the ramp's time bound (retries' backoffs)
}

func newRamper[C any](inflight, slots int) ramper[C] {
	return ramper[C]{connecting: make(chan struct{}, inflight), redial: make(chan C, slots),
		rampDone: make(chan struct{})}
}

// run opens the connections: dial(i) for each slot at the configured
// rate, in a goroutine counted in wg that then redials what arrives on
// redial until ctx ends or stop closes. It returns once rampDone closes
// (or ctx ends, or the ramp's time bound passes) with the ramp's length.
func (rp *ramper[C]) run(ctx context.Context, cfg *Config, t0 time.Time, wg *sync.WaitGroup,
	stop <-chan struct{}, slots int, dial func(i int), redial func(C)) time.Duration {
	start := time.Now()
	rp.inRamp.Store(true)
	wg.Add(1)
	go func() {
		defer wg.Done()
		rp.dialLoop(ctx, cfg, t0, stop, slots, dial, redial)
	}()
	bound := 2*cfg.Timeout + time.Duration(cfg.Conns)*time.Millisecond + rp.extra
	if cfg.Rate > 0 {
		bound += time.Duration(float64(cfg.Conns) / cfg.Rate * 1e9)
	}
	t := time.NewTimer(bound)
	defer t.Stop()
	select {
	case <-rp.rampDone:
	case <-ctx.Done():
	case <-t.C:
	}
	rp.inRamp.Store(false)
	return time.Since(start)
}

// dialLoop makes the ramp's connects, paced, then serves redials until
// the run ends. Each connect first takes a connecting slot.
func (rp *ramper[C]) dialLoop(ctx context.Context, cfg *Config, t0 time.Time, stop <-chan struct{}, slots int,
	dial func(i int), redial func(C)) {
	clk := newRealClock(t0)
	start := clk.now()
	acquire := func() bool {
		select {
		case rp.connecting <- struct{}{}:
			return true
		case <-ctx.Done():
		case <-stop:
		}
		return false
	}
	for i := 0; i < slots; i++ {
		if cfg.Rate > 0 {
			clk.sleepUntil(ctx, start+int64(float64(i)*1e9/cfg.Rate))
		}
		if !acquire() {
			return
		}
		dial(i)
	}
	for {
		select {
		case c := <-rp.redial:
			if !acquire() {
				return
			}
			redial(c)
		case <-ctx.Done():
			return
		case <-stop:
			return
		}
	}
}
