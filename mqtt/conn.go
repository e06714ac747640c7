package mqtt

import (
	"crypto/rand"
	"encoding/hex"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"
	"unsafe"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/websocket"
)

// conn is one MQTT connection, over TCP or WebSocket, with its Client and,
// when the session ends with the connection (session expiry 0: most
// devices), its session: one allocation of 128 bytes for the three
// (TestIdleStructSizes). Its fields without a lock belong to the
// connection's event loop; those read by other goroutines delivering
// messages or calling the Client's methods (the protocol level and
// stUserIsID in state, x, the Client's ID and Identity) are set before
// the connection is attached to its session under session.mu, and never
// change after.
type conn struct {
	srv *Server
	ec  *engine.Conn
	x   *connExt // what few connections need; nil for a 3.1.1 client over TCP with its own session
	in  *inState // publishing state; nil until the client publishes

	// state is the loop's word: the stamp of the last input (Server.stamp,
	// above stFlags), the protocol level and the flags below. The loop
	// writes it, and kick sets stKicked from any goroutine: every write is
	// an atomic read-modify-write (set, setVersion, feed's stamp), so
	// none loses another's bit. Other goroutines read it atomically: the
	// sweeper the stamp (WebSocket keep-alive), deliveries and the
	// Client's methods the level and stUserIsID, which are set before the
	// connection is attached to its session and never change after.
	state atomic.Uint32

	// wf and code are guarded by wmu (below).
	wf     uint8      // wCorked, wClosed, wTakenOver, wNormal
	code   ReasonCode // the reason the server disconnected with, if it did
	kaSecs uint16     // the keep-alive, seconds (at most 65535 in both versions); set at the CONNECT, on the loop

	// wmu guards output: batching while the loop handles input, and the
	// end of writes once the connection closes; and wf and code.
	wmu sync.Mutex
	out *outBuf // batched output, pooled; nil when not corked

	// own is the connection's session when it ends with the connection
	// (sessionFor), keyed by its Client's ID instead of a copy of it. A later
	// connection resuming it in a takeover (5.0, clean start 0, which may
	// set an expiry) keeps this connection's memory for as long as the
	// session then lives; nothing else of it is used.
	own session
}

// connExt is the part of a connection that only some need: MQTT over
// WebSocket, and a 5.0 client's limits on what it receives. It is made
// when the connection is made (WebSocket) or, at the latest, before a
// hook could see the Client (the will's Authorize), and the pointer never
// changes after; its fields but sess are set by then too. So goroutines
// a hook hands the Client to, and those delivering to the client, read
// it like the fields of conn set then.
type connExt struct {
	ws   *websocket.Conn // MQTT over WebSocket; nil on TCP
	user *string         // the user name when it is not the client id (Client.Username)
	// sess is the connection's session when it is not its own (c.own):
	// one that may outlive it, or one a takeover resumed (session); set
	// once, before the session is attached.
	sess *session
	// outAliases are the topic aliases the server set on this connection,
	// guarded by the session's mu (every PUBLISH to the client is sent
	// under it, so an alias is always set before it is used); nil until
	// the first.
	outAliases map[string]uint16
	recvMax    uint16 // the client's Receive Maximum
	aliasMax   uint16 // the client's Topic Alias Maximum: aliases the server may set
	maxOut     uint32 // the client's Maximum Packet Size; 0 for the protocol's
}

// ext returns the connection's connExt, making it; only before the
// connection is attached to its session.
func (c *conn) ext() *connExt {
	if c.x == nil {
		c.x = &connExt{recvMax: 65535}
	}
	return c.x
}

// The bits of conn.state below the stamp.
const (
	stVersion   = 7      // the protocol level (Version); 0 until the CONNECT's is read
	stConnected = 1 << 3 // the CONNECT was accepted
	stDone      = 1 << 4 // input is discarded from now on
	stKicked    = 1 << 5 // kick ran: input is discarded from now on, the close is on its way
	stUserIsID  = 1 << 6 // the user name is the client id (Client.Username); set with the Client's ID
	stNoProblem = 1 << 7 // the client asked for no reason strings (Request Problem Information 0)
	stFlags     = 1<<stampShift - 1
)

// Every protocol level fits stVersion, and every flag sits below the
// stamp: both fail to compile otherwise.
var (
	_ [stVersion - Version5]byte
	_ [stFlags - stNoProblem]byte
)

// The bits of conn.wf.
const (
	wCorked    = 1 << iota // batching output while the loop handles input
	wClosed                // the connection closed: no more writes
	wTakenOver             // another connection took the session over
	wNormal                // the client sent a normal DISCONNECT: no will
)

// version returns the connection's protocol level, 0 until its CONNECT's
// is read.
func (c *conn) version() Version { return Version(c.state.Load() & stVersion) }

// is reports whether all of the state flags f are set.
func (c *conn) is(f uint32) bool { return c.state.Load()&f == f }

// set sets the state flags f: on the loop, or stKicked from anywhere
// (kick).
func (c *conn) set(f uint32) { c.state.Or(f) }

// setVersion sets the protocol level; on the loop, before the connection
// is attached.
func (c *conn) setVersion(v Version) {
	for {
		st := c.state.Load()
		if c.state.CompareAndSwap(st, st&^stVersion|uint32(v)) {
			return
		}
	}
}

// lastIn returns the stamp of the connection's last input.
func (c *conn) lastIn() uint32 { return c.state.Load() >> stampShift }

// connOffset is where a Client holds its connection.
const connOffset = unsafe.Offsetof(Client{}.c)

// client returns the Client the connection is part of (every conn is
// the c field of a Client: newConn). The hooks see it once the CONNECT is
// accepted (connected); its ID is set then.
func (c *conn) client() *Client {
	return (*Client)(unsafe.Add(unsafe.Pointer(c), -int(connOffset)))
}

// session returns the connection's session once it is connected: its
// own (c.own) unless the connection took another (connExt.sess).
func (c *conn) session() *session {
	if x := c.x; x != nil && x.sess != nil {
		return x.sess
	}
	return &c.own
}

// ws returns the WebSocket the connection runs over, or nil on TCP.
func (c *conn) ws() *websocket.Conn {
	if c.x == nil {
		return nil
	}
	return c.x.ws
}

// recvMax returns the client's Receive Maximum (65535 unless it set one).
func (c *conn) recvMax() uint16 {
	if c.x == nil {
		return 65535
	}
	return c.x.recvMax
}

// outBuf is a connection's batched output, pooled with its buffer: a
// read's output takes one pool round trip, not two.
type outBuf struct{ b []byte }

var outBufPool = sync.Pool{New: func() any { return new(outBuf) }}

// connectInfos are the ConnectInfos CONNECTs hand to Hooks.Authenticate.
var connectInfos = sync.Pool{New: func() any { return new(ConnectInfo) }}

// maxPooledOut is the largest buffer an outBuf keeps in outBufPool; a
// larger one goes back to the byte pools.
const maxPooledOut = 4096

// releaseOut returns the batched output to the pool; c.wmu is held.
func (c *conn) releaseOut() {
	if o := c.out; o != nil {
		if cap(o.b) > maxPooledOut {
			pool.Put(o.b)
			o.b = nil
		} else {
			o.b = o.b[:0]
		}
		outBufPool.Put(o)
		c.out = nil
	}
}

// keepAlive returns the client's keep-alive; 0 means none.
func (c *conn) keepAlive() time.Duration { return time.Duration(c.kaSecs) * time.Second }

// inState is the state of a connection that publishes, apart so that an
// idle subscriber does not carry it. It belongs to the loop.
type inState struct {
	aliases  []string // inbound topic aliases, by alias-1; nil until used
	msgRate  bucket
	byteRate bucket
	partial  []byte // WebSocket only: a packet straddling messages, pooled
}

// st returns the connection's inState, making it.
func (c *conn) st() *inState {
	if c.in == nil {
		c.in = new(inState)
	}
	return c.in
}

// bucket is a token bucket, on the loop.
type bucket struct {
	tokens float64
	at     int64
}

