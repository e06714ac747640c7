package engine

import (
	"errors"
	"time"
)

// Sentinel errors returned by the engine.
var (
	// ErrServerClosed is returned by Wait and ListenAndServe after Shutdown or Close.
	ErrServerClosed = errors.New("engine: server closed")
	// ErrClosed is returned by writes on a closed or closing connection.
	ErrClosed = errors.New("engine: connection closed")
	// ErrSlowConsumer is returned by a write that pushed the connection's
	// queued output over its high watermark under the Close policy.
	ErrSlowConsumer = errors.New("engine: slow consumer")
	// ErrQueueLimit is returned by a write that would exceed the engine-wide
	// bound on queued output bytes.
	ErrQueueLimit = errors.New("engine: total queued write bytes over limit")
	// ErrWorkerQueueFull is returned by Dispatch when the worker pool's
	// waiting queue is full.
	ErrWorkerQueueFull = errors.New("engine: worker queue full")
	// ErrLimit is returned by Dial when MaxConns connections are open.
	ErrLimit = errors.New("engine: connection limit reached")
	// ErrStarted is returned by Start on an engine that was already started.
	ErrStarted = errors.New("engine: already started")
)

// State is where a connection is in its life. The same values label metrics
// and log attributes.
type State uint8

const (
	// StateNew is a connection accepted but not yet handed to the handler.
	// It moves to StateIdle once OnOpen has run.
	StateNew State = iota
	// StateActive is a connection with a message in progress: unconsumed
	// input, or handler work in flight on the worker pool. It moves to
	// StateIdle when both are done.
	StateActive
	// StateIdle is a connection waiting for input with nothing in progress.
	// It costs no goroutine, no buffer and no timer object.
	StateIdle
	// StateDraining is a connection of an engine that is shutting down; it
	// is closed as soon as it is quiet, or when the shutdown deadline ends.
	StateDraining
	// StateClosed is a connection whose descriptor has been closed.
	StateClosed
	// StateLingering is a connection closing with Conn.CloseLinger: its
	// output is being flushed, or its write side is shut and the input
	// still arriving is read and thrown away, until the peer closes or a
	// linger bound is hit (Config.LingerTimeout, Config.LingerBytes). Its
	// handler gets no more callbacks but OnStateChange and OnClose; it
	// moves to StateClosed.
	StateLingering
	numStates
)

var stateNames = [...]string{"new", "active", "idle", "draining", "closed", "lingering"}

// String returns the lower-case name used in metrics and logs.
func (s State) String() string {
	if int(s) < len(stateNames) {
		return stateNames[s]
	}
	return "unknown"
}

// States lists every State, in order, for metric labels.
func States() []State {
	return []State{StateNew, StateActive, StateIdle, StateDraining, StateClosed, StateLingering}
}

// CloseReason says why a connection was closed. The same values label metrics
// and log attributes.
type CloseReason uint8

const (
	// ReasonNone is the zero value: the connection is not closed.
	ReasonNone CloseReason = iota
	// ReasonLocal is a close asked for by the application (Conn.Close).
	ReasonLocal
	// ReasonPeerClosed is an orderly close (end of file) by the peer.
	ReasonPeerClosed
	// ReasonPeerReset is an abortive close (RST) by the peer.
	ReasonPeerReset
	// ReasonIdleTimeout is a connection idle for longer than its idle timeout.
	ReasonIdleTimeout
	// ReasonReadTimeout is a message that did not arrive whole in time.
	ReasonReadTimeout
	// ReasonWriteTimeout is queued output that made no progress in time.
	ReasonWriteTimeout
	// ReasonSlowConsumer is a peer that did not read fast enough: its queued
	// output passed the high watermark.
	ReasonSlowConsumer
	// ReasonProtocolError is input that broke the protocol.
	ReasonProtocolError
	// ReasonLimitReached is a connection refused or closed by a bound: total
	// or per-IP connections, accept rate, input or queue size.
	ReasonLimitReached
	// ReasonShutdown is a connection closed because the engine shut down.
	ReasonShutdown
	// ReasonIOError is a read or write that failed for another reason.
	ReasonIOError
	// ReasonPanic is a handler that panicked; only its connection is closed.
	ReasonPanic
	// ReasonAdmin is a connection closed by an operator through the admin API.
	ReasonAdmin
	// ReasonDeadPeer is a peer that stopped answering liveness probes.
	ReasonDeadPeer
	numReasons
)

