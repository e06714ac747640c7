// Package memtrim gives the memory a burst of work left free back to the
// operating system once the burst is over.
//
// A server that takes a burst of connections (a ramp, a reconnect storm)
// allocates far more than it keeps: handshakes, tokens, messages. The Go
// runtime returns free memory to the operating system slowly, and only
// down to about its heap goal, so after the burst the process's RSS stays
// near its peak for minutes while the heap it holds is much smaller. A
// Trimmer watches the process's allocation rate; when a burst (Config.Burst
// bytes allocated, since the last trim, in intervals that were not quiet)
// is followed by a quiet interval
// (less than Config.Quiet bytes a second), it collects and returns every
// free page (debug.FreeOSMemory), at most once per Config.MinGap. Steady
// traffic costs one read of the runtime's metrics per Interval and nothing
// else: over Quiet the rate never falls quiet, under it no interval counts
// towards a burst (a rate that hovers about Quiet trims at most once per
// MinGap).
//
// Settle is the same collection once, at the end of a process's start-up:
// it puts what the runtime makes at its first collections (the span sets
// of the central lists, see Settle) and what start-up left free into the
// baseline, where a fixed cost belongs, instead of onto the first clients.
package memtrim

import (
	"context"
	"os"
	"runtime"
	"runtime/debug"
	rtmetrics "runtime/metrics"
	"strconv"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

var (
	descTrims    = prometheus.NewDesc("warren_memtrim_trims_total", "Times the process returned its free memory to the operating system after a burst of allocation (-memtrim-burst).", nil, nil)
	descReleased = prometheus.NewDesc("warren_memtrim_released_bytes_total", "Bytes the trims after bursts returned to the operating system.", nil, nil)
	descSettles  = prometheus.NewDesc("warren_memtrim_start_trims_total", "Collections at the end of the process's start-up (-memtrim-start): 1 once it ran, 0 when off.", nil, nil)
	descSettled  = prometheus.NewDesc("warren_memtrim_start_released_bytes", "Bytes the collection at the end of start-up returned to the operating system.", nil, nil)
)

// Collector returns the Trimmer's metrics: warren_memtrim_trims_total,
// warren_memtrim_released_bytes_total, warren_memtrim_start_trims_total
// and warren_memtrim_start_released_bytes.
func (t *Trimmer) Collector() prometheus.Collector { return collector{t} }

type collector struct{ t *Trimmer }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descTrims
	ch <- descReleased
	ch <- descSettles
	ch <- descSettled
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	s := c.t.Stats()
	ch <- prometheus.MustNewConstMetric(descTrims, prometheus.CounterValue, float64(s.Trims))
	ch <- prometheus.MustNewConstMetric(descReleased, prometheus.CounterValue, float64(s.Released))
	ch <- prometheus.MustNewConstMetric(descSettles, prometheus.CounterValue, float64(s.Settles))
	ch <- prometheus.MustNewConstMetric(descSettled, prometheus.GaugeValue, float64(s.Settled))
}

// Defaults of Config's fields.
const (
	DefaultInterval = time.Second
	DefaultBurst    = 16 << 20
	DefaultQuiet    = 1 << 20
	DefaultMinGap   = 30 * time.Second
)

// Config says when a Trimmer trims. The zero value is the defaults.
type Config struct {
	// Interval is how often the allocation rate is read. Zero means
	// DefaultInterval (1s).
	Interval time.Duration
	// Burst is how many bytes allocated since the last trim (or the start)
	// make a burst worth trimming after. Zero means DefaultBurst (16 MiB);
	// negative disables trimming. (At a GC target of 25, a burst of 16 MiB
	// over a 10 MiB live heap has run about six collections already; the
	// trim adds one, and the release of the free pages.)
	Burst int64
	// Quiet is the allocation rate, in bytes a second, under which an
	// Interval counts as quiet: the burst is over. Zero means DefaultQuiet
	// (1 MiB/s).
	Quiet int64
	// MinGap is the least time between two trims. Zero means
	// DefaultMinGap (30s).
	MinGap time.Duration
	// NoSettle turns Settle into a no-op (warren serve -memtrim-start=false).
	// The zero value collects at the end of start-up.
	NoSettle bool
}

// Stats are a Trimmer's counts.
type Stats struct {
	Trims    uint64 // times memory was trimmed
	Released uint64 // bytes the trims returned to the operating system
	Settles  uint64 // times Settle collected (at most once per Trimmer)
	Settled  uint64 // bytes Settle returned to the operating system
}

// Trimmer trims after bursts; see the package documentation. Its methods
// are safe for concurrent use; Run once per Trimmer. One Trimmer is
// enough for a process: the runtime's figures and the release are
// process-wide.
type Trimmer struct {
	cfg      Config
	trims    atomic.Uint64
	released atomic.Uint64
	settles  atomic.Uint64
	settled  atomic.Uint64
}

