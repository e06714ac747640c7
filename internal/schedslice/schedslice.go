// Package schedslice asks the kernel for a shorter time slice for every
// thread of the process (Linux 6.12 or newer, the EEVDF scheduler).
//
// On a machine whose cores are nearly all busy, a thread that wakes (a
// loop whose socket became readable, a NATS client's reader) waits on its
// CPU's run queue for the running thread. EEVDF gives each normal thread
// a request size, its slice (by default the base slice, 0.7 ms times
// 1 + log2 of the CPUs: 1.4 ms on two cores), and computes its virtual
// deadline from it; a thread with a shorter slice has an earlier deadline,
// and with the kernel's PREEMPT_SHORT feature (6.12) it may preempt the
// running thread when it wakes instead of waiting for that thread's slice
// to end. A process asks for it per thread with sched_setattr(2), policy
// SCHED_NORMAL and sched_attr.sched_runtime = the slice in nanoseconds;
// the kernel clamps it to 0.1–100 ms, and no privilege is needed: the
// kernel's permission check for a normal policy concerns only a lowered
// nice value, the SCHED_IDLE policy, the reset-on-fork flag and the
// thread's owner (kernel/sched/syscalls.c, user_check_sched_setscheduler),
// never sched_runtime.
//
// The setting is per thread, and the Go runtime starts threads whenever
// it wants one (and a thread it starts from one that has no custom slice
// has none either), so a Sweeper sets it on every thread in
// /proc/self/task when it is created and again every Config.Interval. It
// reads each thread's attributes first and changes only the slice: the
// policy and the nice value stay as they are. Threads the process runs
// at a lowered priority (a positive nice value: tlsx's handshake workers)
// or under another policy (SCHED_IDLE, real time) are left alone.
//
// Shorter slices mean more preemptions and context switches: more CPU
// for the same work, the price docs/benchmarks.md §63 measured.
//
// Linux only; elsewhere New with a non-zero Slice returns ErrUnsupported,
// as it does on a Linux kernel that ignores sched_runtime for normal
// threads (before 6.12).
package schedslice

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Bounds and defaults of Config's fields.
const (
	// MinSlice and MaxSlice bound Config.Slice: the kernel's own clamp
	// (0.1 ms and 100 ms); a value outside them is refused, not clamped.
	MinSlice = 100 * time.Microsecond
	MaxSlice = 100 * time.Millisecond
	// DefaultInterval is how often a Sweeper looks for new threads when
	// Config.Interval is zero: a directory read and one sched_getattr per
	// thread, a few microseconds a second.
	DefaultInterval = time.Second
	// logEvery is the shortest gap between two log lines about failures.
	logEvery = time.Minute
)

// ErrUnsupported is returned by New when the platform or the kernel cannot
// give a thread a slice of its own.
var ErrUnsupported = errors.New("schedslice: per-thread time slices need Linux 6.12 or newer (sched_attr.sched_runtime for SCHED_NORMAL)")

// ErrRange is returned by New for a slice outside MinSlice–MaxSlice.
var ErrRange = errors.New("schedslice: slice outside 100µs–100ms")

// Config says which slice a Sweeper asks for. The zero value asks for
// nothing: every thread keeps the kernel's slice.
type Config struct {
	// Slice is the time slice asked for every thread, between MinSlice
	// and MaxSlice. Zero means the kernel's own (the Sweeper does
	// nothing); negative is refused.
	Slice time.Duration
	// Interval is how often the Sweeper sets the slice on threads started
	// since its last sweep. Zero means DefaultInterval; negative is
	// refused.
	Interval time.Duration
	// Logger receives a warning when a sweep could not set a thread's
	// slice (at most one line a minute, with the counts). Nil discards.
	Logger *slog.Logger
}

// Stats are a Sweeper's counts.
type Stats struct {
	Sweeps  uint64 // sweeps done, the one in New included
	Set     uint64 // times a thread's slice was set (a thread once, unless something reset it)
	Failed  uint64 // threads whose attributes could not be read or set (a thread that ended meanwhile is not counted)
	Threads int    // threads at the slice after the last sweep
}

// Sweeper keeps every thread of the process at Config.Slice. Its methods
// are safe for concurrent use; Run once per Sweeper. One Sweeper is
// enough for a process.
type Sweeper struct {
	cfg     Config
	sweeps  atomic.Uint64
	set     atomic.Uint64
	failed  atomic.Uint64
	threads atomic.Int64
	lastLog time.Time // of a failure line; only Run's goroutine touches it after New
}

