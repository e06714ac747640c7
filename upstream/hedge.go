package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/http1"
)

// Hedging (ClusterConfig.HedgeDelay): a request that has had no answer
// HedgeDelay after it was sent gets a second attempt on another host; the
// first response head wins and the other attempt is canceled (its
// connection closed, or its place in a pending queue given up).
//
// A hedged request is an Exchange (the parent, which the caller holds and
// which holds the request's gates: breaker ticket, MaxRequests, the retry
// budget's count of active requests, the overall timeout) over one or two
// attempts, child Exchanges that pass no gate of their own. The first
// attempt retries as any request does; the hedge does not (but for the
// free retry of a reused connection). The hedge is one of the request's
// retries: it needs RetryPolicy.MaxRetries not yet used up and room in the
// retry budget (or Thresholds.MaxRetries), which it holds until it ends.

// Hedgeable reports whether r may be hedged: an idempotent request (by its
// method or Request.Idempotent) with a complete body, no protocol upgrade
// and no 100-continue wait.
func Hedgeable(r *Request) bool {
	idem := r.Idempotent > 0 || r.Idempotent == 0 && Idempotent(r.Method)
	return idem && !r.Stream && !r.Upgrade && !r.Expect100
}

// hedger coordinates a hedged request's attempts; it is their
// ResponseHandler and passes the winner's calls on to the parent's.
type hedger struct {
	p      *Exchange
	winner atomic.Pointer[Exchange]

	// mu guards the fields below. It is held while no handler runs and no
	// connection is written or closed.
	mu     sync.Mutex
	timer  *pooledTimer[hedger] // nil once stopped
	closed bool                 // the request ended (timeout, cancel) before any answer: no winner any more
	att    [2]*Exchange
	n      int     // attempts started
	done   [2]bool // attempt ended (OnDone)
}

var (
	_ ResponseHandler = (*hedger)(nil)
	_ InterimHandler  = (*hedger)(nil)
	_ TrailerHandler  = (*hedger)(nil)
)

// attempt returns a child exchange of p: the same request, no gates.
func (c *Cluster) attempt(p *Exchange, hg *hedger) *Exchange {
	return &Exchange{c: c, method: p.method, head: p.head, body: p.body, idem: p.idem, key: p.key, loop: p.loop,
		h: hg, begun: p.begun, lastHost: -1, child: true}
}

// start starts p's first attempt and its hedge timer.
func (hg *hedger) start(now time.Time) {
	p := hg.p
	a := p.c.attempt(p, hg)
	hg.mu.Lock()
	if hg.closed { // timed out already
		hg.mu.Unlock()
		return
	}
	hg.att[0], hg.n = a, 1
	hg.timer = hedgeTimers.arm(hg, p.c.cfg.HedgeDelay)
	hg.mu.Unlock()
	a.dispatchTo(-1, now)
}

// hedgeTimers are the hedged requests' hedge delays.
var hedgeTimers = timerPool[hedger]{fire: (*hedger).fire}

// stopTimerLocked stops the hedge timer, once (a pooled timer may belong
// to another request after), and pools it when it had not fired; hg.mu is
// held.
func (hg *hedger) stopTimerLocked() {
	ht := hg.timer
	if ht == nil {
		return
	}
	hg.timer = nil
	ht.stop()
}

// fire sends the hedge, if the first attempt has not answered or ended,
// the request has a retry left and the budget room for it, and there is
// another host.
func (hg *hedger) fire() {
	p := hg.p
	c := p.c
	hg.mu.Lock()
	a := hg.att[0]
	if hg.winner.Load() != nil || hg.done[0] || hg.n > 1 || p.ended2.Load() {
		hg.mu.Unlock()
		return
	}
	hg.mu.Unlock()
	a.mu.Lock()
	avoid, retries := a.lastHost, a.retries
	a.mu.Unlock()
	maxRetries := c.cfg.Retry.MaxRetries
	if maxRetries == 0 {
		maxRetries = 1
	}
	if retries >= maxRetries || !c.roomForRetry(p.begun) {
		return
	}
	i := c.pickOther(avoid)
	if i < 0 {
		return // no other host to hedge to
	}
	h := c.attempt(p, hg)
	h.noRetry = true
	if !h.takeRetry() { // counted as a retry overflow
		return
	}
	now := c.now()
	// The hedge takes the outbound rate limit's slot, and only one that
	// starts now: a hedge that had to wait for its slot would come late
	// and add load for little gain.
	if c.rl != nil {
		if _, r := c.rl.reserveWithin(now, 1, 0); r != ReasonNone {
			c.st.retryRateLimited.Add(1)
			h.end() // gives the budget back
			return
		}
	}
	a.mu.Lock()
	a.retries++
	a.mu.Unlock()
	hg.mu.Lock()
	if hg.winner.Load() != nil || hg.done[0] || p.ended2.Load() {
		hg.mu.Unlock()
		h.end() // gives the budget back
		return
	}
	hg.att[1], hg.n = h, 2
	hg.mu.Unlock()
	c.st.hedged.Add(1)
	h.dispatchTo(i, now)
}