// allow takes n tokens at now from a bucket refilled at rate per second up
// to burst, and reports whether there were enough.
func (b *bucket) allow(now int64, rate, burst, n float64) bool {
	if rate <= 0 {
		return true
	}
	if b.at == 0 {
		b.tokens = burst
	} else if dt := now - b.at; dt > 0 {
		b.tokens = min(burst, b.tokens+rate*float64(dt)/1e9)
	}
	b.at = now
	if b.tokens < n {
		return false
	}
	b.tokens -= n
	return true
}

var (
	scratchPool = sync.Pool{New: func() any { return new(Scratch) }}
	connackPool = sync.Pool{New: func() any { return new(Connack) }}
	subackPool  = sync.Pool{New: func() any { return new(Suback) }}
)

// newConn makes the MQTT state of a new connection, which must send its
// CONNECT within Config.ConnectTimeout.
func (s *Server) newConn(ec *engine.Conn, ws *websocket.Conn) *conn {
	s.startSweeper()
	c := &new(Client).c // a conn is always part of its Client (client)
	c.srv, c.ec = s, ec
	if ws != nil {
		c.x = &connExt{ws: ws, recvMax: 65535}
	}
	s.stats.pending.Add(1)
	ec.SetIdleTimeout(s.cfg.ConnectTimeout)
	return c
}

// proto is conn seen by the engine on a TCP listener.
type proto conn

var (
	_ engine.Handler        = (*proto)(nil)
	_ engine.CloseHandler   = (*proto)(nil)
	_ engine.DrainHandler   = (*proto)(nil)
	_ engine.TimeoutHandler = (*proto)(nil)
	_ engine.ProtocolNamer  = (*proto)(nil)
	_ engine.InlineHandler  = (*proto)(nil)
	_ engine.Labeler        = (*proto)(nil)
)

// OnData decodes and handles every whole packet of in; a partial packet
// stays with the engine until the rest arrives.
func (p *proto) OnData(_ *engine.Conn, in []byte) int { return (*conn)(p).feed(in) }

// Protocol names the protocol.
func (p *proto) Protocol() string { return ProtocolName }

// Inline says the broker runs on the event loop.
func (p *proto) Inline() bool { return true }

// Label returns the client id.
func (p *proto) Label(*engine.Conn) string { return (*conn)(p).label() }

func (c *conn) label() string {
	if !c.is(stConnected) {
		return ""
	}
	return c.client().ID
}

// armKeepAlive sets ec's idle timer to d for the keep-alive. Over TCP
// only the client's input restarts it (engine.Conn.SetInputIdleTimeout):
// the keep-alive is the client's to keep, and what the broker sends a
// client that has gone silent must not hold it open (MQTT-3.1.2-24,
// TestKeepAliveHeldByOutput). MQTT over WebSocket's engine timer is a
// backstop behind the sweeper, which closes a silent client with its
// DISCONNECT and close frame, and counts any traffic.
func (c *conn) armKeepAlive(ec *engine.Conn, d time.Duration) {
	if c.ws() == nil {
		ec.SetInputIdleTimeout(d)
		return
	}
	ec.SetIdleTimeout(d)
}

// keepAliveArm returns the idle timeout that OnTimeout re-arms a
// keep-alive with when its client has d left before its limit: d and two
// stamp units, as since rounds the stamps' difference down twice (the
// stamps' floor, and a unit less), so that this firing reads the limit
// passed and closes, rather than re-arming again for a few milliseconds.
//
// The timer armed at CONNECT is the limit itself, not padded: the
// engine's timer fires up to a tick after its deadline, and with the
// default 100 ms tick that firing already reads the limit passed and
// closes (keep-alive 1 s: closed at 1.606-1.609 s, where padding by two
// units closed at 1.705-1.707 s, a tick later). Only with a tick under
// about 32 ms can the first firing read short of the limit; the close
// then comes on this re-armed pass, at most two units and a tick later
// (10 ms tick: 1.509-1.548 s; padded 1.545-1.556 s).
func keepAliveArm(d time.Duration) time.Duration { return d + 2*stampUnit }

// OnTimeout enforces the keep-alive (1.5 times the client's) and the
// connect timeout.
func (p *proto) OnTimeout(ec *engine.Conn, reason engine.CloseReason) bool {
	c := (*conn)(p)
	if reason != engine.ReasonIdleTimeout || !c.is(stConnected) || c.kaSecs == 0 {
		return false
	}
	limit := c.keepAlive() * 3 / 2
	if idle := c.srv.since(c.lastIn(), c.srv.now().UnixNano()); idle < limit {
		// Output kept the engine's idle timer from firing earlier;
		// the client itself has been quiet for less than the limit.
		c.armKeepAlive(ec, keepAliveArm(limit-idle))
		return true
	}
	c.srv.stats.keepAlive.Add(1)
	c.disconnect(KeepAliveTimeout, engine.ReasonIdleTimeout, "")
	return false
}

// OnDrain says goodbye to a 5.0 client when the engine shuts down:
// DISCONNECT server_shutting_down, or use_another_server with
// Config.ServerReference, and a lingering close (closeWith). A 3.1.1
// client, or one whose CONNECT is not accepted yet, is closed by the
// engine once quiet.
//
// A kicked client (Client.Disconnect, a takeover: stKicked) keeps the
// kick's goodbye: its DISCONNECT and close are on their way (over TCP a
// 5.0 client's are posted to the loop, and the drain may run first), so
// the drain sends nothing and leaves the close to the kick.
func (p *proto) OnDrain(*engine.Conn) bool {
	c := (*conn)(p)
	if c.drainHold() {
		return true // the application says goodbye later (Client.GoingAway)
	}
	if code, sent := c.drain(); sent {
		c.closeWith(engine.ReasonShutdown, code, true)
		return true
	}
	return c.is(stKicked) // (the hook may have kicked it)
}

// drainHold asks Hooks.OnDrain whether the drain keeps c open; a kicked
// client is not held.
func (c *conn) drainHold() bool {
	h := c.srv.cfg.Hooks.OnDrain
	return h != nil && c.state.Load()&(stConnected|stDone|stKicked) == stConnected && h(c.client())
}

// drain sends a connected 5.0 client the drain's DISCONNECT, and
// reports its code and whether it went out (sent: a 3.1.1 client, one
// whose CONNECT is not accepted, or one kicked, whose kick says goodbye,
// gets nothing).
func (c *conn) drain() (code ReasonCode, sent bool) {
	if c.state.Load()&(stConnected|stDone|stKicked) != stConnected || c.version() != Version5 {
		return 0, false
	}
	d := Disconnect{ReasonCode: ServerShuttingDown}
	if ref := c.srv.cfg.ServerReference; ref != "" {
		d.ReasonCode = UseAnotherServer
		d.Props.ServerReference = bytesOf(ref)
	}
	c.sendDisconnect(&d)
	return d.ReasonCode, true
}

// OnClose ends the connection's part in its session.
func (p *proto) OnClose(_ *engine.Conn, reason engine.CloseReason, _ error) {
	(*conn)(p).closed(reason)
}

// feed decodes and handles the packets at the front of in and returns the
// bytes consumed.
func (c *conn) feed(in []byte) int {
	st := c.state.Load()
	if st&(stDone|stKicked) != 0 {
		return len(in)
	}
	s := c.srv
	now := s.now().UnixNano()
	if stamp := s.stamp(now); st>>stampShift != stamp {
		// A new stamp (every stampUnit at most): a compare-and-swap, so
		// that a kick's stKicked set meanwhile is kept; most reads of a
		// busy client land in the same unit and write nothing.
		for !c.state.CompareAndSwap(st, stamp<<stampShift|st&stFlags) {
			st = c.state.Load()
		}
	}
	sc := scratchPool.Get().(*Scratch)
	// The decoder lives for one read: its version is the connection's
	// (zero until the CONNECT, which onConnect records first thing).
	dec := Decoder{Version: Version(st & stVersion), Scratch: sc}
	c.cork()
	pc := c.pc()
	off := 0
	// A kick (Client.Disconnect from a hook, a takeover) ends the read:
	// nothing after the packet that was being handled then is handled.
	for off < len(in) && !c.stopped() {
		n, p, err := dec.Decode(in[off:], &s.lim)
		if err != nil {
			if c.state.Load()&(stConnected|stVersion) == 0 {
				// A CONNECT that failed after its protocol level was read.
				c.setVersion(dec.Version)
			}
			c.fail(err.(*Error))
			off = len(in)
			break
		}
		if n == 0 {
			break
		}
		pc.in[p.Type()&15].Add(1)
		c.handle(p, n, now)
		off += n
	}
	c.uncork()
	dec.Scratch = nil
	scratchPool.Put(sc)
	if c.stopped() {
		return len(in)
	}
	return off
}

