package upstream

import (
	"bytes"
	"context"
	"errors"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// Request is one HTTP/1.1 request for Cluster.Do.
type Request struct {
	// Method is the request method; it decides idempotency and the
	// framing of the response (HEAD, CONNECT).
	Method string
	// Head is the request head exactly as sent: request line, header
	// fields and the empty line. It must declare the body's framing
	// (Content-Length or Transfer-Encoding: chunked) and should not ask
	// for Connection: close. AppendRequestHead builds one. The cluster
	// keeps it until the exchange ends (it is resent on a retry).
	Head []byte
	// Body is a complete body sent after Head, or nil.
	Body []byte
	// Expect100 says Head carries "Expect: 100-continue": Body is sent
	// once the backend answers 100 Continue, or after ContinueTimeout
	// (1s) without an answer, and not at all when a final response comes
	// first (the connection then closes, as its framing is unfinished).
	Expect100 bool
	// Stream says the body is written later with Exchange.Write and ended
	// with Exchange.End, as it arrives (framed as Head declares). A
	// streamed request is retried only while none of its body has been
	// sent.
	Stream bool
	// Upgrade says Head asks for a protocol upgrade (WebSocket): a 101
	// response hands the connection to the handler's OnUpgrade, and it
	// leaves the pool.
	Upgrade bool
	// Idempotent overrides the method's idempotency for retries (an
	// idempotency key makes a POST safe to retry): 0 uses the method,
	// 1 idempotent, -1 not.
	Idempotent int8
	// Key is the hash for ring hash and Maglev balancing (HashKey of a
	// device id, a client address); other balancers ignore it.
	Key uint64
	// Loop, when not negative, is the event loop the caller runs on
	// (engine.Conn.Loop of the client connection a proxy forwards): an
	// idle connection on that loop is preferred, so the exchange stays on
	// one thread. The zero value prefers loop 0; -1 has no preference.
	Loop int
	// Handler receives the response. Required.
	Handler ResponseHandler
	// Now, when not zero, is the time of the call on the cluster's engine
	// clock, which spares Do a clock read: engine.Conn.Now of the
	// connection whose callback calls Do (a proxy's client connection),
	// the time its event loop woke for the round, up to that round's
	// length before the call. The exchange starts then: its overall
	// timeout, rate limit and breaker admission, and latency count from
	// it. Zero reads the engine's clock (Engine.Now). It must be a reading
	// of that engine's clock (Engine.Now or Conn.Now, with its monotonic
	// reading): a time built by hand (time.Unix, Round(0)) makes the
	// overall timeouts follow the wall clock's steps.
	Now time.Time
}

// ResponseHandler receives the response to a Request. Its calls run on the
// upstream connection's event loop (or, for a failure before any
// connection, on the goroutine that called Do or a timer's), one at a time
// and in order, and must not block: write to another engine connection,
// hand off to a worker, or signal a channel.
//
// OnResponse is called once with the final response head (views valid only
// during the call), then OnBody with each piece of the body as it arrives
// (decoded from chunked coding; valid only during the call), then OnDone
// with nil. When the exchange fails, OnDone gets an *Error; if OnResponse
// was called, the response was cut short. OnDone is always the last call.
type ResponseHandler interface {
	OnResponse(x *Exchange, resp *http1.Response)
	OnBody(x *Exchange, data []byte)
	OnDone(x *Exchange, err error)
}

// InterimHandler is implemented by handlers that want 1xx responses other
// than 101 (a proxy forwards 100 Continue); others never see them.
type InterimHandler interface {
	OnInterim(x *Exchange, resp *http1.Response)
}

// TrailerHandler is implemented by handlers that want the trailer fields
// of a chunked response (a proxy forwards them); others never see them.
// OnTrailers is called once, after the last OnBody and before OnDone, when
// the body ended with a non-empty trailer section; the fields are views
// valid only during the call, bounded as the response head is
// (ClusterConfig.MaxResponseHeaderBytes, MaxResponseHeaders).
type TrailerHandler interface {
	OnTrailers(x *Exchange, trailers []http1.Header)
}

// UpgradeHandler is implemented by handlers of Upgrade requests. After a
// 101, OnUpgrade gets the connection, which has left the pool: it must
// make it someone's with conn.SetHandler (it runs on conn's loop) or close
// it. Bytes after the 101 head go to the new handler. OnDone is not called
// after OnUpgrade.
type UpgradeHandler interface {
	OnUpgrade(x *Exchange, conn *engine.Conn, resp *http1.Response)
}

// Exchange is one request in progress through a Cluster: its attempts,
// retries and response. Its methods are safe for concurrent use.
type Exchange struct {
	c       *Cluster
	method  string
	head    []byte
	body    []byte
	stream  bool
	upgrade bool
	idem    bool
	key     uint64
	loop    int
	h       ResponseHandler
	begun   time.Time
	overall *overallTimeouts // its overall timeout's list; nil: none
	// toPrev, toNext, toDue and toOn place x in its overall timeout's
	// list; guarded by that list's mu (overallTimeouts).
	toPrev, toNext *Exchange
	toDue          int64 // on the list's clock (overallTimeouts)
	toOn           bool
	hg             *hedger // a hedged request: its attempts are child exchanges
	child          bool    // an attempt of a hedged request: no gates, no request-level accounting
	noRetry        bool    // the hedge itself: not retried (but for a reused connection's free retry)

	// mu guards the fields below.
	mu        sync.Mutex
	state     uint8 // xWaiting, xActive, xDone
	cc        *clientConn
	reused    bool
	buf       []byte // streamed body written before a connection was assigned
	ended     bool   // End called
	bodySent  bool   // some streamed body bytes were written to a connection
	retries   int
	inRetry   bool
	timedOut  bool
	canceled  bool
	ticket    Ticket
	hasTicket bool
	started   time.Time
	respBegun atomic.Bool // OnResponse called (or the response is being discarded for a retry)
	ended2    atomic.Bool // state is xDone: no more handler calls
	// timeoutCounted: this attempt's timeout is in the stats, once, whether
	// the overall timer or the per-try check (they may race when the
	// per-try timeout is the overall one) saw it first.
	timeoutCounted atomic.Bool
	discarding     bool // the response is being read only to retry
	answered       bool // the response is complete (detach): it ends as a success
	// inSet is the host whose active requests (HostSet.Start) count the
	// attempt, until the first of its ends takes it out
	// (leaveSetLocked); nil: none.
	inSet  *hostPool
	status atomic.Int32

	// queued is guarded by the host pool's mu.
	queued    bool
	ptimer    *time.Timer
	ctimer    *time.Timer // 100 Continue wait
	bodyHeld  bool        // Body waits for 100 Continue
	abandoned bool        // the held body was never sent: the connection closes
	expect    bool
	reserved  bool      // a retry's room was taken when the response was set aside
	retryAt   time.Time // and its rate limit slot (zero: none)
	lastHost  int
	host      *hostPool
	slot      *hostPool // holds a place in this host's MaxRequestsPerHost
	rslot     *hostPool // a retry: holds a place in this host's MaxRetriesPerHost
	freeTries int
	// tainted: something besides x's handler, its connection and its
	// overall timer may hold x (a retry's or the pending queue's timer, a
	// failed attempt): x is never reused (see Release). Guarded by mu.
	tainted bool

	// Reuse (Release). pooled is set by Do before the first attempt and
	// not changed after: x is a plain request that may be reused. refs
	// counts its holders while pooled: the handler (until Release), Do's
	// own call (until it returns) and the cluster (until a clean end);
	// the last to let go puts x back (Cluster.freeExchange).
	pooled   bool
	refs     atomic.Int32
	released atomic.Bool
	// timerLive: the overall timer could not be stopped (it fired), so
	// its callback may still read x. Written and read only by the
	// goroutine whose end() ended x.
	timerLive bool
}

// clearBufs drops the references of a writev's few buffers: a loop of
// stores, where clear calls memclrHasPointers. (Backwards: the compiler
// turns the forward loop back into that call.)
func clearBufs(bufs [][]byte) {
	for i := len(bufs) - 1; i >= 0; i-- {
		bufs[i] = nil
	}
}

// exchangePool holds exchanges their handlers released (Release) after
// they ended cleanly, for Do to reuse: a proxy's request then allocates
// nothing. A cluster's free lists (xFree) come first.
var exchangePool sync.Pool

// xFree is a cluster's free list of exchanges for the Do calls of one
// loop (Request.Loop): up to xFreeMax released exchanges, taken back
// before exchangePool's, whose round trip (pinning the P, a push on its
// deque, a pop) costs several times this list's uncontended lock. The
// lists keep at most xFreeMax exchanges a loop for the cluster's life
// (a few hundred bytes each, zeroed: no buffers); more go to
// exchangePool. A cluster has them only on an engine with event loops:
// on the portable engine every connection has its own goroutine and
// Conn.Loop is 0 for all, so one list would serialize them where
// exchangePool is per P.
type xFree struct {
	mu sync.Mutex
	xs []*Exchange
	_  [64 - 8 - 24]byte // one list a cache line
}

// xFreeMax bounds an xFree list.
const xFreeMax = 32

// newExchange returns a zero exchange for a Do on loop.
func (c *Cluster) newExchange(loop int) *Exchange {
	if uint(loop) < uint(len(c.xfree)) {
		f := &c.xfree[loop]
		f.mu.Lock()
		if n := len(f.xs); n > 0 {
			x := f.xs[n-1]
			f.xs[n-1] = nil
			f.xs = f.xs[:n-1]
			f.mu.Unlock()
			return x
		}
		f.mu.Unlock()
	}
	if x, _ := exchangePool.Get().(*Exchange); x != nil {
		return x
	}
	return new(Exchange)
}

// freeExchange keeps x, zeroed, for the Do calls of loop.
func (c *Cluster) freeExchange(x *Exchange, loop int) {
	if uint(loop) < uint(len(c.xfree)) {
		f := &c.xfree[loop]
		f.mu.Lock()
		if len(f.xs) < xFreeMax {
			f.xs = append(f.xs, x)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
	exchangePool.Put(x)
}

// Release tells the cluster that the caller is done with x: it will call
// no method of x, nor keep a reference to it, from now on. Once x has
// also ended (OnDone has returned), the cluster may reuse x for a later
// request, which saves a heap allocation per request (a proxy's only
// one). A plain request that ended with its first attempt's complete
// response is reused; one that was hedged, retried, queued, streamed,
// upgraded, pipelined, rate-limited, timed out, canceled or refused is
// left to the garbage collector, as is any exchange never released.
// Calling Release is optional. Call it at most once: once x has been
// reused, a second call would let go of another request's exchange. After
// it, nobody may use x — including whoever holds the pointer Do returned:
// a handler that releases from OnDone, which may run before Do returns,
// must be the only user of x, so release from the goroutine that called
// Do, after it returned, when Do's result is kept (as warren proxy does).
func (x *Exchange) Release() {
	if x.released.Swap(true) {
		return
	}
	x.unref()
}

// unref drops one of x's holders and puts x back in the pool when it was
// the last.
func (x *Exchange) unref() {
	if !x.pooled {
		return
	}
	if x.refs.Add(-1) == 0 {
		c, loop := x.c, x.loop
		*x = Exchange{}
		c.freeExchange(x, loop)
	}
}

// cleanEnd reports whether x, which the caller's end() just ended after
// a complete response, holds nothing but its handler: no timer, queue or
// retry can reach it any more.
func (x *Exchange) cleanEnd() bool {
	if !x.pooled || x.timerLive {
		return false
	}
	x.mu.Lock()
	clean := !x.tainted && x.retries == 0 && !x.canceled && !x.timedOut
	x.mu.Unlock()
	return clean
}

const (
	xWaiting uint8 = iota // not on a connection
	xActive               // on a connection
	xDone
)

// maxFreeRetries bounds the retries of a request that failed on a reused
// connection before any response byte (the backend closed it as it was
// reused); they do not count against the retry policy.
const maxFreeRetries = 2

// Do sends r through the cluster without blocking and returns the
// exchange. Callbacks may run before Do returns (a refusal calls OnDone at
// once, on the caller's goroutine). Do may be called from an event loop.
// With ClusterConfig.HedgeDelay a Hedgeable request may run as two
// attempts on two hosts; the handler sees one of them, the first to
// answer, and its calls carry the returned exchange.
func (c *Cluster) Do(r *Request) *Exchange {
	x := c.newExchange(r.Loop)
	// x is zero (new, or cleared by unref before it went back into the
	// pool): field by field, as a composite literal would be built in a
	// stack temporary and copied whole.
	x.c, x.method, x.head, x.body = c, r.Method, r.Head, r.Body
	x.stream, x.upgrade, x.expect = r.Stream, r.Upgrade, r.Expect100
	x.key, x.h, x.lastHost, x.loop = r.Key, r.Handler, -1, r.Loop
	switch {
	case r.Idempotent > 0:
		x.idem = true
	case r.Idempotent == 0:
		x.idem = Idempotent(r.Method)
	}
	if x.begun = r.Now; x.begun.IsZero() {
		x.begun = c.now()
	}
	c.st.rqTotal.Add(1)
	if c.closed.Load() {
		x.state = xDone
		x.h.OnDone(x, &Error{Failure: FailShutdown})
		return x
	}
	var wait time.Duration
	if c.rl != nil {
		at, ok := c.rl.ReserveN(x.begun, 1)
		if !ok {
			c.st.rqRateLimited.Add(1)
			c.st.countFailure(FailOverflow)
			x.state = xDone
			x.h.OnDone(x, &Error{Failure: FailOverflow, Reason: ReasonRateLimited})
			return x
		}
		wait = at.Sub(x.begun)
	}
	if c.brk != nil {
		tk, r := c.brk.Allow(x.begun)
		if r != ReasonNone {
			c.st.breakerRejected.Add(1)
			c.st.countFailure(FailBreakerOpen)
			x.state = xDone
			x.h.OnDone(x, &Error{Failure: FailBreakerOpen, Reason: r})
			return x
		}
		x.ticket, x.hasTicket = tk, true
	}
	if rs := c.res.Acquire(ResourceRequests); rs != ReasonNone {
		c.st.rqOverflow.Add(1)
		c.st.countFailure(FailOverflow)
		if x.hasTicket {
			c.brk.Release(x.ticket)
		}
		x.state = xDone
		x.h.OnDone(x, &Error{Failure: FailOverflow, Reason: rs})
		return x
	}
	c.st.rqActive.Add(1)
	if c.bud != nil {
		c.bud.Begin()
	}
	if c.cfg.HedgeDelay > 0 && Hedgeable(r) && len(c.hosts) > 1 {
		x.hg = &hedger{p: x}
	}
	if wait == 0 && x.hg == nil && !x.stream && !x.upgrade && !x.expect && c.pool.MaxPipeline <= 1 {
		// A plain request: reusable once its handler, this call and the
		// cluster have let go (Release). Set before the overall timer
		// starts: from then on another goroutine may end x and release it.
		x.pooled = true
		x.refs.Store(3)
	}
	if c.cfg.Timeout > 0 {
		t := c.overallOf(x.loop)
		if c.sysClock {
			t.armAt(x, x.begun) // begun is a time.Now reading (r.Now: the loop's)
		} else {
			t.arm(x)
		}
		x.mu.Lock()
		x.overall = t
		x.mu.Unlock()
	}
	if wait > 0 {
		c.st.rqThrottled.Add(1)
		time.AfterFunc(wait, x.begin) // the overall timer and Cancel still apply
		return x
	}
	x.beginAt(x.begun)
	x.unref() // Do's own hold: x's attempt may end on another loop before this
	return x
}

// begin sends x's first attempt (and starts its hedging) once its rate
// limit slot has come.
func (x *Exchange) begin() { x.beginAt(x.c.now()) }

func (x *Exchange) beginAt(now time.Time) {
	if x.hg != nil {
		x.hg.start(now)
		return
	}
	x.dispatchAt(now)
}

// overallOf returns the overall timeouts' list of exchanges begun on
// loop (the last one for a negative or unknown loop).
func (c *Cluster) overallOf(loop int) *overallTimeouts {
	if loop < 0 || loop >= len(c.overall)-1 {
		loop = len(c.overall) - 1
	}
	return &c.overall[loop]
}

// dispatch runs one attempt: breaker, host, pool.
func (x *Exchange) dispatch() { x.dispatchAt(x.c.now()) }

// dispatchAt is dispatch with the clock already read: the hot path reads
// it once per event, not once per step.
func (x *Exchange) dispatchAt(now time.Time) { x.dispatchTo(-1, now) }

// dispatchTo is dispatchAt to host i, or to the balancer's pick when i is
// negative.
func (x *Exchange) dispatchTo(i int, now time.Time) {
	c := x.c
	x.mu.Lock()
	if x.state == xDone {
		x.mu.Unlock()
		return
	}
	x.dropSlotLocked()
	if i < 0 {
		i = c.pick(x.key, x.lastHost)
	}
	retry := x.retries > 0 || x.noRetry // a retry, or the hedge
	full, why := -1, -1
	if i >= 0 {
		if r := c.hosts[i].admit(retry); r >= 0 {
			// The host has MaxRequestsPerHost requests (or
			// MaxRetriesPerHost retries): another with room, or a refusal.
			full, why, i = i, r, -1
			if len(c.hosts) > 1 {
				if j := c.pick(x.key+1, full); j >= 0 && j != full && c.hosts[j].admit(retry) < 0 {
					i = j
				}
			}
		}
	}
	if i >= 0 {
		x.lastHost = i
		x.host = c.hosts[i]
		x.slot = x.host
		if retry {
			x.rslot = x.host
		}
	}
	x.mu.Unlock()
	if full >= 0 && i < 0 {
		hp := c.hosts[full]
		hp.st.overflow[why].Add(1)
		r := ReasonHostMaxRequests
		if why == hostRetries {
			r = ReasonHostMaxRetries
		}
		x.attemptFailed(&Error{Failure: FailOverflow, Reason: r, Host: hp.name}, hp, attemptInfo{refused: true})
		return
	}
	if i < 0 {
		x.finish(&Error{Failure: FailNoHost})
		return
	}
	c.hosts[i].acquire(x, now)
}

// dropSlotLocked gives back the request's place in its host's
// MaxRequestsPerHost (and a retry's in its MaxRetriesPerHost), if it holds
// one; x.mu is held.
func (x *Exchange) dropSlotLocked() {
	if x.slot != nil {
		x.slot.requests.Add(-1)
		x.slot = nil
	}
	if x.rslot != nil {
		x.rslot.retries.Add(-1)
		x.rslot = nil
	}
}

// breakerDone reports the request's outcome to the breaker: the breaker
// counts requests as the client sees them, after retries (a single bad
// host is outlier detection's business, and retries route around it);
// local refusals and cancels count neither way, nor does a timeout while
// the caller still owed the streamed body (its silence, not the
// backend's: slow uploads must not open the breaker for everyone) or
// after the handler had the response head (the client got the backend's
// status; a body cut by the timeout is as often a slow reader holding
// the connection back as a slow backend).
func (x *Exchange) breakerDone(err error, now time.Time) {
	x.mu.Lock()
	tk, has := x.ticket, x.hasTicket
	x.hasTicket = false
	bodyOpen := x.stream && !x.ended
	x.mu.Unlock()
	if !has {
		return
	}
	switch FailureOf(err) {
	case FailOverflow, FailCanceled, FailShutdown, FailNoHost:
		x.c.brk.Release(tk)
		return
	case FailTimeout:
		if bodyOpen || x.respStarted() {
			x.c.brk.Release(tk)
			return
		}
	}
	if now.IsZero() {
		now = x.c.now()
	}
	x.c.brk.Done(tk, err == nil && !x.c.breakerFails(x.Status()), now)
}

// breakerFails reports whether a response with status counts as a
// failure for the breaker (ClusterConfig.BreakerOn5xx).
func (c *Cluster) breakerFails(status int) bool {
	if status < 500 || status > 599 {
		return false
	}
	return c.cfg.BreakerOn5xx || status >= 502 && status <= 504
}

// awaitingBody reports a streamed request whose caller has not ended
// its body: a silence on its connection may then be the caller's.
func (x *Exchange) awaitingBody() bool {
	if !x.stream {
		return false
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return !x.ended
}

// armPendingTimer bounds x's wait in a pending queue.
func (x *Exchange) armPendingTimer() {
	x.mu.Lock()
	x.tainted = true // the pending queue and its timer hold x
	if x.ptimer != nil {
		x.ptimer.Stop()
	}
	x.ptimer = nil
	if x.state == xWaiting {
		x.ptimer = time.AfterFunc(x.c.pool.PendingTimeout, x.onPendingTimeout)
	}
	x.mu.Unlock()
}

func (x *Exchange) onPendingTimeout() {
	x.mu.Lock()
	hp := x.host
	x.mu.Unlock()
	if hp == nil || !hp.unqueue(x) {
		return
	}
	x.c.st.pendingTimeout.Add(1)
	x.finish(&Error{Failure: FailPendingTimeout, Host: hp.name})
}

// start puts x on cc and writes the request. It reports false when x has
// already ended (cc is then free).
func (x *Exchange) start(cc *clientConn, reused bool, now time.Time) bool {
	x.mu.Lock()
	if x.ptimer != nil {
		x.ptimer.Stop()
		x.ptimer = nil
	}
	if x.state == xDone {
		x.mu.Unlock()
		return false
	}
	x.state, x.cc, x.reused = xActive, cc, reused
	x.started = now
	x.respBegun.Store(false)
	x.timeoutCounted.Store(false) // a new attempt may time out on its own
	x.discarding, x.answered = false, false
	cc.x.Store(x)
	hp := cc.hp
	hp.c.set.Start(hp.idx)
	x.inSet = hp
	hp.st.rqTotal.Add(1)
	if x.loop >= 0 && x.loop != cc.loop {
		hp.c.st.rqOtherLoop.Add(1)
	}
	piping := hp.c.pool.MaxPipeline > 1
	if piping {
		// The first request in flight; cc.pmu orders it before any
		// written behind it.
		cc.pmu.Lock()
		cc.nfl, cc.sent, cc.solo = 1, cc.sent+1, !x.pipelinable()
	}
	bufs := append(cc.bufs[:0], x.head)
	x.bodyHeld, x.abandoned = false, false
	if len(x.body) > 0 {
		if x.expect {
			x.bodyHeld = true
			x.tainted = true
			x.ctimer = time.AfterFunc(ContinueTimeout, x.sendHeldBody)
		} else {
			bufs = append(bufs, x.body)
		}
	}
	if x.stream && len(x.buf) > 0 {
		bufs = append(bufs, x.buf)
		x.buf = nil
		x.bodySent = true
	}
	conn := cc.conn
	var err error
	if piping && (cc.wopen || (hp.c.pool.BatchPipeline && !cc.solo && x.loop == cc.loop && !x.bodyHeld)) {
		err = cc.batchLocked(bufs) // written when the loop's round ends
	} else {
		_, err = conn.Writev(bufs)
	}
	clearBufs(bufs)
	if piping {
		cc.syncOpenLocked()
		cc.pmu.Unlock()
	}
	x.mu.Unlock()
	if cc.dead.Load() && cc.x.CompareAndSwap(x, nil) {
		// The connection closed as x was given it (an idle connection
		// the backend closed while a request took it): OnClose has run
		// and did not see x, so x fails here, as a request on a reused
		// connection that got no byte of its response.
		x.attemptFailed(&Error{Failure: FailReset, Host: hp.name, Err: errClosedUnderneath}, hp, attemptInfo{reused: reused})
		return true
	}
	if err != nil {
		conn.Abort(engine.ReasonIOError) // OnClose fails the attempt
	}
	return true
}

var errClosedUnderneath = errors.New("connection closed as the request was given it")

// Results of startPipelined.
const (
	startedOK     = iota // written behind the requests in flight
	startedDone          // x had ended already: nothing written
	startedNoRoom        // cc has no room (full, closing, or its requests may not have company)
)

// startPipelined writes x behind the requests in flight on cc
// (PoolConfig.MaxPipeline); x.pipelinable() holds. With join, x only
// joins the requests gathered on cc for the end of its loop's round
// (PoolConfig.BatchPipeline): there is no room when they have gone out.
func (x *Exchange) startPipelined(cc *clientConn, now time.Time, join bool) int {
	x.mu.Lock()
	if x.state == xDone {
		x.mu.Unlock()
		return startedDone
	}
	cc.pmu.Lock()
	if !cc.roomLocked() || (join && (!cc.wopen || len(cc.wbuf)+len(x.head)+len(x.body) > maxBatchBytes)) {
		cc.pmu.Unlock()
		x.mu.Unlock()
		return startedNoRoom
	}
	if x.ptimer != nil {
		x.ptimer.Stop()
		x.ptimer = nil
	}
	cc.pipe = append(cc.pipe, x)
	cc.nfl++
	cc.sent++
	x.state, x.cc, x.reused = xActive, cc, true
	x.started = now
	x.respBegun.Store(false)
	x.timeoutCounted.Store(false)
	x.discarding, x.answered = false, false
	hp := cc.hp
	hp.c.set.Start(hp.idx)
	x.inSet = hp
	hp.st.rqTotal.Add(1)
	hp.c.st.rqPipelined.Add(1)
	bufs := append(cc.bufs[:0], x.head)
	if len(x.body) > 0 {
		bufs = append(bufs, x.body)
	}
	conn := cc.conn
	var err error
	if cc.wopen {
		err = cc.batchLocked(bufs) // behind the others of the round, in order
	} else {
		_, err = conn.Writev(bufs)
	}
	clearBufs(bufs)
	cc.syncOpenLocked()
	cc.pmu.Unlock()
	x.mu.Unlock()
	if err != nil {
		conn.Abort(engine.ReasonIOError) // OnClose fails the attempts
		return startedOK
	}
	cc.armPerTry()
	return startedOK
}

// pipelinable reports whether x may be written behind other requests on a
// connection (Pipelinable, with pipelining on, and not an attempt of a
// hedged request: canceling the losing attempt closes its connection).
func (x *Exchange) pipelinable() bool {
	return x.c.pool.MaxPipeline > 1 && x.idem && !x.stream && !x.upgrade && !x.expect && !x.child
}

// Pipelinable reports whether r may be pipelined (PoolConfig.MaxPipeline):
// an idempotent request (by its method or Request.Idempotent) with a
// complete body, no protocol upgrade and no 100-continue wait. A request
// that may not be has its connection to itself: nothing is written behind
// it, and it is written only on a connection with nothing in flight.
func Pipelinable(r *Request) bool { return Hedgeable(r) }

// Write sends streamed body bytes (Request.Stream), framed as the head
// declared. Before a connection is assigned they are buffered. It is safe
// to call from any goroutine; it fails once the exchange has ended.
func (x *Exchange) Write(p []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state == xDone || x.ended {
		return ErrCanceled
	}
	if x.state != xActive || x.discarding {
		x.buf = append(x.buf, p...)
		return nil
	}
	x.bodySent = true
	if x.c.perTry > 0 { // the per-try timeout is of silence either way
		x.cc.lastIO.Store(x.c.now().UnixNano())
	}
	_, err := x.cc.conn.Write(p)
	return err
}

// WriteEnd is Write of the body's last bytes (none is fine) and End in
// one step. Use it rather than Write then End when the response can come
// as soon as the backend has those bytes: a response completing between
// the two would find the body unfinished, and its connection would be
// closed rather than reused.
func (x *Exchange) WriteEnd(p []byte) error {
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state == xDone || x.ended {
		return ErrCanceled
	}
	x.ended = true
	if len(p) == 0 {
		return nil
	}
	if x.state != xActive || x.discarding {
		x.buf = append(x.buf, p...)
		return nil
	}
	x.bodySent = true
	if x.c.perTry > 0 {
		x.cc.lastIO.Store(x.c.now().UnixNano())
	}
	_, err := x.cc.conn.Write(p)
	return err
}

// End marks the streamed body complete.
func (x *Exchange) End() {
	x.mu.Lock()
	x.ended = true
	x.mu.Unlock()
}

// Backlog returns the streamed body bytes not yet taken by the network:
// buffered before a connection was assigned, or queued on it. A producer
// pauses while it is high.
func (x *Exchange) Backlog() int {
	x.mu.Lock()
	defer x.mu.Unlock()
	n := len(x.buf)
	if x.state == xActive && x.cc != nil && x.cc.conn != nil {
		n += x.cc.conn.QueuedBytes()
	}
	return n
}

// Conn returns the upstream connection x is on, or nil. For a hedged
// request it is the connection of the attempt that answered first.
func (x *Exchange) Conn() *engine.Conn {
	if x.hg != nil {
		if w := x.hg.winner.Load(); w != nil {
			return w.Conn()
		}
		return nil
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	if x.state == xActive && x.cc != nil {
		return x.cc.conn
	}
	return nil
}

// Cancel ends x: it fails with FailCanceled unless it already ended, and
// its connection, if any, is closed. Once the whole response has arrived
// (from the handler call that passes its last bytes on) x is off its
// connection: a Cancel then changes nothing, and x ends as a success.
func (x *Exchange) Cancel() {
	if x.hg != nil {
		x.mu.Lock()
		done := x.state == xDone
		x.canceled = true
		x.mu.Unlock()
		if !done {
			x.hg.stop(FailCanceled)
		}
		return
	}
	x.stopAttempt(false)
}

// stopAttempt ends x's attempt as canceled, or timed out: its connection
// is aborted (OnClose then ends it) or its wait given up.
func (x *Exchange) stopAttempt(timeout bool) {
	x.mu.Lock()
	if x.state == xDone || x.answered && !x.discarding {
		// Done, or its complete response is being passed on: it ends as
		// a success from that same call.
		x.mu.Unlock()
		return
	}
	f := FailCanceled
	if timeout {
		x.timedOut, f = true, FailTimeout
	} else {
		x.canceled = true
	}
	cc := x.cc
	st := x.state
	x.mu.Unlock()
	if st == xActive && cc != nil {
		cc.conn.Abort(engine.ReasonLocal) // OnClose ends the attempt
		return
	}
	if hp := x.hostOf(); hp != nil {
		hp.unqueue(x)
	}
	x.finish(&Error{Failure: f})
}

func (x *Exchange) onOverallTimeout() {
	x.mu.Lock()
	if x.state == xDone || x.answered && !x.discarding {
		x.mu.Unlock()
		return
	}
	x.timedOut = true
	cc, st := x.cc, x.state
	x.mu.Unlock()
	if x.timeoutCounted.CompareAndSwap(false, true) {
		x.c.st.rqTimeout.Add(1)
	}
	if x.hg != nil {
		x.hg.stop(FailTimeout)
		return
	}
	if st == xActive && cc != nil {
		cc.conn.Abort(engine.ReasonLocal) // OnClose ends the attempt as a timeout
		return
	}
	if hp := x.hostOf(); hp != nil {
		hp.unqueue(x)
	}
	x.finish(&Error{Failure: FailTimeout})
}

// hostOf returns the host of x's current or last attempt.
func (x *Exchange) hostOf() *hostPool {
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.host
}

// gotBytes notes response bytes for the attempt.
func (x *Exchange) gotBytes() {}

// respStarted reports whether the handler has seen the response.
func (x *Exchange) respStarted() bool { return x.respBegun.Load() }

// bodyComplete reports whether the whole request body was sent, so the
// connection may carry another request.
func (x *Exchange) bodyComplete() bool {
	x.mu.Lock()
	done := !x.abandoned && (!x.stream || x.ended && len(x.buf) == 0)
	x.mu.Unlock()
	return done
}

// ContinueTimeout is how long a request with Request.Expect100 waits for
// 100 Continue before sending its body anyway (RFC 9110 §10.1.1).
const ContinueTimeout = time.Second

// sendHeldBody sends the body held for 100 Continue.
func (x *Exchange) sendHeldBody() {
	x.mu.Lock()
	defer x.mu.Unlock()
	if !x.bodyHeld || x.state != xActive || x.cc == nil {
		return
	}
	x.bodyHeld = false
	if x.ctimer != nil {
		x.ctimer.Stop()
	}
	x.cc.conn.Write(x.body)
}

// interim passes a 1xx response on.
func (x *Exchange) interim(resp *http1.Response) {
	if resp.StatusCode == 100 {
		x.sendHeldBody()
	}
	if x.discarding || x.ended2.Load() {
		return
	}
	if ih, ok := x.h.(InterimHandler); ok {
		ih.OnInterim(x, resp)
	}
}

// response starts the response: to the handler, or discarded for a retry.
func (x *Exchange) response(resp *http1.Response) {
	x.status.Store(int32(resp.StatusCode))
	x.mu.Lock()
	if x.bodyHeld { // a final answer before the body: it is never sent
		x.bodyHeld, x.abandoned = false, true
		x.ctimer.Stop()
	}
	x.mu.Unlock()
	if x.retryableStatus(resp.StatusCode) {
		x.mu.Lock()
		x.discarding = true
		x.mu.Unlock()
		x.respBegun.Store(true)
		return
	}
	x.respBegun.Store(true)
	if !x.ended2.Load() {
		x.h.OnResponse(x, resp)
	}
}

// retryableStatus reports whether a response with code should be
// discarded and the request retried.
func (x *Exchange) retryableStatus(code int) bool {
	if code < 500 && len(x.c.cfg.Retry.Statuses) == 0 {
		return false
	}
	x.mu.Lock()
	ok := !x.timedOut && !x.canceled && !x.noRetry && (!x.stream || !x.bodySent)
	retries := x.retries
	x.mu.Unlock()
	if !ok {
		return false
	}
	retry, _ := x.c.cfg.Retry.Decide(Attempt{Status: code, Idempotent: x.idem, Retries: retries})
	if !retry || !x.c.roomForRetry(x.begun) || !x.takeRetry() {
		return false // the response goes to the handler as it is
	}
	// The retry's rate limit slot is taken now, before the response is
	// set aside: without one the response goes to the handler after all.
	now := x.c.now()
	w, ok := x.retrySlot(now, 0)
	x.mu.Lock()
	if !ok {
		x.releaseRetryLocked()
		x.mu.Unlock()
		return false
	}
	x.reserved = true
	x.retryAt = now.Add(w)
	x.mu.Unlock()
	return true
}

// retrySlot takes the outbound rate limit's slot (ClusterConfig.RateLimit)
// for a retry that would leave d after now: every attempt sent takes one,
// so retries never push what the backend sees over the rate. It returns
// how long from now the retry must wait (d, or longer when its slot comes
// later: counted as throttled), or false, counted in rq_retry_rate_limited,
// when the bucket is full (the retry is not made).
func (x *Exchange) retrySlot(now time.Time, d time.Duration) (time.Duration, bool) {
	c := x.c
	if c.rl == nil {
		return d, true
	}
	at, ok := c.rl.ReserveN(now.Add(d), 1)
	if !ok {
		c.st.retryRateLimited.Add(1)
		return 0, false
	}
	w := at.Sub(now)
	if w > d {
		c.st.rqThrottled.Add(1)
	}
	return w, true
}

// dispatchAfter runs the next attempt after w (at once when w <= 0).
func (x *Exchange) dispatchAfter(w time.Duration) {
	if w <= 0 {
		x.dispatch()
		return
	}
	time.AfterFunc(w, x.dispatch)
}

// roomForRetry reports whether a retry fits the overall timeout (without
// taking budget).
func (c *Cluster) roomForRetry(begun time.Time) bool {
	return c.cfg.Timeout <= 0 || c.now().Sub(begun) < c.cfg.Timeout
}

// body passes a piece of the body on.
func (x *Exchange) bodyData(data []byte) {
	if x.discarding || x.ended2.Load() {
		return
	}
	x.h.OnBody(x, data)
}

// trailers passes a chunked body's trailer fields on.
func (x *Exchange) trailers(tr []http1.Header) {
	if x.discarding || x.ended2.Load() {
		return
	}
	if th, ok := x.h.(TrailerHandler); ok {
		th.OnTrailers(x, tr)
	}
}

// detach takes x off its connection once its response is complete, before
// its handler gets the response's last bytes and before the connection
// carries another request: a Cancel or timeout from then on (a proxy's
// client going away as soon as it has the response) neither closes the
// connection, which is someone else's by then, nor fails x, which ends as
// a success from the same call (or, when its response was set aside for a
// retry, ends as canceled or timed out).
func (x *Exchange) detach() {
	x.mu.Lock()
	x.cc, x.answered = nil, true
	if x.state == xActive {
		x.state = xWaiting
	}
	x.mu.Unlock()
}

// complete ends the attempt after a complete response.
func (x *Exchange) complete(status int, now time.Time) {
	c := x.c
	x.mu.Lock()
	hp := x.host
	x.leaveSetLocked()
	x.mu.Unlock()
	res := ResultFromStatus(status)
	c.recordAt(hp, res, now)
	hp.st.countStatus(status)
	c.st.countStatus(status)
	x.mu.Lock()
	x.dropSlotLocked()
	discard := x.discarding
	// A response set aside for a retry did not answer x: a Cancel or
	// timeout from here on ends x as usual.
	x.discarding, x.answered = false, x.answered && !discard
	x.cc = nil
	if x.state == xActive {
		x.state = xWaiting
	}
	x.mu.Unlock()
	if discard {
		if x.retry(false, false) {
			return
		}
		// Unreachable in practice: retryableStatus took the decision.
		x.finish(&Error{Failure: FailBadResponse, Host: hp.name})
		return
	}
	if x.finishAt(nil, now) && x.cleanEnd() {
		x.unref() // the cluster's hold
	}
}

// attemptInfo describes a failed attempt.
type attemptInfo struct {
	connect  bool // no connection was made
	refused  bool // refused before reaching the backend (pending overflow)
	reused   bool // on a reused connection
	gotBytes bool // some of the response arrived (or was passed on)
}

// attemptFailed ends an attempt that got no complete response, retrying
// when the rules allow.
func (x *Exchange) attemptFailed(err *Error, hp *hostPool, ai attemptInfo) {
	c := x.c
	x.mu.Lock()
	x.tainted = true
	x.dropSlotLocked()
	if x.state == xDone {
		x.mu.Unlock()
		return
	}
	x.leaveSetLocked()
	x.state, x.cc = xWaiting, nil
	if x.timedOut {
		err = &Error{Failure: FailTimeout, Host: err.Host}
	} else if x.canceled {
		err = &Error{Failure: FailCanceled, Host: err.Host}
	}
	final := x.timedOut || x.canceled
	bodySent := x.bodySent
	retries := x.retries
	free := ai.reused && err.Failure == FailReset && (x.idem || !bodySent && len(x.body) == 0 && !x.stream) &&
		x.freeTries < maxFreeRetries
	if free && !final && !ai.gotBytes {
		x.freeTries++
	}
	x.mu.Unlock()
	if err.Failure == FailConnect || err.Failure == FailReset || err.Failure == FailTimeout {
		hp.st.rqFailed.Add(1)
		if !ai.refused && !final {
			c.record(hp, ResultConnectFailure)
		}
	}
	if final || ai.refused || ai.gotBytes || (x.stream && bodySent) {
		x.finish(err)
		return
	}
	// A reused connection that failed before any response byte: the
	// backend most likely closed it as we reused it. Retry at once, free,
	// when nothing was sent that could have been applied.
	if free {
		w, ok := x.retrySlot(c.now(), 0)
		if !ok {
			x.finish(err)
			return
		}
		c.st.rqRetryReused.Add(1)
		x.dispatchAfter(w)
		return
	}
	if x.noRetry {
		x.finish(err)
		return
	}
	a := Attempt{ConnectFailed: err.Failure == FailConnect, Reset: err.Failure == FailReset || err.Failure == FailTimeout,
		Idempotent: x.idem, Retries: retries}
	if ok, _ := c.cfg.Retry.Decide(a); ok && c.roomForRetry(x.begun) && x.retry(true, a.ConnectFailed) {
		return
	}
	x.finish(err)
}

// retry schedules another attempt after the backoff, if the budget has
// room; it reports whether it did. A retry after a connect failure (the
// request never reached a backend, so it cannot add to a struggling
// backend's load) is bounded by the policy's MaxRetries only, not by the
// budget.
func (x *Exchange) retry(backoff, connectFailed bool) bool {
	c := x.c
	x.mu.Lock()
	x.tainted = true
	n := x.retries + 1
	reserved, at := x.reserved, x.retryAt
	x.reserved, x.retryAt = false, time.Time{}
	x.mu.Unlock()
	var d time.Duration
	if backoff {
		d = max(0, c.backoff(n))
	}
	now := c.now()
	var w time.Duration
	switch {
	case reserved: // retryableStatus took the room and the slot
		if !at.IsZero() {
			w = at.Sub(now)
		}
	case connectFailed:
		var ok bool
		if w, ok = x.retrySlot(now, d); !ok {
			return false
		}
	default:
		if !x.takeRetry() {
			return false
		}
		var ok bool
		if w, ok = x.retrySlot(now, d); !ok {
			x.mu.Lock()
			x.releaseRetryLocked()
			x.mu.Unlock()
			return false
		}
	}
	x.mu.Lock()
	x.retries++
	x.mu.Unlock()
	c.st.rqRetry.Add(1)
	x.dispatchAfter(w)
	return true
}

// takeRetry takes room for a retry in the budget (or Thresholds.MaxRetries)
// and holds it until the next retry or the end of x; it reports false,
// counted, when there is none.
func (x *Exchange) takeRetry() bool {
	c := x.c
	if c.bud != nil {
		if !c.bud.TryRetry() {
			c.st.retryOverflow.Add(1)
			return false
		}
	} else if c.res.Acquire(ResourceRetries) != ReasonNone {
		c.st.retryOverflow.Add(1)
		return false
	}
	x.mu.Lock()
	if x.inRetry {
		x.releaseRetryLocked()
	}
	x.inRetry = true
	x.mu.Unlock()
	return true
}

func (x *Exchange) releaseRetryLocked() {
	if x.c.bud != nil {
		x.c.bud.DoneRetry()
	} else {
		x.c.res.Release(ResourceRetries)
	}
	x.inRetry = false
}

// upgraded ends x with the connection handed over after a 101.
func (x *Exchange) upgraded(conn *engine.Conn, resp *http1.Response) {
	c := x.c
	x.mu.Lock()
	hp := x.host
	x.leaveSetLocked()
	x.mu.Unlock()
	c.record(hp, ResultSuccess)
	x.mu.Lock()
	x.dropSlotLocked()
	if x.state == xActive {
		x.state, x.cc = xWaiting, nil // the connection is the handler's now
	}
	x.mu.Unlock()
	if !x.end() {
		conn.Abort(engine.ReasonLocal)
		return
	}
	x.breakerDone(nil, time.Time{})
	uh, ok := x.h.(UpgradeHandler)
	if !ok {
		conn.Abort(engine.ReasonLocal)
		return
	}
	uh.OnUpgrade(x, conn, resp)
}

// leaveSetLocked takes x's attempt out of its host's active requests
// (HostSet), once, whichever of its ends comes first: its response, its
// failure, its upgrade, or its end while on a connection (a cancel or
// timeout racing the connection's assignment, whose OnClose then finds
// x done). x.mu is held.
func (x *Exchange) leaveSetLocked() {
	if hp := x.inSet; hp != nil {
		x.inSet = nil
		x.c.set.Done(hp.idx)
	}
}

// end marks x done and releases what it holds; it reports false if it
// was already done.
func (x *Exchange) end() bool {
	x.mu.Lock()
	if x.state == xDone {
		x.mu.Unlock()
		return false
	}
	// Ended while on a connection (a cancel or timeout that raced the
	// connection's assignment): the connection carries a request nobody
	// waits for, so it goes.
	var orphan *engine.Conn
	if x.state == xActive && x.cc != nil {
		orphan = x.cc.conn
	}
	x.state = xDone
	x.ended2.Store(true)
	x.cc = nil
	x.leaveSetLocked() // an orphan's OnClose will find x done
	x.buf = nil
	x.dropSlotLocked()
	if x.inRetry {
		x.releaseRetryLocked()
	}
	if x.ptimer != nil {
		x.ptimer.Stop()
		x.ptimer = nil
	}
	if x.ctimer != nil {
		x.ctimer.Stop()
	}
	overall := x.overall
	x.mu.Unlock()
	if orphan != nil {
		orphan.Abort(engine.ReasonLocal)
	}
	if overall != nil && !overall.stop(x) {
		x.timerLive = true
	}
	if x.child {
		return true // the parent holds the request's gates
	}
	c := x.c
	c.res.Release(ResourceRequests)
	c.st.rqActive.Add(-1)
	if c.bud != nil {
		c.bud.End()
	}
	return true
}

// finish ends x and calls OnDone.
func (x *Exchange) finish(err error) { x.finishAt(err, time.Time{}) }

// finishAt is finish with the clock read at now (zero: read it if needed).
func (x *Exchange) finishAt(err error, now time.Time) bool {
	if !x.end() {
		return false
	}
	x.breakerDone(err, now)
	if x.child {
		// counted once, by the parent
	} else if err == nil {
		x.c.st.rqSuccess.Add(1)
	} else if f := FailureOf(err); f != FailNone {
		x.c.st.countFailure(f)
	}
	x.h.OnDone(x, err)
	return true
}

// Status returns the status of the response passed on, or 0.
func (x *Exchange) Status() int { return int(x.status.Load()) }

// Retries returns how many retries x made (a hedge counts as one).
func (x *Exchange) Retries() int {
	if x.hg != nil {
		x.hg.mu.Lock()
		a := x.hg.att[0]
		x.hg.mu.Unlock()
		if a != nil {
			return a.Retries()
		}
	}
	x.mu.Lock()
	defer x.mu.Unlock()
	return x.retries
}

// Elapsed returns the time since Do at now.
func (x *Exchange) Elapsed(now time.Time) time.Duration { return now.Sub(x.begun) }

// AppendRequestHead appends an HTTP/1.1 request head to dst: the request
// line, Host, the given header fields (name, value pairs) and, when
// contentLength is not negative, Content-Length; chunked says
// Transfer-Encoding: chunked instead.
func AppendRequestHead(dst []byte, method, target, host string, fields []string, contentLength int64, chunked bool) []byte {
	dst = append(dst, method...)
	dst = append(dst, ' ')
	dst = append(dst, target...)
	dst = append(dst, " HTTP/1.1\r\nHost: "...)
	dst = append(dst, host...)
	dst = append(dst, "\r\n"...)
	for i := 0; i+1 < len(fields); i += 2 {
		dst = append(dst, fields[i]...)
		dst = append(dst, ": "...)
		dst = append(dst, fields[i+1]...)
		dst = append(dst, "\r\n"...)
	}
	switch {
	case chunked:
		dst = append(dst, "Transfer-Encoding: chunked\r\n"...)
	case contentLength >= 0:
		dst = append(dst, "Content-Length: "...)
		dst = strconv.AppendInt(dst, contentLength, 10)
		dst = append(dst, "\r\n"...)
	}
	return append(dst, "\r\n"...)
}

// Response is a complete response collected by RoundTrip.
type Response struct {
	// Status is the status code.
	Status int
	// Header holds the header fields, names as received.
	Header []http1.Header
	// Body is the whole body.
	Body []byte
	// Trailer holds the trailer fields of a chunked body, names as
	// received; nil when it had none.
	Trailer []http1.Header
	// Retries is how many retries the request took.
	Retries int
}

// Get returns the first value of the header field name
// (case-insensitive), or "".
func (r *Response) Get(name string) string {
	for _, h := range r.Header {
		if strings.EqualFold(string(h.Name), name) {
			return string(h.Value)
		}
	}
	return ""
}

// ErrBodyTooLarge is a RoundTrip response body over its limit.
var ErrBodyTooLarge = errors.New("upstream: response body over the RoundTrip limit")

// RoundTrip sends a request through the cluster and waits for the whole
// response: the blocking convenience for ordinary goroutines (never call
// it on an event loop). maxBody bounds the collected body (zero means
// 10 MiB). Canceling ctx cancels the exchange.
func (c *Cluster) RoundTrip(ctx context.Context, r *Request, maxBody int) (*Response, error) {
	if maxBody <= 0 {
		maxBody = 10 << 20
	}
	col := &collector{done: make(chan struct{}), max: maxBody}
	r.Handler = col
	x := c.Do(r)
	select {
	case <-col.done:
	case <-ctx.Done():
		x.Cancel()
		<-col.done
	}
	if col.err != nil {
		return nil, col.err
	}
	col.resp.Retries = x.Retries()
	return &col.resp, nil
}

// collector gathers a response for RoundTrip.
type collector struct {
	resp Response
	err  error
	max  int
	done chan struct{}
}

func (k *collector) OnResponse(x *Exchange, resp *http1.Response) {
	k.resp.Status = resp.StatusCode
	for h := range resp.Headers() {
		k.resp.Header = append(k.resp.Header, http1.Header{Name: bytes.Clone(h.Name), Value: bytes.Clone(h.Value)})
	}
}

func (k *collector) OnBody(x *Exchange, data []byte) {
	if len(k.resp.Body)+len(data) > k.max {
		k.err = ErrBodyTooLarge
		go x.Cancel()
		return
	}
	k.resp.Body = append(k.resp.Body, data...)
}

func (k *collector) OnTrailers(x *Exchange, tr []http1.Header) {
	for _, h := range tr {
		k.resp.Trailer = append(k.resp.Trailer, http1.Header{Name: bytes.Clone(h.Name), Value: bytes.Clone(h.Value)})
	}
}

func (k *collector) OnDone(x *Exchange, err error) {
	if k.err == nil {
		k.err = err
	}
	close(k.done)
}
