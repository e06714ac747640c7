package engine

import (
	"net/netip"
	"slices"
	"sync"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/internal/timerwheel"
)

// Conn is one connection. It belongs to a single event loop (on the
// portable engine, to its own reader goroutine), where its callbacks run.
//
// These methods are safe for concurrent use, from any goroutine, and say
// so: Write, Writev, Close, CloseWithReason, CloseWithDetail, Abort,
// AbortWithDetail, Dispatch, Post, PauseRead, ResumeRead, SetIdleTimeout,
// SetReadTimeout, SetContext, AddServed, and the accessors ID, Loop,
// RemoteAddr, LocalAddr, Created, State, BytesIn, BytesOut, Served,
// QueuedBytes, Context and CloseDetail. The rest belong to c's loop: call
// SetHandler, Handler, Protocol and SetMessagePending only where c's
// callbacks run, that is from a callback or from a function given to
// Post (SetMessagePending only from OnData, see there).
//
// An idle Conn holds no goroutine, no read or write buffer and no timer
// object: only this struct and its slot in the loop's table.
type Conn struct {
	// mu guards the fields below up to rport, and keeps the descriptor
	// from being closed (and reused) under a writer: it is held across the
	// write system call. Nothing else is locked under it (LOCKS.md).
	mu        sync.Mutex
	out       *outQueue // queued output; nil when empty (idle connections)
	closeErr  *errBox   // the error and protocol detail behind the close, if any
	lastWrite stamp     // tick of the last write progress
	cs        uint8     // close-state bits (csClosed...) and the close reason (why)
	interest  uint8     // registered poll interest (ioRead|ioWrite); owned by the loop, not guarded
	rport     uint16    // the peer's port (raddr below); immutable, not guarded

	// Owned by the loop (or, in the portable engine, the reader goroutine);
	// fd, ln and host are immutable. The small fields fill whole words:
	// Conn is at the top of its malloc size class (conn_test.go).
	fd       int32
	flags    uint16 // loop-owned flag bits
	hcaps    uint8  // h's capabilities (handler.go)
	ln       uint8  // the listener that accepted c (index+1 in Engine.lns), 0 if dialled
	lastRead stamp  // tick of the last read (poll engine; the portable one keeps times in pconn)
	msgStart stamp  // tick the pending message started, 0 if none (poll engine)
	state    atomic.Uint32
	idleTO   atomic.Int32 // per-connection override in ms; 0 default, <0 off
	readTO   atomic.Int32
	inflight atomic.Int32     // Dispatch tasks queued or running
	host     connHost         // c's loop (*loop) or portable reader (*pconn): host.go
	in       *inBuf           // unconsumed input, nil if none (input, setInput)
	timer    timerwheel.Entry // in l.wheel while a timeout may apply; connOfTimer
	bytesIn  atomic.Uint64
	bytesOut atomic.Uint64
	served   atomic.Uint64
	ctx      atomic.Pointer[any]
	id       uint64
	created  int64 // unix nanoseconds

	// The peer's address, kept compact (a netip.AddrPort takes 32 bytes):
	// IPv4 in its IPv4-mapped form, which setRemote never stores for an
	// IPv6 peer (it unmaps first), so the form itself says the family.
	raddr [16]byte

	// h is c's handler, owned by its loop (SetHandler).
	h Handler
}

// Close-state bits (Conn.cs), guarded by Conn.mu. The high four bits of
// cs hold the close reason (why, setWhy).
const (
	csClosed     uint8 = 1 << iota // descriptor closed; writes fail
	csClosing                      // close requested; writes fail
	csAbort                        // close without flushing
	csArmPending                   // an opArmWrite is posted and not yet handled
)

// whyShift places the close reason in Conn.cs; every CloseReason fits the
// four bits above it (the array below fails to compile otherwise).
const whyShift = 4

var _ [1<<(8-whyShift) - int(numReasons)]struct{}

// why returns the reason c closes for, ReasonNone until one is set; c.mu
// must be held.
func (c *Conn) why() CloseReason { return CloseReason(c.cs >> whyShift) }

// setWhy records r as the reason c closes for; c.mu must be held.
func (c *Conn) setWhy(r CloseReason) {
	c.cs = c.cs&(1<<whyShift-1) | uint8(r)<<whyShift
}

