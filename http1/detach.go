package http1

import (
	"errors"
	"sync/atomic"

	"github.com/warrenhq/warren/internal/pool"
)

// ErrNotDetachable is Detach's answer for a request that cannot be
// answered later: its body is streamed (StreamBody), its response is
// already streaming (Flush, WriteRaw), it upgrades, or it is detached
// already.
var ErrNotDetachable = errors.New("http1: request cannot be detached")

// Detached is a request whose handler returned without answering it;
// Finish sends its response. See Ctx.Detach.
type Detached struct {
	c   *Ctx
	fin atomic.Bool // Finish was called
}

// Detach lets the handler return before the request is answered, so that
// neither a worker nor the event loop waits while the answer is made
// elsewhere — an acknowledgement from a device, a reply over a message
// bus, a timer. The handler (or anything it hands d to) writes the
// response on c later, from any goroutine, and calls d.Finish, which sends
// it; until then the request is in progress: the connection reads no
// further request, its idle and read timeouts do not run, and a drain
// waits for it up to the drain's deadline. Detach copies the request's
// head and body out of the event loop's buffers when they live there, so
// c's Request, Param, Query and Body stay valid until Finish.
//
// c's Context still ends when the client goes away or the engine starts
// shutting down, and when Finish sends the response; whatever waits on
// the handler's behalf should watch it and Finish promptly (a request
// detached and never finished holds its connection until it closes).
// After Finish, c and everything it returned must not be used. Detach
// fails with ErrNotDetachable for a streamed request body (StreamBody), a
// response already streaming (Flush, WriteRaw), an upgrade (UpgradeTo),
// or a second Detach. If the handler panics after Detach, the connection
// closes at once and the request is abandoned (a later Finish does
// nothing). UpgradeTo and WriteRaw do nothing on a detached request.
func (c *Ctx) Detach() (*Detached, error) {
	if c.pipe != nil || c.streaming || c.upgrade != nil || c.det.Load() != detNone {
		return nil, ErrNotDetachable
	}
	s := c.srv
	if c.head == nil {
		// Inline and not owned: the head and body are in the loop's
		// buffer, which the next read reuses.
		c.head = c.Request.CopyTo(c.Request, pool.Get(len(c.Request.Raw()))[:0])
		if len(c.body) > 0 && c.ownBody == nil {
			c.ownBody = append(pool.Get(len(c.body))[:0], c.body...)
			c.body = c.ownBody
		}
	}
	if c.hc == nil {
		// On the loop (inline): make the connection's HTTP state, so that
		// it is busy (the next request waits) and its close cancels c's
		// context.
		hc := s.ensureHC(c.conn)
		hc.busy.Store(true)
		c.hc = hc
		hc.curMu.Lock()
		hc.cur = c
		hc.curMu.Unlock()
	}
	c.inline = false // what is left runs off the loop
	c.rel = c.conn.Hold()
	c.det.Store(detRunning)
	s.stats.detached.Add(1)
	return &Detached{c: c}, nil
}

// Finish sends the response written on the detached request's Ctx and
// ends the request; the connection then serves its next request. It may
// be called from any goroutine, also before the handler has returned (the
// response is then sent as the handler returns). Calls after the first do
// nothing.
func (d *Detached) Finish() {
	if !d.fin.CompareAndSwap(false, true) {
		return
	}
	c := d.c
	if c.det.CompareAndSwap(detRunning, detFinished) {
		return // the handler is still running; its return sends it
	}
	if c.det.CompareAndSwap(detWaiting, detFinished) {
		c.srv.completeDetached(c)
	}
}

// Detach states (Ctx.det).
const (
	detNone      int32 = iota
	detRunning         // Detach called; the handler has not returned
	detWaiting         // the handler returned; Finish not yet called
	detFinished        // Finish called
	detAbandoned       // the handler panicked first: Finish does nothing
)

// detached is called when a handler returns: it reports whether the
// request was detached, in which case the response is not the return's to
// send — unless Finish was already called, when it is sent here.
func (s *Server) detached(ctx *Ctx) bool {
	if ctx.det.Load() == detNone {
		return false
	}
	if ctx.det.CompareAndSwap(detRunning, detWaiting) {
		return true
	}
	if ctx.det.Load() == detAbandoned {
		return true // the handler panicked: abandonDetached ended it
	}
	s.completeDetached(ctx) // Finish came first
	return true
}

// abandonDetached ends a detached request whose handler panicked before
// Finish: its connection is closing, so nothing is sent; the engine's hold
// and the gauge are released, and the Ctx is left to the garbage
// collector, not pooled, since the application may still call Finish on
// it (which then does nothing).
func (s *Server) abandonDetached(ctx *Ctx) {
	s.stats.detached.Add(-1)
	ctx.endContext()
	ctx.hc.busy.Store(false)
	ctx.rel()
}

// completeDetached sends a detached request's response and ends it, as
// a worker's dispatch does when its handler returns.
func (s *Server) completeDetached(ctx *Ctx) {
	hc, rel := ctx.hc, ctx.rel
	if ctx.upgrade != nil {
		// UpgradeTo after Detach: not supported; answer and close.
		ctx.upgrade = nil
		ctx.keepAlive = false
	}
	s.stats.detached.Add(-1)
	s.finish(ctx)
	hc.busy.Store(false)
	rel()
}