// stopped reports whether input is discarded: the connection is closing
// (stDone) or was kicked (stKicked).
func (c *conn) stopped() bool { return c.state.Load()&(stDone|stKicked) != 0 }

// feedWS handles one WebSocket message: MQTT packets may straddle
// messages, so a partial packet is kept (copied) until the rest arrives.
func (c *conn) feedWS(data []byte) {
	if c.stopped() {
		return
	}
	if c.in == nil || len(c.in.partial) == 0 {
		n := c.feed(data)
		if n < len(data) && !c.stopped() {
			c.st().partial = append(pool.Get(len(data) - n)[:0], data[n:]...)
		}
		return
	}
	st := c.in
	if len(st.partial)+len(data) > c.srv.lim.MaxPacketSize+5 {
		c.fail(errTooLarge)
		return
	}
	st.partial = pool.Grow(st.partial, len(data))
	st.partial = append(st.partial, data...)
	n := c.feed(st.partial)
	rest := copy(st.partial, st.partial[n:])
	st.partial = st.partial[:rest]
	if rest == 0 || c.stopped() {
		c.freePartial()
	}
}

func (c *conn) freePartial() {
	if c.in != nil && c.in.partial != nil {
		pool.Put(c.in.partial)
		c.in.partial = nil
	}
}

// cork starts batching output while the loop handles input.
func (c *conn) cork() {
	c.wmu.Lock()
	c.wf |= wCorked
	c.wmu.Unlock()
}

// uncork sends the batched output.
func (c *conn) uncork() {
	c.wmu.Lock()
	c.wf &^= wCorked
	if c.out != nil && len(c.out.b) > 0 && c.wf&wClosed == 0 {
		c.rawWrite(c.out.b)
	}
	c.releaseOut()
	c.wmu.Unlock()
}

// write sends b (batched while corked); it may be called from any
// goroutine and reports whether the connection took it.
func (c *conn) write(b []byte) bool {
	c.wmu.Lock()
	defer c.wmu.Unlock()
	if c.wf&wClosed != 0 {
		return false
	}
	if c.wf&wCorked != 0 {
		o := c.batch(len(b))
		o.b = append(o.b, b...)
		return true
	}
	return c.rawWrite(b)
}

// batch returns the batched output with room for n more bytes, making it;
// c.wmu is held and the connection is corked.
func (c *conn) batch(n int) *outBuf {
	if c.out == nil {
		c.out = outBufPool.Get().(*outBuf)
		if c.out.b == nil {
			c.out.b = pool.Get(max(n, 2048))[:0]
		}
	}
	o := c.out
	o.b = pool.Grow(o.b, n)
	return o
}

// writeAck sends a PUBACK, PUBREC, PUBREL or PUBCOMP without properties:
// while the connection is corked (the loop handles its input, the common
// case) straight into the batched output. It reports whether the
// connection took it.
func (c *conn) writeAck(kind Type, id uint16, code ReasonCode) bool {
	a := Ack{Kind: kind, PacketID: id, ReasonCode: code}
	c.wmu.Lock()
	if c.wf&(wCorked|wClosed) == wCorked {
		o := c.batch(maxAckSize)
		o.b = AppendAck(o.b, c.version(), &a)
		c.wmu.Unlock()
		return true
	}
	c.wmu.Unlock()
	b := AppendAck(pool.Get(maxAckSize)[:0], c.version(), &a)
	ok := c.write(b)
	pool.Put(b)
	return ok
}

// maxAckSize is the size of the largest acknowledgement writeAck sends:
// fixed header, packet id and reason code.
const maxAckSize = 5

// writePublish encodes p for the connection and sends it: while the
// connection is corked (a message its own loop routes to it, as when a
// client subscribes to what it publishes) straight into the batched
// output, without an intermediate buffer and copy. A packet over limit
// bytes (0: no limit) is not sent: tooLarge. sent reports whether the
// connection took it.
func (c *conn) writePublish(p *Publish, limit int) (sent, tooLarge bool) {
	hint := len(p.Topic) + len(p.Payload) + 8
	v := c.version()
	if v == Version5 {
		hint += p.Props.size(publishProps) + 4
	}
	c.wmu.Lock()
	if c.wf&(wCorked|wClosed) == wCorked {
		o := c.batch(hint)
		n := len(o.b)
		o.b = AppendPublish(o.b, v, p)
		if limit > 0 && len(o.b)-n > limit {
			o.b = o.b[:n]
			tooLarge = true
		}
		c.wmu.Unlock()
		return !tooLarge, tooLarge
	}
	c.wmu.Unlock()
	b := AppendPublish(pool.Get(hint)[:0], v, p)
	if limit > 0 && len(b) > limit {
		pool.Put(b)
		return false, true
	}
	sent = c.write(b)
	pool.Put(b)
	return sent, false
}

// writePublish311 is writePublish for a 3.1.1 client, whose PUBLISH
// carries no properties and has no size limit but the protocol's: b0 is
// its first byte (publishFlags), id its packet identifier (QoS 1 and 2).
// It reports whether the connection took it.
func (c *conn) writePublish311(b0 byte, topic string, id uint16, payload []byte) bool {
	hint := len(topic) + len(payload) + 9 // header, topic length, packet id
	c.wmu.Lock()
	if c.wf&(wCorked|wClosed) == wCorked {
		o := c.batch(hint)
		o.b = appendPublish311(o.b, b0, topic, id, payload)
		c.wmu.Unlock()
		return true
	}
	c.wmu.Unlock()
	b := appendPublish311(pool.Get(hint)[:0], b0, topic, id, payload)
	ok := c.write(b)
	pool.Put(b)
	return ok
}

// rawWrite writes to the transport; c.wmu is held.
func (c *conn) rawWrite(b []byte) bool {
	var err error
	if ws := c.ws(); ws != nil {
		err = ws.WriteMessage(websocket.OpBinary, b)
	} else {
		_, err = c.ec.Write(b)
	}
	return err == nil
}

// packet encodes p for the connection and writes it.
func (c *conn) packet(p Packet) bool {
	v := c.version()
	if v == 0 {
		v = Version311
	}
	b := Append(pool.Get(256)[:0], v, p)
	if x := c.x; x != nil && x.maxOut != 0 && len(b) > int(x.maxOut) {
		b = appendWithoutDiagnostics(b[:0], v, p)
	}
	ok := c.write(b)
	pool.Put(b)
	if ok {
		c.pc().out[p.Type()&15].Add(1)
	}
	return ok
}

// appendWithoutDiagnostics appends p without its reason string and user
// properties: a packet the client's Maximum Packet Size would not take
// with them goes without [MQTT-3.1.2-25] (5.0 3.2.2.3.7, 3.14.2.2.3).
func appendWithoutDiagnostics(dst []byte, v Version, p Packet) []byte {
	switch p := p.(type) {
	case *Connack:
		q := *p
		q.Props.dropDiagnostics()
		return Append(dst, v, &q)
	case *Disconnect:
		q := *p
		q.Props.dropDiagnostics()
		return Append(dst, v, &q)
	}
	return Append(dst, v, p)
}

func (c *conn) sendAck(kind Type, id uint16, code ReasonCode) {
	if c.writeAck(kind, id, code) {
		c.pc().out[kind&15].Add(1)
	}
}