// stamp is a tick kept in 32 bits: the poll engine's activity times
// (Conn.lastWrite, lastRead, msgStart), 12 bytes a connection less than
// three int64s. A stamp is read back against the loop's current tick (at),
// which is exact while the two lie within 2^31 ticks of each other: 6.8
// years at the default 100 ms tick, 24 days at a 1 ms tick. Timeouts are
// capped at maxTimeoutTicks, and each loop ages stamps older than every
// timeout (restamp, timeout_unix.go), so none drifts that far. The zero
// stamp means none.
type stamp uint32

// stampOf returns the stamp of tick t; never the zero stamp.
func stampOf(t int64) stamp {
	if s := stamp(t); s != 0 {
		return s
	}
	return 1
}

// at returns the tick s stands for, read against now, the current tick.
func (s stamp) at(now int64) int64 {
	return now - int64(int32(uint32(now)-uint32(s)))
}

// timerOffset is where Conn.timer sits in a Conn.
const timerOffset = unsafe.Offsetof(Conn{}.timer)

// connOfTimer returns the Conn whose timer field ent is. The wheel's
// entries hold no pointer back to their connection (8 bytes a connection):
// every entry in a loop's wheel is some Conn's timer field, so stepping back
// by the field's offset stays inside that Conn's allocation (the pointer
// arithmetic the unsafe package allows, and checkptr accepts under -race).
func connOfTimer(ent *timerwheel.Entry) *Conn {
	return (*Conn)(unsafe.Add(unsafe.Pointer(ent), -int(timerOffset)))
}

// errBox holds a close error and a protocol's close detail out of line:
// most connections never have either.
type errBox struct {
	err    error
	detail CloseDetail
	tx     Transform // SetTransform; set once, read under Conn.mu
	linger lingerBox // CloseLinger's progress (linger.go)
}

// inBuf holds a connection's unconsumed input out of line: the pooled
// buffer with the tail of a message that straddles reads. Most connections
// have none between reads (an idle one never does), so Conn keeps one
// pointer (8 bytes) where the slice took three words (24): the holder is
// taken from inBufPool only while input is pending, and nothing is done
// for it on a read that OnData consumes whole.
//
// A holder goes back to inBufPool with its buffer when that is small
// (inKeep), emptied, so the next straddling message takes both in one Get
// (newInput), and a message that straddles costs the pool round trip it
// cost when Conn held the slice.
type inBuf struct{ b []byte }

// inKeep is the largest buffer a holder keeps in inBufPool; larger ones go
// back to internal/pool, which sorts them by size.
const inKeep = 4 << 10

var inBufPool = sync.Pool{New: func() any { return new(inBuf) }}

// input returns c's unconsumed input, nil if none; never empty and
// non-nil. It belongs to whoever reads c (its loop, or the portable
// engine's reader goroutine).
func (c *Conn) input() []byte {
	if c.in == nil {
		return nil
	}
	return c.in.b
}

// newInput makes a copy of data, which is not empty and not c's input,
// c's unconsumed input, in a buffer of the holder's if it fits.
func (c *Conn) newInput(data []byte) {
	h := c.in
	if h == nil {
		h = inBufPool.Get().(*inBuf)
		c.in = h
	}
	b := h.b
	if cap(b) < len(data) {
		if b != nil {
			pool.Put(b)
		}
		b = pool.Get(len(data))
	}
	h.b = append(b[:0], data...)
}

// setInput makes b, a buffer from internal/pool, c's unconsumed input in
// place of the one input returned (which the caller has put back or
// reused: pool.Grow). An empty b goes back to the pool and leaves c with
// none.
func (c *Conn) setInput(b []byte) {
	if len(b) == 0 {
		if b != nil {
			pool.Put(b)
		}
		c.takeInput()
		return
	}
	if c.in == nil {
		h := inBufPool.Get().(*inBuf)
		if h.b != nil {
			pool.Put(h.b)
		}
		c.in = h
	}
	c.in.b = b
}