// New checks cfg and, when cfg.Slice is not zero, sets the slice on every
// thread of the process at once. It returns ErrRange for a slice out of
// bounds, an error for a negative interval, and ErrUnsupported (wrapped,
// with the reason) where the platform or the kernel cannot do it; then no
// thread was changed.
func New(cfg Config) (*Sweeper, error) {
	if cfg.Slice < 0 || (cfg.Slice != 0 && (cfg.Slice < MinSlice || cfg.Slice > MaxSlice)) {
		return nil, fmt.Errorf("%w: %v", ErrRange, cfg.Slice)
	}
	if cfg.Interval < 0 {
		return nil, fmt.Errorf("schedslice: negative interval %v", cfg.Interval)
	}
	if cfg.Interval == 0 {
		cfg.Interval = DefaultInterval
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.DiscardHandler)
	}
	s := &Sweeper{cfg: cfg}
	if cfg.Slice == 0 {
		return s, nil
	}
	if err := s.first(); err != nil {
		return nil, err
	}
	return s, nil
}

// Slice returns the slice the Sweeper asks for; zero: the kernel's.
func (s *Sweeper) Slice() time.Duration { return s.cfg.Slice }

// Stats returns the counts so far.
func (s *Sweeper) Stats() Stats {
	return Stats{Sweeps: s.sweeps.Load(), Set: s.set.Load(), Failed: s.failed.Load(), Threads: int(s.threads.Load())}
}

// Run sweeps every Config.Interval until ctx is done; with a zero Slice it
// returns at once. Threads keep their slice after Run returns.
func (s *Sweeper) Run(ctx context.Context) {
	if s.cfg.Slice == 0 {
		return
	}
	t := time.NewTicker(s.cfg.Interval)
	defer t.Stop()
	for {
		select {
		case <-ctx.Done():
			return
		case now := <-t.C:
			s.sweepAndLog(now)
		}
	}
}

// sweepAndLog is one sweep of Run at now, and its warning.
func (s *Sweeper) sweepAndLog(now time.Time) { s.logFailures(now, s.sweep()) }

// logFailures warns about a sweep's failures at most once per logEvery
// (now is the sweep's time).
func (s *Sweeper) logFailures(now time.Time, r result) {
	if r.failed == 0 || (!s.lastLog.IsZero() && now.Sub(s.lastLog) < logEvery) {
		return
	}
	s.lastLog = now
	s.cfg.Logger.Warn("schedslice: threads left at the kernel's slice", "failed", r.failed,
		"failed_total", s.failed.Load(), "slice", s.cfg.Slice, "error", r.err)
}

// result is one sweep's outcome.
type result struct {
	set, failed, threads int
	err                  error  // the first failure's
	ignored              bool   // the first thread set read back another slice: the kernel ignored it
	readBack             uint64 // that slice
}

// sweep sets the slice on every thread not at it yet and counts.
func (s *Sweeper) sweep() result {
	r := sweepThreads(s.cfg.Slice)
	s.sweeps.Add(1)
	s.set.Add(uint64(r.set))
	s.failed.Add(uint64(r.failed))
	s.threads.Store(int64(r.threads))
	return r
}

var (
	descSlice   = prometheus.NewDesc("warren_schedslice_slice_seconds", "Time slice asked of the kernel for every thread of the process (-sched-slice; 0: the kernel's).", nil, nil)
	descThreads = prometheus.NewDesc("warren_schedslice_threads", "Threads of the process at the asked slice after the last sweep.", nil, nil)
	descSet     = prometheus.NewDesc("warren_schedslice_set_total", "Times a thread's slice was set (new threads, every sweep).", nil, nil)
	descFailed  = prometheus.NewDesc("warren_schedslice_failures_total", "Threads whose slice could not be read or set (they keep the kernel's).", nil, nil)
)

// Collector returns the Sweeper's metrics: warren_schedslice_slice_seconds,
// warren_schedslice_threads, warren_schedslice_set_total and
// warren_schedslice_failures_total.
func (s *Sweeper) Collector() prometheus.Collector { return collector{s} }

type collector struct{ s *Sweeper }

func (c collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- descSlice
	ch <- descThreads
	ch <- descSet
	ch <- descFailed
}

func (c collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	ch <- prometheus.MustNewConstMetric(descSlice, prometheus.GaugeValue, c.s.cfg.Slice.Seconds())
	ch <- prometheus.MustNewConstMetric(descThreads, prometheus.GaugeValue, float64(st.Threads))
	ch <- prometheus.MustNewConstMetric(descSet, prometheus.CounterValue, float64(st.Set))
	ch <- prometheus.MustNewConstMetric(descFailed, prometheus.CounterValue, float64(st.Failed))
}
