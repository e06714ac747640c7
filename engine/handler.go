package engine

import (
	"context"
	"fmt"
	"log/slog"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"unsafe"
)

// Handler capabilities, resolved once per handler type and kept in
// Conn.hcaps, so an event costs a bit test instead of a type assertion
// that fails.
const (
	capOpen uint8 = 1 << iota
	capClose
	capState
	capDrain
	capTimeout
	capEOF
	capInline    // the handler says it runs on the loop
	capInlineSet // the handler answered InlineHandler at all
)

// capsCache maps a handler's dynamic type (its typeWord) to its
// capabilities. It is read without a lock and written once per new type.
// capsFast, a direct-mapped cache of its entries, spares the map look-up on
// nearly every SetHandler (a reverse proxy hands each client connection
// over twice a request).
var (
	capsMu    sync.Mutex
	capsCache atomic.Pointer[map[unsafe.Pointer]*capsEntry]
	capsFast  [capsFastSlots]atomic.Pointer[capsEntry]
)

// capsFastSlots is capsFast's size, a power of two.
const capsFastSlots = 32

// capsEntry is one handler type's capabilities; typ is its type word.
type capsEntry struct {
	typ  unsafe.Pointer
	caps uint8
}

// typeWord returns the address of h's dynamic type descriptor: the first
// word of an empty interface holding h. Type descriptors never move.
func typeWord(h Handler) unsafe.Pointer {
	e := any(h)
	return (*[2]unsafe.Pointer)(unsafe.Pointer(&e))[0]
}

// capsOf returns h's capabilities.
func capsOf(h Handler) uint8 {
	tw := typeWord(h)
	slot := &capsFast[uint64(uintptr(tw))*0x9E3779B97F4A7C15>>(64-5)]
	if e := slot.Load(); e != nil && e.typ == tw {
		return e.caps
	}
	e := capsEntryOf(h, tw)
	slot.Store(e) // an entry made once per type: a collision costs a map lookup, never an allocation
	return e.caps
}

// capsEntryOf returns h's entry from capsCache, making it on h's type's
// first SetHandler.
func capsEntryOf(h Handler, tw unsafe.Pointer) *capsEntry {
	if m := capsCache.Load(); m != nil {
		if e, ok := (*m)[tw]; ok {
			return e
		}
	}
	var c uint8
	if _, ok := h.(OpenHandler); ok {
		c |= capOpen
	}
	if _, ok := h.(CloseHandler); ok {
		c |= capClose
	}
	if _, ok := h.(StateHandler); ok {
		c |= capState
	}
	if _, ok := h.(DrainHandler); ok {
		c |= capDrain
	}
	if _, ok := h.(TimeoutHandler); ok {
		c |= capTimeout
	}
	if _, ok := h.(EOFHandler); ok {
		c |= capEOF
	}
	if ih, ok := h.(InlineHandler); ok {
		c |= capInlineSet
		if ih.Inline() {
			c |= capInline
		}
	}
	capsMu.Lock()
	defer capsMu.Unlock()
	old := capsCache.Load()
	if old != nil {
		if e, ok := (*old)[tw]; ok {
			return e // made by another goroutine meanwhile
		}
	}
	next := make(map[unsafe.Pointer]*capsEntry, 8)
	if old != nil {
		for k, v := range *old {
			next[k] = v
		}
	}
	e := &capsEntry{typ: tw, caps: c}
	next[tw] = e
	capsCache.Store(&next)
	return e
}

// protocolOf names the protocol h speaks.
func protocolOf(h Handler) string {
	if n, ok := h.(ProtocolNamer); ok {
		return n.Protocol()
	}
	return ProtoTCP
}

// setHandler installs h on c; c must not be visible to other goroutines
// yet, or the caller runs where c's callbacks run.
func (c *Conn) setHandler(h Handler, inlineDefault bool) {
	caps := capsOf(h)
	if caps&capInlineSet == 0 && inlineDefault {
		caps |= capInline
	}
	c.h, c.hcaps = h, caps
	c.flags |= fNewHandler
	if c.host != nil { // nil while newConn makes c
		c.host.handlerChanged(c)
	}
}

// Handler returns c's current handler. Read it where c's callbacks run.
func (c *Conn) Handler() Handler { return c.h }