// takeInput returns c's unconsumed input and leaves c with none: the
// caller owns the buffer. It inlines to a nil check where c has none (a
// read that OnData consumed whole).
func (c *Conn) takeInput() []byte {
	if c.in == nil {
		return nil
	}
	h := c.in
	b := h.b
	h.b = nil
	c.in = nil
	inBufPool.Put(h)
	return b
}

// dropInput lets go of c's unconsumed input, if any; inlined like
// takeInput.
func (c *Conn) dropInput() {
	if c.in != nil {
		c.putInput()
	}
}

// putInput is dropInput's work where c has input: the holder goes back to
// inBufPool with its buffer emptied, or without it if it is larger than
// inKeep.
func (c *Conn) putInput() {
	h := c.in
	c.in = nil
	if cap(h.b) > inKeep {
		pool.Put(h.b)
		h.b = nil
	} else {
		h.b = h.b[:0]
	}
	inBufPool.Put(h)
}

func (c *Conn) setRemote(ap netip.AddrPort) {
	c.raddr, c.rport = ap.Addr().Unmap().As16(), ap.Port()
}

// closeError returns the error behind the close; c.mu must be held.
func (c *Conn) closeError() error {
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr.err
}

// setCloseError records err (if any) as the reason's cause; c.mu must be
// held.
func (c *Conn) setCloseError(err error) {
	if err == nil {
		return
	}
	if c.closeErr == nil {
		c.closeErr = &errBox{}
	}
	c.closeErr.err = err
}

// closeDetail returns the protocol's close detail; c.mu must be held.
func (c *Conn) closeDetail() CloseDetail {
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr.detail
}

// Loop-owned flag bits.
const (
	fRegistered uint16 = 1 << iota
	fUserPaused        // PauseRead
	fSlowPaused        // SlowPause policy
	fWorkerBusy        // OnData running on the worker pool
	fReadEOF           // peer sent FIN
	fFlushClose        // closing once output is flushed
	fDrainQuiet        // shutdown: close as soon as quiet
	fMessage           // SetMessagePending: a message is in progress
	fDialing           // outbound connect in progress
	fOutbound          // made by Dial
	fNewHandler        // SetHandler ran during the current OnData
	fTransform         // SetTransform: input goes through a Transform
	fLinger            // CloseLinger: flushing, then discarding input (linger.go)
	fInOnData          // OnData runs inline on the loop (InjectInput waits: inject)
	fInjected          // InjectInput ran during it: the loop holds the bytes
)

const (
	ioRead  uint8 = 1
	ioWrite uint8 = 2
)

// ID returns the connection's identifier, unique within the process. It is
// safe for concurrent use.
func (c *Conn) ID() uint64 { return c.id }

// Loop returns the index of the loop that owns c (0 on the portable
// engine). It is safe for concurrent use.
func (c *Conn) Loop() int {
	if l, ok := c.host.(*loop); ok {
		return l.idx
	}
	return 0
}

// Now returns the engine's time for a callback of c's handler. On an event
// loop with the system clock (Config.Clock nil) it is the time the loop
// read once, right after its poll, for the round of events, mailbox and
// timers that runs the callback (nginx caches its time the same way), so a
// handler that timestamps every request pays no clock read: it is earlier
// than time.Now by as long as the round has run so far, well under a
// millisecond under load, and never older than the loop's last wake-up
// (a folded loop reads its own time when it has events: see Config's
// folding).
// Otherwise (an injected clock, the portable engine, or outside a round) it
// is Engine.Now.
//
// Call it only on c's loop goroutine: from the callbacks of an inline
// handler (InlineHandler) or a function given to Post. On any other
// goroutine (a worker pool's handler, a timer) use Engine.Now: a call
// there races with the loop.
func (c *Conn) Now() time.Time {
	if l, ok := c.host.(*loop); ok && !l.now.IsZero() {
		return l.now
	}
	return c.host.engine().Now()
}

// RemoteAddr returns the peer's address. It is safe for concurrent use.
func (c *Conn) RemoteAddr() netip.AddrPort {
	return netip.AddrPortFrom(netip.AddrFrom16(c.raddr).Unmap(), c.rport)
}

// LocalAddr returns the local address: the listener's when it is bound to
// one IP, otherwise looked up on demand. It is safe for concurrent use;
// once c has closed, a lookup may find nothing.
func (c *Conn) LocalAddr() netip.AddrPort { return c.host.localAddr(c) }

