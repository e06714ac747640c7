package loadgen

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"sync"
	"time"
)

// backend generates the load: the runner of this process, or a group of
// worker processes.
type backend interface {
	// ramp opens the connections and returns how many are open.
	ramp(ctx context.Context) (int64, error)
	hold(ctx context.Context, d time.Duration) error
	traffic(ctx context.Context, d time.Duration) error
	// tick returns the counters since the previous call.
	tick() tick
	// finish closes everything and returns the merged report.
	finish() (*Report, error)
}

// local is the in-process backend.
type local struct{ r *runner }

func (l local) ramp(ctx context.Context) (int64, error)            { return l.r.ramp(ctx) }
func (l local) hold(ctx context.Context, d time.Duration) error    { return l.r.hold(ctx, d) }
func (l local) traffic(ctx context.Context, d time.Duration) error { return l.r.runTraffic(ctx, d) }
func (l local) tick() tick                                         { return l.r.tick() }
func (l local) finish() (*Report, error)                           { return l.r.finish(), nil }

// newBackend returns the in-process backend of cfg: a devices runner for
// the devices scenario, the connection runner otherwise.
func newBackend(ctx context.Context, cfg Config) (backend, error) {
	if cfg.Scenario == ScenarioDevices {
		return newDevRunner(ctx, cfg)
	}
	r, err := newRunner(ctx, cfg)
	if err != nil {
		return nil, err
	}
	return local{r}, nil
}

// Run performs the load run cfg describes: ramp, hold, traffic, each
// bounded in time, and returns its report; when the ramp opens no
// connection at all, the hold and traffic are skipped and the report says
// why in its errors. Progress, when set, gets a
// status line per second. When ctx ends the current phase stops early,
// the rest are skipped, and Run returns the report so far with ctx's
// error. With cfg.Procs > 1 the connections are spread over worker
// processes started with cfg.WorkerCommand, and their reports merged.
// With cfg.Scenario set to ScenarioDevices the connections are devices of
// warren's gateway (see ScenarioDevices); with Procs > 1 too, each worker
// taking its own range of device ids while this process watches NATS for
// all of them.
//
// Run is safe to call from several goroutines, each with its own Config.
func Run(ctx context.Context, cfg Config) (*Report, error) {
	cfg = cfg.withDefaults()
	if cfg.URL == "" {
		return nil, fmt.Errorf("%w: empty", ErrBadURL)
	}
	var b backend
	var err error
	switch {
	case cfg.Scenario != "" && cfg.Scenario != ScenarioDevices:
		return nil, fmt.Errorf("%w: %q (want %q or none)", ErrScenario, cfg.Scenario, ScenarioDevices)
	case cfg.Scenario != ScenarioDevices && isMQTTURL(cfg.URL):
		m, err := newMQTTLoad(cfg)
		if err != nil {
			return nil, err
		}
		b = m
	case cfg.Procs > 1:
		if cfg.WorkerCommand == nil {
			return nil, ErrNoWorkerCommand
		}
		if cfg.Scenario == ScenarioDevices {
			b, err = startDevProcs(ctx, cfg)
			break
		}
		if _, err := parseTarget(ctx, cfg.URL); err != nil {
			return nil, err
		}
		b, err = startProcs(cfg)
	default:
		b, err = newBackend(ctx, cfg)
	}
	if err != nil {
		return nil, err
	}
	co := &coordinator{cfg: cfg, b: b, start: time.Now(), probe: newProbe(cfg.ServerPID, cfg.AdminURL)}
	return co.run(ctx)
}

// coordinator runs the phases on a backend, samples the server at their
// boundaries and keeps the timeline.
type coordinator struct {
	cfg   Config
	b     backend
	start time.Time
	probe *probe
	usage *ServerUsage

	// mu guards the timeline and the running totals.
	mu       sync.Mutex
	phase    string
	phases   []PhaseSpan
	timeline []Sample
	lastT    time.Duration
	lastHist *Histogram // the latencies of the last sample
	total    Histogram
	errors   int64
}

func (co *coordinator) run(ctx context.Context) (*Report, error) {
	var samples [4]serverSample
	co.sampleServer(ctx, &samples[0])
	co.setPhase("ramp")
	stop := make(chan struct{})
	ticking := make(chan struct{})
	go co.ticker(stop, ticking)

	open, err := co.b.ramp(ctx)
	co.sampleServer(ctx, &samples[1])
	samples[2] = samples[1]
	idle := open == 0 // nothing to hold or drive
	if err == nil && !idle && co.cfg.Hold > 0 {
		co.setPhase("hold")
		err = co.b.hold(ctx, co.cfg.Hold)
		co.sampleServer(ctx, &samples[2])
	}
	samples[3] = samples[2]
	if err == nil && !idle && co.cfg.Duration > 0 {
		co.setPhase("traffic")
		err = co.b.traffic(ctx, co.cfg.Duration)
		co.sampleServer(ctx, &samples[3])
	}
	close(stop)
	<-ticking
	co.record(true)
	co.setPhase("")
	rep, ferr := co.b.finish()
	co.fold(co.b.tick()) // what the close and the workers' last ticks added
	if rep == nil {
		rep = &Report{}
	}
	rep.Procs = co.cfg.Procs
	rep.URL = co.cfg.URL
	rep.Start = co.start.Round(0).UTC()
	rep.Rate, rep.RPS = co.cfg.Rate, co.cfg.RPS
	co.mu.Lock()
	rep.Timeline, rep.Phases = co.timeline, co.phases
	co.mu.Unlock()
	if u := co.usage; u != nil {
		// Memory per connection is read once the connections are idle and
		// settled: after the hold when there is one (the server may still
		// be accepting when the client sees its connects complete).
		held := samples[2]
		u.RSSStart, u.RSSHeld, u.RSSEnd = samples[0].rss, held.rss, samples[3].rss
		if open > 0 {
			u.RSSPerConn = float64(held.rss-samples[0].rss) / float64(open)
			if held.anon >= 0 && samples[0].anon >= 0 {
				u.RSSAnonPerConn = float64(held.anon-samples[0].anon) / float64(open)
			}
		}
		u.CPURamp = samples[1].cpu - samples[0].cpu
		u.CPUHold = samples[2].cpu - samples[1].cpu
		u.CPUTraffic = samples[3].cpu - samples[2].cpu
		u.ConnsActive = held.conns
		rep.Server = u
	}
	rep.finalize()
	return rep, errors.Join(err, ferr)
}