func (c *conn) sendDisconnect(d *Disconnect) {
	c.wmu.Lock()
	if c.code == 0 {
		c.code = d.ReasonCode
	}
	c.wmu.Unlock()
	if c.version() == Version5 {
		c.packet(d)
	}
}

// bytesOf views s as bytes, for encoders that only read.
func bytesOf(s string) []byte { return unsafe.Slice(unsafe.StringData(s), len(s)) }

// stringOf views b as a string, for a transient message (routeMessage):
// b must not change while the string is used, nor the string be kept.
func stringOf(b []byte) string { return unsafe.String(unsafe.SliceData(b), len(b)) }

// sendPublish sends m with the given flags, and reports whether it went
// out: an expired message, one larger than the client's Maximum Packet
// Size or a refused write is dropped and counted.
func (c *conn) sendPublish(m *msg, qos QoS, id uint16, dup, retain bool, ids []uint32, now int64) bool {
	s := c.srv
	if m.expired(now) {
		s.drop(DropExpired)
		return false
	}
	if c.version() != Version5 {
		// 3.1.1 has no properties, topic aliases or Maximum Packet Size:
		// the packet is encoded straight into the output, without a
		// Publish (392 bytes) to fill in.
		if !c.writePublish311(publishFlags(qos, dup, retain), m.Topic, id, m.Payload) {
			s.drop(DropWriteFailed)
			return false
		}
		c.sentPublish(qos)
		return true
	}
	p := Publish{Dup: dup, QoS: qos, Retain: retain, Topic: bytesOf(m.Topic), PacketID: id, Payload: m.Payload}
	pr := &p.Props
	if m.PayloadFormat != 0 {
		pr.PayloadFormat = m.PayloadFormat
	}
	if m.expires != 0 {
		pr.MessageExpiry = uint32(max(1, (m.expires-now+int64(time.Second)-1)/int64(time.Second)))
	}
	pr.ContentType, pr.ResponseTopic = bytesOf(m.ContentType), bytesOf(m.ResponseTopic)
	pr.CorrelationData, pr.User, pr.SubscriptionIDs = m.CorrelationData, m.User, ids
	newAlias := false
	x := c.x
	if x != nil && x.aliasMax > 0 {
		// Outbound topic aliases: the first PUBLISH of a topic sets one
		// while there are free ones, later ones send it without the
		// topic (MQTT 5.0 3.3.2.3.4).
		if a, ok := x.outAliases[m.Topic]; ok {
			p.Topic, p.Props.TopicAlias = nil, a
		} else if len(x.outAliases) < int(x.aliasMax) {
			if x.outAliases == nil {
				x.outAliases = make(map[string]uint16)
			}
			a := uint16(len(x.outAliases) + 1)
			x.outAliases[strings.Clone(m.Topic)] = a // m may be transient
			p.Props.TopicAlias, newAlias = a, true
		}
	}
	limit := 0
	if x != nil {
		limit = int(x.maxOut)
	}
	sent, tooLarge := c.writePublish(&p, limit)
	if tooLarge {
		if newAlias {
			delete(x.outAliases, m.Topic)
		}
		s.drop(DropTooLarge)
		return false
	}
	if !sent {
		if newAlias {
			delete(x.outAliases, m.Topic)
		}
		s.drop(DropWriteFailed)
		return false
	}
	c.sentPublish(qos)
	return true
}

// sentPublish counts a PUBLISH sent at qos.
func (c *conn) sentPublish(qos QoS) {
	pc := c.pc()
	pc.out[TypePublish].Add(1)
	pc.pubOut[qos].Add(1)
	c.ec.AddServed(1)
}

// fail answers a packet the decoder refused and closes the connection.
func (c *conn) fail(e *Error) {
	c.srv.stats.proto.Add(1)
	why := engine.ReasonProtocolError
	if e.Code == PacketTooLarge || e.Code == QuotaExceeded {
		why = engine.ReasonLimitReached
	}
	if !c.is(stConnected) {
		// A CONNECT that failed: CONNACK with the reason, in the version
		// the client asked for when the decoder got that far.
		sent := true
		if v := c.version(); v == Version311 && (e.Code == MalformedPacket || e.Code == ProtocolError) {
			// 3.1.1 has no return code for a malformed CONNECT: close
			// without a CONNACK [MQTT-3.1.4-1] (a CONNACK 0x03 would tell
			// the client to come back later with the same packet).
			sent = false
		} else if v != 0 {
			c.srv.stats.refused.Add(1)
			c.packet(&Connack{ReasonCode: e.Code})
		} else if e.Code == UnsupportedProtocolVersion {
			c.srv.stats.refused.Add(1)
			c.setVersion(Version311)
			c.packet(&Connack{ReasonCode: UnsupportedProtocolVersion})
		} else {
			sent = false
		}
		c.closeWith(why, e.Code, sent)
		return
	}
	c.disconnect(e.Code, why, e.Msg)
}

// disconnect sends a 5.0 DISCONNECT with code (nothing in 3.1.1) and
// closes the connection.
func (c *conn) disconnect(code ReasonCode, why engine.CloseReason, reason string) {
	sent := false
	if c.is(stConnected) {
		d := Disconnect{ReasonCode: code}
		if reason != "" {
			d.Props.ReasonString = bytesOf(reason)
		}
		c.sendDisconnect(&d)
		sent = c.version() == Version5
	}
	c.closeWith(why, code, sent)
}

// closeWith closes the engine connection once its output, batched
// included, is flushed. It runs on the loop. sent says the server's last
// packet went out (a refused CONNACK, a 5.0 DISCONNECT): the client may
// still be sending, and closing on its unread input would reset the
// connection and throw away what it has not received yet, that packet
// among it. So the close lingers (engine.Conn.CloseLinger: the write side
// is shut after the output, what the client still sends is read and
// thrown away until it closes its side, within the engine's bounds), and
// the connection's end is settled at once (closed): the session, the will
// and Hooks.OnDisconnect do not wait for the client to close, and a
// reconnect meanwhile is no takeover. (Over WebSocket the websocket's
// close handshake settles it when it ends: wsBridge.OnClose.) Otherwise
// (a close the client asked for, a 3.1.1 error with nothing to say) the
// close is plain, and the end settled when the engine calls OnClose.
func (c *conn) closeWith(why engine.CloseReason, code ReasonCode, sent bool) {
	c.set(stDone)
	c.flush()
	if ws := c.ws(); ws != nil {
		// The websocket batches its frames while it handles input: its
		// close frame goes after them, then it closes the connection
		// (lingering unless the client's close frame came).
		ws.Close(wsCloseCode(code), "")
		return
	}
	if !sent {
		c.ec.CloseWithDetail(why, code)
		return
	}
	c.ec.CloseLinger(why, code)
	c.closed(why)
}

// wsCloseCode is the WebSocket close code of an MQTT close: 1000 for a
// normal one, 1002 for a malformed packet or protocol error, 1008 (policy)
// for the rest.
func wsCloseCode(code ReasonCode) uint16 {
	switch {
	case !code.IsError():
		return 1000
	case code == MalformedPacket || code == ProtocolError:
		return 1002
	}
	return 1008
}

// flush writes the batched output now: a close must not overtake it.
func (c *conn) flush() {
	c.wmu.Lock()
	if c.out != nil && len(c.out.b) > 0 && c.wf&wClosed == 0 {
		c.rawWrite(c.out.b)
		c.out.b = c.out.b[:0]
	}
	c.wmu.Unlock()
}

// handle handles one decoded packet of n bytes, read at now (unix ns).
func (c *conn) handle(p Packet, n int, now int64) {
	switch p := p.(type) {
	case *Connect:
		c.onConnect(p)
	case *Publish:
		c.onPublish(p, n, now)
	case *Ack:
		c.onAck(p)
	case *Subscribe:
		c.onSubscribe(p)
	case *Unsubscribe:
		c.onUnsubscribe(p)
	case *Pingreq:
		c.packet(&Pingresp{})
	case *Disconnect:
		c.onDisconnect(p)
	case *Auth:
		c.disconnect(ProtocolError, engine.ReasonProtocolError, "no extended authentication")
	default:
		c.srv.stats.proto.Add(1)
		c.disconnect(ProtocolError, engine.ReasonProtocolError, "packet not sent by clients")
	}
}