// State returns c's current state. It is safe for concurrent use.
func (c *Conn) State() State { return State(c.state.Load()) }

// Created returns when c was accepted (or dialled). It is safe for
// concurrent use.
func (c *Conn) Created() time.Time { return time.Unix(0, c.created) }

// BytesIn returns the bytes read from c. It is safe for concurrent use.
func (c *Conn) BytesIn() uint64 { return c.bytesIn.Load() }

// BytesOut returns the bytes written to c. It is safe for concurrent use.
func (c *Conn) BytesOut() uint64 { return c.bytesOut.Load() }

// Served returns the count a protocol keeps with AddServed: requests or
// messages handled. It is safe for concurrent use.
func (c *Conn) Served() uint64 { return c.served.Load() }

// AddServed adds n to the requests or messages served on c. It is safe for
// concurrent use.
func (c *Conn) AddServed(n uint64) { c.served.Add(n) }

// Context returns the value stored by SetContext, or nil. It is safe for
// concurrent use.
func (c *Conn) Context() any {
	if p := c.ctx.Load(); p != nil {
		return *p
	}
	return nil
}

// SetContext stores a value for the application's use (a session, a
// device); values of any types may replace each other. The engine and
// warren's protocols never touch it: protocol state lives in the handler
// (SetHandler). It is safe for concurrent use. Storing a non-nil
// value allocates a 16-byte cell, so set it when the value changes, not
// per message; storing nil does not allocate.
func (c *Conn) SetContext(v any) {
	if v == nil {
		c.ctx.Store(nil)
		return
	}
	c.ctx.Store(&v)
}

// QueuedBytes returns the bytes waiting in c's output queue. It is safe for
// concurrent use.
func (c *Conn) QueuedBytes() int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.out.len()
}

func durationMS(d time.Duration) int32 {
	switch {
	case d < 0:
		return -1
	case d == 0:
		return 0
	case d < time.Millisecond:
		return 1
	case d > 1<<31*time.Millisecond:
		return 1<<31 - 1
	}
	return int32(d / time.Millisecond)
}

// SetIdleTimeout overrides Config.IdleTimeout for c: zero restores the
// engine's value, negative disables it. It is safe for concurrent use and
// takes effect at once.
func (c *Conn) SetIdleTimeout(d time.Duration) {
	c.idleTO.Store(durationMS(d))
	c.post(opRetime)
}

// SetInputIdleTimeout is SetIdleTimeout for a protocol whose peer must
// send within d whatever it is sent, as MQTT's keep-alive asks of a
// client: only input restarts the timer, so output to a peer that has
// gone silent does not keep it open. d must be positive (at most about
// 12 days); zero or negative acts as SetIdleTimeout(d). The timeout
// closes with ReasonIdleTimeout, as the idle timeout does. It is safe for
// concurrent use and takes effect at once.
func (c *Conn) SetInputIdleTimeout(d time.Duration) {
	if d <= 0 {
		c.SetIdleTimeout(d)
		return
	}
	c.idleTO.Store(min(durationMS(d), idleInputOnly-1) | idleInputOnly)
	c.post(opRetime)
}

// idleInputOnly marks a per-connection idle timeout (Conn.idleTO) that
// only input restarts (SetInputIdleTimeout); the bits below it are the
// timeout in ms.
const idleInputOnly int32 = 1 << 30

// idleTimeout returns c's idle timeout override in ms (0: the engine's,
// negative: off) and whether only input restarts it.
func (c *Conn) idleTimeout() (ms int32, inputOnly bool) {
	ms = c.idleTO.Load()
	if ms > 0 && ms&idleInputOnly != 0 {
		return ms &^ idleInputOnly, true
	}
	return ms, false
}

// SetReadTimeout overrides Config.ReadTimeout for c: zero restores the
// engine's value, negative disables it. It is safe for concurrent use and
// takes effect at once.
func (c *Conn) SetReadTimeout(d time.Duration) {
	c.readTO.Store(durationMS(d))
	c.post(opRetime)
}

// pending reports whether a message is in progress: unconsumed input, or
// a protocol that said so with SetMessagePending.
func (c *Conn) pending() bool { return c.in != nil || c.flags&fMessage != 0 }

