package websocket

import (
	"errors"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"unsafe"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

// Conn is one WebSocket connection: upgraded by a Server, or dialled by a
// Client (Dial), which masks the frames it sends as RFC 6455 requires of
// clients. It stays on the event loop of its engine.Conn; an idle Conn
// holds only this struct, on either side: no goroutine,
// no read or write buffer, no Reader and no timer object (liveness pings
// use the engine's per-loop timing wheel). Reader state is borrowed from a
// pool while a message is being received, and compression state exists
// only on connections that negotiated permessage-deflate.
//
// WriteMessage, WriteText, Close, Context, SetContext and the accessors are
// safe for concurrent use from any goroutine. Writes are never interleaved
// and never block on the peer: the engine queues what the socket does not
// take, and its slow-consumer policy applies per connection.
type Conn struct {
	ec  *engine.Conn
	srv *Server
	rd  *Reader      // owned by the loop; nil between messages
	cmp *compression // nil unless permessage-deflate was negotiated

	// mu guards the fields below and cmp's Deflater, and orders frame
	// writes so that nothing follows a Close frame. Lock order: Conn.mu
	// before Group.mu (see LOCKS in group.go).
	mu        sync.Mutex
	ctx       any
	groups    *[]*Group          // groups joined; nil until the first
	code      uint16             // close status sent or received first
	why       engine.CloseReason // why the server closes once the handshake ends
	closeSent bool               // a Close frame was sent: no more frames
	closeRecv bool               // the peer's Close frame arrived
	closed    bool               // the engine connection has closed, or lingers and the handler had OnClose
	corked    bool               // the loop is handling input: gather small frames
	paused    bool               // reading paused: too much waits for the handler
	batch     *batchBuf          // frames gathered while corked; nil otherwise

	queued atomic.Int64 // cost of messages waiting for or in the handler

	pingSent atomic.Bool // a liveness ping is unanswered
	done     bool        // owned by the loop: input is discarded from now on
	sub      uint8       // 1 + index into Config.Subprotocols; 0 for none
	dialing  bool        // guarded by mu: a dialled connection awaits its 101
	peerCode bool        // guarded by mu: code is the peer's, from its Close
}

// compression is the permessage-deflate state of one connection.
type compression struct {
	params DeflateParams
	d      Deflater // guarded by Conn.mu
	i      Inflater // owned by the loop
}

// newCompression returns the compression state of one side of a
// connection: a server compresses with the server's parameters and
// decompresses with the client's, a client the other way round.
func newCompression(p DeflateParams, level int, role Role) *compression {
	cm := &compression{params: p}
	cm.d = Deflater{level: level, bits: p.ServerMaxWindowBits, noContext: p.ServerNoContextTakeover}
	cm.i = Inflater{noContext: p.ClientNoContextTakeover}
	if role == RoleClient {
		cm.d.bits, cm.d.noContext = p.ClientMaxWindowBits, p.ClientNoContextTakeover
		cm.i.noContext = p.ServerNoContextTakeover
	}
	cm.d.norm()
	return cm
}

// Engine returns the engine connection underneath, for its address,
// counters and identity. Do not write to it directly: frames must go
// through Conn. Its Context belongs to the HTTP server on a server
// connection; use Conn.SetContext instead.
func (c *Conn) Engine() *engine.Conn { return c.ec }

// ID returns the engine connection's identifier, unique within the
// process.
func (c *Conn) ID() uint64 { return c.ec.ID() }

// RemoteAddr returns the peer's address.
func (c *Conn) RemoteAddr() netip.AddrPort { return c.ec.RemoteAddr() }

// Subprotocol returns the subprotocol chosen in the handshake, or "". On
// a dialled connection it is set once the handshake is done (in OnOpen
// and later).
func (c *Conn) Subprotocol() string {
	if c.sub == 0 {
		return ""
	}
	return c.srv.cfg.Subprotocols[c.sub-1]
}

// Deflate reports the permessage-deflate parameters the handshake agreed
// on, and whether it agreed on any. On a dialled connection it is set
// once the handshake is done (in OnOpen and later).
func (c *Conn) Deflate() (DeflateParams, bool) {
	if c.cmp == nil {
		return DeflateParams{}, false
	}
	return c.cmp.params, true
}

// Context returns the value stored by SetContext, or nil. It is safe for
// concurrent use.
func (c *Conn) Context() any {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.ctx
}

// SetContext stores a value for the application (a session, a device
// identity). It is safe for concurrent use.
func (c *Conn) SetContext(v any) {
	c.mu.Lock()
	c.ctx = v
	c.mu.Unlock()
}

// WriteMessage sends data as one message of type op (OpText or OpBinary;
// text must be valid UTF-8, which is not checked). It never blocks on the
// peer and may be called from any goroutine; data may be reused when it
// returns. On a connection that negotiated permessage-deflate, messages of
// at least Config.DeflateThreshold bytes are compressed. A dialled
// connection masks the frame, which copies data. It fails with ErrNotOpen
// before a dialled connection's handshake is done, with ErrClosed once
// the close handshake has begun, and with the engine's error
// (engine.ErrSlowConsumer, engine.ErrQueueLimit) when the connection's
// output queue is over its bound, which closes it.
func (c *Conn) WriteMessage(op Opcode, data []byte) error {
	if op != OpText && op != OpBinary {
		return ErrDataOpcode
	}
	c.mu.Lock()
	if err := c.writableLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	var err error
	switch {
	case c.cmp != nil && len(data) >= c.srv.cfg.DeflateThreshold:
		// Room for incompressible data too: deflate adds a few bytes per
		// stored block.
		b := pool.Get(len(data) + len(data)>>8 + 64)[:0]
		if c.srv.client {
			b = c.cmp.d.AppendMaskedFrame(b, op, NewMask(), data)
		} else {
			b = c.cmp.d.AppendFrame(b, op, data)
		}
		err = c.writeLocked(b)
		pool.Put(b)
	case c.srv.client:
		// Masking copies the payload anyway: one buffer, gathered while
		// corked when it is small.
		b := AppendMaskedFrame(pool.Get(MaxHeaderLen + len(data))[:0], op, true, NewMask(), data)
		err = c.writeLocked(b)
		pool.Put(b)
	case len(data) <= copyFrame && c.corked:
		if err = c.growBatchLocked(MaxHeaderLen + len(data)); err == nil {
			c.batch.b = AppendFrame(c.batch.b, op, true, data)
		}
	case len(data) <= copyFrame:
		// One contiguous write: cheaper than a two-buffer writev. The
		// buffer is pooled because engine.Conn.Write lets its argument
		// escape.
		b := AppendFrame(pool.Get(MaxHeaderLen + len(data))[:0], op, true, data)
		_, err = c.ec.Write(b)
		pool.Put(b)
	default:
		if err = c.flushLocked(); err != nil {
			break
		}
		hb := pool.Get(MaxHeaderLen)
		bufs := [2][]byte{AppendHeader(hb[:0], FrameHeader{Fin: true, Op: op, Length: int64(len(data))}), data}
		_, err = c.ec.Writev(bufs[:])
		pool.Put(hb)
	}
	c.mu.Unlock()
	if err == nil {
		c.srv.stats.msgOut.add(c.ec.Loop())
	}
	return writeErr(err)
}

// copyFrame is the largest payload WriteMessage copies next to its header
// to write the frame with one buffer (or gathers while corked); larger
// ones go out with writev.
const copyFrame = 16 << 10

// batchMax bounds the frames gathered while corked before they are sent.
const batchMax = 64 << 10

// writeLocked sends an encoded frame; c.mu is held. While the loop is
// handling a read (corked), small frames are gathered and leave in one
// write when it is done, so a read holding many messages costs one write
// for all their replies.
func (c *Conn) writeLocked(frame []byte) error {
	if c.corked && len(frame) <= copyFrame {
		if err := c.growBatchLocked(len(frame)); err != nil {
			return err
		}
		c.batch.b = append(c.batch.b, frame...)
		return nil
	}
	if err := c.flushLocked(); err != nil {
		return err
	}
	_, err := c.ec.Write(frame)
	return err
}

// growBatchLocked makes room for n more bytes in the batch, sending it
// first when it would pass batchMax.
func (c *Conn) growBatchLocked(n int) error {
	if c.batch == nil {
		c.batch = batchPool.Get().(*batchBuf)
	}
	if len(c.batch.b)+n > batchMax {
		if err := c.flushLocked(); err != nil {
			return err
		}
	}
	c.batch.b = pool.Grow(c.batch.b, n)
	return nil
}

// flushLocked sends the gathered frames; c.mu is held.
func (c *Conn) flushLocked() error {
	if c.batch == nil || len(c.batch.b) == 0 {
		return nil
	}
	_, err := c.ec.Write(c.batch.b)
	c.batch.b = c.batch.b[:0]
	return err
}

// batchBuf holds a connection's gathered frames while its loop handles a
// read. It is pooled with its buffer, so a connection between reads keeps
// only a nil pointer.
type batchBuf struct{ b []byte }

var batchPool = sync.Pool{New: func() any { return &batchBuf{b: pool.Get(4096)[:0]} }}

// releaseBatchLocked returns the batch to its pool; c.mu is held.
func (c *Conn) releaseBatchLocked() {
	if c.batch == nil {
		return
	}
	if cap(c.batch.b) > batchMax+copyFrame {
		pool.Put(c.batch.b)
		c.batch.b = pool.Get(4096)
	}
	c.batch.b = c.batch.b[:0]
	batchPool.Put(c.batch)
	c.batch = nil
}

// cork starts gathering small frames; the loop calls it before handling a
// read (Inline handlers only).
func (c *Conn) cork() {
	c.mu.Lock()
	c.corked = true
	c.mu.Unlock()
}

// uncork sends the gathered frames and releases the batch buffer.
func (c *Conn) uncork() {
	c.mu.Lock()
	c.corked = false
	c.flushLocked()
	c.releaseBatchLocked()
	c.mu.Unlock()
}

// closeEngine sends what is gathered and asks the engine to close the
// connection with why, once a Close frame has gone out. When the peer's
// Close has arrived too, nothing may follow it (RFC 6455 section 5.5.1)
// and the server closes TCP at once (section 7.1.1). Otherwise the peer
// may still be sending, and the close lingers (engine.Conn.CloseLinger):
// the queue is flushed, the write side shut and what the peer still sends
// read and thrown away until it closes its side, so that it gets the Close
// frame instead of a reset that would drop it. The handler is told at
// once (OnClose with why), not when the linger ends: the connection is
// over for it, and a device that reconnects meanwhile must not find the
// old one still open.
func (c *Conn) closeEngine(why engine.CloseReason) {
	c.mu.Lock()
	c.flushLocked()
	code, peer, done := c.code, c.peerCode, c.closeRecv
	tell := !done && !c.closed
	if tell {
		c.closed = true // for the handler: OnClose comes now, not when the linger ends
	}
	c.mu.Unlock()
	if done {
		c.ec.CloseWithDetail(why, closeDetail(code, peer))
		return
	}
	c.ec.CloseLinger(why, closeDetail(code, peer))
	if tell {
		if code == 0 {
			code = CloseAbnormal
		}
		c.finish(why, code, nil)
	}
}

// closeDetail is the close code the engine records with the close, or nil
// before any was sent or received. A code the peer chose from the
// registered or private ranges (3000–4999) is recorded as its range,
// "3xxx" or "4xxx": peers pick those freely, and each distinct detail is a
// metric series (the engine keeps at most 1,024).
func closeDetail(code uint16, peer bool) engine.CloseDetail {
	switch {
	case code == 0:
		return nil
	case peer && code >= 3000 && code <= 4999:
		return peerRange(code / 1000)
	}
	return CloseCode(code)
}

// peerRange is the close detail of a peer's code in 3000–3999 (3) or
// 4000–4999 (4).
type peerRange uint8

func (r peerRange) String() string { return string(rune('0'+r)) + "xxx" }

// CloseCode is a close status code (RFC 6455, section 7.4). It is the
// engine.CloseDetail of a WebSocket connection's close, so metrics, logs
// and /debug/conns show it beside the engine's reason.
type CloseCode uint16

// String returns the code in decimal, such as "1001".
func (c CloseCode) String() string { return strconv.Itoa(int(c)) }

// WriteText sends s as a text message; see WriteMessage.
func (c *Conn) WriteText(s string) error {
	return c.WriteMessage(OpText, unsafe.Slice(unsafe.StringData(s), len(s)))
}

// writableLocked says whether frames may be sent: ErrNotOpen while a
// dialled connection awaits its handshake's answer, ErrClosed once a Close
// frame was sent or the connection closed; c.mu is held.
func (c *Conn) writableLocked() error {
	switch {
	case c.closeSent || c.closed:
		return ErrClosed
	case c.dialing:
		return ErrNotOpen
	}
	return nil
}

// appendFrame appends a final frame as c's side sends it: masked with a
// fresh key from a client, unmasked from a server.
func (c *Conn) appendFrame(dst []byte, op Opcode, payload []byte) []byte {
	if c.srv.client {
		return AppendMaskedFrame(dst, op, true, NewMask(), payload)
	}
	return AppendFrame(dst, op, true, payload)
}

// writeFrame sends an encoded, unmasked frame shared with other
// connections; a dialled connection masks a copy.
func (c *Conn) writeFrame(frame []byte) error {
	c.mu.Lock()
	if err := c.writableLocked(); err != nil {
		c.mu.Unlock()
		return err
	}
	var err error
	if c.srv.client {
		h, n, _ := ParseHeader(frame)
		b := AppendMaskedFrame(pool.Get(MaxHeaderLen + len(frame))[:0], h.Op, h.Fin, NewMask(), frame[n:])
		b[0] |= h.Rsv
		err = c.writeLocked(b)
		pool.Put(b)
	} else {
		err = c.writeLocked(frame)
	}
	c.mu.Unlock()
	if err == nil {
		c.srv.stats.msgOut.add(c.ec.Loop())
	}
	return writeErr(err)
}

// writeControl sends a ping or pong unless the close handshake has begun.
func (c *Conn) writeControl(op Opcode, payload []byte) {
	c.mu.Lock()
	if c.writableLocked() == nil {
		b := c.appendFrame(pool.Get(MaxHeaderLen + len(payload))[:0], op, payload)
		c.writeLocked(b)
		pool.Put(b)
	}
	c.mu.Unlock()
}

// writeCloseLocked sends a Close frame; c.mu is held.
func (c *Conn) writeCloseLocked(code uint16, reason string) error {
	var p [MaxControlPayload]byte
	b := c.appendFrame(pool.Get(MaxHeaderLen + MaxControlPayload)[:0], OpClose, AppendClosePayload(p[:0], code, reason))
	err := c.writeLocked(b)
	pool.Put(b)
	return err
}

func writeErr(err error) error {
	if err != nil && errors.Is(err, engine.ErrClosed) {
		return ErrClosed
	}
	return err
}

// Close starts the close handshake: it sends a Close frame with code and
// reason (cut to 123 bytes) and closes the connection when the peer's
// Close arrives, or after Config.CloseTimeout. Code 0 sends a Close frame
// without a status. Messages that arrive meanwhile are still delivered;
// writes fail with ErrClosed. A dialled connection waits for the server to
// close TCP after its Close, as RFC 6455 §7.1.1 asks, for at most
// DialConfig.CloseTimeout; one whose handshake is not done yet is
// abandoned at once (OnClose with engine.ReasonLocal). Close is safe for
// concurrent use; calls after the first do nothing.
func (c *Conn) Close(code uint16, reason string) error {
	if code != 0 && !ValidCloseCode(code) {
		return ErrInvalidCloseCode
	}
	return c.startClose(code, reason, engine.ReasonLocal)
}

// startClose sends a Close frame unless one was sent, records why the
// connection will close, and bounds the handshake with the close timeout.
func (c *Conn) startClose(code uint16, reason string, why engine.CloseReason) error {
	c.mu.Lock()
	if c.closeSent || c.closed {
		c.mu.Unlock()
		return nil
	}
	c.closeSent, c.why = true, why
	if c.dialing {
		// No Close frame before the handshake is done: give up the dial.
		// closeSent tells the handshake not to open.
		c.mu.Unlock()
		c.ec.Abort(why)
		return nil
	}
	c.code = code
	if code == 0 {
		c.code = CloseNoStatus
	}
	err := c.writeCloseLocked(code, reason)
	c.mu.Unlock()
	d := c.srv.cfg.CloseTimeout
	c.ec.SetIdleTimeout(d)
	c.ec.SetReadTimeout(d)
	return writeErr(err)
}

// run calls fn where the handler runs: on the loop with Config.Inline, else
// on the worker pool in per-connection order.
func (c *Conn) run(fn func()) bool {
	if c.srv.cfg.Inline {
		fn()
		return true
	}
	if err := c.ec.Dispatch(fn); err != nil {
		c.overloaded()
		return false
	}
	return true
}

// overloaded fails a connection whose handler work the worker pool
// refused: 1013 (try again later), engine.ReasonLimitReached.
func (c *Conn) overloaded() {
	c.startClose(CloseTryAgainLater, "server overloaded", engine.ReasonLimitReached)
	c.closeEngine(engine.ReasonLimitReached)
	c.done = true
}

// proto is Conn seen by the engine: the upgrade makes it the engine
// connection's handler (engine.Conn.SetHandler), so the engine hands it
// every byte after the handshake and calls its hooks directly. Keeping
// these methods on a separate type keeps them out of Conn's API.
type proto Conn

var (
	_ engine.Handler        = (*proto)(nil)
	_ engine.CloseHandler   = (*proto)(nil)
	_ engine.DrainHandler   = (*proto)(nil)
	_ engine.TimeoutHandler = (*proto)(nil)
	_ engine.ProtocolNamer  = (*proto)(nil)
	_ engine.InlineHandler  = (*proto)(nil)
)

// ProtocolName is what WebSocket connections are called in ConnInfo,
// metrics and logs.
const ProtocolName = "websocket"

// Protocol names the protocol for the engine's introspection.
func (p *proto) Protocol() string { return ProtocolName }

// Inline says the frame decoder runs on the event loop (the application's
// handler runs where Config.Inline says).
func (p *proto) Inline() bool { return true }

// reader returns the connection's Reader, borrowing one between messages.
func (c *Conn) reader() *Reader {
	if c.rd != nil {
		return c.rd
	}
	rd := readerPool.Get().(*Reader)
	rd.MaxMessageSize = c.srv.cfg.MaxMessageSize
	rd.Pool = bufPool{}
	if c.srv.client {
		rd.Role = RoleClient
	}
	if c.cmp != nil {
		rd.Inflater = &c.cmp.i
	}
	c.rd = rd
	return rd
}

// releaseReader returns the Reader to the pool when no message is in
// progress, so that an idle connection holds none.
func (c *Conn) releaseReader() {
	rd := c.rd
	if rd == nil || rd.msgOp != 0 || rd.frameLeft != 0 {
		return
	}
	rd.freeBuffers()
	*rd = Reader{}
	readerPool.Put(rd)
	c.rd = nil
}

// dropReader returns the Reader and its buffers for good.
func (c *Conn) dropReader() {
	if rd := c.rd; rd != nil {
		rd.freeBuffers()
		*rd = Reader{}
		readerPool.Put(rd)
		c.rd = nil
	}
}

// OnData decodes frames on the event loop. Messages go to the handler;
// pings are answered; a Close or a protocol violation ends the connection.
func (p *proto) OnData(_ *engine.Conn, in []byte) int {
	c := (*Conn)(p)
	if c.pingSent.Load() {
		c.pingSent.Store(false) // any byte proves the peer alive
	}
	if c.done {
		return len(in)
	}
	inline := c.srv.cfg.Inline
	if inline {
		c.cork()
	}
	n := c.decode(in)
	if inline {
		c.uncork()
	}
	return n
}

// decode hands every complete event in in to event and returns the bytes
// consumed.
func (c *Conn) decode(in []byte) int {
	rd := c.reader()
	off := 0
	for off < len(in) {
		n, ev, err := rd.Next(in[off:])
		if err != nil {
			c.fail(err)
			return len(in)
		}
		if ev.Op == 0 {
			off += n
			break
		}
		c.event(&ev)
		off += n
		if c.done {
			c.dropReader()
			return len(in)
		}
	}
	c.releaseReader()
	return off
}

// event handles one event of the Reader.
func (c *Conn) event(ev *Event) {
	switch ev.Op {
	case OpText, OpBinary:
		c.ec.AddServed(1)
		c.srv.stats.msgIn.add(c.ec.Loop())
		h := c.srv.h
		if c.srv.cfg.Inline {
			h.OnMessage(c, ev.Op, ev.Payload)
			return
		}
		op := ev.Op
		var data []byte
		if len(ev.Payload) > 0 {
			data = append(pool.Get(len(ev.Payload))[:0], ev.Payload...)
		}
		cost := int64(len(data)) + messageCost
		c.account(cost)
		if err := c.ec.Dispatch(func() {
			h.OnMessage(c, op, data)
			if data != nil {
				pool.Put(data)
			}
			c.account(-cost)
		}); err != nil {
			if data != nil {
				pool.Put(data)
			}
			c.account(-cost)
			c.overloaded()
		}
	case OpPing:
		c.writeControl(OpPong, ev.Payload)
	case OpPong:
		// Liveness is tracked on every input; nothing else to do.
	case OpClose:
		c.done = true
		c.mu.Lock()
		c.closeRecv = true
		if !c.closeSent {
			// The peer closes first: echo its status.
			c.closeSent, c.why, c.code, c.peerCode = true, engine.ReasonPeerClosed, ev.Code, true
			c.writeCloseLocked(ev.Code, "")
		}
		why := c.why
		c.mu.Unlock()
		if c.srv.client {
			// The server closes the TCP connection (RFC 6455 §7.1.1), so
			// that the client does not hold TIME_WAIT: wait for its end
			// of stream for at most CloseTimeout.
			d := c.srv.cfg.CloseTimeout
			c.ec.SetIdleTimeout(d)
			c.ec.SetReadTimeout(d)
			return
		}
		// The server closes the TCP connection itself.
		c.closeEngine(why)
	}
}

// Flow control for handlers on the worker pool: a connection stops being
// read while the messages waiting for its handler cost more than
// Config.MaxHandlerBacklog (each counts its size plus messageCost), and
// resumes below a quarter of it, so that one fast sender cannot fill the
// engine's worker queue.
const messageCost = 1 << 10

// account adds delta to the cost of queued messages, pausing or resuming
// reads as it crosses the marks. It is called on the loop (+) and on
// workers (-); pause and resume are posted under c.mu, so in order.
func (c *Conn) account(delta int64) {
	n := c.queued.Add(delta)
	high := int64(c.srv.cfg.MaxHandlerBacklog)
	low := high / 4
	if delta > 0 && n < high || delta < 0 && n > low {
		return
	}
	c.mu.Lock()
	n = c.queued.Load()
	switch {
	case !c.paused && n >= high:
		c.paused = true
		c.srv.stats.pauses.Add(1)
		c.ec.PauseRead()
	case c.paused && n <= low:
		c.paused = false
		c.ec.ResumeRead()
	}
	c.mu.Unlock()
}

// fail answers a protocol violation with its Close code and closes at
// once; the peer has broken the stream, so the server does not wait for
// its Close.
func (c *Conn) fail(err error) {
	c.done = true
	c.dropReader()
	var ce *CloseError
	if !errors.As(err, &ce) {
		ce = &CloseError{Code: CloseInternalError, Reason: "internal error"}
	}
	c.mu.Lock()
	why := c.why
	if !c.closeSent {
		c.closeSent, c.code = true, ce.Code
		why = engine.ReasonProtocolError
		if ce.Code == CloseMessageTooBig {
			why = engine.ReasonLimitReached // a bound, like the engine's own limits
		}
		c.why = why
		c.writeCloseLocked(ce.Code, ce.Reason)
		c.srv.stats.protoErrs.Add(1)
	}
	c.mu.Unlock()
	if h := c.srv.hErr; h != nil {
		c.run(func() { h.OnError(c, err) })
	}
	c.closeEngine(why)
}

// OnTimeout runs on the event loop when the connection has been quiet for
// the ping interval (or a frame has been arriving for that long): it sends
// a ping, or closes a peer that left the previous one unanswered with
// engine.ReasonDeadPeer. During the close handshake it ends the wait.
func (p *proto) OnTimeout(ec *engine.Conn, reason engine.CloseReason) bool {
	c := (*Conn)(p)
	c.mu.Lock()
	closing, why := c.closeSent, c.why
	c.mu.Unlock()
	if closing {
		c.closeEngine(why) // the peer did not answer the Close frame in time
		return false
	}
	if c.srv.cfg.PingInterval <= 0 {
		return false
	}
	if c.pingSent.Load() {
		c.srv.stats.dead.Add(1)
		ec.Abort(engine.ReasonDeadPeer)
		return false
	}
	c.pingSent.Store(true)
	c.srv.stats.pings.Add(1)
	c.writeControl(OpPing, nil)
	return true
}

// OnDrain runs on the event loop when the engine shuts down: it sends
// Close 1001 (going away) and closes when the peer answers or after the
// close timeout.
func (p *proto) OnDrain(*engine.Conn) bool {
	c := (*Conn)(p)
	if hold := c.srv.cfg.DrainHold; hold != nil && hold(c) {
		return true // the handler says goodbye later (GoingAway)
	}
	c.GoingAway()
	return true
}

// GoingAway starts the close a drain sends: 1001 with Config.GoingAway's
// reason, the connection closing with engine.ReasonShutdown. A handler
// that held c at the drain (Config.DrainHold) calls it once done. Safe
// from any goroutine; it does nothing once a close was sent.
func (c *Conn) GoingAway() {
	reason := "server shutting down"
	if c.srv.client {
		reason = "client shutting down"
	}
	if f := c.srv.cfg.GoingAway; f != nil {
		if r := f(c); len(r) <= 123 {
			reason = r
		}
	}
	c.startClose(CloseGoingAway, reason, engine.ReasonShutdown)
}

// OnClose releases the connection's state, leaves its groups and tells the
// handler.
func (p *proto) OnClose(_ *engine.Conn, reason engine.CloseReason, err error) {
	c := (*Conn)(p)
	c.done = true
	c.dropReader()
	c.mu.Lock()
	told := c.closed // a lingering close told the handler already
	c.closed = true
	code := c.code
	if code == 0 {
		code = CloseAbnormal
	}
	if c.srv.client && c.closeRecv && c.closeSent {
		// A client ends a close handshake by waiting for the server's end
		// of stream; say who closed, as the server side does.
		reason = c.why
	}
	var groups []*Group
	if c.groups != nil {
		groups = *c.groups
	}
	c.groups = nil
	c.corked = false
	c.releaseBatchLocked()
	if c.cmp != nil {
		c.cmp.d.Reset()
		c.cmp.i.Reset()
	}
	c.mu.Unlock()
	for _, g := range groups {
		g.remove(c)
	}
	c.srv.stats.open.Add(-1)
	if told {
		return // a lingering close told the handler when it began
	}
	c.finish(reason, code, err)
}

// finish tells the handler that c has ended, where its callbacks run:
// OnError with err when err is not nil, then OnClose. On the worker pool
// it falls back to a new goroutine when the pool refuses work.
func (c *Conn) finish(reason engine.CloseReason, code uint16, err error) {
	s := c.srv
	if s.hErr == nil {
		err = nil
	}
	if s.hClose == nil && err == nil {
		return
	}
	fn := func() {
		if err != nil {
			s.hErr.OnError(c, err)
		}
		if s.hClose != nil {
			s.hClose.OnClose(c, reason, code)
		}
	}
	if s.cfg.Inline {
		fn()
		return
	}
	if c.ec.Dispatch(fn) != nil {
		go fn()
	}
}

// Label is Config.Label for the engine's introspection (engine.Labeler).
func (p *proto) Label(*engine.Conn) string {
	c := (*Conn)(p)
	if f := c.srv.cfg.Label; f != nil {
		return f(c)
	}
	return ""
}
