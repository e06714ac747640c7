package upstream

import (
	"sync"
	"time"
)

// BreakerState is a Breaker's state.
type BreakerState uint8

const (
	// BreakerClosed lets every call through and counts failures. It moves
	// to BreakerOpen when BreakerConfig.ConsecutiveFailures fail in a row or
	// the failure ratio over the window reaches FailureRatio.
	BreakerClosed BreakerState = iota
	// BreakerOpen refuses every call (ReasonBreakerOpen) for OpenTimeout,
	// then moves to BreakerHalfOpen.
	BreakerOpen
	// BreakerHalfOpen lets HalfOpenProbes calls through at once and refuses
	// the rest (ReasonHalfOpenFull). It moves to BreakerClosed when
	// HalfOpenProbes probes have succeeded, and back to BreakerOpen on the
	// first failed probe.
	BreakerHalfOpen
)

var breakerStateNames = [...]string{"closed", "open", "half_open"}

// String returns the snake_case name used in metrics and logs.
func (s BreakerState) String() string {
	if int(s) < len(breakerStateNames) {
		return breakerStateNames[s]
	}
	return "unknown"
}

// BreakerConfig configures a Breaker. The zero value works.
type BreakerConfig struct {
	// ConsecutiveFailures trips the breaker after this many failures in a
	// row. Zero means 5; negative disables it.
	ConsecutiveFailures int
	// FailureRatio trips the breaker when failures reach this share (0 to
	// 1) of the calls in the last Window, once there were MinRequests of
	// them. Zero means 0.5; negative disables it.
	FailureRatio float64
	// MinRequests is the calls the window needs before FailureRatio counts.
	// Zero means 20.
	MinRequests int
	// Window is the rolling window for FailureRatio. Zero means 10s.
	Window time.Duration
	// Buckets is how many slices the window rolls by. Zero means 10.
	Buckets int
	// OpenTimeout is how long the breaker stays open before probing. Zero
	// means 30s.
	OpenTimeout time.Duration
	// HalfOpenProbes is how many probe calls half-open lets through at once,
	// and how many must succeed to close. Zero means 1.
	HalfOpenProbes int
}

// Default BreakerConfig values.
const (
	DefaultBreakerConsecutiveFailures = 5
	DefaultBreakerFailureRatio        = 0.5
	DefaultBreakerMinRequests         = 20
	DefaultBreakerWindow              = 10 * time.Second
	DefaultBreakerBuckets             = 10
	DefaultBreakerOpenTimeout         = 30 * time.Second
	DefaultBreakerHalfOpenProbes      = 1
)

func (c BreakerConfig) withDefaults() BreakerConfig {
	if c.ConsecutiveFailures == 0 {
		c.ConsecutiveFailures = DefaultBreakerConsecutiveFailures
	}
	if c.FailureRatio == 0 {
		c.FailureRatio = DefaultBreakerFailureRatio
	}
	if c.MinRequests <= 0 {
		c.MinRequests = DefaultBreakerMinRequests
	}
	if c.Window <= 0 {
		c.Window = DefaultBreakerWindow
	}
	if c.Buckets <= 0 {
		c.Buckets = DefaultBreakerBuckets
	}
	if c.OpenTimeout <= 0 {
		c.OpenTimeout = DefaultBreakerOpenTimeout
	}
	if c.HalfOpenProbes <= 0 {
		c.HalfOpenProbes = DefaultBreakerHalfOpenProbes
	}
	return c
}

// BreakerStats counts what a Breaker did, for metrics.
type BreakerStats struct {
	// State is the state now.
	State BreakerState
	// Trips counts moves to BreakerOpen (from closed or half-open).
	Trips uint64
	// RejectedOpen and RejectedHalfOpen count refusals by Reason
	// (ReasonBreakerOpen, ReasonHalfOpenFull).
	RejectedOpen, RejectedHalfOpen uint64
}

// Ticket is a call a Breaker let through; report its outcome with Done.
// It is a plain value (no allocation).
type Ticket struct {
	gen uint64
}

// Breaker is a classic circuit breaker (closed, open, half-open) that trips
// on consecutive failures or on a failure ratio over a rolling window. It is
// non-blocking and two-step: Allow before a call, Done with its outcome
// after, so it fits an event loop.
//
// Why not sony/gobreaker: its TwoStepCircuitBreaker has the right shape, but
// it reads time.Now inside, so tests of open timeouts and rolling windows
// would have to sleep and the breaker could not run on the engine's clock,
// and its Allow returns a closure, one allocation per call. This one takes
// the time as an argument like every policy here, and Allow and Done do not
// allocate.
//
// Every call Allow lets through must be reported with Done (a timed-out call
// is a failure), or half-open waits for its probe forever. Outcomes of calls
// let through before a state change are ignored. A Breaker is safe for
// concurrent use (one mutex).
type Breaker struct {
	cfg  BreakerConfig
	span int64 // nanoseconds per bucket

	mu          sync.Mutex // guards everything below
	clock       monoClock
	state       BreakerState
	gen         uint64 // bumped on every state change
	until       int64  // end of BreakerOpen
	consecutive int
	probes      int // half-open probes in flight
	succeeded   int // half-open probes that succeeded
	buckets     []breakerBucket
	stats       BreakerStats
}