// SetMessagePending tells the engine that a message is in progress although
// OnData consumed its bytes so far (a protocol copying a request body into
// its own buffer), so the read timeout, not the idle timeout, applies, and
// the connection counts as Active. Setting it restarts the read timeout.
// Call it only from OnData running on the event loop (an inline handler)
// or on the portable engine; elsewhere it is ignored.
func (c *Conn) SetMessagePending(pending bool) { c.host.setMessagePending(c, pending) }

// markMessage sets or clears fMessage and reports whether a message starts.
func (c *Conn) markMessage(pending bool) bool {
	if !pending {
		c.flags &^= fMessage
		return false
	}
	c.flags |= fMessage
	return true
}

// Post runs fn where c's callbacks run — on its event loop, or on the
// portable engine its reader goroutine — after the events already queued
// for c, so code on another goroutine (a handler on the worker pool, a
// message bus callback) can reach loop-owned state such as SetHandler. fn
// must not block. Post reports false when c is already closed; fn does not
// run then, nor if c closes before its turn. It is safe for concurrent use.
func (c *Conn) Post(fn func()) bool {
	c.mu.Lock()
	closed := c.cs&csClosed != 0
	c.mu.Unlock()
	if closed {
		return false
	}
	return c.host.postFn(c, fn)
}

// PauseRead stops reading from c until ResumeRead. It is safe for concurrent
// use.
func (c *Conn) PauseRead() { c.post(opPause) }

// ResumeRead undoes PauseRead. It is safe for concurrent use.
func (c *Conn) ResumeRead() { c.post(opResume) }

// Close closes c once its queued output has been flushed (bounded by the
// write timeout), with ReasonLocal. It is safe for concurrent use and
// idempotent.
func (c *Conn) Close() error {
	c.CloseWithReason(ReasonLocal)
	return nil
}

// CloseWithReason is Close with the reason recorded for hooks and metrics.
// The first reason given wins. It is safe for concurrent use.
func (c *Conn) CloseWithReason(r CloseReason) { c.requestClose(r, nil, false) }

// CloseWithDetail is CloseWithReason with the protocol's own account of the
// close (a WebSocket close code, an MQTT reason code, a gateway reason),
// which hooks read with CloseDetail and which labels the engine's detail
// counters, /debug/conns and logs. The first reason given wins, and its
// detail with it. It is safe for concurrent use.
func (c *Conn) CloseWithDetail(r CloseReason, d CloseDetail) { c.requestClose2(r, nil, d, false) }

// Abort closes c at once, discarding queued output, with reason r. It is
// safe for concurrent use.
func (c *Conn) Abort(r CloseReason) { c.requestClose(r, nil, true) }

// AbortWithDetail is Abort with a protocol close detail (see
// CloseWithDetail). It is safe for concurrent use.
func (c *Conn) AbortWithDetail(r CloseReason, d CloseDetail) { c.requestClose2(r, nil, d, true) }

// CloseDetail returns the detail given with the close, or nil. It is safe
// for concurrent use; OnClose sees it.
func (c *Conn) CloseDetail() CloseDetail {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.closeDetail()
}

func (c *Conn) requestClose(r CloseReason, err error, abort bool) {
	c.requestClose2(r, err, nil, abort)
}

func (c *Conn) requestClose2(r CloseReason, err error, d CloseDetail, abort bool) {
	c.requestCloseOp(r, err, d, abort, opClose)
}

// requestCloseOp records the close and posts kind (opClose, or opLinger
// for CloseLinger) to c's host.
func (c *Conn) requestCloseOp(r CloseReason, err error, d CloseDetail, abort bool, kind opKind) {
	c.mu.Lock()
	if c.cs&csClosed != 0 || (c.cs&csClosing != 0 && !(abort && c.cs&csAbort == 0)) {
		c.mu.Unlock()
		return
	}
	if c.cs&csClosing == 0 {
		c.setWhy(r)
		c.setCloseError(err)
		if d != nil {
			if c.closeErr == nil {
				c.closeErr = &errBox{}
			}
			c.closeErr.detail = d
		}
	}
	if c.cs&csClosing == 0 && !abort {
		if t := c.transformLocked(); t != nil {
			if b := t.Final(); b != nil {
				c.host.finalLocked(c, b)
				t.Release(b)
			}
		}
	}
	c.cs |= csClosing
	if abort {
		c.cs |= csAbort
		kind = opClose
	}
	c.mu.Unlock()
	c.post(kind)
}

