package websocket

import (
	"errors"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/pool"
)

// Errors returned by Conn and Group methods.
var (
	// ErrClosed is returned by writes on a connection whose close handshake
	// has begun (a Close frame was sent) or that has closed.
	ErrClosed = errors.New("websocket: connection closed")
	// ErrDataOpcode is returned by WriteMessage for an opcode other than
	// OpText and OpBinary.
	ErrDataOpcode = errors.New("websocket: WriteMessage needs OpText or OpBinary")
	// ErrInvalidCloseCode is returned by Close for a code that may not be
	// sent on the wire (see ValidCloseCode).
	ErrInvalidCloseCode = errors.New("websocket: invalid close code")
	// ErrNotOpen is returned by writes on a dialled connection whose
	// handshake is not done yet: wait for OnOpen.
	ErrNotOpen = errors.New("websocket: connection not open yet")
)

// Defaults applied to a zero Config.
const (
	// DefaultPingInterval is the PingInterval of a zero Config.
	DefaultPingInterval = 30 * time.Second
	// DefaultCloseTimeout is the CloseTimeout of a zero Config.
	DefaultCloseTimeout = 5 * time.Second
	// DefaultDeflateThreshold is the DeflateThreshold of a zero Config.
	DefaultDeflateThreshold = 128
)

// Config configures a Server. The zero value is ready to use: every field
// documents what zero means.
type Config struct {
	// CheckOrigin decides whether to accept a handshake from a browser
	// page of another origin; origin is the raw Origin header value, nil
	// when there is none. A refused handshake gets 403. It runs on the
	// event loop and must not block. Nil accepts requests without Origin
	// and those whose Origin host (and port) equals the Host header,
	// ignoring ASCII case, as browsers send for same-origin pages.
	CheckOrigin func(origin []byte, r *http1.Ctx) bool

	// Subprotocols lists the subprotocols the server speaks, most
	// preferred first. The first one the client offers in
	// Sec-WebSocket-Protocol is chosen (Conn.Subprotocol); a client that
	// offers none of them gets no subprotocol, and decides for itself
	// whether to go on. Empty means no subprotocol is ever chosen.
	Subprotocols []string

	// Accept, when set, runs for a valid handshake before the server
	// answers 101: it may read the request (headers, router parameters,
	// query) and attach values with c.SetContext. Returning false refuses
	// the upgrade with the response Accept wrote to r, or 403 when it set
	// no status. It runs on the event loop and must not block; c must not
	// be written to yet.
	Accept func(r *http1.Ctx, c *Conn) bool

	// MaxMessageSize bounds a received message, summed over its fragments
	// and after decompression; a larger one closes the connection with
	// 1009 (message too big). Zero means 1 MiB; negative means no bound.
	MaxMessageSize int

	// PingInterval is how long a connection may be quiet (no bytes either
	// way) before the server sends a ping. A peer that sends nothing at
	// all, not even the pong, for a further PingInterval is closed with
	// engine.ReasonDeadPeer, so a dead peer is found within two intervals.
	// A message frame still arriving slowly counts as activity only once
	// it is complete. Zero means 30 s; negative disables pings and leaves
	// open connections to the application (no idle or read timeout).
	PingInterval time.Duration

	// CloseTimeout bounds the close handshake: after the server sends a
	// Close frame (Conn.Close, a protocol error, shutdown), it closes the
	// TCP connection when the peer's Close arrives or this long after the
	// last byte moved, whichever is first. Zero means 5 s. A close the
	// peer has not answered (a protocol error, or this timeout) lingers
	// after it (engine.Conn.CloseLinger): up to the engine's WriteTimeout
	// while the output flushes, then its LingerTimeout (2 s by default),
	// so the TCP connection can outlive this bound by that much. OnClose
	// does not wait for the linger.
	CloseTimeout time.Duration

	// Deflate configures permessage-deflate (RFC 7692). The zero value
	// disables it. It costs memory per connection: up to ~888 KB with
	// context takeover both ways, nothing while idle with
	// ServerNoContextTakeover and ClientNoContextTakeover (see the package
	// documentation).
	Deflate DeflateConfig

	// DeflateThreshold is the smallest message, in bytes, that WriteMessage
	// compresses on a connection that negotiated permessage-deflate;
	// smaller ones are sent as they are, since compression would grow them.
	// Zero means 128; negative compresses every message. Group and Hub
	// broadcasts are never compressed (one encoding serves every member).
	DeflateThreshold int

	// Inline runs the handler's OnOpen, OnMessage and OnClose on the event
	// loop, with no hand-off and no copy: for handlers that never block
	// (echo, fan-out to a Group). Zero means they run on the engine's
	// worker pool, one at a time per connection and in order, so they may
	// block; each message is then copied, and a connection whose messages
	// waiting for the handler pass MaxHandlerBacklog is not read until
	// they fall below a quarter of it.
	Inline bool
	// MaxHandlerBacklog bounds, for a handler on the worker pool, the
	// messages of one connection waiting for it, in bytes (each counts
	// 1 KiB more than its size): past it the connection is not read
	// (Stats.ReadPauses counts it) until they fall below a quarter of it,
	// so one fast sender cannot fill the engine's worker queue. Zero means
	// DefaultMaxHandlerBacklog (1 MiB).
	MaxHandlerBacklog int
	// GoingAway returns the reason text of the close 1001 a connection
	// gets when the engine drains (at most 123 bytes); a gateway uses it to
	// carry a jittered retry hint so devices do not come back all at once.
	// It runs where the close starts: on the connection's event loop when
	// the engine drains, on the caller's goroutine for Conn.GoingAway (a
	// handler on a worker); it must not touch loop-owned state then, or the
	// caller posts to the loop first (engine.Conn.Post), as mqtt does.
	// Nil means "server shutting down".
	GoingAway func(c *Conn) string
	// DrainHold, when set, is asked when the engine drains c, before its
	// close 1001: true keeps c open — reading and writing as before — and
	// leaves its goodbye to the handler, which calls c.GoingAway when it
	// is done (a gateway waits for the acks of the commands a device
	// has pending). The engine's shutdown deadline still closes c. It runs
	// on c's event loop and must not block. Nil holds nothing.
	DrainHold func(c *Conn) bool
	// Label names a connection in the engine's introspection
	// (/debug/conns "label"): a gateway returns the device id. Nil means
	// no label.
	Label func(c *Conn) string
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.PingInterval == 0 {
		c.PingInterval = DefaultPingInterval
	}
	if c.CloseTimeout <= 0 {
		c.CloseTimeout = DefaultCloseTimeout
	}
	if c.DeflateThreshold == 0 {
		c.DeflateThreshold = DefaultDeflateThreshold
	}
	if c.MaxHandlerBacklog <= 0 {
		c.MaxHandlerBacklog = DefaultMaxHandlerBacklog
	}
	return c
}