type breakerBucket struct {
	slot       int64 // t/span of the calls counted here
	ok, failed int
}

// NewBreaker returns a closed Breaker.
func NewBreaker(cfg BreakerConfig) *Breaker {
	cfg = cfg.withDefaults()
	return &Breaker{
		cfg:     cfg,
		span:    max(1, int64(cfg.Window)/int64(cfg.Buckets)),
		buckets: make([]breakerBucket, cfg.Buckets),
		gen:     1,
	}
}

// Allow asks to make a call at now. With ReasonNone the call may go ahead
// and its outcome goes to Done with the Ticket; otherwise the breaker
// refuses (ReasonBreakerOpen, ReasonHalfOpenFull).
func (b *Breaker) Allow(now time.Time) (Ticket, Reason) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.clock.nanos(now)
	b.advance(t)
	switch b.state {
	case BreakerOpen:
		b.stats.RejectedOpen++
		return Ticket{}, ReasonBreakerOpen
	case BreakerHalfOpen:
		if b.probes >= b.cfg.HalfOpenProbes {
			b.stats.RejectedHalfOpen++
			return Ticket{}, ReasonHalfOpenFull
		}
		b.probes++
	}
	return Ticket{gen: b.gen}, ReasonNone
}

// Done reports the outcome of a call Allow let through.
func (b *Breaker) Done(tk Ticket, success bool, now time.Time) {
	b.mu.Lock()
	defer b.mu.Unlock()
	t := b.clock.nanos(now)
	if tk.gen != b.gen {
		return // from before a state change
	}
	switch b.state {
	case BreakerClosed:
		bk := b.bucket(t)
		if success {
			b.consecutive = 0
			bk.ok++
			return
		}
		b.consecutive++
		bk.failed++
		if b.cfg.ConsecutiveFailures > 0 && b.consecutive >= b.cfg.ConsecutiveFailures {
			b.trip(t)
			return
		}
		if b.cfg.FailureRatio > 0 {
			ok, failed := b.window(t)
			if total := ok + failed; total >= b.cfg.MinRequests && float64(failed) >= b.cfg.FailureRatio*float64(total) {
				b.trip(t)
			}
		}
	case BreakerHalfOpen:
		b.probes--
		if !success {
			b.trip(t)
			return
		}
		if b.succeeded++; b.succeeded >= b.cfg.HalfOpenProbes {
			b.setState(BreakerClosed)
		}
	}
}

// Release gives back a Ticket whose call never reached the backend (it
// was refused locally: a full pending queue, a cancel), counting neither
// a success nor a failure; in half-open it frees the probe's place.
func (b *Breaker) Release(tk Ticket) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if tk.gen == b.gen && b.state == BreakerHalfOpen {
		b.probes--
	}
}

// State returns the state at now.
func (b *Breaker) State(now time.Time) BreakerState {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.clock.nanos(now))
	return b.state
}

// Stats returns the counters and the state at now.
func (b *Breaker) Stats(now time.Time) BreakerStats {
	b.mu.Lock()
	defer b.mu.Unlock()
	b.advance(b.clock.nanos(now))
	s := b.stats
	s.State = b.state
	return s
}

// advance moves an open breaker whose timeout is over to half-open.
func (b *Breaker) advance(t int64) {
	if b.state == BreakerOpen && t >= b.until {
		b.setState(BreakerHalfOpen)
	}
}

func (b *Breaker) trip(t int64) {
	b.setState(BreakerOpen)
	b.until = t + int64(b.cfg.OpenTimeout)
	b.stats.Trips++
}

// setState changes state and forgets everything counted in the old one.
func (b *Breaker) setState(s BreakerState) {
	b.state = s
	b.gen++
	b.consecutive, b.probes, b.succeeded = 0, 0, 0
	clear(b.buckets)
}

// bucket returns the bucket for t, emptied if it held an older slot.
func (b *Breaker) bucket(t int64) *breakerBucket {
	slot := floorDiv(t, b.span)
	bk := &b.buckets[int(mod(slot, int64(len(b.buckets))))]
	if bk.slot != slot {
		*bk = breakerBucket{slot: slot}
	}
	return bk
}

// window sums the buckets of the last Window before t.
func (b *Breaker) window(t int64) (ok, failed int) {
	cur := floorDiv(t, b.span)
	for _, bk := range b.buckets {
		if cur-bk.slot < int64(len(b.buckets)) && bk.slot <= cur {
			ok += bk.ok
			failed += bk.failed
		}
	}
	return ok, failed
}

func floorDiv(a, b int64) int64 {
	q := a / b
	if a%b != 0 && a < 0 {
		q--
	}
	return q
}

func mod(a, b int64) int64 {
	m := a % b
	if m < 0 {
		m += b
	}
	return m
}
