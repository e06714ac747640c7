package upstream

import (
	"errors"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
)

// hostPool is one host's connections: idle ones (a LIFO stack, so the
// warmest is reused and the coldest time out), a count of open and
// connecting ones, and the requests waiting for one.
type hostPool struct {
	c        *Cluster
	idx      int
	name     string // "host:port" as configured
	sni      string // the host name of an https host (TLS's server name); "" for http
	addr     atomic.Pointer[netip.AddrPort]
	gen      atomic.Uint32 // bumped when addr changes
	draining atomic.Bool
	requests atomic.Int64 // assigned: pending or on a connection (PoolConfig.MaxRequestsPerHost)
	retries  atomic.Int64 // retries and hedges assigned (PoolConfig.MaxRetriesPerHost)
	st       hostStats

	// mu guards the fields below. It is a leaf: nothing else is locked
	// while it is held, and no connection is written or closed under it.
	mu         sync.Mutex
	idle       [][]*clientConn // per loop: a request prefers a connection on its own loop
	nidle      int
	conns      int // open and connecting
	connecting int
	pending    []*Exchange // FIFO from phead; entries with queued false are stale
	phead      int
	npending   int
	// open are the busy connections with room for a pipelined request
	// (PoolConfig.MaxPipeline); their entries change under the
	// connection's pmu, with mu taken inside it.
	open []*clientConn
	// batch, per loop, is the connection whose requests of this round of
	// that loop's events are not written yet (PoolConfig.BatchPipeline):
	// a pipelinable request of the same loop joins them. Set and cleared
	// under the connection's pmu, with mu taken inside it.
	batch []*clientConn
}

// acquire gives x a connection: an idle one at once, else a place in the
// pending queue (dialling a new connection if the bounds allow), else an
// overflow failure.
func (hp *hostPool) acquire(x *Exchange, now time.Time) {
	c := hp.c
	hp.mu.Lock()
	if c.pool.BatchPipeline && hp.npending == 0 && x.loop >= 0 && x.loop < len(hp.batch) && x.pipelinable() {
		// Requests of one round of a loop's events share a connection
		// and a write.
		if cc := hp.batch[x.loop]; cc != nil {
			hp.mu.Unlock()
			if x.startPipelined(cc, now, true) != startedNoRoom {
				return
			}
			hp.mu.Lock()
			if hp.batch[x.loop] == cc {
				hp.batch[x.loop] = nil // full: the next request starts another
			}
		}
	}
	for hp.nidle > 0 {
		cc := hp.popIdleLocked(x.loop)
		if cc.expired(now) {
			hp.mu.Unlock()
			cc.retire()
			hp.mu.Lock()
			continue
		}
		hp.mu.Unlock()
		cc.assign(x, true, now)
		return
	}
	// No idle connection and no room for another: behind the requests
	// on a busy one, when pipelining is on, x may be pipelined and
	// nobody waits ahead of it.
	for len(hp.open) > 0 && hp.npending == 0 && !hp.mayDialLocked() && x.pipelinable() {
		cc := hp.open[len(hp.open)-1]
		hp.mu.Unlock()
		switch x.startPipelined(cc, now, false) {
		case startedOK:
			return
		case startedDone:
			return
		}
		cc.pmu.Lock()
		cc.syncOpenLocked() // full after all, or closing: off the list
		cc.pmu.Unlock()
		hp.mu.Lock()
	}
	if hp.npending >= c.pool.MaxPendingPerHost {
		hp.mu.Unlock()
		c.st.pendingOverflow.Add(1)
		hp.st.overflow[hostPending].Add(1)
		x.attemptFailed(&Error{Failure: FailOverflow, Reason: ReasonHostMaxPending, Host: hp.name}, hp, attemptInfo{refused: true})
		return
	}
	if r := c.res.Acquire(ResourcePending); r != ReasonNone {
		hp.mu.Unlock()
		c.st.pendingOverflow.Add(1)
		x.attemptFailed(&Error{Failure: FailOverflow, Reason: r, Host: hp.name}, hp, attemptInfo{refused: true})
		return
	}
	x.queued = true
	hp.pending = append(hp.pending, x)
	hp.npending++
	dial := hp.connecting < hp.npending
	if dial && c.pool.MaxConnsPerHost >= 0 && hp.conns >= c.pool.MaxConnsPerHost {
		dial = false
		hp.st.overflow[hostConnections].Add(1) // waits for one of the host's connections
	}
	if dial {
		if c.res.Acquire(ResourceConnections) != ReasonNone {
			dial = false
			c.st.cxOverflow.Add(1)
		} else {
			hp.conns++
			hp.connecting++
		}
	}
	hp.mu.Unlock()
	c.st.pendingTotal.Add(1)
	x.armPendingTimer()
	if dial {
		hp.dial()
	}
}

// mayDialLocked reports whether the host may open another connection:
// neither MaxConnsPerHost nor the cluster's MaxConnections is reached;
// hp.mu is held.
func (hp *hostPool) mayDialLocked() bool {
	c := hp.c
	if c.pool.MaxConnsPerHost >= 0 && hp.conns >= c.pool.MaxConnsPerHost {
		return false
	}
	return c.res.Remaining(ResourceConnections) != 0
}