// refuse answers a CONNECT with a failure code and closes.
func (c *conn) refuse(code ReasonCode, reason string, why engine.CloseReason) {
	c.srv.stats.refused.Add(1)
	ca := Connack{ReasonCode: code}
	if reason != "" && c.version() == Version5 {
		ca.Props.ReasonString = bytesOf(reason)
	}
	c.packet(&ca)
	c.closeWith(why, code, true)
}

// maxOutAliases bounds the topic aliases the server sets on one
// connection, whatever the client allows.
const maxOutAliases = 64

// serverPrefix makes assigned client ids unique across servers.
var serverPrefix = func() string {
	var b [6]byte
	rand.Read(b[:])
	return hex.EncodeToString(b[:])
}()

// topicOK checks a topic name or filter against MaxTopicLength and
// MaxTopicLevels.
func (s *Server) topicOK(t string) bool {
	return len(t) <= s.cfg.MaxTopicLength && strings.Count(t, "/") < s.cfg.MaxTopicLevels
}

func (c *conn) onConnect(p *Connect) {
	s := c.srv
	c.setVersion(p.Version)
	if p.Props.Present.Has(PropMaximumPacketSize) {
		// Before any refusal: a CONNACK must fit it too.
		c.ext().maxOut = p.Props.MaximumPacketSize
	}
	if p.Props.Present.Has(PropRequestProblemInfo) && !p.Props.RequestProblemInfo {
		c.set(stNoProblem)
	}
	now := s.now()
	cid := string(p.ClientID)
	assigned := false
	if cid == "" {
		if p.Version != Version5 && !p.CleanStart {
			c.refuse(ClientIdentifierNotValid, "", engine.ReasonProtocolError)
			return
		}
		cid = assignedClientIDPrefix + serverPrefix + "-" + strconv.FormatUint(s.idSeq.Add(1), 36)
		assigned = true
	}
	if len(cid) > s.cfg.MaxClientIDLength {
		c.refuse(ClientIdentifierNotValid, "client identifier too long", engine.ReasonLimitReached)
		return
	}
	if p.Props.Present.Has(PropAuthMethod) {
		c.refuse(BadAuthenticationMethod, "extended authentication is not supported", engine.ReasonLocal)
		return
	}
	// The Client is part of the connection; the hooks see it once the
	// CONNECT is accepted (Authenticate gets ConnectInfo), and a refused
	// CONNECT is the connection's last packet.
	cl := c.client()
	cl.ID = cid
	switch {
	case !p.HasUsername:
	case string(p.Username) == cid:
		c.set(stUserIsID) // one string for both, as devices often send
	default:
		u := string(p.Username)
		c.ext().user = &u
	}
	if h := s.cfg.Hooks.Authenticate; h != nil {
		// (A ConnectInfo from a pool: one made here escapes through the
		// hook, 112 bytes of garbage a CONNECT.)
		ci := connectInfos.Get().(*ConnectInfo)
		*ci = ConnectInfo{ClientID: cid, Username: p.Username, Password: p.Password,
			HasUsername: p.HasUsername, HasPassword: p.HasPassword, Version: p.Version,
			Remote: c.ec.RemoteAddr(), WebSocket: c.ws() != nil, Conn: c.ec}
		ident, code, reason := h(ci)
		*ci = ConnectInfo{}
		connectInfos.Put(ci)
		if code != Success {
			if !code.IsError() {
				code = NotAuthorized
			}
			c.refuse(code, reason, engine.ReasonLocal)
			return
		}
		cl.Identity = ident
	}

	// Keep-alive, and the client's limits on what it receives: before the
	// will's Authorize, the first hook to see the Client.
	ka := time.Duration(p.KeepAlive) * time.Second
	var serverKA uint16
	if mk := s.cfg.MaxKeepAlive; mk > 0 && p.Version == Version5 && (ka == 0 || ka > mk) {
		serverKA = uint16(min(mk/time.Second, 65535))
		ka = time.Duration(serverKA) * time.Second
	}
	c.kaSecs = uint16(ka / time.Second)
	if p.Props.Present.Has(PropReceiveMaximum) {
		c.ext().recvMax = p.Props.ReceiveMaximum
	}
	if a := min(p.Props.TopicAliasMaximum, maxOutAliases); a > 0 {
		c.ext().aliasMax = a
	}

	// Session expiry.
	var expiry uint32
	var expiryCapped bool
	maxExp := s.cfg.MaxSessionExpiry
	if p.Version == Version5 {
		expiry = p.Props.SessionExpiry
		if maxExp > 0 && expiry != 0 && time.Duration(expiry)*time.Second > maxExp {
			expiry, expiryCapped = uint32(min(maxExp/time.Second, maxSessionExpirySecondsV5-1)), true
		}
	} else if !p.CleanStart {
		expiry = maxSessionExpirySecondsV5
		if maxExp > 0 {
			expiry = uint32(min(maxExp/time.Second, maxSessionExpirySecondsV5-1))
		}
	}

	// A hook sees the Client from the will's Authorize on, and another
	// goroutine it hands the Client to reads c.x (Client.WebSocket,
	// Client.Username, Client.Disconnect): the connExt a session apart
	// needs is made before then, so that only its sess is set later.
	if p.Will != nil && s.cfg.Hooks.Authorize != nil && (!p.CleanStart || expiry != 0) {
		c.ext()
	}
	var will *msg
	if w := p.Will; w != nil {
		topic := string(w.Topic)
		if !s.topicOK(topic) {
			c.refuse(TopicNameInvalid, "will topic over the server's limits", engine.ReasonLimitReached)
			return
		}
		if a := s.cfg.Hooks.Authorize; a != nil && !a(cl, ActionPublish, topic) {
			c.refuse(NotAuthorized, "will topic not authorized", engine.ReasonLocal)
			return
		}
		wm := Message{Topic: topic, Payload: w.Payload, QoS: w.QoS, Retain: w.Retain,
			PayloadFormat: w.Props.PayloadFormat, MessageExpiry: w.Props.MessageExpiry,
			ContentType: string(w.Props.ContentType), ResponseTopic: string(w.Props.ResponseTopic),
			CorrelationData: w.Props.CorrelationData, User: w.Props.User}
		will = newMsg(&wm, cid, now)
		will.delay = w.Props.WillDelay
	}

	// The CONNACK comes from a pool: made per client, it was most of the
	// garbage a ramp of connections leaves (and so of the GC's headroom).
	ca := connackPool.Get().(*Connack)
	defer func() {
		*ca = Connack{}
		connackPool.Put(ca)
	}()
	if p.Version == Version5 {
		pr := &ca.Props
		pr.ReceiveMaximum = uint16(s.cfg.MaxInflight)
		pr.MaximumPacketSize = uint32(s.lim.MaxPacketSize)
		if s.cfg.TopicAliasMaximum > 0 {
			pr.TopicAliasMaximum = uint16(s.cfg.TopicAliasMaximum)
		}
		if assigned {
			pr.AssignedClientID = bytesOf(cid)
		}
		if serverKA != 0 {
			pr.ServerKeepAlive = serverKA
		}
		if expiryCapped {
			pr.SessionExpiry = expiry
		}
	}

	var wills []*msg
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		c.refuse(ServerUnavailable, "server closed", engine.ReasonShutdown)
		return
	}
	ss := s.sessions.Get(cid)
	if will != nil && s.cfg.MaxWillBytes > 0 {
		// The session's will, if any, goes whatever happens below.
		held := s.willBytes
		if w := s.wills[ss]; ss != nil && w != nil {
			held -= int64(w.size)
		}
		if held+int64(will.size) > s.cfg.MaxWillBytes {
			s.mu.Unlock()
			s.stats.willsRefused.Add(1)
			c.refuse(QuotaExceeded, "will messages over the server's limit", engine.ReasonLimitReached)
			return
		}
	}
	if ss != nil {
		ss.mu.Lock()
		old := ss.conn
		ss.conn = nil
		ss.mu.Unlock()
		if old != nil {
			s.stats.takeovers.Add(1)
			s.stats.online.Add(-1)
			old.takeOver()
		} else {
			s.stats.offline.Add(-1)
			delete(s.offline, ss)
		}
		if w := s.wills[ss]; w != nil {
			// The old connection ended without a normal DISCONNECT: its
			// will goes out unless this connection resumes the session
			// within the will delay (5.0 3.1.3.2.2).
			if p.CleanStart || (old != nil && w.delay == 0) {
				wills = append(wills, w)
			}
			s.setWill(ss, nil)
		}
		if p.CleanStart {
			s.endSessionLocked(ss)
			ss = nil
		} else {
			ca.SessionPresent = true
		}
	}
	if ss == nil {
		if s.sessions.Len() >= s.cfg.MaxSessions {
			s.mu.Unlock()
			c.refuse(QuotaExceeded, "too many sessions", engine.ReasonLimitReached)
			return
		}
		ss = c.sessionFor(cid, expiry)
		s.sessions.Put(ss)
	}
	ss.expiry = expiry
	s.setWill(ss, will)
	s.stats.online.Add(1)
	if c.ws() != nil && ka > 0 {
		// The engine's idle timer is reset by output too: the sweeper
		// checks a WebSocket client's own input against its keep-alive.
		s.wsKeepAlive[c] = struct{}{}
	}
	if ss != &c.own {
		// Before ss.conn below. c.x itself was made before any hook saw
		// the Client if one could have (above); sess is read by no Client
		// method, and by deliveries only once ss.conn is c.
		c.ext().sess = ss
	}
	c.set(stConnected)
	ss.mu.Lock()
	c.packet(ca)
	ss.conn = c
	if ca.SessionPresent && ss.fl != nil {
		ss.resend(s, now.UnixNano())
	}
	ss.mu.Unlock()
	s.mu.Unlock()

	s.stats.pending.Add(-1)
	if p.Version == Version5 {
		s.stats.connV5.Add(1)
	} else {
		s.stats.connV3.Add(1)
	}
	if ka > 0 {
		idle := ka * 3 / 2 // not padded: keepAliveArm
		if c.ws() != nil {
			// The sweeper closes a silent WebSocket client, with
			// DISCONNECT 0x8D and a close frame; the engine's timer, which
			// would close it without either, is a backstop behind it.
			idle += 2 * s.cfg.SweepInterval
		}
		c.armKeepAlive(c.ec, idle)
	} else {
		c.ec.SetIdleTimeout(-1)
	}
	for _, w := range wills {
		s.publishWill(w, now)
	}
	if h := s.cfg.Hooks.OnConnect; h != nil {
		h(cl, ca.SessionPresent)
	}
}

