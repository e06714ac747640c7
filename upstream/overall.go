package upstream

import (
	"math"
	"sync"
	"time"
)

// overallTimeouts runs the overall timeouts (ClusterConfig.Timeout) of a
// cluster's exchanges begun on one event loop on a single time.Timer: the
// exchanges wait in a list in the order of their deadlines, and the timer
// is armed for the first deadline only. An exchange that ends takes itself
// off the list and leaves the timer alone; a timer that fires for a
// deadline no longer there finds nothing due and is armed again for the
// list's new first one. With one timeout for every exchange, deadlines come
// in the order the exchanges began, so an arm is an append and an end an
// unlink: no runtime timer is started or stopped per request, which a
// timer of each exchange would do (time.Timer Reset and Stop, each a
// lock and a heap update of the runtime's timers).
//
// Its methods are safe for concurrent use.
type overallTimeouts struct {
	d   time.Duration   // the timeout, > 0
	run func(*Exchange) // the timeout's work: (*Exchange).onOverallTimeout

	// mu guards the fields below and each listed exchange's toPrev,
	// toNext, toDue and toOn.
	mu         sync.Mutex
	head, tail *Exchange
	t          *time.Timer // nil until the first arm
	// Deadlines are nanoseconds on clock (since its first arm's time,
	// monotonic): an arm takes one Time.Sub instead of a Time.Add, and
	// the list compares integers.
	clock monoClock
	at    int64 // when t fires, on clock; valid when armed
	armed bool  // t is armed
}

// arm starts x's overall timeout: o.d from now, x.onOverallTimeout runs
// unless stop(x) comes first.
func (o *overallTimeouts) arm(x *Exchange) { o.armAt(x, time.Now()) }

// armAt is arm with the clock read at now.
func (o *overallTimeouts) armAt(x *Exchange, now time.Time) {
	o.mu.Lock()
	n := o.clock.nanos(now)
	due := n + int64(o.d)
	if due < n {
		due = math.MaxInt64 // a timeout of centuries
	}
	x.toDue, x.toOn = due, true
	// After the last exchange whose deadline is not later: the tail,
	// unless two loops' clock reads crossed on the way here.
	p := o.tail
	for p != nil && p.toDue > due {
		p = p.toPrev
	}
	x.toPrev = p
	if p == nil {
		x.toNext, o.head = o.head, x
	} else {
		x.toNext, p.toNext = p.toNext, x
	}
	if x.toNext == nil {
		o.tail = x
	} else {
		x.toNext.toPrev = x
	}
	if !o.armed || due < o.at {
		o.at, o.armed = due, true
		// The timer waits for due on the clock read here, not o.d: now
		// may be a reading made earlier (Request.Now, a loop's round
		// time), and the timeout counts from it. Only an arm that moves
		// the timer reads the clock; under load the timer stays armed
		// and fire re-arms it.
		wait := time.Duration(due - o.clock.nanos(time.Now()))
		if wait < 0 {
			wait = 0
		}
		if o.t == nil {
			o.t = time.AfterFunc(wait, o.fire)
		} else {
			o.t.Reset(wait)
		}
	}
	o.mu.Unlock()
}

// stop takes x off the list: it reports true when x's timeout had not
// fired (it then never runs), false when it had (x.onOverallTimeout runs
// or has run). Call it once per arm.
func (o *overallTimeouts) stop(x *Exchange) bool {
	o.mu.Lock()
	on := x.toOn
	if on {
		o.unlinkLocked(x)
	}
	o.mu.Unlock()
	return on
}

// idle stops the timer when no exchange is listed (Cluster.Close), so
// that a closed cluster leaves no timer behind; the next arm starts it
// again. With exchanges listed it does nothing: they still time out.
func (o *overallTimeouts) idle() {
	o.mu.Lock()
	if o.head == nil && o.t != nil && o.t.Stop() {
		o.armed = false
	}
	o.mu.Unlock()
}

func (o *overallTimeouts) unlinkLocked(x *Exchange) {
	if x.toPrev == nil {
		o.head = x.toNext
	} else {
		x.toPrev.toNext = x.toNext
	}
	if x.toNext == nil {
		o.tail = x.toPrev
	} else {
		x.toNext.toPrev = x.toPrev
	}
	x.toPrev, x.toNext, x.toOn = nil, nil, false
}

// fire takes the exchanges whose deadline has come off the list, arms the
// timer for the first one left, and runs their timeouts, in deadline
// order. It runs on the timer's goroutine.
func (o *overallTimeouts) fire() {
	var first, last *Exchange // the due ones, chained through toNext
	o.mu.Lock()
	now := o.clock.nanos(time.Now()) // under the lock: a wait for it must not make a due exchange look early
	for x := o.head; x != nil && x.toDue <= now; x = o.head {
		o.unlinkLocked(x)
		if last == nil {
			first = x
		} else {
			last.toNext = x
		}
		last = x
	}
	if o.head != nil {
		o.at = o.head.toDue
		o.t.Reset(time.Duration(o.at - now))
	} else {
		o.armed = false
	}
	o.mu.Unlock()
	// Off the list (toOn false), a due exchange's links are this
	// goroutine's: stop(x) no longer touches them, and x is not reused
	// (its end finds the timeout fired: timerLive).
	for x := first; x != nil; {
		next := x.toNext
		x.toNext = nil
		o.run(x)
		x = next
	}
}