var reasonNames = [...]string{"none", "local", "peer_closed", "peer_reset", "idle_timeout", "read_timeout",
	"write_timeout", "slow_consumer", "protocol_error", "limit_reached", "shutdown", "io_error", "panic",
	"admin", "dead_peer"}

// String returns the snake_case name used in metrics and logs.
func (r CloseReason) String() string {
	if int(r) < len(reasonNames) {
		return reasonNames[r]
	}
	return "unknown"
}

// CloseReasons lists every reason but ReasonNone, for metric labels.
func CloseReasons() []CloseReason {
	rs := make([]CloseReason, 0, numReasons-1)
	for r := ReasonLocal; r < numReasons; r++ {
		rs = append(rs, r)
	}
	return rs
}

// Bound names an admission bound that refused a connection.
type Bound uint8

const (
	// BoundMaxConns is Config.MaxConns.
	BoundMaxConns Bound = iota
	// BoundPerIP is Config.MaxConnsPerIP.
	BoundPerIP
	// BoundAcceptRate is Config.AcceptRate.
	BoundAcceptRate
	// BoundDescriptors is the process running out of file descriptors
	// (EMFILE, ENFILE) or kernel memory while accepting.
	BoundDescriptors
	numBounds
)

var boundNames = [...]string{"max_conns", "per_ip", "accept_rate", "descriptors"}

// String returns the snake_case name used in metrics and logs.
func (b Bound) String() string {
	if int(b) < len(boundNames) {
		return boundNames[b]
	}
	return "unknown"
}

// Bounds lists every Bound, for metric labels.
func Bounds() []Bound { return []Bound{BoundMaxConns, BoundPerIP, BoundAcceptRate, BoundDescriptors} }

// Balance chooses the loop that gets a new connection.
type Balance uint8

const (
	// RoundRobin hands connections to loops in turn.
	RoundRobin Balance = iota
	// LeastConnections hands a connection to the loop holding fewest.
	LeastConnections
)

// String returns "round-robin" or "least-connections".
func (b Balance) String() string {
	if b == LeastConnections {
		return "least-connections"
	}
	return "round-robin"
}

// SlowPolicy is what happens when a connection's queued output passes its
// high watermark.
type SlowPolicy uint8

const (
	// SlowClose closes the connection with ReasonSlowConsumer.
	SlowClose SlowPolicy = iota
	// SlowPause stops reading from the connection until its queue falls
	// below the low watermark. Queued output is still capped at four times
	// the high watermark, past which the connection is closed.
	SlowPause
)

// String returns "close" or "pause".
func (p SlowPolicy) String() string {
	if p == SlowPause {
		return "pause"
	}
	return "close"
}

// ProtocolNamer is implemented by handlers that name the protocol their
// connections speak ("http1", "websocket", "mqtt"). The name shows in
// ConnInfo, /debug/conns, metrics labels and logs; a handler without it
// speaks "tcp". Names should come from a small fixed set: they label
// metrics.
type ProtocolNamer interface {
	Protocol() string
}

// Labeler is implemented by handlers that label their connections for
// introspection with what the application knows them as (a device id, a
// user). Label is called for ConnInfo snapshots, on c's loop, and must not
// block; "" means no label.
type Labeler interface {
	Label(c *Conn) string
}

// labelOf returns c's handler's label for c, or "".
func labelOf(c *Conn) string {
	if lb, ok := c.h.(Labeler); ok {
		return lb.Label(c)
	}
	return ""
}

// ProtoTCP is the protocol name of a connection whose handler does not
// implement ProtocolNamer.
const ProtoTCP = "tcp"

// CloseDetail is a protocol's own account of why a connection closed, beside
// the engine's transport-level CloseReason: a WebSocket close code, an MQTT
// reason code, a gateway reason such as "replaced" or "token_expired".
// String returns a short token from a bounded set (it labels metrics), for
// example "1001" or "auth_failed". Attach one with Conn.CloseWithDetail.
type CloseDetail interface {
	String() string
}

// DetailTotalQueueFull is the close detail of a connection closed with
// ReasonSlowConsumer because all connections' queued output reached
// Config.MaxQueuedBytes, not because its own queue passed the high
// watermark.
const DetailTotalQueueFull = engineDetail("total_queue_full")

// engineDetail is a close detail of the engine's own.
type engineDetail string

func (d engineDetail) String() string { return string(d) }