// SetHandler makes h c's handler from the next event on: a protocol hands
// the connection to another (HTTP upgrading to WebSocket) or wraps it (a
// TLS layer). Input that the old handler did not consume when it returned
// from OnData is presented to h at once, so a protocol switch needs no
// forwarding code. Hooks follow the handler: OnStateChange, OnDrain,
// OnTimeout, OnEOF and OnClose reach whichever handler is current, and a
// handler that takes over an open connection gets its OnOpen when it
// implements OpenHandler (on the loop if it is inline, else on the worker
// pool, ordered before its first OnData).
//
// SetHandler belongs to c's loop: call it from a callback that runs there
// (OnOpen or OnData of an inline handler; OnStateChange, OnDrain, OnTimeout
// or OnEOF of any handler) or from a function given to Post, which is how
// a handler on the worker pool reaches it. On the portable engine every
// callback runs where SetHandler may be called. A nil h is ignored.
func (c *Conn) SetHandler(h Handler) {
	if h == nil {
		return
	}
	e := c.engine()
	c.setHandler(h, e.cfg.Inline)
	if c.hcaps&capOpen == 0 || c.State() == StateNew {
		return // OnOpen runs when c opens
	}
	if c.inline() || c.host.oneGoroutine() {
		e.callOnOpen(c)
		return
	}
	// Queued even when the pool's queue is full, as a new connection's
	// OnOpen is: the handler must see its connection open (MaxConns
	// bounds these tasks).
	c.inflight.Add(1)
	e.workers.submit(c, func() {
		defer c.taskDone()
		e.callOnOpen(c)
	}, true)
}

// Protocol returns the name of the protocol c speaks: its handler's
// ProtocolNamer, or "tcp". Read it where c's callbacks run; ConnInfo
// carries it for everyone else.
func (c *Conn) Protocol() string { return protocolOf(c.h) }

// inline reports whether c's handler runs on the loop.
func (c *Conn) inline() bool { return c.hcaps&capInline != 0 }

// protoBox carries a protocol name through an atomic pointer.
type protoBox struct{ name string }

// recoverPanic, deferred around handler calls, logs a panic with its stack
// and aborts only the connection concerned.
func (e *Engine) recoverPanic(c *Conn) {
	if v := recover(); v != nil {
		e.log.LogAttrs(context.Background(), slog.LevelError, "engine: handler panic",
			slog.Uint64("conn", c.id), slog.String("remote", c.RemoteAddr().String()),
			slog.String("proto", protocolOf(c.h)),
			slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		c.requestClose(ReasonPanic, fmt.Errorf("engine: handler panic: %v", v), true)
	}
}

func (e *Engine) callOnData(c *Conn, in []byte) (n int) {
	defer e.recoverPanic(c)
	n = c.h.OnData(c, in)
	if n < 0 {
		n = 0
	} else if n > len(in) {
		n = len(in)
	}
	return n
}

func (e *Engine) callOnOpen(c *Conn) {
	if c.hcaps&capOpen == 0 {
		return
	}
	defer e.recoverPanic(c)
	c.h.(OpenHandler).OnOpen(c)
}

// callOnClose runs OnClose with h, the handler current when c closed.
func (e *Engine) callOnClose(c *Conn, h Handler, r CloseReason, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("engine: OnClose panic", "conn", c.id, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	h.(CloseHandler).OnClose(c, r, err)
}

func (e *Engine) callOnTimeout(c *Conn, r CloseReason) (keep bool) {
	if c.hcaps&capTimeout == 0 {
		return false
	}
	defer e.recoverPanic(c)
	return c.h.(TimeoutHandler).OnTimeout(c, r)
}

func (e *Engine) callOnEOF(c *Conn) {
	if c.hcaps&capEOF == 0 {
		return
	}
	defer e.recoverPanic(c)
	c.h.(EOFHandler).OnEOF(c)
}

// callOnDrain runs OnDrain and reports whether the protocol closes c
// itself; without a DrainHandler the engine does.
func (e *Engine) callOnDrain(c *Conn) (closesItself bool) {
	if c.hcaps&capDrain == 0 {
		return false
	}
	defer e.recoverPanic(c)
	return c.h.(DrainHandler).OnDrain(c)
}

func (e *Engine) callOnStateChange(c *Conn, from, to State) {
	if c.hcaps&capState == 0 {
		return
	}
	c.h.(StateHandler).OnStateChange(c, from, to)
}