// takeOver ends a connection whose session another one took: DISCONNECT
// session_taken_over in 5.0, and close. It may run on any goroutine.
func (c *conn) takeOver() {
	c.wmu.Lock()
	c.wf |= wTakenOver
	c.wmu.Unlock()
	c.kick(SessionTakenOver, "")
}

// sessionFor returns a new session for the client id cid with the given
// expiry: the connection's own when it ends with the connection (expiry
// 0; TestOwnSession), else one apart that may outlive it. s.mu is held.
func (c *conn) sessionFor(cid string, expiry uint32) *session {
	if expiry == 0 {
		c.own.inConn = true
		return &c.own
	}
	return newSession(cid)
}

// kick sends a 5.0 DISCONNECT with code and closes the connection, from
// any goroutine. Over TCP, a 5.0 client's goodbye and lingering close
// (closeWith) run on the connection's loop; nothing happens if it closes
// before then.
func (c *conn) kick(code ReasonCode, reason string) {
	// Nothing more of the client's input is handled, from the rest of the
	// read under way on — a hook on the connection's own loop kicking it
	// (Client.Disconnect from OnPublish) included.
	c.set(stKicked)
	if c.ws() == nil && c.version() == Version5 {
		c.ec.Post(func() {
			if c.is(stDone) {
				return // closing already
			}
			d := Disconnect{ReasonCode: code}
			if reason != "" && len(reason) < 0xffff {
				d.Props.ReasonString = bytesOf(reason)
			}
			c.sendDisconnect(&d)
			c.closeWith(engine.ReasonLocal, code, true)
		})
		return
	}
	d := Disconnect{ReasonCode: code}
	if reason != "" && len(reason) < 0xffff {
		d.Props.ReasonString = bytesOf(reason)
	}
	c.sendDisconnect(&d)
	c.flush()
	if ws := c.ws(); ws != nil {
		ws.Close(wsCloseCode(code), "")
		return
	}
	c.ec.CloseWithDetail(engine.ReasonLocal, code)
}

// current reports whether c still owns its session.
func (c *conn) current() bool {
	ss := c.session()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn == c
}