// DefaultMaxHandlerBacklog is Config.MaxHandlerBacklog's default: 1 MiB.
const DefaultMaxHandlerBacklog = 1 << 20

// Handler receives the messages of upgraded connections, and of dialled
// ones (Dial, Client). OnMessage gets each complete text or binary
// message, reassembled and decompressed; data is valid only during the
// call (copy it to keep it). Without Config.Inline (DialConfig.Inline) it
// runs on the engine's worker pool, one call at a time per connection, in
// the order messages arrived; with Inline it runs on the event loop and
// must not block. Control frames are handled by the package. Optional
// hooks are OpenHandler, CloseHandler and ErrorHandler.
type Handler interface {
	OnMessage(c *Conn, op Opcode, data []byte)
}

// OpenHandler is implemented by handlers that want to know of new
// connections. OnOpen runs after the 101 response was written (on a
// dialled connection: received and checked) and before the connection's
// first OnMessage, where OnMessage runs.
type OpenHandler interface {
	OnOpen(c *Conn)
}

// CloseHandler is implemented by handlers that want to know of closed
// connections. OnClose is the last callback for c, after its last
// OnMessage, where OnMessage runs (on the worker pool it falls back to a
// new goroutine if the pool refuses work during shutdown). reason is the
// engine's close reason: engine.ReasonPeerClosed when the peer closed
// first, ReasonLocal after Conn.Close, ReasonShutdown after a drain,
// ReasonProtocolError after a violation, ReasonDeadPeer when pings went
// unanswered, ReasonPeerReset or ReasonIOError when the TCP connection
// broke. code is the close handshake's status: the peer's code when it
// closed first (CloseNoStatus when its Close frame had none), the
// server's when it did, and CloseAbnormal (1006) when no Close frame was
// exchanged. On a dialled connection "server" reads "client", and OnClose
// also ends a connection whose dial or handshake failed, without OnOpen:
// code CloseAbnormal, reason engine.ReasonIOError for a failed connect,
// ReasonProtocolError for a refused or invalid handshake, a timeout's
// reason, or ReasonLocal after Close; OnError said why just before. A
// close that lingers (the server's Close not answered: a violation, a
// close timeout) calls OnClose when it begins, with the reason it was
// asked with; the TCP connection may outlive it by up to
// engine.Config.LingerTimeout, and an I/O error meanwhile is not reported.
type CloseHandler interface {
	OnClose(c *Conn, reason engine.CloseReason, code uint16)
}