// dropOpenLocked takes cc off hp.open if it is there; hp.mu is held.
func (hp *hostPool) dropOpenLocked(cc *clientConn) {
	if !cc.inOpen {
		return
	}
	cc.inOpen = false
	for i, v := range hp.open {
		if v == cc {
			last := len(hp.open) - 1
			hp.open[i] = hp.open[last]
			hp.open[last] = nil
			hp.open = hp.open[:last]
			return
		}
	}
}

// popPipelinableLocked takes the first waiting exchange if it may be
// pipelined, or nil (a first one that may not keeps its place); hp.mu is
// held.
func (hp *hostPool) popPipelinableLocked() *Exchange {
	for hp.phead < len(hp.pending) {
		x := hp.pending[hp.phead]
		if x.queued {
			if !x.pipelinable() {
				return nil
			}
			return hp.popPendingLocked()
		}
		hp.pending[hp.phead] = nil
		hp.phead++
	}
	hp.compactLocked()
	return nil
}

// admit takes hp's MaxRequestsPerHost place for a request and, for a
// retry, its MaxRetriesPerHost place; it returns -1, or the host resource
// that is full (taking nothing).
func (hp *hostPool) admit(retry bool) int {
	if !hp.takeSlot() {
		return hostRequests
	}
	if retry && !hp.takeRetrySlot() {
		hp.requests.Add(-1)
		return hostRetries
	}
	return -1
}

