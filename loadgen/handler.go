package loadgen

import (
	"sync"
	"time"

	"github.com/warrenhq/warren/engine"
)

// handler is the engine handler of HTTP connections; WebSocket ones have
// their websocket.Client's (wsHandler).
type handler struct{ r *runner }

var (
	_ engine.OpenHandler  = handler{}
	_ engine.CloseHandler = handler{}
)

// connOf returns the conn behind c (see attached).
func (h handler) connOf(c *engine.Conn) *conn { return attached[*conn](c, &h.r.dialMu) }

// attached returns the T a dialer attached to c as its context, waiting
// for the dialer — which holds dialMu until the context is set — when the
// connection's first callback beat it; the zero T if there is none.
func attached[T any](c *engine.Conn, dialMu *sync.Mutex) T {
	if v, ok := c.Context().(T); ok {
		return v
	}
	dialMu.Lock()
	dialMu.Unlock()
	v, _ := c.Context().(T)
	return v
}

func (h handler) OnOpen(c *engine.Conn) {
	r := h.r
	cs := h.connOf(c)
	if cs == nil {
		c.Abort(engine.ReasonLocal)
		return
	}
	cs.p.reset()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.ec = c
	r.openedLocked(cs, r.now())
}

func (h handler) OnData(c *engine.Conn, in []byte) int {
	cs := h.connOf(c)
	if cs == nil {
		return len(in)
	}
	used := h.r.onHTTP(cs, c, in)
	h.r.bytesIn.Add(int64(used))
	return used
}

// completions collects the latencies of the responses parsed in one call
// and records them in one go.
type completions struct {
	n   int
	lat [32]int64
}

func (r *runner) flush(c *engine.Conn, cp *completions) {
	if cp.n == 0 {
		return
	}
	sh := r.shardOf(c.Loop())
	sh.mu.Lock()
	for _, l := range cp.lat[:cp.n] {
		sh.lat.Record(time.Duration(l))
	}
	sh.mu.Unlock()
	r.done.Add(int64(cp.n))
	r.outstanding.Add(-int64(cp.n))
	cp.n = 0
}

// completeLocked takes the oldest outstanding request off cs's queue and
// notes its latency. It reports false for a response nobody asked for.
func (r *runner) completeLocked(cs *conn, c *engine.Conn, cp *completions, now int64) bool {
	if cs.q.len() == 0 {
		return false
	}
	cp.lat[cp.n] = now - cs.q.pop()
	cp.n++
	if cp.n == len(cp.lat) {
		r.flush(c, cp)
	}
	return true
}

// failLocked counts an error of kind k on cs, which its caller closes.
func (r *runner) failLocked(cs *conn, k ErrorKind) {
	r.fail(k)
	switch cs.state {
	case csConnecting:
		r.endConnectLocked(cs, false)
	case csOpen:
		r.failed.Add(1)
		r.open.Add(-1)
	}
	cs.state = csClosing
}

// protocolErrorLocked counts a protocol error and closes cs.
func (r *runner) protocolErrorLocked(cs *conn, c *engine.Conn, k ErrorKind) {
	r.failLocked(cs, k)
	c.Abort(engine.ReasonProtocolError)
}

func (r *runner) onHTTP(cs *conn, c *engine.Conn, in []byte) int {
	now := r.now()
	var cp completions
	used := 0
	answered := 0
	cs.mu.Lock()
	for cs.state == csOpen {
		n, done, err := cs.p.parse(in[used:])
		used += n
		if err != nil {
			r.protocolErrorLocked(cs, c, KindProtocol)
			break
		}
		if !done {
			break
		}
		if !r.completeLocked(cs, c, &cp, now) {
			r.protocolErrorLocked(cs, c, KindProtocol)
			break
		}
		answered++
		if cs.p.status >= 400 {
			r.fail(KindBadStatus)
		}
		if cs.p.close {
			cs.announced = true
		}
	}
	if answered > 0 && r.closedLoop.Load() {
		r.sendLocked(cs, answered, now, nil)
	}
	closing := cs.state == csClosing
	cs.mu.Unlock()
	r.flush(c, &cp)
	if closing {
		return len(in)
	}
	return used
}

func (h handler) OnClose(c *engine.Conn, reason engine.CloseReason, err error) {
	r := h.r
	cs := h.connOf(c)
	if cs == nil {
		return
	}
	var cp completions
	cs.mu.Lock()
	if cs.ec != nil && cs.ec != c {
		cs.mu.Unlock() // a stale connection of this slot
		return
	}
	if cs.state == csOpen && cs.p.eof() {
		r.completeLocked(cs, c, &cp, r.now()) // a body delimited by the close
	}
	r.closedLocked(cs, reason, classifyConnect(reason, err), c, &cp)
}

// closedLocked settles cs's connection, which closed with reason: a
// connect in progress failed with connectKind, an open connection closed
// cleanly (announced) or failed, and its outstanding requests are lost.
// It unlocks cs.mu, records the completions cp (if any), and has the slot redialled
// when the server closed it cleanly during traffic.
func (r *runner) closedLocked(cs *conn, reason engine.CloseReason, connectKind ErrorKind, c *engine.Conn,
	cp *completions) {
	prev := cs.state
	lost := cs.q.len()
	cs.q.clear()
	cs.state, cs.ec, cs.wc = csIdle, nil, nil
	announced := cs.announced
	finished := r.finished.Load()
	switch prev {
	case csConnecting:
		r.endConnectLocked(cs, false)
		if !finished {
			r.fail(connectKind)
		}
	case csOpen:
		r.open.Add(-1)
		if !finished && !(announced && (reason == engine.ReasonPeerClosed || reason == engine.ReasonLocal ||
			reason == engine.ReasonPeerReset)) {
			r.fail(closeKind(reason))
			r.failed.Add(1)
		}
	}
	cs.mu.Unlock()
	if cp != nil {
		r.flush(c, cp)
	}
	if lost > 0 {
		r.outstanding.Add(-int64(lost))
		r.unanswered.Add(int64(lost))
	}
	// Redial a slot the server closed cleanly while traffic runs.
	if prev == csOpen && announced && !finished && r.traffic.Load() {
		select {
		case r.redial <- cs:
		default:
		}
	}
}

// closeKind classifies the unexpected end of an open connection.
func closeKind(reason engine.CloseReason) ErrorKind {
	switch reason {
	case engine.ReasonPeerClosed, engine.ReasonPeerReset:
		return KindClosed
	case engine.ReasonReadTimeout, engine.ReasonWriteTimeout, engine.ReasonIdleTimeout:
		return KindTimeout
	case engine.ReasonProtocolError:
		return KindProtocol
	}
	return KindIO
}