// InlineHandler is implemented by handlers that choose where their OnData,
// OnOpen and OnClose run regardless of Config.Inline: protocol parsers that
// never block return true and run on the event loop; a handler that may
// block returns false and runs on the worker pool. It is asked once per
// handler type, so the answer must not depend on the value.
type InlineHandler interface {
	Inline() bool
}

// Handler receives a connection's input. It is the one required interface;
// the optional interfaces below add lifecycle hooks. An embeddable no-op base
// is NopHandler.
type Handler interface {
	// OnData is called with all unconsumed input of c: bytes left over from
	// earlier calls followed by what just arrived. It returns how many bytes
	// it consumed (0 ≤ n ≤ len(in)); the rest is kept and presented again,
	// with more input appended, on the next call. in is valid only during
	// the call.
	//
	// Inline (Config.Inline, or an InlineHandler saying so) it runs on c's
	// event loop and must not block. Otherwise it runs on the worker pool,
	// one call at a time per connection, and reading from c pauses until it
	// returns.
	//
	// Each connection has its own handler: the one of the listener that
	// accepted it (Engine.Listen) or given to Engine.DialHandler, replaced
	// at any time with Conn.SetHandler (an HTTP connection upgraded to
	// WebSocket). The optional interfaces below are looked up once per
	// handler type.
	OnData(c *Conn, in []byte) int
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Conn, in []byte) int

// OnData calls f(c, in).
func (f HandlerFunc) OnData(c *Conn, in []byte) int { return f(c, in) }

// OpenHandler is implemented by handlers that want to know of new
// connections. OnOpen runs before the first OnData, where OnData runs.
type OpenHandler interface {
	OnOpen(c *Conn)
}

// CloseHandler is implemented by handlers that want to know of closed
// connections. OnClose is the last callback for c; err is the I/O error
// behind reasons such as ReasonIOError, or nil.
type CloseHandler interface {
	OnClose(c *Conn, reason CloseReason, err error)
}

// StateHandler is implemented by handlers that follow state changes. It is
// called on c's event loop and must not block.
type StateHandler interface {
	OnStateChange(c *Conn, from, to State)
}

// DrainHandler is implemented by protocols that say goodbye before a
// shutdown closes the connection (HTTP answers its current request with
// Connection: close, WebSocket sends close 1001). OnDrain runs on c's event
// loop and must not block. It returns true when the protocol closes c
// itself once its goodbye is done (a WebSocket waits for the peer's close
// frame); false leaves the close to the engine, which closes c as soon as it
// is quiet: no unconsumed input, no message pending, no work dispatched and
// no queued output (HTTP: right after the response in progress). Without a
// DrainHandler the engine closes each connection as soon as it is quiet.
// Either way the shutdown context's end closes whatever is left.
type DrainHandler interface {
	OnDrain(c *Conn) (closesItself bool)
}

// TimeoutHandler is implemented by protocols that act on a timeout instead
// of having the connection closed: reason is ReasonIdleTimeout or
// ReasonReadTimeout. Returning true keeps the connection and restarts the
// timer from now (a WebSocket sends a ping); returning false closes it with
// reason, after flushing anything OnTimeout wrote (an HTTP 408). It runs on
// c's event loop and must not block.
type TimeoutHandler interface {
	OnTimeout(c *Conn, reason CloseReason) bool
}

// EOFHandler is implemented by protocols that want to know when the peer
// has finished sending (its FIN arrived) while c stays open for work in
// flight or queued output: a request body streamed to a handler, for
// example, can then fail at once instead of at its timeout. OnEOF runs on
// c's event loop, for handlers on the worker pool too, after the last
// OnData has returned, and must not block; the engine closes c once the
// work in flight is done.
type EOFHandler interface {
	OnEOF(c *Conn)
}

// NopHandler is an embeddable base whose OnData consumes everything and
// whose hooks do nothing.
type NopHandler struct{}

// OnData discards in.
func (NopHandler) OnData(c *Conn, in []byte) int { return len(in) }

// OnOpen does nothing.
func (NopHandler) OnOpen(c *Conn) {}

// OnClose does nothing.
func (NopHandler) OnClose(c *Conn, reason CloseReason, err error) {}

var (
	_ Handler      = NopHandler{}
	_ OpenHandler  = NopHandler{}
	_ CloseHandler = NopHandler{}
	_ Handler      = HandlerFunc(nil)
)

// Clock tells the time; tests inject one they can advance. Every layer on
// an engine reads it through Engine.Now.
type Clock interface {
	Now() time.Time
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
