package upstream

import (
	"math"
	"sync"
	"time"

	"golang.org/x/time/rate"
)

// TokenBucket admits events at a rate with bursts: it holds up to burst
// tokens, refills at the rate, and an event of n costs n tokens. It is
// golang.org/x/time/rate's Limiter, which already is a correct, concurrent
// token bucket driven by explicit times (AllowN(t, n)); TokenBucket only adds
// WhenN, a "when may I" answer that takes nothing, and the same method set as
// LeakyBucket. Nothing blocks and nothing reads the clock: every method takes
// the time.
//
// A TokenBucket is safe for concurrent use. Its reservations (ReserveN) are
// not bounded: a caller that reserves far ahead queues without limit, which
// is what LeakyBucket is for.
type TokenBucket struct {
	lim *rate.Limiter
}

// NewTokenBucket returns a full bucket of burst tokens refilled at perSecond
// tokens per second. A perSecond of math.Inf(1) admits everything; zero or
// negative admits only the first burst tokens, ever.
func NewTokenBucket(perSecond float64, burst int) *TokenBucket {
	lim := rate.Limit(perSecond)
	if math.IsInf(perSecond, 1) {
		lim = rate.Inf
	} else if perSecond < 0 || math.IsNaN(perSecond) {
		lim = 0
	}
	return &TokenBucket{lim: rate.NewLimiter(lim, burst)}
}

// AllowN reports whether n events may happen at now, and if so takes their
// tokens.
func (b *TokenBucket) AllowN(now time.Time, n int) bool { return b.lim.AllowN(now, n) }

// Check is AllowN with a reason: ReasonNone when admitted, ReasonOverBurst
// when n exceeds the burst (never admitted), ReasonRateLimited otherwise.
func (b *TokenBucket) Check(now time.Time, n int) Reason {
	if b.lim.AllowN(now, n) {
		return ReasonNone
	}
	if n > b.lim.Burst() {
		return ReasonOverBurst
	}
	return ReasonRateLimited
}

// WhenN returns the earliest time, not before now, at which AllowN(t, n)
// would succeed if nobody else took tokens meanwhile; it takes nothing. ok is
// false when n exceeds the burst or the bucket never refills enough.
func (b *TokenBucket) WhenN(now time.Time, n int) (t time.Time, ok bool) {
	lim := b.lim.Limit()
	if lim == rate.Inf {
		return now, true
	}
	if n > b.lim.Burst() {
		return time.Time{}, false
	}
	missing := float64(n) - b.lim.TokensAt(now)
	if missing <= 0 {
		return now, true
	}
	if lim <= 0 {
		return time.Time{}, false
	}
	d := math.Ceil(missing / float64(lim) * float64(time.Second))
	if d >= math.MaxInt64 {
		return time.Time{}, false
	}
	return now.Add(time.Duration(d)), true
}

// ReserveN takes n tokens now, going into debt if the bucket holds fewer,
// and returns when the caller may act: now if the tokens were there, later
// otherwise. ok is false, and nothing is taken, when n exceeds the burst.
func (b *TokenBucket) ReserveN(now time.Time, n int) (at time.Time, ok bool) {
	r := b.lim.ReserveN(now, n)
	if !r.OK() {
		return time.Time{}, false
	}
	return now.Add(r.DelayFrom(now)), true
}

// Tokens returns the tokens the bucket holds at now (negative after
// reservations that ran ahead).
func (b *TokenBucket) Tokens(now time.Time) float64 { return b.lim.TokensAt(now) }

// LeakyBucket is a leaky bucket as a queue: units pour in, leak out at a
// constant rate, and the bucket holds at most capacity units. As a meter
// (AllowN) it admits what a token bucket of burst capacity admits. What it
// adds is the shaper: ReserveN gives each admitted request a departure slot,
// spaced exactly n/rate after the previous one, so a caller that acts at its
// slot emits a smooth stream with no bursts, and capacity bounds the queue
// (the longest wait is capacity/rate). x/time/rate's ReserveN queues without
// bound and lets a full bucket's burst out at once, so it cannot do this.
//
// The state is one number, the time at which the bucket will be empty (the
// generic cell rate algorithm's theoretical arrival time), in integer
// nanoseconds, so arithmetic is exact. A LeakyBucket is safe for concurrent
// use; its zero value is not usable: call NewLeakyBucket.
type LeakyBucket struct {
	interval int64 // nanoseconds one unit takes to leak
	capacity int64

	mu    sync.Mutex // guards the fields below
	clock monoClock
	tat   int64 // when the bucket is empty, on clock; valid once clock is set
}

// NewLeakyBucket returns an empty bucket that leaks perSecond units per
// second and holds up to capacity units. perSecond must be positive (it
// panics otherwise); math.Inf(1) leaks instantly.
func NewLeakyBucket(perSecond float64, capacity int) *LeakyBucket {
	if !(perSecond > 0) {
		panic("upstream: LeakyBucket rate must be positive")
	}
	return &LeakyBucket{interval: intervalOf(perSecond), capacity: int64(capacity)}
}

// intervalOf returns the nanoseconds between events at perSecond events per
// second: at least 0 (infinite rate), at most math.MaxInt64.
func intervalOf(perSecond float64) int64 {
	if math.IsInf(perSecond, 1) {
		return 0
	}
	d := math.Round(float64(time.Second) / perSecond)
	if d >= math.MaxInt64 {
		return math.MaxInt64
	}
	if d < 1 {
		return 1
	}
	return int64(d)
}