// New returns a Trimmer with cfg's zero fields set to their defaults.
func New(cfg Config) *Trimmer {
	if cfg.Interval <= 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Burst == 0 {
		cfg.Burst = DefaultBurst
	}
	if cfg.Quiet <= 0 {
		cfg.Quiet = DefaultQuiet
	}
	if cfg.MinGap <= 0 {
		cfg.MinGap = DefaultMinGap
	}
	return &Trimmer{cfg: cfg}
}

// Stats returns the counts so far.
func (t *Trimmer) Stats() Stats {
	return Stats{Trims: t.trims.Load(), Released: t.released.Load(), Settles: t.settles.Load(), Settled: t.settled.Load()}
}

// Settle ends a process's start-up: called once the garbage of its
// start-up is made (in a server, once its listeners are up; in a parent
// that only supervises, before it starts its workers, which settle their
// own), it runs two collections and
// returns every free page to the operating system (runtime.GC, then
// debug.FreeOSMemory, which is a collection and a scavenge). A second
// call, or one with Config.NoSettle, does nothing. It blocks for the
// collections (a few milliseconds on a start-up heap of a few MB).
//
// Why: the runtime keeps the spans of each size class on central lists
// held in span sets, and makes the sets' blocks and spines (not returned,
// ≈ 1.3 MB in a broker: docs/benchmarks.md §61) the first time spans
// reach them, which is at the first collections. Left alone, that cost
// lands on whatever the process allocates first — the first thousands of
// clients — and reads as a cost per client. The sets come in pairs (one
// for the spans swept in this cycle, one for the next: the sweep
// generation's parity), so one collection makes half of them and the
// second the other half; two collections at start-up put the whole fixed
// cost into the baseline (§75). The scavenge then returns what start-up
// left free.
func (t *Trimmer) Settle() {
	if t.cfg.NoSettle || !t.settles.CompareAndSwap(0, 1) {
		return
	}
	s := []rtmetrics.Sample{{Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	before := s[0].Value.Uint64()
	runtime.GC()
	debug.FreeOSMemory()
	rtmetrics.Read(s)
	if after := s[0].Value.Uint64(); after > before {
		t.settled.Store(after - before)
	}
}

// Run watches the allocation rate until ctx is done.
func (t *Trimmer) Run(ctx context.Context) {
	if t.cfg.Burst < 0 {
		return
	}
	tick := time.NewTicker(t.cfg.Interval)
	defer tick.Stop()
	s := []rtmetrics.Sample{{Name: "/gc/heap/allocs:bytes"}, {Name: "/memory/classes/heap/released:bytes"}}
	rtmetrics.Read(s)
	prev := s[0].Value.Uint64()
	prevAt := time.Now()
	var last time.Time
	var busy uint64 // bytes allocated in busy intervals since the last trim
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-tick.C:
			rtmetrics.Read(s)
			cur := s[0].Value.Uint64()
			d := t.step(&busy, cur-prev, now.Sub(prevAt), now.Sub(last))
			prev, prevAt = cur, now
			if !d {
				continue
			}
			before := s[1].Value.Uint64()
			debug.FreeOSMemory()
			rtmetrics.Read(s)
			if after := s[1].Value.Uint64(); after > before {
				t.released.Add(after - before)
			}
			t.trims.Add(1)
			prev, last, busy = s[0].Value.Uint64(), now, 0
		}
	}
}

// step takes one interval's allocation (delta bytes over elapsed) and
// reports whether to trim now: the interval quiet, a burst's worth
// allocated in the busy intervals since the last trim (*busy, which it
// adds a busy interval's bytes to), and MinGap since the last trim. Only
// busy intervals count towards a burst, so a process that allocates
// steadily under Quiet never trims; one whose rate hovers about Quiet
// trims at most once per MinGap.
func (t *Trimmer) step(busy *uint64, delta uint64, elapsed, sinceTrim time.Duration) bool {
	if elapsed <= 0 {
		return false
	}
	if float64(delta)/elapsed.Seconds() >= float64(t.cfg.Quiet) {
		*busy += delta
		return false
	}
	return *busy >= uint64(t.cfg.Burst) && sinceTrim >= t.cfg.MinGap
}

// EnvGOGC returns $GOGC as a GC percent when it is set and valid ("off":
// -1), else def: the default of a -gogc flag that, like the runtime,
// lets the environment choose.
func EnvGOGC(def int) int {
	switch v := os.Getenv("GOGC"); {
	case v == "off":
		return -1
	case v != "":
		if n, err := strconv.Atoi(v); err == nil {
			return n
		}
	}
	return def
}