func (c *conn) onPublish(p *Publish, n int, t int64) {
	s := c.srv
	v5 := c.version() == Version5
	// The topic and strings of a message are views of the packet unless a
	// hook would see them (Authorize and OnPublish may keep the topic
	// they are given): routeMessage routes a QoS 0 message that is not
	// retained as a view, and copies any other once, strings included.
	view := s.cfg.Hooks.Authorize == nil && s.cfg.Hooks.OnPublish == nil
	var topic string
	if v5 && p.Props.Present.Has(PropSubscriptionID) {
		// Subscription identifiers go from the server to a client only
		// [MQTT-3.3.4-6].
		c.srv.stats.proto.Add(1)
		c.disconnect(ProtocolError, engine.ReasonProtocolError, "subscription identifier in a client's PUBLISH")
		return
	}
	if v5 && p.Props.Present.Has(PropTopicAlias) {
		a := int(p.Props.TopicAlias)
		if a == 0 || a > s.cfg.TopicAliasMaximum {
			c.srv.stats.proto.Add(1)
			c.disconnect(TopicAliasInvalid, engine.ReasonProtocolError, "topic alias out of range")
			return
		}
		if len(p.Topic) > 0 {
			topic = string(p.Topic)
			if c.st().aliases == nil {
				c.st().aliases = make([]string, s.cfg.TopicAliasMaximum)
			}
			c.st().aliases[a-1] = topic
		} else if c.st().aliases == nil || c.st().aliases[a-1] == "" {
			c.srv.stats.proto.Add(1)
			c.disconnect(ProtocolError, engine.ReasonProtocolError, "unknown topic alias")
			return
		} else {
			topic = c.st().aliases[a-1]
		}
	} else if view {
		topic = stringOf(p.Topic)
	} else {
		topic = string(p.Topic)
	}
	if !s.topicOK(topic) {
		c.disconnect(TopicNameInvalid, engine.ReasonLimitReached, "topic over the server's limits")
		return
	}
	now := time.Unix(0, t) // read at the start of this OnData
	// The buckets are touched (and the publishing state made) only when a
	// rate is bounded: with both off a message reads no state of its own.
	if (s.cfg.PublishRate > 0 || s.cfg.PublishBytesRate > 0) &&
		(!c.st().msgRate.allow(t, s.cfg.PublishRate, float64(s.cfg.PublishBurst), 1) ||
			!c.st().byteRate.allow(t, s.cfg.PublishBytesRate, max(s.cfg.PublishBytesRate, float64(s.lim.MaxPacketSize)), float64(n))) {
		s.stats.rateLimited.Add(1)
		c.disconnect(MessageRateTooHigh, engine.ReasonLimitReached, "publish rate over the server's limit")
		return
	}
	c.pc().pubIn[p.QoS].Add(1)
	ss := c.session()
	ack := func(code ReasonCode) {
		switch p.QoS {
		case QoS1:
			c.sendAck(TypePuback, p.PacketID, code)
		case QoS2:
			c.sendAck(TypePubrec, p.PacketID, code)
		}
	}
	if a := s.cfg.Hooks.Authorize; a != nil && !a(c.client(), ActionPublish, topic) {
		s.drop(DropNotAuthorized)
		if v5 {
			ack(NotAuthorized)
		} else {
			ack(Success)
		}
		return
	}
	if v5 && p.Props.PayloadFormat == 1 && !utf8.Valid(p.Payload) {
		if p.QoS == QoS0 {
			c.disconnect(PayloadFormatInvalid, engine.ReasonProtocolError, "payload is not UTF-8")
			return
		}
		ack(PayloadFormatInvalid)
		return
	}
	if p.QoS == QoS2 {
		ss.mu.Lock()
		if ss.conn != c {
			ss.mu.Unlock()
			return
		}
		dup := false
		for _, id := range ss.f().inQoS2 {
			if id == p.PacketID {
				dup = true
				break
			}
		}
		if !dup && len(ss.f().inQoS2) >= s.cfg.MaxInflight {
			ss.mu.Unlock()
			c.disconnect(ReceiveMaximumExceeded, engine.ReasonLimitReached, "too many QoS 2 messages unreleased")
			return
		}
		if dup {
			ss.mu.Unlock()
			ack(Success) // already routed: PUBREC again, no second delivery
			return
		}
		ss.f().inQoS2 = append(ss.f().inQoS2, p.PacketID)
		ss.mu.Unlock()
	}
	tm := getMsg() // the hook's Message and, for QoS 0, the routed one
	m := &tm.Message
	m.Topic, m.Payload, m.QoS, m.Retain = topic, p.Payload, p.QoS, p.Retain
	if v5 {
		pr := &p.Props
		m.PayloadFormat, m.MessageExpiry = pr.PayloadFormat, pr.MessageExpiry
		if view {
			m.ContentType, m.ResponseTopic = stringOf(pr.ContentType), stringOf(pr.ResponseTopic)
		} else {
			m.ContentType, m.ResponseTopic = string(pr.ContentType), string(pr.ResponseTopic)
		}
		m.CorrelationData, m.User = pr.CorrelationData, pr.User
	}
	var res *pending
	retain, refused, why := p.Retain, false, DropReason(0)
	if p.Retain && len(p.Payload) > 0 {
		// The store decides before the hook, and keeps the room it
		// grants: the hook (a bridge to other nodes), the subscribers and
		// the store see the same retain flag.
		var ok bool
		if res, why, ok = s.reserveRetained(c.client().ID, topic, msgSize(m)); !ok {
			if v5 && p.QoS != QoS0 {
				// A 5.0 client can be told: the message is refused whole,
				// neither delivered nor bridged, so that a retry (a QoS 2
				// resend included) can't deliver it twice.
				putMsg(tm)
				s.drop(why)
				if p.QoS == QoS2 {
					c.forgetQoS2(p.PacketID)
				}
				c.refuseRetained(p, why)
				return
			}
			// QoS 0 and 3.1.1 can't be told: delivered as a plain message.
			retain, refused, m.Retain = false, true, false
		}
	}
	local, code := true, Success
	if h := s.cfg.Hooks.OnPublish; h != nil {
		local, code = h(c.client(), m)
	}
	if code >= 0x80 {
		putMsg(tm)
		if res != nil {
			s.releaseRetained(res)
		}
		s.drop(DropRefused)
		if !pubackCodes.has(code) {
			code = UnspecifiedError // one PUBACK and PUBREC cannot carry
		}
		if p.QoS == QoS2 {
			c.forgetQoS2(p.PacketID) // a PUBREC of 0x80 or more ends the flow
		}
		if v5 {
			ack(code)
		} else {
			ack(Success)
		}
		return
	}
	if local {
		if refused {
			s.drop(why) // (counted once the hook has not refused the message)
		}
		s.routeMessage(tm, retain, res, c.client().ID, now, c.ec.Loop())
	} else if res != nil {
		s.releaseRetained(res) // the hook took the message over
	}
	putMsg(tm)
	ack(Success)
}

// refuseRetained answers a 5.0 QoS 1 or 2 retained PUBLISH the store's
// bounds refused (why): quota_exceeded, with a reason string unless the
// client asked for none.
func (c *conn) refuseRetained(p *Publish, why DropReason) {
	a := Ack{Kind: TypePuback, PacketID: p.PacketID, ReasonCode: QuotaExceeded}
	if p.QoS == QoS2 {
		a.Kind = TypePubrec
	}
	if !c.is(stNoProblem) {
		reason := "retained store full"
		if why == DropRetainedClientFull {
			reason = "client's retained quota exceeded"
		}
		a.Props.ReasonString = bytesOf(reason)
	}
	c.packet(&a)
}

// forgetQoS2 drops id from the session's QoS 2 messages received and not
// yet released.
func (c *conn) forgetQoS2(id uint16) {
	ss := c.session()
	ss.mu.Lock()
	defer ss.mu.Unlock()
	if ss.conn != c {
		return
	}
	if i := slices.Index(ss.f().inQoS2, id); i >= 0 {
		ss.f().inQoS2 = slices.Delete(ss.f().inQoS2, i, i+1)
		if len(ss.f().inQoS2) == 0 {
			ss.f().inQoS2 = nil
		}
		ss.tidy()
	}
}

func (c *conn) onAck(a *Ack) {
	ss := c.session()
	now := c.srv.now().UnixNano()
	if a.Kind == TypePubrel {
		ss.mu.Lock()
		found := false
		if ss.conn == c {
			for i, id := range ss.f().inQoS2 {
				if id == a.PacketID {
					ss.f().inQoS2 = append(ss.f().inQoS2[:i], ss.f().inQoS2[i+1:]...)
					found = true
					break
				}
			}
			if len(ss.f().inQoS2) == 0 {
				ss.f().inQoS2 = nil
			}
			ss.tidy()
		}
		ss.mu.Unlock()
		code := Success
		if !found {
			code = PacketIdentifierNotFound
		}
		c.sendAck(TypePubcomp, a.PacketID, code)
		return
	}
	if !ss.acked(c.srv, c, a.Kind, a.PacketID, a.ReasonCode, now) && a.Kind == TypePubrec {
		c.sendAck(TypePubrel, a.PacketID, PacketIdentifierNotFound)
	}
}

func (c *conn) onSubscribe(p *Subscribe) {
	s := c.srv
	if !c.current() {
		return
	}
	// The SUBACK, its reason codes included, comes from a pool: a
	// client's SUBSCRIBE leaves no garbage behind in the common case.
	sa := subackPool.Get().(*Suback)
	codes := slices.Grow(sa.ReasonCodes[:0], len(p.Filters))[:len(p.Filters)]
	clear(codes)
	var subID uint32
	if len(p.Props.SubscriptionIDs) > 0 {
		subID = p.Props.SubscriptionIDs[0]
	}
	type plan struct {
		filter, tf, group string
		qos               QoS
		noLocal, rap      bool
		rh                byte
	}
	var planBuf [2]plan
	plans := planBuf[:0]
	if len(p.Filters) > len(planBuf) {
		plans = make([]plan, 0, len(p.Filters))
	}
	plans = plans[:len(p.Filters)]
	// The filters are views of the packet unless Authorize would see
	// them (it may keep the filter it is given): a subscription copies
	// its own (newSubscription), and what it indexes is that copy.
	view := s.cfg.Hooks.Authorize == nil
	for i, f := range p.Filters {
		filter := stringOf(f.Filter)
		if !view {
			filter = string(f.Filter)
		}
		pl := plan{filter: filter, tf: filter, qos: min(f.QoS, QoS2), noLocal: f.NoLocal, rap: f.RetainAsPublished, rh: f.RetainHandling}
		if c.version() != Version5 {
			pl.noLocal, pl.rap, pl.rh = false, false, 0
		}
		if !ValidTopicFilter(filter) || !s.topicOK(filter) {
			codes[i] = TopicFilterInvalid
			continue
		}
		if IsShared(filter) {
			pl.group, pl.tf, _ = ParseShared(filter)
		}
		if a := s.cfg.Hooks.Authorize; a != nil && !a(c.client(), ActionSubscribe, pl.tf) {
			codes[i] = NotAuthorized
			continue
		}
		codes[i] = ReasonCode(pl.qos)
		plans[i] = pl
	}
	type pending struct {
		tf  string
		sub *subscription
	}
	var retained []pending
	ss := c.session()
	s.mu.Lock()
	for i, pl := range plans {
		if codes[i].IsError() {
			continue
		}
		prev, old := ss.findSub(pl.filter)
		if old == nil && int(ss.nsubs) >= s.cfg.MaxSubscriptions {
			codes[i] = QuotaExceeded
			continue
		}
		sub := newSub(ss, pl.filter, subID)
		sub.setTF(len(pl.filter) - len(pl.tf))
		sub.setOptions(pl.qos, pl.noLocal, pl.rap)
		s.index(old, sub)
		ss.linkSub(prev, old, sub)
		if old == nil {
			s.stats.subscriptions.Add(1)
		}
		if pl.group == "" && (pl.rh == 0 || pl.rh == 1 && old == nil) {
			retained = append(retained, pending{sub.topicFilter(), sub})
		}
	}
	s.mu.Unlock()
	sa.PacketID, sa.ReasonCodes = p.PacketID, codes
	c.packet(sa)
	if cap(codes) > 64 {
		codes = nil // a large SUBSCRIBE's codes are not kept
	}
	*sa = Suback{ReasonCodes: codes[:0]} // the codes' array is kept for the next
	subackPool.Put(sa)
	now := s.now().UnixNano()
	for _, r := range retained {
		var ids []uint32
		if id := r.sub.id(); id != 0 {
			ids = []uint32{id}
		}
		for _, m := range s.retainedFor(r.tf, now) {
			ss.deliver(s, m, min(m.QoS, r.sub.qos), true, ids, now)
		}
	}
}