// Dispatch runs fn on the worker pool after every task dispatched earlier
// for c, so a protocol can hand blocking work off its event loop and keep
// per-connection order. It fails with ErrWorkerQueueFull when the pool's
// queue is full. It is safe for concurrent use.
func (c *Conn) Dispatch(fn func()) error {
	e := c.engine()
	c.inflight.Add(1)
	err := e.workers.submit(c, func() {
		defer c.taskDone()
		defer e.recoverPanic(c)
		fn()
	}, false)
	if err != nil {
		c.inflight.Add(-1)
	}
	return err
}

func (c *Conn) taskDone() {
	if c.inflight.Add(-1) == 0 {
		c.post(opQuiet)
	}
}

// post hands an op for c to its host.
func (c *Conn) post(kind opKind) { c.host.postOp(c, kind) }

func (c *Conn) engine() *Engine { return c.host.engine() }

// Write queues b for c, writing what it can at once; it never blocks on the
// peer. It returns len(b) when everything was written or queued. Past the
// high watermark the slow-consumer policy applies (ErrSlowConsumer under
// SlowClose). b may be reused when Write returns. It is safe for concurrent
// use; concurrent writes are not interleaved.
func (c *Conn) Write(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	if l, ok := c.host.(*loop); ok { // the hot path, devirtualised: host.go
		bufs := [1][]byte{b}
		return c.writev(l, bufs[:], len(b))
	}
	return c.host.writev(c, [][]byte{b}, len(b))
}

// Writev is Write for several buffers, sent with one writev where possible.
// It is safe for concurrent use; concurrent writes are not interleaved.
func (c *Conn) Writev(bufs [][]byte) (int, error) {
	total := 0
	for _, b := range bufs {
		total += len(b)
	}
	if total == 0 {
		return 0, nil
	}
	if l, ok := c.host.(*loop); ok {
		return c.writev(l, bufs, total)
	}
	return c.host.writev(c, bufs, total)
}

