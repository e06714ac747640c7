package loadgen

import (
	"context"
	"math/rand/v2"
	"sync"
	"time"
)

// devProcs is the backend of a multi-process devices run: worker
// processes run the devices, each its own range of device ids
// (DeviceConfig.First) and its share of the telemetry rate, while this
// process watches NATS for the whole run's telemetry (the workers write
// this process's run id and subscribe to nothing), so that delivery, loss
// and end-to-end latency are counted once, on one clock, and sends the
// commands (unless DeviceConfig.CommandsInDevices gives each worker its
// share), from a process that runs no devices.
type devProcs struct {
	g     *procGroup
	watch *telemetryWatch // nil without NATS
	cmd   *commander      // nil without commands, or with them in the workers
	t0    time.Time       // the commander's clock
	grace time.Duration
	cmdTO time.Duration // how long traffic waits for the commands in flight

	// mu guards the fields below, and serializes the calls of g.tick.
	mu       sync.Mutex
	sent     int64 // telemetry the workers reported sent so far
	received int64 // the watch's count at the last collect
	stash    *tick // counters collected for the next tick
	total    Histogram
}

var _ backend = (*devProcs)(nil)

// startDevProcs checks cfg, subscribes to NATS and starts the workers.
func startDevProcs(ctx context.Context, cfg Config) (*devProcs, error) {
	if _, err := checkDevices(ctx, cfg); err != nil {
		return nil, err
	}
	if cfg.Devices.Run == "" {
		cfg.Devices.Run = newRunID()
	}
	dc := cfg.Devices.withDefaults()
	d := &devProcs{grace: dc.Grace, t0: time.Now(), cmdTO: dc.CommandTimeout + cfg.Timeout}
	var err error
	if dc.CommandRPS > 0 && !dc.CommandsInDevices {
		conns := cfg.Conns
		if d.cmd, err = newCommander(dc, cfg.Timeout, d.t0, func() int { return rand.IntN(conns) }); err != nil {
			return nil, err
		}
	}
	if d.watch, err = watchTelemetry(cfg.Devices, cfg.Devices.Run); err != nil {
		d.closeCmd()
		return nil, err
	}
	if d.g, err = startProcs(cfg); err != nil {
		if d.watch != nil {
			d.watch.close()
		}
		d.closeCmd()
		return nil, err
	}
	return d, nil
}

func (d *devProcs) closeCmd() {
	if d.cmd != nil {
		d.cmd.close()
	}
}

func (d *devProcs) ramp(ctx context.Context) (int64, error) { return d.g.ramp(ctx) }

func (d *devProcs) hold(ctx context.Context, dur time.Duration) error { return d.g.hold(ctx, dur) }

// traffic runs the workers' traffic, then waits up to the grace for the
// telemetry still on its way to NATS.
func (d *devProcs) traffic(ctx context.Context, dur time.Duration) error {
	var wg sync.WaitGroup
	cctx, cancel := context.WithCancel(ctx) // the commands stop with the workers' traffic when it fails
	defer cancel()
	if d.cmd != nil {
		start := d.cmd.now()
		wg.Add(1)
		go func() {
			defer wg.Done()
			d.cmd.drive(cctx, start, start+int64(dur))
		}()
	}
	err := d.g.traffic(ctx, dur)
	if err != nil {
		cancel()
	}
	wg.Wait()
	if d.cmd != nil {
		d.cmd.wait(ctx, d.cmdTO)
	}
	if d.watch != nil && err == nil {
		d.watch.waitFor(d.sentSoFar, d.grace, ctx.Done())
	}
	return err
}

// sentSoFar collects the workers' counters (kept for the next tick) and
// returns the telemetry sent so far.
func (d *devProcs) sentSoFar() int64 {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.collectLocked()
	if d.stash == nil {
		d.stash = &t
	} else {
		d.stash.add(&t)
	}
	return d.sent
}

// collectLocked takes the workers' counters since the last collect, with
// the telemetry received on NATS in Done and its latencies in Lat.
func (d *devProcs) collectLocked() tick {
	t := d.g.tick()
	d.sent += t.Sent
	if d.watch != nil {
		r := d.watch.received.Load()
		t.Done, d.received = r-d.received, r
		t.Lat = &Histogram{}
		d.watch.take(t.Lat)
		d.total.Merge(t.Lat)
	}
	return t
}

// tick returns the counters since the previous call.
func (d *devProcs) tick() tick {
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.collectLocked()
	if d.stash != nil {
		s := *d.stash
		d.stash = nil
		s.add(&t)
		t = s
	}
	return t
}

// finish collects the workers' reports, merged, and completes their
// telemetry figures with what arrived on NATS.
func (d *devProcs) finish() (*Report, error) {
	rep, err := d.g.finish()
	if d.cmd != nil {
		d.cmd.close()
		if rep.Devices == nil {
			rep.Devices = &DeviceReport{}
		}
		cr := &DeviceReport{CommandOutcomes: map[string]int64{}, CommandHist: &Histogram{}}
		d.cmd.report(cr)
		rep.Devices.merge(cr)
	}
	if d.watch == nil {
		if d.cmd != nil {
			rep.finalize()
		}
		return rep, err
	}
	dropped := d.watch.close()
	d.mu.Lock()
	defer d.mu.Unlock()
	t := d.collectLocked() // the rest, for the coordinator's last tick
	if d.stash == nil {
		d.stash = &t
	} else {
		d.stash.add(&t)
	}
	if rep.Devices == nil {
		rep.Devices = &DeviceReport{}
	}
	dr := rep.Devices
	dr.NATS = true
	dr.TelemetryReceived = d.received
	dr.TelemetryLost = max(dr.TelemetrySent-d.received, 0)
	dr.SubscriberDropped = int64(dropped)
	dr.Hops = d.watch.hopReport()
	rep.Requests, rep.Unanswered = d.received, dr.TelemetryLost
	rep.LatencyHist = &Histogram{}
	rep.LatencyHist.Merge(&d.total)
	rep.finalize()
	return rep, err
}