// OnInterim passes on the 1xx responses of the first attempt while it is
// the only one; others are dropped (a hedged request never waits for 100
// Continue).
func (hg *hedger) OnInterim(x *Exchange, resp *http1.Response) {
	hg.mu.Lock()
	only := hg.n == 1 && x == hg.att[0]
	hg.mu.Unlock()
	if ih, ok := hg.p.h.(InterimHandler); ok && only && !hg.p.ended2.Load() {
		ih.OnInterim(hg.p, resp)
	}
}

// OnResponse makes the first attempt to answer the winner, cancels the
// other and passes the response on.
func (hg *hedger) OnResponse(x *Exchange, resp *http1.Response) {
	p := hg.p
	hg.mu.Lock()
	if hg.closed || !hg.winner.CompareAndSwap(nil, x) {
		hg.mu.Unlock()
		return // the loser's answer, as it was being canceled
	}
	var loser *Exchange
	if hg.n > 1 {
		loser = hg.att[0]
		if x == hg.att[0] {
			loser = hg.att[1]
		} else {
			p.c.st.hedgeWon.Add(1)
		}
	}
	hg.stopTimerLocked()
	hg.mu.Unlock()
	if loser != nil {
		loser.Cancel()
	}
	p.status.Store(int32(resp.StatusCode))
	p.respBegun.Store(true)
	if !p.ended2.Load() {
		p.h.OnResponse(p, resp)
	}
}

// OnBody passes the winner's body on.
func (hg *hedger) OnBody(x *Exchange, data []byte) {
	if hg.winner.Load() == x && !hg.p.ended2.Load() {
		hg.p.h.OnBody(hg.p, data)
	}
}

// OnTrailers passes the winner's trailer fields on.
func (hg *hedger) OnTrailers(x *Exchange, tr []http1.Header) {
	if th, ok := hg.p.h.(TrailerHandler); ok && hg.winner.Load() == x && !hg.p.ended2.Load() {
		th.OnTrailers(hg.p, tr)
	}
}

// OnDone ends the request with the winner's end, or with the last
// failure when no attempt answered.
func (hg *hedger) OnDone(x *Exchange, err error) {
	hg.mu.Lock()
	running := false
	for j := 0; j < hg.n; j++ {
		if hg.att[j] == x {
			hg.done[j] = true
		} else if !hg.done[j] {
			running = true
		}
	}
	w := hg.winner.Load()
	deliver := w == x || w == nil && !running
	if deliver {
		hg.stopTimerLocked()
	}
	hg.mu.Unlock()
	if deliver {
		hg.p.finish(err)
	}
}

// stop ends the request as canceled or timed out (f). Once an attempt
// has answered, the request ends with it: the winner is stopped and its end
// reaches the caller through OnDone, on its loop, after the calls already
// made. Before that, the request ends here and every attempt is stopped.
func (hg *hedger) stop(f Failure) {
	hg.mu.Lock()
	w := hg.winner.Load()
	if w == nil {
		hg.closed = true
	}
	atts, n := hg.att, hg.n
	hg.stopTimerLocked()
	hg.mu.Unlock()
	if w != nil {
		w.stopAttempt(f == FailTimeout)
		return
	}
	hg.p.finish(&Error{Failure: f})
	for _, a := range atts[:n] {
		a.stopAttempt(false)
	}
}

// pickOther picks the host for a hedge: the least busy available host
// other than avoid, or -1. It does not ask the balancer, whose turn (round
// robin) or affinity (ring hash, Maglev) belongs to first attempts.
func (c *Cluster) pickOther(avoid int) int {
	best := -1
	for i, hp := range c.hosts {
		if i == avoid || !c.set.Available(i) || hp.draining.Load() {
			continue
		}
		if best < 0 || c.set.Active(i) < c.set.Active(best) {
			best = i
		}
	}
	return best
}