// ErrorHandler is implemented by handlers that want the error behind a
// connection that ends badly. OnError runs once, just before OnClose and
// where it runs, when the connection ends with an error: a protocol
// violation by the peer (the *CloseError whose code was sent), an I/O
// error (the engine's, such as a reset), or, on a dialled connection, a
// failed connect (the engine's error, such as ECONNREFUSED or ETIMEDOUT),
// a refused or invalid handshake (*HandshakeError), a handshake that timed
// out (ErrHandshakeTimeout) or was cut short (ErrHandshakeClosed): a dial
// that never opens always gets OnError. Otherwise it is not called when
// the connection ends with a close handshake, by a timeout or a dead
// peer, or by the peer dropping the TCP connection: OnClose's reason and
// code say those.
type ErrorHandler interface {
	OnError(c *Conn, err error)
}

// HandlerFuncs adapts functions to Handler, OpenHandler, CloseHandler and
// ErrorHandler. Nil fields do nothing.
type HandlerFuncs struct {
	Open    func(c *Conn)
	Message func(c *Conn, op Opcode, data []byte)
	Close   func(c *Conn, reason engine.CloseReason, code uint16)
	Error   func(c *Conn, err error)
}

// OnOpen calls f.Open.
func (f HandlerFuncs) OnOpen(c *Conn) {
	if f.Open != nil {
		f.Open(c)
	}
}

// OnMessage calls f.Message.
func (f HandlerFuncs) OnMessage(c *Conn, op Opcode, data []byte) {
	if f.Message != nil {
		f.Message(c, op, data)
	}
}

// OnClose calls f.Close.
func (f HandlerFuncs) OnClose(c *Conn, reason engine.CloseReason, code uint16) {
	if f.Close != nil {
		f.Close(c, reason, code)
	}
}

// OnError calls f.Error.
func (f HandlerFuncs) OnError(c *Conn, err error) {
	if f.Error != nil {
		f.Error(c, err)
	}
}

var (
	_ Handler      = HandlerFuncs{}
	_ OpenHandler  = HandlerFuncs{}
	_ CloseHandler = HandlerFuncs{}
	_ ErrorHandler = HandlerFuncs{}
)

// Server upgrades HTTP/1.1 requests to WebSocket connections that stay on
// the engine's event loops. It is an http1.Handler for the upgrade route;
// mount it with Handler(), which marks it Inline as the upgrade requires.
// Its methods are safe for concurrent use.
type Server struct {
	cfg    Config
	h      Handler
	hOpen  OpenHandler
	hClose CloseHandler
	hErr   ErrorHandler
	client bool // the connections are dialled by a Client: frames out are masked
	stats  serverStats
}

var _ http1.Handler = (*Server)(nil)

// New returns a server that hands the messages of the connections it
// upgrades to h, configured by cfg.
func New(cfg Config, h Handler) *Server {
	if h == nil {
		panic("websocket: nil Handler")
	}
	s := &Server{cfg: cfg.withDefaults(), h: h}
	s.setHandler(h)
	return s
}

// setHandler installs h and its optional hooks.
func (s *Server) setHandler(h Handler) {
	s.h = h
	s.hOpen, _ = h.(OpenHandler)
	s.hClose, _ = h.(CloseHandler)
	s.hErr, _ = h.(ErrorHandler)
}

// Config returns the server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Handler returns s marked http1.Inline, ready for Router.Handle: the
// upgrade runs on the event loop, where the connection stays.
//
//	router.Handle("GET /ws", ws.Handler())
func (s *Server) Handler() http1.Handler { return http1.Inline(s) }