// AllowN reports whether n units fit in the bucket at now, and if so pours
// them in.
func (b *LeakyBucket) AllowN(now time.Time, n int) bool { return b.Check(now, n) == ReasonNone }

// Check is AllowN with a reason: ReasonNone when admitted, ReasonOverBurst
// when n exceeds the capacity (never admitted), ReasonRateLimited otherwise.
func (b *LeakyBucket) Check(now time.Time, n int) Reason {
	_, r := b.reserve(now, n)
	return r
}

// ReserveN pours n units in if they fit and returns their departure slot:
// the time at which the caller should act so that what leaves the bucket
// keeps to the rate. ok is false, and nothing is poured, when they do not
// fit (WhenN says when they will).
func (b *LeakyBucket) ReserveN(now time.Time, n int) (at time.Time, ok bool) {
	wait, r := b.reserve(now, n)
	if r != ReasonNone {
		return time.Time{}, false
	}
	return now.Add(time.Duration(wait)), true
}

// reserve pours n units in and returns how long after now their slot
// starts.
func (b *LeakyBucket) reserve(now time.Time, n int) (wait int64, r Reason) {
	return b.reserveWithin(now, n, -1)
}

// reserveWithin is reserve for units that must leave within maxWait
// nanoseconds of now (negative: whenever their slot comes): when their slot
// would start later, nothing is poured and it reports ReasonRateLimited. A
// hedge uses 0 (a hedge that must wait for its slot is not worth sending).
func (b *LeakyBucket) reserveWithin(now time.Time, n int, maxWait int64) (wait int64, r Reason) {
	if n <= 0 {
		return 0, ReasonNone
	}
	if int64(n) > b.capacity {
		return 0, ReasonOverBurst
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	fresh := !b.clock.set
	t := b.clock.nanos(now)
	if fresh {
		b.tat = t
	}
	tat, start, ok := gcra(b.tat, t, int64(n), b.interval, b.capacity)
	if !ok || maxWait >= 0 && start-t > maxWait {
		return 0, ReasonRateLimited
	}
	b.tat = tat
	return start - t, ReasonNone
}

// WhenN returns the earliest time, not before now, at which n units fit;
// it pours nothing. ok is false when n exceeds the capacity.
func (b *LeakyBucket) WhenN(now time.Time, n int) (t time.Time, ok bool) {
	if int64(n) > b.capacity {
		return time.Time{}, false
	}
	b.mu.Lock()
	set := b.clock.set
	tnow := b.clock.nanos(now)
	if !set {
		b.tat = tnow
	}
	wait := gcraWait(b.tat, tnow, int64(n), b.interval, b.capacity)
	b.mu.Unlock()
	return now.Add(time.Duration(wait)), true
}

// Level returns the units in the bucket at now (fractional while one
// leaks).
func (b *LeakyBucket) Level(now time.Time) float64 {
	b.mu.Lock()
	defer b.mu.Unlock()
	if !b.clock.set || b.interval == 0 {
		return 0
	}
	t := b.clock.nanos(now)
	if b.tat <= t {
		return 0
	}
	return float64(b.tat-t) / float64(b.interval)
}

// monoClock turns times into int64 nanoseconds since the first time it was
// given, using the monotonic reading when both times carry one. Its owner's
// lock guards it.
type monoClock struct {
	epoch time.Time
	set   bool
}

func (c *monoClock) nanos(now time.Time) int64 {
	if !c.set {
		c.epoch, c.set = now, true
	}
	return int64(now.Sub(c.epoch))
}

// gcra is the generic cell rate algorithm's virtual scheduling step, the
// exact integer form of both a token bucket and a leaky bucket of
// capacity units leaking one per interval: tat is the time the bucket is
// empty (at or before t: it is empty now), t the current time. n units fit
// when, once added, the bucket would hold at most capacity. It returns the
// new tat, the start of the units' slot (max(tat, t)), and whether they fit.
func gcra(tat, t, n, interval, capacity int64) (newTat, start int64, ok bool) {
	start = max(tat, t)
	newTat = satAdd(start, satMul(n, interval))
	if newTat-t > satMul(capacity, interval) {
		return tat, start, false
	}
	return newTat, start, true
}

// gcraWait returns how long after t n units fit (0 if they fit now). The
// caller has checked n <= capacity.
func gcraWait(tat, t, n, interval, capacity int64) int64 {
	// Fit when max(tat, x) + n*interval - x <= capacity*interval; for
	// x >= tat that always holds, before it x >= tat - (capacity-n)*interval.
	at := tat - satMul(capacity-n, interval)
	if at <= t {
		return 0
	}
	return at - t
}

// satMul multiplies non-negative numbers, saturating at math.MaxInt64.
func satMul(a, b int64) int64 {
	if a == 0 || b == 0 {
		return 0
	}
	if a > math.MaxInt64/b {
		return math.MaxInt64
	}
	return a * b
}

// satAdd adds b >= 0 to a, saturating at math.MaxInt64.
func satAdd(a, b int64) int64 {
	if a > math.MaxInt64-b {
		return math.MaxInt64
	}
	return a + b
}