// takeRetrySlot counts a retry assigned to hp against
// PoolConfig.MaxRetriesPerHost; it reports false, and takes nothing, when
// the host is full.
func (hp *hostPool) takeRetrySlot() bool {
	lim := int64(hp.c.pool.MaxRetriesPerHost)
	for {
		n := hp.retries.Load()
		if lim > 0 && n >= lim {
			return false
		}
		if hp.retries.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// takeSlot counts a request assigned to hp against
// PoolConfig.MaxRequestsPerHost; it reports false, and takes nothing, when
// the host is full.
func (hp *hostPool) takeSlot() bool {
	lim := int64(hp.c.pool.MaxRequestsPerHost)
	if lim < 0 {
		hp.requests.Add(1)
		return true
	}
	for {
		n := hp.requests.Load()
		if n >= lim {
			return false
		}
		if hp.requests.CompareAndSwap(n, n+1) {
			return true
		}
	}
}

// popIdleLocked takes the warmest idle connection, from loop's stack when
// it has one; hp.mu is held and hp.nidle > 0.
func (hp *hostPool) popIdleLocked(loop int) *clientConn {
	if loop < 0 || loop >= len(hp.idle) || len(hp.idle[loop]) == 0 {
		for i := range hp.idle {
			if len(hp.idle[i]) > 0 {
				loop = i
				break
			}
		}
	}
	st := hp.idle[loop]
	cc := st[len(st)-1]
	st[len(st)-1] = nil
	hp.idle[loop] = st[:len(st)-1]
	hp.nidle--
	cc.inIdle = false
	return cc
}

// popPending takes the first waiting exchange, or nil; hp.mu is held.
func (hp *hostPool) popPendingLocked() *Exchange {
	for hp.phead < len(hp.pending) {
		x := hp.pending[hp.phead]
		hp.pending[hp.phead] = nil
		hp.phead++
		if x.queued {
			x.queued = false
			hp.npending--
			hp.c.res.Release(ResourcePending)
			hp.compactLocked()
			return x
		}
	}
	hp.compactLocked()
	return nil
}

func (hp *hostPool) compactLocked() {
	if hp.phead == len(hp.pending) {
		hp.pending, hp.phead = hp.pending[:0], 0
	} else if hp.phead > 64 && hp.phead*2 > len(hp.pending) {
		n := copy(hp.pending, hp.pending[hp.phead:])
		clear(hp.pending[n:])
		hp.pending, hp.phead = hp.pending[:n], 0
	}
}

// unqueue removes x from the pending queue if it is still there and
// reports whether it was.
func (hp *hostPool) unqueue(x *Exchange) bool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if !x.queued {
		return false
	}
	x.queued = false
	hp.npending--
	hp.c.res.Release(ResourcePending)
	return true
}

// failPending fails every waiting exchange with err.
func (hp *hostPool) failPending(err *Error) {
	for {
		hp.mu.Lock()
		x := hp.popPendingLocked()
		hp.mu.Unlock()
		if x == nil {
			return
		}
		x.attemptFailed(err, hp, attemptInfo{connect: err.Failure == FailConnect})
	}
}

// release returns cc, whose exchange is done, to the pool: to the first
// waiting exchange, else to the idle stack, else it is closed.
func (hp *hostPool) release(cc *clientConn, now time.Time) {
	if cc.expired(now) || hp.draining.Load() {
		cc.retire()
		return
	}
	hp.mu.Lock()
	if x := hp.popPendingLocked(); x != nil {
		hp.mu.Unlock()
		cc.assign(x, true, now)
		return
	}
	if hp.nidle >= hp.c.pool.MaxIdlePerHost || cc.drained {
		hp.mu.Unlock()
		cc.retire()
		return
	}
	cc.inIdle = true
	l := min(max(cc.loop, 0), len(hp.idle)-1)
	hp.idle[l] = append(hp.idle[l], cc)
	hp.nidle++
	hp.mu.Unlock()
}

// removeIdle takes cc off the idle stack; it reports whether it was there.
func (hp *hostPool) removeIdle(cc *clientConn) bool {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	if !cc.inIdle {
		return false
	}
	cc.inIdle = false
	for l, st := range hp.idle {
		for i, v := range st {
			if v == cc {
				copy(st[i:], st[i+1:])
				st[len(st)-1] = nil
				hp.idle[l] = st[:len(st)-1]
				hp.nidle--
				return true
			}
		}
	}
	return true
}

// closeIdle closes every idle connection (draining, ejection, address
// change).
func (hp *hostPool) closeIdle() {
	hp.mu.Lock()
	var idle []*clientConn
	for l, st := range hp.idle {
		for _, cc := range st {
			cc.inIdle = false
			idle = append(idle, cc)
		}
		clear(st)
		hp.idle[l] = st[:0]
	}
	hp.nidle = 0
	hp.mu.Unlock()
	for _, cc := range idle {
		cc.retire()
	}
}

// dial opens a connection for the pending queue; hp.conns and
// hp.connecting already count it.
func (hp *hostPool) dial() {
	c := hp.c
	now := c.now()
	cc := &clientConn{hp: hp, gen: hp.gen.Load()}
	cc.lastIO.Store(now.UnixNano())
	if c.pool.MaxLifetime > 0 {
		cc.retireAt = now.Add(c.pool.MaxLifetime)
	}
	c.st.cxTotal.Add(1)
	hp.st.cxTotal.Add(1)
	cc.timer = time.AfterFunc(c.pool.ConnectTimeout, cc.connectTimeout)
	conn, err := c.eng.DialHandler(*hp.addr.Load(), netip.Addr{}, hp.dialHandler(cc))
	if err != nil {
		cc.timer.Stop()
		cc.connectFailed(err)
		return
	}
	cc.dialed.Store(conn)
}

// counts returns the host's open, idle and pending figures.
func (hp *hostPool) counts() (conns, idle, pending int) {
	hp.mu.Lock()
	defer hp.mu.Unlock()
	return hp.conns, hp.nidle, hp.npending
}

// clientConn is one pooled connection's engine handler: it writes the
// requests of the exchanges assigned to it and parses their responses on
// its loop.
type clientConn struct {
	hp *hostPool
	// retireAt is the dial's time + PoolConfig.MaxLifetime (zero when
	// off): expired compares it with now, which is now.Sub(dialed at) >=
	// MaxLifetime without Sub's call.
	retireAt time.Time
	gen      uint32
	timer    *time.Timer // connect timeout
	dialed   atomic.Pointer[engine.Conn]
	lastIO   atomic.Int64 // unix nanos of the last request start or response byte

	x atomic.Pointer[Exchange] // in flight (being answered), or nil
	// dead is set by OnClose before it takes x: an exchange started on cc
	// after that (Exchange.start, from a goroutine other than cc's loop)
	// fails itself, since no OnClose is left to fail it.
	dead atomic.Bool

	inIdle bool

	kaNanos atomic.Int64 // unix nanos when the backend's keep-alive (less the margin) ends; 0: none
	opened  atomic.Bool

	// inIdle and inOpen are guarded by hp.mu; inOpen changes with pmu
	// held too.
	inOpen bool

	// pmu guards the fields below: the requests in flight on the
	// connection. It is taken before hp.mu, never inside it.
	pmu  sync.Mutex
	pipe []*Exchange // written behind the one being answered (x), in order
	nfl  int         // in flight: x and pipe
	sent int         // requests written (PoolConfig.MaxRequestsPerConn)
	solo bool        // the request in flight may not have others behind it
	shut bool        // closing or upgraded: no more requests
	// wbuf holds requests written to cc in this round of its loop's
	// events and not yet sent (PoolConfig.BatchPipeline); wopen says a
	// flush (flushFn, made once) is posted to the loop: until it runs,
	// every request for cc is appended to wbuf, so the order on the wire
	// is the order of pipe.
	wbuf    []byte
	wopen   bool
	flushFn func()

	// Loop-owned.
	conn      *engine.Conn
	closed    bool
	gone      bool // closed, upgraded or retired: never reused
	detached  bool // upgraded: the connection is no longer the pool's
	drained   bool // the engine is shutting down: retired once free
	requests  int
	loop      int           // conn.Loop(); set before the connection is pooled
	bufs      [3][]byte     // Writev's slice for a request, reused (under the exchange's mu)
	kaDur     time.Duration // the backend's keep-alive less the margin; 0: none
	period    time.Duration
	parser    http1.ResponseParser
	resp      http1.Response
	gotHead   bool
	connFault atomic.Bool // connect failed or timed out

	// The per-try timeout (Cluster.perTry): a timer per connection, made
	// at open, armed when an attempt starts while it is not armed already,
	// and re-armed for the rest of the silence when it finds the attempt
	// heard from; so a busy connection costs at most one timer event per
	// per-try period, and the timeout is exact rather than a tick of the
	// engine's timing wheel late.
	ptTimer *time.Timer
	ptArmed atomic.Bool
	ptCheck func() // cc.perTryCheck, made once
}

var (
	_ engine.Handler        = (*clientConn)(nil)
	_ engine.OpenHandler    = (*clientConn)(nil)
	_ engine.CloseHandler   = (*clientConn)(nil)
	_ engine.TimeoutHandler = (*clientConn)(nil)
	_ engine.DrainHandler   = (*clientConn)(nil)
	_ engine.EOFHandler     = (*clientConn)(nil)
	_ engine.InlineHandler  = (*clientConn)(nil)
	_ engine.ProtocolNamer  = (*clientConn)(nil)
	_ engine.Labeler        = (*clientConn)(nil)
)

// ProtocolName is the protocol name of upstream connections in
// /debug/conns and metrics.
const ProtocolName = "upstream"

// Inline runs the connection's parser on the loop.
func (cc *clientConn) Inline() bool { return true }

// Protocol names the connections "upstream".
func (cc *clientConn) Protocol() string { return ProtocolName }

// Label is the cluster and host.
func (cc *clientConn) Label(*engine.Conn) string { return cc.hp.c.name + "/" + cc.hp.name }

// checkPeriod is how often a quiet idle connection is looked at: the
// pool's idle timeout, or the backend's keep-alive when shorter
// (noteKeepAlive). A busy one is timed by the per-try timer and the
// exchange's overall timer, not by this.
func (cc *clientConn) checkPeriod() time.Duration {
	if d := cc.hp.c.pool.IdleTimeout; d > 0 {
		return d
	}
	return -1
}

// OnOpen hands the new connection to the first waiting exchange.
func (cc *clientConn) OnOpen(conn *engine.Conn) {
	cc.timer.Stop()
	if cc.hp.sni != "" {
		cc.hp.c.st.tlsOK.Add(1)
	}
	cc.conn = conn
	cc.dialed.Store(conn)
	cc.loop = conn.Loop()
	if d := cc.hp.c.perTry; d > 0 {
		cc.ptCheck = cc.perTryCheck
		cc.ptTimer = time.AfterFunc(d, cc.perTryFire)
		cc.ptTimer.Stop()
	}
	cc.opened.Store(true)
	cc.period = cc.checkPeriod()
	conn.SetIdleTimeout(cc.period)
	conn.SetReadTimeout(cc.period)
	hp := cc.hp
	hp.mu.Lock()
	hp.connecting--
	x := hp.popPendingLocked()
	hp.mu.Unlock()
	now := hp.c.now()
	if x != nil {
		cc.assign(x, false, now)
		return
	}
	hp.release(cc, now)
}

// connectTimeout aborts a connect that took too long.
func (cc *clientConn) connectTimeout() {
	if cc.opened.Load() {
		return
	}
	cc.connFault.Store(true)
	if conn := cc.dialed.Load(); conn != nil {
		conn.Abort(engine.ReasonIOError)
	}
	// If DialHandler has not returned yet, OnOpen or OnClose will see
	// the timer stopped too late; the connect then either succeeds (and
	// the connection is used) or fails normally.
}

// connectFailed accounts for a connection that never opened.
func (cc *clientConn) connectFailed(err error) {
	hp, c := cc.hp, cc.hp.c
	hp.mu.Lock()
	hp.conns--
	hp.connecting--
	left := hp.conns
	hp.mu.Unlock()
	c.res.Release(ResourceConnections)
	c.st.cxConnectFail.Add(1)
	hp.st.cxConnectFail.Add(1)
	c.record(hp, ResultConnectFailure)
	if left == 0 {
		hp.failPending(&Error{Failure: FailConnect, Host: hp.name, Err: err})
	} else {
		// Others may still serve the queue; make sure someone dials
		// for it if none is connecting.
		hp.redial()
	}
}

// redial dials one connection if requests wait and none is connecting.
func (hp *hostPool) redial() {
	c := hp.c
	hp.mu.Lock()
	dial := hp.npending > 0 && hp.connecting == 0 &&
		(c.pool.MaxConnsPerHost < 0 || hp.conns < c.pool.MaxConnsPerHost) &&
		c.res.Acquire(ResourceConnections) == ReasonNone
	if dial {
		hp.conns++
		hp.connecting++
	}
	hp.mu.Unlock()
	if dial {
		hp.dial()
	}
}

// expired reports whether cc must not take another request.
func (cc *clientConn) expired(now time.Time) bool {
	hp, c := cc.hp, cc.hp.c
	if cc.gen != hp.gen.Load() {
		return true
	}
	if c.pool.MaxLifetime > 0 && !now.Before(cc.retireAt) {
		return true
	}
	// lastIO and kaNanos are wall-clock nanoseconds: compared as integers
	// with now's, as now.Sub(time.Unix(0, v)) and now.Before would (a
	// time.Time from time.Unix has no monotonic reading), without building
	// the times.
	ns := now.UnixNano()
	if c.pool.IdleTimeout > 0 && time.Duration(ns-cc.lastIO.Load()) >= c.pool.IdleTimeout {
		return true
	}
	if ka := cc.kaNanos.Load(); ka != 0 && ns >= ka {
		hp.st.kaRetired.Add(1)
		c.st.kaRetired.Add(1)
		return true
	}
	return false
}

// retire closes cc (it is no longer in the idle stack).
func (cc *clientConn) retire() {
	if conn := cc.dialed.Load(); conn != nil {
		conn.CloseWithReason(engine.ReasonLocal)
	} else if cc.conn != nil {
		cc.conn.CloseWithReason(engine.ReasonLocal)
	}
}

// assign starts x on cc. It runs on any goroutine; cc is neither idle nor
// busy.
func (cc *clientConn) assign(x *Exchange, reused bool, now time.Time) {
	cc.lastIO.Store(now.UnixNano())
	if !x.start(cc, reused, now) {
		// x ended while it waited; give the connection to the next.
		cc.hp.release(cc, now)
		return
	}
	cc.armPerTry()
	if cc.hp.c.pool.MaxPipeline > 1 {
		cc.fillPipeline(now)
	}
}

// roomLocked reports whether another request may be written behind those
// in flight on cc (PoolConfig.MaxPipeline); cc.pmu is held.
func (cc *clientConn) roomLocked() bool {
	p := &cc.hp.c.pool
	return cc.nfl > 0 && cc.nfl < p.MaxPipeline && !cc.solo && !cc.shut && !cc.dead.Load() &&
		(p.MaxRequestsPerConn <= 0 || cc.sent < p.MaxRequestsPerConn) && cc.gen == cc.hp.gen.Load()
}

// syncOpenLocked puts cc on hp.open when it has room for a pipelined
// request and takes it off when not; cc.pmu is held.
func (cc *clientConn) syncOpenLocked() {
	hp := cc.hp
	room := cc.roomLocked()
	hp.mu.Lock()
	if room && !cc.inOpen {
		cc.inOpen = true
		hp.open = append(hp.open, cc)
	} else if !room {
		hp.dropOpenLocked(cc)
	}
	hp.mu.Unlock()
}

// maxBatchBytes bounds the requests gathered on one connection for the
// end of a round (PoolConfig.BatchPipeline): a request that would take
// them past it does not join (it takes a connection of its own), and a
// buffer grown past it is not kept. 32 KiB is hundreds of GET heads.
const maxBatchBytes = 32 << 10

// batchLocked appends bufs to the requests gathered on cc for the end of
// its loop's round, posting the write that sends them when cc has none
// gathered yet (PoolConfig.BatchPipeline); cc.pmu is held. It fails when
// the connection has closed (its OnClose fails the requests).
func (cc *clientConn) batchLocked(bufs [][]byte) error {
	for _, b := range bufs {
		cc.wbuf = append(cc.wbuf, b...)
	}
	if cc.wopen {
		return nil
	}
	cc.wopen = true
	hp := cc.hp
	hp.mu.Lock()
	if cc.loop >= 0 && cc.loop < len(hp.batch) {
		hp.batch[cc.loop] = cc
	}
	hp.mu.Unlock()
	if cc.flushFn == nil {
		cc.flushFn = cc.flushBatch
	}
	if !cc.conn.Post(cc.flushFn) {
		cc.dropBatchLocked()
		return engine.ErrClosed
	}
	return nil
}

// flushBatch runs on cc's loop after the round in which requests were
// gathered on cc: one write sends them all.
func (cc *clientConn) flushBatch() {
	cc.pmu.Lock()
	b := cc.wbuf
	var err error
	if cc.wopen && len(b) > 0 {
		_, err = cc.conn.Write(b)
	}
	cc.dropBatchLocked()
	if cap(b) <= maxBatchBytes {
		cc.wbuf = b[:0]
	}
	cc.pmu.Unlock()
	if err != nil {
		cc.conn.Abort(engine.ReasonIOError) // OnClose fails the attempts
	}
}

// dropBatchLocked forgets the requests gathered on cc (sent, or the
// connection closed) and takes cc off its loop's batch slot; cc.pmu is
// held.
func (cc *clientConn) dropBatchLocked() {
	cc.wopen = false
	cc.wbuf = nil
	hp := cc.hp
	hp.mu.Lock()
	if cc.loop >= 0 && cc.loop < len(hp.batch) && hp.batch[cc.loop] == cc {
		hp.batch[cc.loop] = nil
	}
	hp.mu.Unlock()
}

// fillPipeline writes waiting requests that may be pipelined behind those
// on cc while it has room (the first waiting one that may not be keeps
// its place for a connection of its own).
func (cc *clientConn) fillPipeline(now time.Time) {
	hp := cc.hp
	for {
		cc.pmu.Lock()
		room := cc.roomLocked()
		cc.pmu.Unlock()
		if !room {
			return // full, closing, or its request has it to itself
		}
		hp.mu.Lock()
		var x *Exchange
		if hp.npending > 0 {
			x = hp.popPipelinableLocked()
		}
		hp.mu.Unlock()
		if x == nil {
			return
		}
		if x.startPipelined(cc, now, false) == startedNoRoom {
			hp.acquire(x, now) // back in line (or onto another connection)
			return
		}
	}
}

// nextInFlight ends the answered request x on cc: the next one written
// behind it becomes the one being answered. It reports whether requests
// are still in flight; with !reuse cc takes no more. cc's loop.
func (cc *clientConn) nextInFlight(reuse bool) bool {
	cc.pmu.Lock()
	defer cc.pmu.Unlock()
	cc.nfl = max(0, cc.nfl-1)
	var next *Exchange
	if !reuse {
		// Closing: those behind stay in pipe, for OnClose to retry.
		cc.x.Store(nil)
		cc.shut = true
		cc.syncOpenLocked()
		return cc.nfl > 0
	}
	if len(cc.pipe) > 0 {
		next = cc.pipe[0]
		cc.pipe[0] = nil
		cc.pipe = cc.pipe[1:]
	}
	if len(cc.pipe) == 0 {
		cc.pipe = cc.pipe[:0:0]
	}
	cc.x.Store(next)
	if cc.nfl == 0 {
		cc.solo = false
	}
	cc.syncOpenLocked()
	return cc.nfl > 0
}

// shutPipeline marks cc as taking no more requests and returns those
// written behind the one being answered, which the caller fails.
func (cc *clientConn) shutPipeline() []*Exchange {
	cc.pmu.Lock()
	defer cc.pmu.Unlock()
	rest := cc.pipe
	cc.pipe, cc.nfl, cc.shut = nil, 0, true
	cc.syncOpenLocked()
	return rest
}

// armPerTry starts the per-try timer for a new attempt unless it is
// running already (it then finds the attempt's start in lastIO when it
// fires, and re-arms itself for the rest).
func (cc *clientConn) armPerTry() {
	if cc.ptTimer != nil && cc.ptArmed.CompareAndSwap(false, true) {
		cc.ptTimer.Reset(cc.hp.c.perTry)
	}
}

// perTryFire runs on the timer's goroutine: the check runs on the
// connection's loop, in order with its reads.
func (cc *clientConn) perTryFire() {
	conn := cc.dialed.Load()
	if conn == nil || !conn.Post(cc.ptCheck) {
		cc.ptArmed.Store(false) // closed: OnClose ends the attempt
	}
}

// perTryCheck runs on the loop when the per-try timer fires.
func (cc *clientConn) perTryCheck() { cc.perTryCheckAt(cc.hp.c.now()) }

// perTryCheckAt fails the attempt on cc when it has been silent for the
// per-try timeout at now, or re-arms the timer for the time left; with no
// attempt on cc it disarms. It runs on cc's loop.
func (cc *clientConn) perTryCheckAt(now time.Time) {
	c := cc.hp.c
	for {
		x := cc.x.Load()
		if x == nil || cc.gone {
			cc.ptArmed.Store(false)
			// An attempt assigned between the load and the store found
			// the timer armed and did not arm it: take it over.
			if cc.gone || cc.x.Load() == nil || !cc.ptArmed.CompareAndSwap(false, true) {
				return
			}
			continue
		}
		due, wait := perTryDue(time.Unix(0, cc.lastIO.Load()), now, c.perTry)
		if due && x.respStarted() {
			// The handler has the response head: the attempt can no longer
			// be retried, and a silence now is as often the caller holding
			// the response back (a slow reader) as the backend; the overall
			// timeout bounds the body. Disarmed (the next attempt arms it).
			cc.ptArmed.Store(false)
			if cc.x.Load() != x && cc.ptArmed.CompareAndSwap(false, true) {
				continue // a new attempt found the timer armed: take it over
			}
			return
		}
		if due && x.awaitingBody() {
			// The caller has not sent the rest of the body: the silence
			// is its own, not the backend's (the overall timeout bounds
			// it). Checked again a period later.
			due, wait = false, c.perTry
		}
		if !due {
			cc.ptTimer.Reset(wait)
			return
		}
		cc.ptArmed.Store(false)
		if x.timeoutCounted.CompareAndSwap(false, true) {
			c.st.rqPerTryTimeout.Add(1)
		}
		// Retried when the policy allows, unless the handler has seen
		// the response (fail adds x.respStarted).
		cc.fail(x, &Error{Failure: FailTimeout, Host: cc.hp.name}, cc.gotHead)
		cc.conn.Abort(engine.ReasonReadTimeout)
		return
	}
}

// perTryDue reports whether an attempt last heard from (or started) at
// last has been silent for the per-try timeout d at now, and if not, how
// long it has left (at least a millisecond, so a clock that stands still
// cannot make the timer spin).
func perTryDue(last, now time.Time, d time.Duration) (bool, time.Duration) {
	quiet := now.Sub(last)
	if quiet >= d {
		return true, 0
	}
	return false, max(d-quiet, time.Millisecond)
}

// OnData parses responses.
func (cc *clientConn) OnData(conn *engine.Conn, in []byte) int {
	now := conn.Now() // the loop's round time: OnData runs inline
	cc.lastIO.Store(now.UnixNano())
	used := 0
	for used < len(in) {
		x := cc.x.Load()
		if x == nil {
			// Bytes nobody asked for: the connection is out of step.
			conn.Abort(engine.ReasonProtocolError)
			return len(in)
		}
		if !cc.gotHead {
			n, err := cc.parser.Parse(in[used:], x.method, &cc.resp, &x.c.limits)
			if err != nil {
				cc.fail(x, &Error{Failure: FailBadResponse, Host: cc.hp.name, Err: err}, true)
				conn.Abort(engine.ReasonProtocolError)
				return len(in)
			}
			if n == 0 {
				return used
			}
			used += n
			x.gotBytes()
			code := cc.resp.StatusCode
			if code == 101 {
				if !x.upgrade {
					cc.fail(x, &Error{Failure: FailBadResponse, Host: cc.hp.name, Err: errUnaskedUpgrade}, true)
					conn.Abort(engine.ReasonProtocolError)
					return len(in)
				}
				cc.upgraded(conn, x)
				return used // the rest is the new protocol's
			}
			if code < 200 {
				x.interim(&cc.resp)
				continue
			}
			if cc.resp.Coded && cc.resp.Framing != http1.FramingNone {
				// A body in a coding the cluster does not decode (gzip,
				// chunked) would reach the caller as plain bytes: refused
				// as a bad response, as nginx and Envoy refuse it.
				cc.fail(x, &Error{Failure: FailBadResponse, Host: cc.hp.name, Err: ErrTransferCoding}, true)
				conn.Abort(engine.ReasonProtocolError)
				return len(in)
			}
			cc.gotHead = true
			if cc.resp.KeepAlive > 0 {
				cc.noteKeepAlive(conn, cc.resp.KeepAlive)
			}
			if cc.resp.Framing == http1.FramingNone {
				// The whole response: x leaves the connection before its
				// handler passes it on (see detach).
				x.detach()
				x.response(&cc.resp)
				cc.finish(conn, x, now)
				continue
			}
			x.response(&cc.resp)
		}
		k, data, done, err := cc.parser.Body(in[used:])
		if err != nil {
			cc.fail(x, &Error{Failure: FailBadResponse, Host: cc.hp.name, Err: err}, true)
			conn.Abort(engine.ReasonProtocolError)
			return len(in)
		}
		used += k
		if done {
			// The response's last bytes: x leaves the connection before
			// its handler passes them on. A proxy's client that has them
			// may go away at once, and its Cancel must not close the
			// connection, which carries the requests pipelined behind x
			// or goes back to the pool.
			x.detach()
		}
		if len(data) > 0 {
			x.bodyData(data)
		}
		if done {
			if cc.resp.Framing == http1.FramingChunked {
				if tr := cc.parser.Trailers(); len(tr) > 0 {
					x.trailers(tr)
				}
			}
			cc.finish(conn, x, now)
			continue
		}
		if k == 0 {
			break
		}
	}
	return used
}

var errUnaskedUpgrade = errors.New("101 Switching Protocols to a request that did not ask to upgrade")

// noteKeepAlive records the backend's keep-alive timeout and shortens the
// connection's check period to it.
func (cc *clientConn) noteKeepAlive(conn *engine.Conn, ka time.Duration) {
	margin := cc.hp.c.pool.KeepAliveMargin
	if ka < 2*margin {
		margin = ka / 2
	}
	cc.kaDur = ka - margin
	if cc.kaDur < cc.period || cc.period < 0 {
		cc.period = cc.kaDur
		conn.SetIdleTimeout(cc.period)
	}
}

// finish ends x's exchange after a complete response and returns the
// connection to the pool, or closes it.
func (cc *clientConn) finish(conn *engine.Conn, x *Exchange, now time.Time) {
	x.detach()
	cc.gotHead = false
	cc.requests++
	reuse := !cc.resp.Close && x.bodyComplete() && !cc.gone
	if m := cc.hp.c.pool.MaxRequestsPerConn; m > 0 && cc.requests >= m {
		reuse = false
	}
	cc.lastIO.Store(now.UnixNano())
	if cc.kaDur > 0 {
		cc.kaNanos.Store(now.Add(cc.kaDur).UnixNano())
	}
	if cc.hp.c.pool.MaxPipeline <= 1 {
		cc.x.Store(nil)
	} else if cc.nextInFlight(reuse) {
		// Requests are still in flight behind x: the connection stays
		// busy (reading the next response), and takes waiting requests
		// while it has room; or it closes and they are retried.
		if reuse {
			cc.fillPipeline(now)
		} else {
			cc.gone = true
			conn.CloseWithReason(engine.ReasonLocal)
		}
		x.complete(cc.resp.StatusCode, now)
		return
	}
	if reuse {
		cc.hp.release(cc, now)
	} else {
		cc.gone = true
		conn.CloseWithReason(engine.ReasonLocal)
	}
	x.complete(cc.resp.StatusCode, now)
}

// fail ends x's attempt on cc with err.
func (cc *clientConn) fail(x *Exchange, err *Error, gotBytes bool) {
	cc.x.Store(nil)
	if cc.hp.c.pool.MaxPipeline > 1 {
		cc.pmu.Lock()
		cc.shut = true // those behind x fail when the connection closes
		cc.syncOpenLocked()
		cc.pmu.Unlock()
	}
	cc.gone = true
	cc.gotHead = false
	x.attemptFailed(err, cc.hp, attemptInfo{reused: x.reused, gotBytes: gotBytes || x.respStarted()})
}

// upgraded hands the connection to x after a 101: it leaves the pool.
func (cc *clientConn) upgraded(conn *engine.Conn, x *Exchange) {
	cc.x.Store(nil)
	cc.gone = true
	cc.detached = true
	hp := cc.hp
	hp.mu.Lock()
	hp.conns--
	hp.mu.Unlock()
	hp.c.res.Release(ResourceConnections)
	hp.c.st.upgrades.Add(1)
	x.upgraded(conn, &cc.resp)
}

// OnEOF ends a close-delimited body.
func (cc *clientConn) OnEOF(conn *engine.Conn) {
	x := cc.x.Load()
	if x == nil || !cc.gotHead {
		return
	}
	if done, err := cc.parser.EOF(); err == nil && done {
		cc.gone = true
		cc.finish(conn, x, cc.hp.c.now())
	}
}

// OnTimeout runs when the connection has been quiet for its check
// period: an idle one closes once past its idle or keep-alive deadline; a
// busy one stays (its attempt is timed by the per-try timer and the
// exchange's overall timer).
func (cc *clientConn) OnTimeout(conn *engine.Conn, r engine.CloseReason) bool {
	c := cc.hp.c
	now := c.now()
	if cc.x.Load() != nil {
		return true
	}
	if cc.expired(now.Add(c.eng.Config().TickInterval)) && cc.hp.removeIdle(cc) {
		cc.gone = true
		return false
	}
	return true // busy again (taken from the idle stack meanwhile), or not due
}

// OnDrain (engine shutdown) keeps a connection with a request in flight
// open until its response is complete, and retires it then (after any
// request already waiting for it); an idle one is left to the engine,
// which closes it.
func (cc *clientConn) OnDrain(conn *engine.Conn) bool {
	cc.drained = true
	if cc.x.Load() != nil {
		return true
	}
	cc.hp.removeIdle(cc)
	return false
}

// OnClose accounts for the closed connection and fails its exchange, if
// any.
func (cc *clientConn) OnClose(conn *engine.Conn, r engine.CloseReason, err error) {
	if cc.detached {
		return
	}
	cc.closed, cc.gone = true, true
	cc.dead.Store(true)
	hp, c := cc.hp, cc.hp.c
	if cc.ptTimer != nil {
		cc.ptTimer.Stop()
	}
	if !cc.opened.Load() {
		cc.timer.Stop()
		if hp.sni != "" && (r == engine.ReasonProtocolError || r == engine.ReasonPeerClosed || r == engine.ReasonPeerReset) {
			// The TLS layer closes a connection whose handshake failed
			// (bad certificate, protocol, its own timeout) with a
			// protocol error; the peer may close first, having read our
			// alert, or refuse the handshake itself. (A connect that
			// failed ends with an I/O error.)
			c.st.tlsFail.Add(1)
			err = errHandshake
		}
		if err == nil {
			err = errConnectClosed
			if cc.connFault.Load() { // connectTimeout's abort
				err = ErrConnectTimeout
			}
		}
		cc.connectFailed(err)
		return
	}
	hp.removeIdle(cc)
	hp.mu.Lock()
	hp.conns--
	hp.mu.Unlock()
	c.res.Release(ResourceConnections)
	c.st.cxClosed.Add(1)
	if x := cc.x.Swap(nil); x != nil {
		f := FailReset
		if r == engine.ReasonIdleTimeout || r == engine.ReasonReadTimeout {
			f = FailTimeout
		}
		x.attemptFailed(&Error{Failure: f, Host: hp.name, Err: err}, hp,
			attemptInfo{reused: x.reused, gotBytes: cc.gotHead || x.respStarted()})
	}
	if c.pool.MaxPipeline > 1 {
		cc.pmu.Lock()
		cc.dropBatchLocked() // never sent: failed below, as if unanswered
		cc.pmu.Unlock()
		// The requests written behind: their responses had not started,
		// and each is idempotent (only such are pipelined), so each is
		// retried as a request that failed on a reused connection before
		// any byte of its response.
		for _, px := range cc.shutPipeline() {
			c.st.rqPipelineReset.Add(1)
			px.attemptFailed(&Error{Failure: FailReset, Host: hp.name, Err: err}, hp, attemptInfo{reused: true})
		}
	}
	hp.redial()
}

var (
	errConnectClosed = errors.New("connection closed while connecting")
	errHandshake     = errors.New("TLS handshake failed")
)