// Stats are a server's counters. Per-connection message counts are in
// engine.Conn.Served.
type Stats struct {
	Upgrades       uint64 // handshakes answered with 101
	Refused        uint64 // handshakes refused with a 4xx or 5xx status
	Open           int64  // upgraded connections not yet closed
	PingsSent      uint64 // liveness pings sent
	DeadPeers      uint64 // connections closed with engine.ReasonDeadPeer
	ProtocolErrors uint64 // connections failed with 1002, 1007 or 1009
	MessagesIn     uint64 // data messages received
	MessagesOut    uint64 // data messages sent (broadcasts count per connection)
	ReadPauses     uint64 // connections not read for a while: MaxHandlerBacklog reached
}

type serverStats struct {
	upgrades, refused, pings, dead, protoErrs atomic.Uint64
	pauses                                    atomic.Uint64
	open                                      atomic.Int64
	msgIn, msgOut                             shardedCounter
}

// shardedCounter is a counter split by event loop, so loops counting
// messages never share a cache line; Stats sums it.
type shardedCounter [16]struct {
	n atomic.Uint64
	_ [56]byte
}

func (s *shardedCounter) add(shard int) { s[shard&15].n.Add(1) }

func (s *shardedCounter) load() uint64 {
	var t uint64
	for i := range s {
		t += s[i].n.Load()
	}
	return t
}

// Stats returns a snapshot of the server's counters.
func (s *Server) Stats() Stats {
	return Stats{
		Upgrades:       s.stats.upgrades.Load(),
		Refused:        s.stats.refused.Load(),
		Open:           s.stats.open.Load(),
		PingsSent:      s.stats.pings.Load(),
		DeadPeers:      s.stats.dead.Load(),
		ProtocolErrors: s.stats.protoErrs.Load(),
		MessagesIn:     s.stats.msgIn.load(),
		MessagesOut:    s.stats.msgOut.load(),
		ReadPauses:     s.stats.pauses.Load(),
	}
}