func (c *conn) onUnsubscribe(p *Unsubscribe) {
	s := c.srv
	if !c.current() {
		return
	}
	ss := c.session()
	codes := make([]ReasonCode, len(p.Filters))
	s.mu.Lock()
	for i, f := range p.Filters {
		codes[i] = NoSubscriptionExisted
		if prev, sub := ss.findSub(string(f)); sub != nil {
			s.unindex(sub)
			ss.unlinkSub(prev, sub)
			s.stats.subscriptions.Add(-1)
			codes[i] = Success
		}
	}
	s.mu.Unlock()
	c.packet(&Unsuback{PacketID: p.PacketID, ReasonCodes: codes})
}

func (c *conn) onDisconnect(p *Disconnect) {
	s := c.srv
	ss := c.session()
	if c.version() == Version5 && p.Props.Present.Has(PropSessionExpiry) {
		s.mu.Lock()
		bad := ss.expiry == 0 && p.Props.SessionExpiry != 0
		if !bad && c.current() {
			e := p.Props.SessionExpiry
			if maxExp := s.cfg.MaxSessionExpiry; maxExp > 0 && e != 0 && time.Duration(e)*time.Second > maxExp {
				e = uint32(min(maxExp/time.Second, maxSessionExpirySecondsV5-1))
			}
			ss.expiry = e
		}
		s.mu.Unlock()
		if bad {
			s.stats.proto.Add(1)
			c.disconnect(ProtocolError, engine.ReasonProtocolError, "session expiry set on DISCONNECT after 0 on CONNECT")
			return
		}
	}
	normal := c.version() != Version5 || p.ReasonCode != DisconnectWithWillMessage
	if normal {
		// The will is discarded on receipt [MQTT-3.14.4-3], not when the
		// connection has closed: closeWith waits for the output to
		// flush, and a takeover in that window would publish it.
		s.mu.Lock()
		if c.current() {
			s.setWill(ss, nil)
		}
		s.mu.Unlock()
	}
	c.wmu.Lock()
	if c.code == 0 {
		c.code = p.ReasonCode
	}
	if normal {
		c.wf |= wNormal
	}
	c.wmu.Unlock()
	c.closeWith(engine.ReasonPeerClosed, p.ReasonCode, false)
}

// closed runs once on the loop when the connection has closed, or has
// begun its lingering close (closeWith): the session goes offline (or
// ends), the will is published or scheduled, the hook told. A second call
// (OnClose at the linger's end) does nothing.
func (c *conn) closed(reason engine.CloseReason) {
	s := c.srv
	c.wmu.Lock()
	if c.wf&wClosed != 0 {
		c.wmu.Unlock()
		return
	}
	c.wf |= wClosed
	c.releaseOut()
	code, normal := c.code, c.wf&wNormal != 0
	c.wmu.Unlock()
	c.set(stDone)
	c.freePartial()
	if !c.is(stConnected) {
		s.stats.pending.Add(-1)
		return
	}
	if c.version() == Version5 {
		s.stats.connV5.Add(-1)
	} else {
		s.stats.connV3.Add(-1)
	}
	now := s.now()
	ss := c.session()
	var will *msg
	s.mu.Lock()
	delete(s.wsKeepAlive, c)
	ss.mu.Lock()
	mine := ss.conn == c
	if mine {
		ss.conn = nil
	}
	ss.mu.Unlock()
	if mine {
		s.stats.online.Add(-1)
		if normal {
			s.setWill(ss, nil)
		}
		if w := s.wills[ss]; w != nil && (w.delay == 0 || ss.expiry == 0) {
			will = w
			s.setWill(ss, nil)
		}
		if ss.expiry == 0 {
			s.endSessionLocked(ss)
		} else {
			s.stats.offline.Add(1)
			if s.wills[ss] != nil || ss.expiry != maxSessionExpirySecondsV5 {
				s.offline[ss] = now.UnixNano() // when the will and the expiry count from
			}
		}
	}
	s.mu.Unlock()
	if will != nil {
		s.publishWill(will, now)
	}
	if h := s.cfg.Hooks.OnDisconnect; h != nil {
		// Read after the session is settled: a takeover that held
		// Server.mu before this close did (as above) has set it.
		c.wmu.Lock()
		takenOver := c.wf&wTakenOver != 0
		c.wmu.Unlock()
		h(c.client(), reason, code, takenOver)
	}
}

// wsBridge is the websocket handler of MQTT over WebSocket: it feeds the
// binary messages of each connection to its MQTT state.
type wsBridge struct{ s *Server }

var (
	_ websocket.Handler      = wsBridge{}
	_ websocket.OpenHandler  = wsBridge{}
	_ websocket.CloseHandler = wsBridge{}
)

// OnOpen makes the connection's MQTT state.
func (b wsBridge) OnOpen(wc *websocket.Conn) {
	wc.SetContext(b.s.newConn(wc.Engine(), wc))
}

// OnMessage feeds a binary message to the connection; a text message is a
// protocol error (MQTT 5.0 6.0).
func (b wsBridge) OnMessage(wc *websocket.Conn, op websocket.Opcode, data []byte) {
	c, _ := wc.Context().(*conn)
	if c == nil {
		return
	}
	if op != websocket.OpBinary {
		c.srv.stats.proto.Add(1)
		c.disconnect(ProtocolError, engine.ReasonProtocolError, "text WebSocket message")
		return
	}
	c.feedWS(data)
}

// OnClose ends the connection's MQTT state.
func (b wsBridge) OnClose(wc *websocket.Conn, reason engine.CloseReason, _ uint16) {
	if c, _ := wc.Context().(*conn); c != nil {
		c.closed(reason)
	}
}

// wsDrainHold runs when the engine drains a WebSocket connection: an
// accepted client that Hooks.OnDrain holds stays open.
func wsDrainHold(wc *websocket.Conn) bool {
	c, _ := wc.Context().(*conn)
	return c != nil && c.drainHold()
}

// wsGoingAway runs when the engine drains a WebSocket connection, before
// its close 1001: a 5.0 client gets its DISCONNECT first, as over TCP.
func wsGoingAway(wc *websocket.Conn) string {
	if c, _ := wc.Context().(*conn); c != nil {
		c.drain()
	}
	return "server shutting down"
}

// wsLabel is the websocket label of an MQTT connection: its client id.
func wsLabel(wc *websocket.Conn) string {
	if c, _ := wc.Context().(*conn); c != nil {
		return c.label()
	}
	return ""
}