// writev is the poll engine's write path. It holds c.mu across the direct
// write so the descriptor cannot be closed and reused under it.
func (c *Conn) writev(l *loop, bufs [][]byte, total int) (int, error) {
	c.mu.Lock()
	if c.cs&(csClosed|csClosing) != 0 {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if c.closeErr != nil && c.closeErr.tx != nil {
		// Seal is an interface call, through which bufs would escape and
		// with it every caller's buffer array, plain writes' too (a heap
		// allocation per Write): the sealed path copies it instead.
		return c.writeSealedLocked(l, c.closeErr.tx, slices.Clone(bufs), total)
	}
	return c.writeLocked(l, bufs, total)
}

// writeLocked writes bufs, or queues what the socket does not take. c.mu
// is held on entry and released on return.
func (c *Conn) writeLocked(l *loop, bufs [][]byte, total int) (int, error) {
	if l.uring {
		if n, err, ok := c.ringWriteLocked(l, bufs, total); ok { // uring_linux.go
			return n, err
		}
	}
	n := 0
	if c.out == nil {
		var err error
		n, err = writeFD(int(c.fd), bufs)
		if n > 0 {
			c.bytesOut.Add(uint64(n))
			l.stats.bytesOut.Add(uint64(n))
			c.lastWrite = stampOf(l.tick.Load())
		}
		if err != nil {
			c.mu.Unlock()
			c.requestClose(reasonFor(err), err, true)
			return n, err
		}
		if n == total {
			c.mu.Unlock()
			return n, nil
		}
	}
	err := c.enqueueLocked(l, bufs, n, total-n)
	arm := err == nil && c.cs&csArmPending == 0
	if arm {
		c.cs |= csArmPending
	}
	c.mu.Unlock()
	if err != nil {
		var d CloseDetail
		if err == ErrQueueLimit {
			d = DetailTotalQueueFull // the engine's bound, not this peer's
		}
		c.requestClose2(ReasonSlowConsumer, err, d, true)
		return n, err
	}
	if arm {
		l.post(op{kind: opArmWrite, c: c})
	}
	return total, nil
}

// enqueueLocked copies the unwritten rest of bufs (skip bytes already
// written, rest bytes left) into c's queue.
func (c *Conn) enqueueLocked(l *loop, bufs [][]byte, skip, rest int) error {
	e := l.e
	cfg := &e.cfg
	limit := cfg.WriteHighWater
	if cfg.SlowPolicy == SlowPause {
		limit *= 4
	}
	queued := c.out.len()
	if queued+rest > cfg.WriteHighWater {
		l.stats.watermarkHits.Add(1)
		if queued+rest > limit {
			return ErrSlowConsumer
		}
	}
	if cfg.MaxQueuedBytes > 0 && e.queued.Add(int64(rest)) > cfg.MaxQueuedBytes {
		e.queued.Add(-int64(rest))
		return ErrQueueLimit
	} else if cfg.MaxQueuedBytes <= 0 {
		e.queued.Add(int64(rest))
	}
	if c.out == nil {
		c.lastWrite = stampOf(l.tick.Load())
		c.out = outQueuePool.Get().(*outQueue)
	}
	c.appendOutLocked(bufs, skip)
	c.out.bytes += rest
	return nil
}

// appendOutLocked copies bufs, but for their first skip bytes, to the end
// of c's queue (not nil), in pooled buffers; the caller counts the bytes.
func (c *Conn) appendOutLocked(bufs [][]byte, skip int) {
	q := c.out
	for _, b := range bufs {
		if skip >= len(b) {
			skip -= len(b)
			continue
		}
		b = b[skip:]
		skip = 0
		for len(b) > 0 {
			var last []byte
			if k := len(q.bufs); k > 0 {
				last = q.bufs[k-1]
			}
			if last == nil || len(last) == cap(last) {
				size := len(b)
				if size < outKeepSize {
					size = outKeepSize
				}
				if size > 256<<10 {
					size = 256 << 10
				}
				if size == outKeepSize && q.keep != nil {
					last, q.keep = q.keep, nil
				} else {
					if q.keep != nil { // not held while output waits
						pool.Put(q.keep)
						q.keep = nil
					}
					last = pool.Get(size)[:0]
				}
				q.bufs = append(q.bufs, last)
			}
			m := copy(last[len(last):cap(last)], b)
			q.bufs[len(q.bufs)-1] = last[:len(last)+m]
			b = b[m:]
		}
	}
}

// flushLocked writes queued output; it reports whether the queue is empty.
func (c *Conn) flushLocked(l *loop) (bool, error) {
	for c.out != nil && len(c.out.bufs) > 0 {
		batch := c.out.bufs
		if len(batch) > 64 {
			batch = batch[:64]
		}
		want := 0
		for _, b := range batch {
			want += len(b)
		}
		n, err := writeFD(int(c.fd), batch)
		if n > 0 {
			c.bytesOut.Add(uint64(n))
			l.stats.bytesOut.Add(uint64(n))
			c.lastWrite = stampOf(l.tick.Load())
			c.out.bytes -= n
			l.e.queued.Add(-int64(n))
			c.consumeOutLocked(n)
		}
		if err != nil {
			return false, err
		}
		if n < want {
			return false, nil // the socket buffer is full
		}
	}
	c.freeOutLocked()
	return true, nil
}

// consumeOutLocked drops n written bytes from the head of the queue. A
// partly written buffer is shifted down so it still starts where the pool
// handed it out.
func (c *Conn) consumeOutLocked(n int) {
	q := c.out
	k := 0 // whole buffers written
	for n > 0 {
		b := q.bufs[k]
		if n < len(b) {
			m := copy(b, b[n:])
			q.bufs[k] = b[:m]
			break
		}
		n -= len(b)
		if k == len(q.bufs)-1 && q.keep == nil && cap(b) == outKeepSize {
			q.keep = b[:0] // the queue is empty: its next small write needs no pool.Get
		} else {
			pool.Put(b)
		}
		k++
	}
	if k == 0 {
		return
	}
	if rest := len(q.bufs) - k; rest <= outShiftMax {
		// Few buffers left (none, most often): shift them down rather
		// than reslice the front, so the slice keeps its capacity and a
		// queue that ran empty takes its next buffer without growing it
		// (otherwise an allocation per write in the io_uring mode,
		// which queues every write it defers: docs/benchmarks.md §94).
		copy(q.bufs, q.bufs[k:])
		clear(q.bufs[rest:])
		q.bufs = q.bufs[:rest]
		return
	}
	// A long queue drained in steps: shifting its tail at every step
	// would cost O(n²); reslice instead.
	clear(q.bufs[:k])
	q.bufs = q.bufs[k:]
}

// outShiftMax is how many unwritten buffers consumeOutLocked shifts down
// at most; past it, it reslices. outBufsKeepMax is the largest buffer
// slice a queue takes back to outQueuePool.
const (
	outShiftMax    = 64
	outBufsKeepMax = 64
)

// releaseOutLocked drops queued output of a closed connection.
func (c *Conn) releaseOutLocked(e *Engine) {
	if c.out == nil {
		return
	}
	for _, b := range c.out.bufs {
		pool.Put(b)
	}
	if n := c.out.bytes - c.out.deferred; n > 0 {
		e.queued.Add(-int64(n))
	}
	c.out.bytes = 0
	c.freeOutLocked() // drops the deferred count
}

// outQueue is a connection's queued output: pooled buffers in order. A
// connection holds one only while output is waiting.
type outQueue struct {
	bufs  [][]byte
	bytes int
	// The io_uring mode's state (uring_linux.go): ring says the loop's
	// ring sends this queue (epoll's EPOLLOUT is not armed for it),
	// sending that a send of its head is in flight, in send slot slot.
	ring    bool
	sending bool
	slot    uint32
	// keep is the last written-out buffer, of outKeepSize, of a queue
	// that ran empty, held for the queue's next small write across its
	// trip through outQueuePool: a deferred write and its send's
	// completion (the io_uring mode's every write) then take no buffer
	// from internal/pool and return none. A queue holding output holds
	// no keep (a first write that does not fit it gives it back), and an
	// idle connection has no queue.
	keep []byte
	// deferred is how many of bytes, at the queue's head, were deferred
	// to the round's end rather than written, until the queue's first
	// send completes or epoll takes the queue over. They are counted in
	// their loop's loopStats.deferred, not in Engine.queued: a deferred
	// write touches no engine-wide counter (docs/benchmarks.md §94).
	deferred int
}

// undefer turns q's deferred bytes into queued ones, as epoll's write
// would have left them: counted in Engine.queued from now on, against
// MaxQueuedBytes. l is q's loop; q may be nil.
func (l *loop) undefer(q *outQueue) {
	if q != nil && q.deferred != 0 {
		l.e.queued.Add(int64(q.deferred))
		l.stats.deferred.Add(-int64(q.deferred))
		q.deferred = 0
	}
}

var outQueuePool = sync.Pool{New: func() any { return new(outQueue) }}

// outKeepSize is the size of the smallest buffer a queue takes from
// internal/pool, the one it keeps (outQueue.keep).
const outKeepSize = 4096

// len returns the queued bytes; q may be nil.
func (q *outQueue) len() int {
	if q == nil {
		return 0
	}
	return q.bytes
}

// reset empties q's buffer slice, or drops it past outBufsKeepMax (a
// fan-out storm's long queue must not stay in outQueuePool), for its
// return to the pool.
func (q *outQueue) reset() {
	if cap(q.bufs) > outBufsKeepMax {
		q.bufs = nil
	} else {
		clear(q.bufs)
		q.bufs = q.bufs[:0]
	}
	q.bytes = 0
	q.ring = false
}

// freeOutLocked returns an emptied queue to its pool.
func (c *Conn) freeOutLocked() {
	if q := c.out; q != nil {
		q.reset()
		if q.deferred != 0 { // releaseOutLocked's: the deferred bytes are dropped
			if l, ok := c.host.(*loop); ok {
				l.stats.deferred.Add(-int64(q.deferred))
			}
			q.deferred = 0
		}
		c.out = nil
		outQueuePool.Put(q)
	}
}