// ServeHTTP1 validates a WebSocket handshake (RFC 6455 §4.2) and upgrades
// the connection, or answers with the error status: 405 for a method
// other than GET, 400 without "Connection: Upgrade" and "Upgrade:
// websocket" on HTTP/1.1 or with a missing or malformed
// Sec-WebSocket-Key, 426 with "Sec-WebSocket-Version: 13" for another
// version, 403 when CheckOrigin or Accept refuse, 503 while the server
// drains. It must run on the event loop: register it with Handler().
func (s *Server) ServeHTTP1(r *http1.Ctx) {
	if !r.Inline() {
		s.refuse(r, 500, "websocket: the upgrade route must be Inline; register Server.Handler()")
		return
	}
	if string(r.Method) != "GET" {
		r.SetHeader("Allow", "GET")
		s.refuse(r, 405, "websocket: handshake method must be GET")
		return
	}
	if r.ProtoMinor < 1 || r.Request.Upgrade == nil || !HeaderContainsToken(r.Request.Upgrade, "websocket") {
		s.refuse(r, 400, "websocket: not a WebSocket handshake: HTTP/1.1 with 'Connection: Upgrade' and 'Upgrade: websocket' required")
		return
	}
	var key, version, origin []byte
	var protos, exts [4][]byte
	nprotos, nexts := 0, 0
	for _, h := range r.Headers() {
		switch n := h.Name; {
		case len(n) == len("Sec-WebSocket-Key") && asciiEqualFold(n, "Sec-WebSocket-Key"):
			if key != nil {
				s.refuse(r, 400, "websocket: repeated Sec-WebSocket-Key")
				return
			}
			key = h.Value
		case asciiEqualFold(n, "Sec-WebSocket-Version"):
			version = h.Value
		case asciiEqualFold(n, "Origin"):
			origin = h.Value
		case asciiEqualFold(n, "Sec-WebSocket-Protocol"):
			if nprotos < len(protos) {
				protos[nprotos] = h.Value
				nprotos++
			}
		case asciiEqualFold(n, "Sec-WebSocket-Extensions"):
			if nexts < len(exts) {
				exts[nexts] = h.Value
				nexts++
			}
		}
	}
	if string(version) != "13" {
		r.SetHeader("Sec-WebSocket-Version", "13")
		s.refuse(r, 426, "websocket: unsupported Sec-WebSocket-Version; this server speaks 13")
		return
	}
	if !ValidKey(key) {
		s.refuse(r, 400, "websocket: missing or malformed Sec-WebSocket-Key")
		return
	}
	ec := r.Conn()
	if ec.State() == engine.StateDraining {
		s.refuse(r, 503, "websocket: server shutting down")
		return
	}
	if check := s.cfg.CheckOrigin; check != nil {
		if !check(origin, r) {
			s.refuse(r, 403, "websocket: origin not allowed")
			return
		}
	} else if origin != nil && !sameOrigin(origin, r.Host) {
		s.refuse(r, 403, "websocket: cross-origin request refused")
		return
	}

	c := &Conn{ec: ec, srv: s}
	c.sub = selectSubprotocol(protos[:nprotos], s.cfg.Subprotocols)
	var params DeflateParams
	deflate := false
	if s.cfg.Deflate.Enabled && nexts > 0 {
		if params, deflate = NegotiateDeflate(s.cfg.Deflate, exts[:nexts]...); deflate {
			c.cmp = newCompression(params, s.cfg.Deflate.Level, RoleServer)
		}
	}
	if s.cfg.Accept != nil && !s.cfg.Accept(r, c) {
		if r.Status() == 200 {
			s.refuse(r, 403, "websocket: upgrade refused")
		} else {
			s.stats.refused.Add(1)
		}
		return
	}

	b := pool.Get(512)[:0]
	b = append(b, "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: "...)
	b = AppendAcceptKey(b, key)
	if c.sub != 0 {
		b = append(b, "\r\nSec-WebSocket-Protocol: "...)
		b = append(b, s.cfg.Subprotocols[c.sub-1]...)
	}
	if deflate {
		b = append(b, "\r\nSec-WebSocket-Extensions: "...)
		b = params.AppendResponse(b)
	}
	b = append(b, "\r\n\r\n"...)
	// Count before sending, so that a client that saw the 101 sees it
	// counted.
	s.stats.upgrades.Add(1)
	s.stats.open.Add(1)
	_, err := r.WriteRaw(b)
	pool.Put(b)
	if err != nil {
		s.stats.upgrades.Add(^uint64(0))
		s.stats.open.Add(-1)
		return // the engine is closing the connection
	}
	r.UpgradeTo((*proto)(c))
	if d := s.cfg.PingInterval; d > 0 {
		ec.SetIdleTimeout(d)
		ec.SetReadTimeout(d)
	} else {
		ec.SetIdleTimeout(-1)
		ec.SetReadTimeout(-1)
	}
	if s.hOpen != nil {
		c.run(func() { s.hOpen.OnOpen(c) })
	}
}

// refuse answers a handshake that cannot be accepted.
func (s *Server) refuse(r *http1.Ctx, status int, msg string) {
	s.stats.refused.Add(1)
	r.SetStatus(status)
	r.WriteString(msg)
	r.WriteString("\n")
}

// selectSubprotocol returns 1 + the index in supported of the first
// subprotocol, in the server's order, that the client offered in any of the
// Sec-WebSocket-Protocol lines, or 0.
func selectSubprotocol(offered [][]byte, supported []string) uint8 {
	for i, p := range supported {
		if i >= 255 {
			break
		}
		one := [1]string{p}
		for _, o := range offered {
			if SelectSubprotocol(o, one[:]) != "" {
				return uint8(i + 1)
			}
		}
	}
	return 0
}

// sameOrigin reports whether the Origin header value names host (the Host
// header), ignoring its scheme and ASCII case.
func sameOrigin(origin, host []byte) bool {
	i := 0
	for ; i+2 < len(origin); i++ {
		if origin[i] == ':' && origin[i+1] == '/' && origin[i+2] == '/' {
			break
		}
	}
	if i+2 >= len(origin) {
		return false // "null" or malformed
	}
	rest := origin[i+3:]
	for j, ch := range rest {
		if ch == '/' {
			rest = rest[:j]
			break
		}
	}
	return len(rest) > 0 && asciiEqualFold(rest, string(host))
}

// readerPool holds Readers between messages, so an idle connection holds
// none.
var readerPool = sync.Pool{New: func() any { return new(Reader) }}

// bufPool lends the package's size-classed buffers to Readers.
type bufPool struct{}

func (bufPool) Get(size int) []byte { return pool.Get(size)[:0] }
func (bufPool) Put(b []byte)        { pool.Put(b) }