// setPhase ends the current phase and starts p ("" for none).
func (co *coordinator) setPhase(p string) {
	co.mu.Lock()
	defer co.mu.Unlock()
	now := time.Since(co.start).Seconds()
	if n := len(co.phases); n > 0 && co.phases[n-1].End == 0 {
		co.phases[n-1].End = now
	}
	if p != "" {
		co.phases = append(co.phases, PhaseSpan{Name: p, Start: now})
	}
	co.phase = p
}

// sampleServer reads the server's usage into s, noting failures in the
// report.
func (co *coordinator) sampleServer(ctx context.Context, s *serverSample) {
	if co.probe == nil {
		return
	}
	if co.usage == nil {
		co.usage = &ServerUsage{PID: co.cfg.ServerPID, AdminURL: co.cfg.AdminURL, Source: co.probe.source(),
			ConnsActive: -1}
	}
	v, err := co.probe.sample(context.WithoutCancel(ctx))
	*s = v
	if err != nil && len(co.usage.Errors) < 4 && !slices.Contains(co.usage.Errors, err.Error()) {
		co.usage.Errors = append(co.usage.Errors, err.Error())
	}
}

// ticker records a sample a second until stop is closed.
func (co *coordinator) ticker(stop <-chan struct{}, done chan<- struct{}) {
	defer close(done)
	t := time.NewTicker(time.Second)
	defer t.Stop()
	for {
		select {
		case <-stop:
			return
		case <-t.C:
			co.record(false)
		}
	}
}

// record takes the backend's counters since the last sample into the
// timeline and prints a progress line. The final call folds a short last
// interval into the previous sample.
func (co *coordinator) record(final bool) {
	tk := co.b.tick()
	co.mu.Lock()
	defer co.mu.Unlock()
	now := time.Since(co.start)
	if final && len(co.timeline) > 0 && (now-co.lastT).Seconds() < 0.5 {
		co.foldLocked(tk, now)
		return
	}
	dt := (now - co.lastT).Seconds()
	co.lastT = now
	s := Sample{T: now.Seconds(), Phase: co.phase, Conns: tk.Open, Connects: tk.Connects, Requests: tk.Done,
		Errors: tk.Errors}
	if dt > 0 {
		s.Rate = float64(tk.Done) / dt
	}
	co.lastHist = tk.Lat
	setPercentiles(&s, tk.Lat)
	co.total.Merge(tk.Lat)
	co.errors += tk.Errors
	co.timeline = append(co.timeline, s)
	if w := co.cfg.Progress; w != nil && !final {
		fmt.Fprintf(w, "[%4.0fs] %-7s  conns %7s  rps %9s  p99 %8s  errors %s\n", s.T, s.Phase,
			count(float64(s.Conns)), count(s.Rate), msStr(ms(co.total.Quantile(0.99))), count(float64(co.errors)))
	}
}

// fold adds the counts of tk to the last sample.
func (co *coordinator) fold(tk tick) {
	co.mu.Lock()
	defer co.mu.Unlock()
	if len(co.timeline) == 0 {
		return
	}
	co.foldLocked(tk, co.lastT)
}

// foldLocked adds tk to the last sample, which now ends at now; the
// sample keeps its connection count.
func (co *coordinator) foldLocked(tk tick, now time.Duration) {
	s := &co.timeline[len(co.timeline)-1]
	start := 0.0 // the sample's interval starts where the previous ends
	if n := len(co.timeline); n > 1 {
		start = co.timeline[n-2].T
	}
	s.T = max(s.T, now.Seconds())
	co.lastT = max(co.lastT, now)
	s.Connects += tk.Connects
	s.Requests += tk.Done
	s.Errors += tk.Errors
	if dt := s.T - start; dt > 0 {
		s.Rate = float64(s.Requests) / dt
	}
	if tk.Lat != nil && tk.Lat.Count() > 0 {
		if co.lastHist == nil {
			co.lastHist = &Histogram{}
		}
		co.lastHist.Merge(tk.Lat)
		co.total.Merge(tk.Lat)
		setPercentiles(s, co.lastHist)
	}
	co.errors += tk.Errors
}

func setPercentiles(s *Sample, h *Histogram) {
	if h == nil || h.Count() == 0 {
		return
	}
	s.P50, s.P90, s.P99 = ms(h.Quantile(0.5)), ms(h.Quantile(0.9)), ms(h.Quantile(0.99))
	s.P999, s.Max = ms(h.Quantile(0.999)), ms(h.Max())
}
