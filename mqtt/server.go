package mqtt

import (
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/keytab"
	"github.com/warrenhq/warren/websocket"
)

// ProtocolName is what MQTT connections are called in the engine's
// introspection (ConnInfo, /debug/conns), metrics labels and logs.
const ProtocolName = "mqtt"

// ErrServerClosed is returned by Listen and ListenOn after Close.
var ErrServerClosed = errors.New("mqtt: server closed")

// Defaults applied to a zero Config; each is documented with its Config
// field.
const (
	DefaultConnectTimeout      = 10 * time.Second
	DefaultMaxInflight         = 64
	DefaultMaxQueuedMessages   = 1000
	DefaultMaxQueuedBytes      = 1 << 20
	DefaultMaxQueuedBytesTotal = 256 << 20
	DefaultMaxSubscriptions    = 100
	DefaultMaxTopicLength      = 1024
	DefaultMaxTopicLevels      = 32
	DefaultPublishRate         = 1000
	DefaultPublishBytesRate    = 10 << 20
	DefaultTopicAliasMaximum   = 16
	DefaultMaxSessionExpiry    = 2 * time.Hour
	DefaultMaxSessions         = 1_000_000
	DefaultMaxRetained         = 100_000
	DefaultMaxRetainedBytes    = 64 << 20
	// DefaultMaxRetainedBytesPerClient is 1 MiB and 4 KiB: one client
	// holds about 1/64 of the default store, and at least one message of
	// the default maximum packet size (its payload, topic and the 96
	// bytes of bookkeeping).
	DefaultMaxRetainedBytesPerClient = 1<<20 + 4<<10
	DefaultMaxClientIDLength         = 256
	// DefaultMaxWillBytes is 64 MiB: 64 wills of the default maximum
	// packet size, or a million devices' wills of 64 bytes (their topic,
	// payload and bookkeeping counted).
	DefaultMaxWillBytes  = 64 << 20
	DefaultSweepInterval = time.Second
)

const (
	maxSessionExpirySecondsV5   = 0xffffffff // 5.0: the session never expires
	websocketSubprotocol        = "mqtt"
	assignedClientIDPrefix      = "auto-"
	defaultWebSocketMaxMsgBytes = 1 << 20
)

// Config configures a Server. The zero value is ready to use: every field
// documents what zero means. Every bound has a default, a metric (Stats,
// Collector) and a typed reason when it is hit (a reason code and a
// DropReason or engine close detail).
type Config struct {
	// Limits bounds one packet: its size (MaxPacketSize, announced to 5.0
	// clients in CONNACK; 1 MiB by default), the topic filters of one
	// SUBSCRIBE and the user properties of one packet. A larger packet
	// closes the connection with packet_too_large. Keep MaxPacketSize
	// under the engine's MaxInputBytes (4 MiB by default).
	Limits Limits

	// ConnectTimeout is how long a new connection may take to send its
	// CONNECT. Zero means 10 s.
	ConnectTimeout time.Duration

	// MaxInflight bounds unacknowledged QoS 1 and 2 messages each way per
	// client: the Receive Maximum the server announces (inbound QoS 2
	// awaiting PUBREL past it closes with receive_maximum_exceeded), and
	// the most the server sends before acknowledgements come back (also
	// capped by the client's Receive Maximum); the rest waits in the
	// session's queue. Zero means 64.
	MaxInflight int

	// MaxQueuedMessages and MaxQueuedBytes bound the QoS 1 and 2 messages a
	// session holds while its client is offline or its inflight window is
	// full; past either, new messages for it are dropped (DropQueueFull).
	// Zero means 1000 messages and 1 MiB.
	MaxQueuedMessages int
	MaxQueuedBytes    int
	// MaxQueuedBytesTotal bounds the bytes queued across all sessions, so
	// that runaway persistent sessions can't take the node
	// (DropTotalQueueFull). Zero means 256 MiB; negative means no bound.
	MaxQueuedBytesTotal int64

	// MaxSubscriptions bounds the subscriptions of one client; more are
	// refused in SUBACK with quota_exceeded. Zero means 100; more than
	// 65535 means 65535.
	MaxSubscriptions int
	// MaxTopicLength and MaxTopicLevels bound topic names and filters;
	// longer ones are refused (topic_name_invalid closes a publisher,
	// topic_filter_invalid answers in SUBACK). Zero means 1024 bytes and
	// 32 levels.
	MaxTopicLength int
	MaxTopicLevels int

	// PublishRate and PublishBurst bound the PUBLISH packets per second of
	// one client; PublishBytesRate bounds their bytes per second (burst:
	// one second's worth, and at least one maximum packet). A client over
	// either is disconnected with message_rate_too_high. Zero means 1000
	// per second (burst PublishRate) and 10 MiB per second; negative
	// means no bound.
	PublishRate      float64
	PublishBurst     int
	PublishBytesRate float64

	// TopicAliasMaximum is the highest topic alias a 5.0 client may use
	// (announced in CONNACK). Zero means 16; negative disables aliases.
	TopicAliasMaximum int

	// MaxSessionExpiry caps the session expiry a client asks for, and is
	// the expiry of 3.1.1 sessions with Clean Session 0. Zero means 2
	// hours; negative means sessions with Clean Session 0 never expire
	// (5.0 clients still choose theirs).
	MaxSessionExpiry time.Duration
	// MaxSessions bounds the sessions held, online and offline; a CONNECT
	// that would create one more is refused with quota_exceeded (5.0) or
	// server unavailable (3.1.1). Zero means 1,000,000.
	MaxSessions int

	// MaxKeepAlive caps the keep-alive a client asks for; a 5.0 client
	// asking for more, or for none, is told the cap as Server Keep Alive.
	// Zero means no cap. A client silent for 1.5 times its keep-alive is
	// closed with keep_alive_timeout.
	MaxKeepAlive time.Duration

	// MaxRetained and MaxRetainedBytes bound the retained messages; a
	// retained message past either is not retained (DropRetainedFull);
	// see MaxRetainedBytesPerClient for what its publisher and the
	// subscribers get. Zero means 100,000 messages and 64 MiB. A
	// message's bytes are its topic, payload and properties and 96 bytes
	// of bookkeeping.
	MaxRetained      int
	MaxRetainedBytes int
	// MaxRetainedBytesPerClient bounds the bytes of the retained messages
	// one client has published and the store still holds (a message
	// replaced, deleted or expired no longer counts against its
	// publisher), so that one client cannot fill the node's store. A
	// retained message past it is not retained (DropRetainedClientFull).
	// Messages the application injects (Publish, Retain) count against no
	// client. The bound is per client id and per server: a client id
	// connected to several nodes has it on each. Zero means 1 MiB and
	// 4 KiB (a message of the default MaxPacketSize fits); negative means
	// no bound.
	//
	// The store decides a client's retained PUBLISH (this bound and the
	// node's) once, before Hooks.OnPublish runs, and keeps the room it
	// grants until the message is stored. A 5.0 PUBLISH at QoS 1 or 2 it
	// refuses is refused whole: not delivered, not shown to the hook, its
	// PUBACK or PUBREC quota_exceeded (0x97, with a reason string unless
	// the client asked for no problem information), no QoS 2 state kept,
	// so a resend is decided again and never delivered twice. A QoS 0
	// PUBLISH and a 3.1.1 one (no way to tell the client) are delivered
	// as a message without the retain flag (the hook sees it so), and
	// their client gets its usual acknowledgement; the topic's earlier
	// retained message, if any, stays. The refusal is counted either
	// way.
	MaxRetainedBytesPerClient int

	// MaxWillBytes bounds the bytes of the will messages the sessions
	// hold across the server (a will's topic, payload and properties and
	// 96 bytes of bookkeeping, as the retained bounds count them): each
	// will may be as large as a packet and lives as long as its
	// connection, or its session while its will delay runs. A CONNECT
	// whose will would pass it is refused: CONNACK quota_exceeded (0x97)
	// in 5.0, server unavailable (3) in 3.1.1, the connection closed with
	// limit_reached, counted in Stats.WillsRefused. A will's bytes are
	// freed when it is published, dropped (a normal DISCONNECT, a resumed
	// session) or replaced by the next CONNECT's. Zero means 64 MiB;
	// negative means no bound.
	MaxWillBytes int64

	// ExternalShares leaves shared subscriptions out of the broker's own
	// routing: a client's publish and Publish go to every other matching
	// subscription, and a share group gets messages only through
	// PublishShared, which the application calls once it has picked this
	// broker's group for a message. It is for a cluster that gives each
	// message to one member of a group across all its brokers (the
	// gateway does it with a NATS queue group per share group, told of
	// the groups by Hooks.OnShare). False: each broker gives each message
	// to one member of each of its groups.
	ExternalShares bool

	// MaxClientIDLength bounds client identifiers; longer ones are refused
	// with client_identifier_not_valid. Zero means 256.
	MaxClientIDLength int

	// ServerReference, when set, is sent to 5.0 clients when the server
	// drains: DISCONNECT use_another_server (0x9C) with it, instead of
	// server_shutting_down (0x8B).
	ServerReference string

	// SweepInterval is how often offline sessions are expired and delayed
	// wills published. Zero means 1 s.
	SweepInterval time.Duration

	// Hooks connect the broker to an application: authentication, ACLs, a
	// bridge. The zero value allows everything and bridges nothing.
	Hooks Hooks

	// Clock reads the time for expiry, rates and keep-alive. Nil means the
	// system clock.
	Clock engine.Clock
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	def := func(p *int, v int) {
		if *p <= 0 {
			*p = v
		}
	}
	if c.ConnectTimeout <= 0 {
		c.ConnectTimeout = DefaultConnectTimeout
	}
	def(&c.MaxInflight, DefaultMaxInflight)
	if c.MaxInflight > 65535 {
		c.MaxInflight = 65535
	}
	def(&c.MaxQueuedMessages, DefaultMaxQueuedMessages)
	def(&c.MaxQueuedBytes, DefaultMaxQueuedBytes)
	if c.MaxQueuedBytesTotal == 0 {
		c.MaxQueuedBytesTotal = DefaultMaxQueuedBytesTotal
	}
	def(&c.MaxSubscriptions, DefaultMaxSubscriptions)
	c.MaxSubscriptions = min(c.MaxSubscriptions, 65535)
	def(&c.MaxTopicLength, DefaultMaxTopicLength)
	def(&c.MaxTopicLevels, DefaultMaxTopicLevels)
	if c.PublishRate == 0 {
		c.PublishRate = DefaultPublishRate
	}
	if c.PublishBurst <= 0 {
		c.PublishBurst = int(max(c.PublishRate, 1))
	}
	if c.PublishBytesRate == 0 {
		c.PublishBytesRate = DefaultPublishBytesRate
	}
	if c.TopicAliasMaximum == 0 {
		c.TopicAliasMaximum = DefaultTopicAliasMaximum
	}
	if c.TopicAliasMaximum > 65535 {
		c.TopicAliasMaximum = 65535
	}
	if c.MaxSessionExpiry == 0 {
		c.MaxSessionExpiry = DefaultMaxSessionExpiry
	}
	def(&c.MaxSessions, DefaultMaxSessions)
	def(&c.MaxRetained, DefaultMaxRetained)
	def(&c.MaxRetainedBytes, DefaultMaxRetainedBytes)
	if c.MaxRetainedBytesPerClient == 0 {
		c.MaxRetainedBytesPerClient = DefaultMaxRetainedBytesPerClient
	}
	def(&c.MaxClientIDLength, DefaultMaxClientIDLength)
	if c.MaxWillBytes == 0 {
		c.MaxWillBytes = DefaultMaxWillBytes
	}
	if c.SweepInterval <= 0 {
		c.SweepInterval = DefaultSweepInterval
	}
	if len(c.ServerReference) > 0xffff {
		c.ServerReference = ""
	}
	return c
}

// Action is what a client asks to do with a topic, for Hooks.Authorize.
type Action uint8

const (
	// ActionPublish is a PUBLISH (and a will message, checked at CONNECT).
	ActionPublish Action = iota + 1
	// ActionSubscribe is one topic filter of a SUBSCRIBE (the filter of a
	// shared subscription, without $share/group/).
	ActionSubscribe
)

// String returns "publish" or "subscribe".
func (a Action) String() string {
	if a == ActionSubscribe {
		return "subscribe"
	}
	return "publish"
}

// ConnectInfo is what Hooks.Authenticate gets: the CONNECT's credentials.
// It and its byte slices are valid only during the call (the server
// reuses it for the next CONNECT): a hook copies what it keeps.
type ConnectInfo struct {
	// ClientID is the client identifier, assigned by the server when the
	// CONNECT had none.
	ClientID string
	// Username and Password are the CONNECT's credentials; HasUsername
	// and HasPassword tell an empty one from none.
	Username    []byte
	Password    []byte
	HasUsername bool
	HasPassword bool
	// Version is the protocol level the client asked for.
	Version Version
	// Remote is the client's address.
	Remote netip.AddrPort
	// WebSocket is true for MQTT over WebSocket.
	WebSocket bool
	// Conn is the client's connection (for its TLS state: tlsx.Identity).
	Conn *engine.Conn
}

// Client describes a connected client to the hooks. Its exported fields
// are immutable. The client's connection is part of it, so a Client
// must not be copied (go vet's copylocks says so): pass the *Client the
// hooks get. A copy is a snapshot of a connection other goroutines write
// to (a data race unless nothing else touches the connection then); its
// Disconnect and GoingAway do nothing. What most clients share or do not
// have — the user name, the protocol level, the transport — is read
// through methods from where the connection keeps it anyway. A Client
// made by an application (a test of an Authorize hook, say) has only the
// fields it was given: Username, Version, WebSocket, Server, Remote,
// ConnID and Conn return zero values, Disconnect, GoingAway, PauseRead
// and ResumeRead do nothing.
type Client struct {
	// ID is the client identifier (assigned by the server when the
	// CONNECT had none).
	ID string
	// Identity is what Hooks.Authenticate returned, or nil.
	Identity any

	// c is the connection: every conn is the c of a Client (newConn), so
	// a conn finds its Client without a pointer (conn.client). Its srv
	// is nil in a Client the broker did not make.
	c conn
}

// made reports whether the broker made c (its connection is real).
func (c *Client) made() bool { return c.c.srv != nil }

// Username returns the CONNECT's user name, or "" if it had none. A user
// name equal to the client id is the client id's string (devices often
// send their id as both): no copy is kept.
func (c *Client) Username() string {
	switch {
	case !c.made():
		return ""
	case c.c.is(stUserIsID):
		return c.ID
	case c.c.x != nil && c.c.x.user != nil:
		return *c.c.x.user
	}
	return ""
}

// Version returns the protocol level the client speaks.
func (c *Client) Version() Version {
	if !c.made() {
		return 0
	}
	return c.c.version()
}

// WebSocket reports whether the client speaks MQTT over WebSocket.
func (c *Client) WebSocket() bool { return c.made() && c.c.ws() != nil }

// Server returns the broker the client is connected to (nil for a Client
// the broker did not make): an application holding a Client needs no
// pointer of its own to publish to it.
func (c *Client) Server() *Server {
	return c.c.srv
}

// Remote returns the client's address.
func (c *Client) Remote() netip.AddrPort {
	if !c.made() {
		return netip.AddrPort{}
	}
	return c.c.ec.RemoteAddr()
}

// ConnID returns the engine connection's identifier.
func (c *Client) ConnID() uint64 {
	if !c.made() {
		return 0
	}
	return c.c.ec.ID()
}

// attached reports whether c is the Client the broker made for the
// connection that holds its session now: not a copy (whose conn is
// elsewhere), nor one whose CONNECT is not yet accepted or whose session
// another connection took over. It reads only what a copy shares with its
// original and never changes (the server, the id) and then the session,
// under its lock, so it is safe on either.
func (c *Client) attached() bool {
	if !c.made() {
		return false
	}
	s := c.c.srv
	s.mu.RLock()
	ss := s.sessions.Get(c.ID)
	s.mu.RUnlock()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	ok := ss.conn == &c.c
	ss.mu.Unlock()
	return ok
}

// Current reports whether c is still the server's current connection for
// its client id: its CONNECT was accepted, it has not closed, and no later
// connection with the same client id has taken its session over. It is
// false on a copy of the Client and on one an application made. An
// application that registers clients by id elsewhere (the gateway's hub)
// asks it from Hooks.OnConnect, under its own lock, so that a connection
// taken over before its OnConnect ran — a device reconnecting twice in
// quick succession, whose second OnConnect may run first, on another
// event loop — is not registered over the newer one. It takes the
// broker's read lock, so not from OnFilter or OnShare; it is safe for
// concurrent use.
func (c *Client) Current() bool { return c.attached() }

// Conn returns the client's engine connection (its TLS state, for one:
// tlsx.State).
func (c *Client) Conn() *engine.Conn { return c.c.ec }

// Disconnect ends the client's connection: a 5.0 client gets DISCONNECT
// with code and, when not empty, reason as its reason string (a 3.1.1
// client is just closed); the engine connection closes with code as its
// close detail. Over TCP the 5.0 client's DISCONNECT is sent from the
// connection's event loop (engine.Conn.Post) and its close lingers
// (engine.Conn.CloseLinger), so that a client still sending reads the
// DISCONNECT rather than a reset. It is safe for concurrent use, and does nothing once the
// connection has closed or its session was taken over, before the
// CONNECT is accepted (in the will's Authorize: refuse there instead),
// or on a copy of the Client. The session stays, as for any non-normal
// end. It takes the broker's lock, so not from OnFilter or OnShare.
func (c *Client) Disconnect(code ReasonCode, reason string) {
	if c.attached() {
		c.c.kick(code, reason)
	}
}

// GoingAway ends a connection that Hooks.OnDrain held, with the goodbye
// the drain gives a connection it does not hold: a 5.0 client gets
// DISCONNECT server_shutting_down (use_another_server with
// Config.ServerReference), MQTT over WebSocket then closes 1001, and the
// engine records the close as a shutdown (engine.ReasonShutdown). It runs
// on the connection's event loop (engine.Conn.Post); it is safe for
// concurrent use and does nothing once the connection has closed or been
// disconnected (Disconnect, a takeover: that goodbye stands), nor,
// as Disconnect, on a copy of the Client or one whose session another
// connection holds.
func (c *Client) GoingAway() {
	if !c.attached() {
		return
	}
	cc := &c.c
	cc.ec.Post(func() {
		if cc.stopped() {
			return // closing, or kicked: the kick says goodbye
		}
		if ws := cc.ws(); ws != nil {
			ws.GoingAway() // wsGoingAway sends the 5.0 DISCONNECT first
			return
		}
		if code, sent := cc.drain(); sent {
			cc.closeWith(engine.ReasonShutdown, code, true) // lingers
			return
		}
		cc.flush()
		cc.ec.CloseWithReason(engine.ReasonShutdown)
	})
}

// PauseRead stops reading from the client's connection (backpressure);
// ResumeRead undoes it. Both are safe for concurrent use. They act on the
// engine connection alone, which a copy of the Client shares with it
// (and which is safe to pause from anywhere), so they need no check of
// the session as Disconnect does.
func (c *Client) PauseRead() {
	if c.made() {
		c.c.ec.PauseRead()
	}
}

// ResumeRead undoes PauseRead.
func (c *Client) ResumeRead() {
	if c.made() {
		c.c.ec.ResumeRead()
	}
}

// Hooks are the application's say in the broker. Every hook is optional.
// They run on the event loop of the connection concerned (OnDisconnect
// where the connection closes) and must not block: hand slow work to
// another goroutine.
type Hooks struct {
	// Authenticate decides on a CONNECT. It returns an identity, kept as
	// Client.Identity, and Success; or a failure reason code for CONNACK
	// (BadUserNameOrPassword, NotAuthorized, ClientIdentifierNotValid,
	// ServerUnavailable...) with an optional reason string for 5.0. Nil
	// accepts every client.
	Authenticate func(ci *ConnectInfo) (identity any, code ReasonCode, reason string)

	// Authorize says whether c may publish to topic (ActionPublish) or
	// subscribe to filter (ActionSubscribe). A refused PUBLISH is dropped
	// and answered not_authorized in 5.0 PUBACK or PUBREC (3.1.1 gets a
	// success ack, as the protocol has no refusal); a refused
	// subscription gets not_authorized in SUBACK (0x80 in 3.1.1); a
	// refused will topic fails CONNECT with not_authorized. Nil allows
	// everything.
	Authorize func(c *Client, a Action, topic string) bool

	// OnPublish sees every message a client publishes once it is
	// authorized, before it is routed: a bridge forwards it elsewhere (to
	// NATS). Returning local false stops local routing and retaining (the
	// bridge takes the message over); true routes it to the local
	// subscribers as usual. A code of 0x80 or more refuses the message:
	// it is neither routed nor retained, counted as DropRefused, and a
	// 5.0 client's PUBACK or PUBREC carries the code (one of the codes
	// those packets may carry, such as QuotaExceeded for a rate limit or
	// NotAuthorized; another is sent as UnspecifiedError; a refused QoS 2
	// flow ends there); 3.1.1 has no refusal, so its client gets a success ack, as
	// for a message Authorize refused. Success (0) accepts it. m and its
	// fields are valid only during the call; copy what must outlive it.
	// The store decides a retained message before the hook runs, and the
	// flag the hook sees is the one the store takes: a QoS 0 or 3.1.1
	// retained message the store will not keep (its bounds, such as
	// MaxRetainedBytesPerClient) comes with Retain false, delivered as a
	// plain message, and a bridge should forward it so; a 5.0 QoS 1 or 2
	// one is refused before the hook (MaxRetainedBytesPerClient). Messages
	// injected with Server.Publish don't reach it. Nil routes everything
	// locally.
	OnPublish func(c *Client, m *Message) (local bool, code ReasonCode)

	// OnConnect runs when a client's CONNECT has been accepted and its
	// CONNACK sent; sessionPresent tells whether an earlier session was
	// resumed.
	OnConnect func(c *Client, sessionPresent bool)

	// OnDrain runs when the engine drains an accepted client's
	// connection, before its goodbye (5.0: DISCONNECT
	// server_shutting_down): true keeps the connection open — reading and
	// writing as before — and leaves the goodbye to the application, which
	// calls Client.GoingAway when it is done (a gateway waits for the acks
	// of the commands its device has pending).
	// The engine's shutdown deadline still closes it. It runs on the
	// connection's event loop and must not block. Nil holds nothing.
	OnDrain func(c *Client) (hold bool)

	// OnDisconnect runs once when an accepted client's connection ends,
	// or, when the server closes a TCP client after a last packet (a 5.0
	// DISCONNECT: an error, Client.Disconnect, a takeover, the drain), as
	// its lingering close begins rather than when the client has closed
	// its side (engine.Conn.CloseLinger), so that a client reconnecting
	// at once is no takeover. Over WebSocket it runs when the close
	// handshake ends (the client's Close frame, or the websocket's
	// CloseTimeout without one): a client reconnecting before then takes
	// its session over. reason is the engine's account (for a lingering
	// close, the one the server closed with), code the MQTT reason (the
	// client's DISCONNECT reason, the reason code the server disconnected
	// with, or Success when the transport just closed), and takenOver is
	// true when another connection took the session over.
	OnDisconnect func(c *Client, reason engine.CloseReason, code ReasonCode, takenOver bool)

	// OnFilter tells a bridge which topic filters the broker has
	// subscribers for: added is true when the first subscription to filter
	// is made (by any session, shared or not; filter has no $share
	// prefix), false when the last one goes (unsubscribed, or its session
	// ended or expired). A session kept for an offline client keeps its
	// filters. It runs with the broker's subscription lock held: it must
	// be quick and must not call the Server.
	OnFilter func(filter string, added bool)

	// OnShare tells a cluster which share groups have members on this
	// broker: share is the shared subscription's filter as subscribed
	// ($share/group/filter); added is true when the group's first member
	// here subscribes to that filter, false when its last one goes
	// (unsubscribed, or its session ended or expired). With
	// Config.ExternalShares the cluster then decides which broker's group
	// gets each message (PublishShared). The same rules as OnFilter: it
	// runs with the subscription lock held, must be quick and must not
	// call the Server.
	OnShare func(share string, added bool)

	// OnWill runs when the broker publishes a will message — its client's
	// connection ended without a normal DISCONNECT, or its will delay
	// passed — before the will is retained (if it asks to be) and routed
	// to the local subscribers: a bridge sees the other publishes in
	// OnPublish, which wills do not reach. clientID is the will's client.
	// A retained will the store will not keep comes with Retain false, as
	// in OnPublish.
	// m and its slices are valid only during the call; it runs on the
	// goroutine ending the connection or on the sweeper, with no lock
	// held, and must not block.
	OnWill func(clientID string, m *Message)
}

// Server is an MQTT 3.1.1 and 5.0 broker on an engine's event loops. It
// serves TCP listeners (Listen, ListenOn, or Handler on any engine
// listener) and MQTT over WebSocket (WebSocketHandler, an http1 route).
// Sessions, subscriptions and retained messages are in memory, shared by
// every listener of the server. Its methods are safe for concurrent use.
//
// An idle connection holds its state and nothing else: no goroutine, no
// read buffer (a partial packet stays in the engine's pooled input buffer
// until it is whole), no write buffer and no timer object (keep-alive uses
// the engine's timing wheel).
type Server struct {
	cfg Config
	lim Limits

	// mu guards sessions, subs (the trie), every session's subs list,
	// retained and the sweep list. Lock order: Server.mu, then session.mu,
	// then conn.wmu (LOCKS in session.go). Routing reads it through the
	// shard of the publisher's loop (rwLock).
	mu       rwLock
	sessions keytab.Table[*session] // by client id
	// lit holds the subscriptions to literal topic filters (no wildcard),
	// and to filters P/+ with P literal, that are their filter's only
	// subscriber, by topic filter: one slot each, found by a topic with
	// one probe (two when litPlus, the number of P/+ filters in it, is
	// not zero: the topic, and its levels but the last with "/+"). The
	// rest (other wildcard filters, and these with several subscribers)
	// are in the trie subs.
	lit      keytab.Table[*subscription]
	litPlus  int
	subs     Trie[*subscription]
	retained retainedStore
	// wills are the sessions' pending wills (with their delays), each
	// published unless a connection resumes its session in time: in a
	// map rather than an 8-byte field of every session, which took the
	// Client to the 128-byte size class (16 bytes less for every client).
	// A will costs more this way: a map entry alone measures 18 to 24
	// bytes (23.6 at 100,000 wills), but a broker whose 15,000 clients
	// all hold a will measured 39 bytes more live heap a client than
	// with the field (35 more RSS; docs/benchmarks.md §79, Review,
	// mended), one without a will 16 to 19 less: a win only while fewer
	// than about a third of the sessions hold a will. willBytes are
	// their bytes (Config.MaxWillBytes); willsPeak is the most wills held
	// since the map was last made, as Go maps do not shrink: setWill
	// makes it anew when it falls under an eighth of a peak of at least
	// willsShrinkPeak. All three change only in setWill.
	wills     map[*session]*msg
	willBytes int64
	willsPeak int
	shares    map[string]int     // members here by $share/group/filter, while Hooks.OnShare is set
	offline   map[*session]int64 // sessions to sweep (offline with an expiry, or a delayed will): unix ns they went offline
	// wsKeepAlive are the connected WebSocket clients with a keep-alive,
	// whose input the sweeper checks.
	wsKeepAlive map[*conn]struct{}
	closed      bool

	// queued are the bytes and messages queued across sessions (inflight
	// ones included), in shards like mu's: every QoS 1 and 2 delivery
	// and acknowledgement moves them (ss.account).
	queued    []queuedShard
	shareNext atomic.Uint32
	stats     serverStats
	stop      chan struct{}
	stopOnce  sync.Once
	sweeping  sync.Once
	ws        *websocket.Server
	idSeq     atomic.Uint64
	epoch     int64 // unix ns when the server was made: stamps count from it
}

var _ engine.CloseDetail = ReasonCode(0)

// NewServer returns a broker configured by cfg. It starts one goroutine,
// which expires offline sessions and publishes delayed wills, once the
// server gets its first connection; Close stops it.
func NewServer(cfg Config) *Server {
	s := &Server{cfg: cfg.withDefaults(),
		offline: make(map[*session]int64), wills: make(map[*session]*msg), wsKeepAlive: make(map[*conn]struct{}), stop: make(chan struct{})}
	s.epoch = s.now().UnixNano()
	s.mu.init()
	s.queued = make([]queuedShard, len(s.mu.shards))
	s.lim = s.cfg.Limits
	s.lim.MaxPacketSize = s.lim.resolve().packetSize
	s.lit.Tagged = true // looked up for every message routed
	s.ws = websocket.New(websocket.Config{
		Subprotocols:   []string{websocketSubprotocol},
		MaxMessageSize: max(s.lim.MaxPacketSize, defaultWebSocketMaxMsgBytes),
		Inline:         true,
		PingInterval:   -1,
		CheckOrigin:    func([]byte, *http1.Ctx) bool { return true },
		Label:          func(c *websocket.Conn) string { return wsLabel(c) },
		GoingAway:      wsGoingAway,
		DrainHold:      wsDrainHold,
	}, wsBridge{s})
	return s
}

// Config returns the server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// now reads the server's clock.
func (s *Server) now() time.Time {
	if s.cfg.Clock != nil {
		return s.cfg.Clock.Now()
	}
	return time.Now()
}

// stampUnit is the unit of a stamp, and stampShift where a connection
// keeps its last input's stamp in its loop word (conn.state): 24 bits of
// 16 ms wrap after 74 hours.
const (
	stampUnit  = 16 * time.Millisecond
	stampShift = 8
)

// stamp returns the stamp of t (unix ns): stampUnits since the server's
// epoch in 24 bits, as a connection keeps the time of its last input.
// since reads the difference of two stamps.
func (s *Server) stamp(t int64) uint32 {
	return uint32((t-s.epoch)/int64(stampUnit)) & (1<<(32-stampShift) - 1)
}

// stampSkew is how far a stamp may read after the time it is compared
// with and still be a connection's input racing the sweeper's clock
// (64 units, about a second): since reads it as zero. A stamp further
// ahead than that is one so old that its 24 bits wrapped past half their
// range (a silence over 37 hours): since reads it as the maximum.
const stampSkew = 64

// since returns how long at least before t (unix ns) the stamp was taken
// (a stamp's unit less than the stamps' difference, so that a keep-alive
// is never enforced early). A stamp up to stampSkew units after t (a
// connection's input racing the sweeper's clock) reads zero; one further
// after t is a silence of more than 37 hours whose difference wrapped
// negative, and reads as the most the stamps hold (2^23 units, 37
// hours): more than any keep-alive's limit (at most 65535 s, enforced at
// 1.5 times that, 27 hours), so such a client is closed, not re-armed. A
// silence past 74.5 hours wraps to a small difference again: only a
// client that is sent something at least every 1.5 times its keep-alive
// for that long gets there, as output resets the engine's idle timer too
// (OnTimeout).
func (s *Server) since(stamp uint32, t int64) time.Duration {
	d := int32((s.stamp(t)-stamp)<<stampShift) >> stampShift
	if d < -stampSkew {
		return time.Duration(1<<(32-stampShift-1)) * stampUnit
	}
	return time.Duration(max(d-1, 0)) * stampUnit
}

// Handler returns the engine handler that serves MQTT on a TCP listener:
// give it to engine.Engine.Listen, or use Listen.
func (s *Server) Handler() engine.Handler { return listenerHandler{s} }

// Listen adds a listener on addr to e (which must be started) serving MQTT
// with s.
func (s *Server) Listen(e *engine.Engine, addr string) (*engine.Listener, error) {
	if s.isClosed() {
		return nil, ErrServerClosed
	}
	return e.Listen(addr, s.Handler())
}

// ListenOn is Listen on a listener the caller made.
func (s *Server) ListenOn(e *engine.Engine, ln net.Listener) (*engine.Listener, error) {
	if s.isClosed() {
		ln.Close()
		return nil, ErrServerClosed
	}
	return e.ListenOn(ln, s.Handler())
}

// WebSocketHandler returns the http1 handler that upgrades a request to
// MQTT over WebSocket (subprotocol "mqtt"), for a route of an http1
// server on the same engine:
//
//	router.Handle("GET /mqtt", broker.WebSocketHandler())
//
// MQTT packets travel in binary messages and may straddle them; a text
// message is a protocol error.
func (s *Server) WebSocketHandler() http1.Handler { return s.ws.Handler() }

// WebSocket returns the websocket server behind WebSocketHandler, for its
// Stats and Collector.
func (s *Server) WebSocket() *websocket.Server { return s.ws }

// Close stops the server's sweeper. Connections are closed by the engine's
// shutdown (each gets DISCONNECT server_shutting_down in 5.0); sessions
// stay in memory until the Server is dropped.
func (s *Server) Close() error {
	s.mu.Lock()
	s.closed = true
	s.mu.Unlock()
	s.stopOnce.Do(func() { close(s.stop) })
	return nil
}

func (s *Server) isClosed() bool {
	s.mu.RLock()
	defer s.mu.RUnlock()
	return s.closed
}

// startSweeper starts the sweeper goroutine once.
func (s *Server) startSweeper() {
	s.sweeping.Do(func() {
		go func() {
			t := time.NewTicker(s.cfg.SweepInterval)
			defer t.Stop()
			for {
				select {
				case <-s.stop:
					return
				case <-t.C:
					s.sweep(s.now())
				}
			}
		}()
	})
}

// listenerHandler makes a conn for every accepted connection.
type listenerHandler struct{ s *Server }

var (
	_ engine.Handler       = listenerHandler{}
	_ engine.OpenHandler   = listenerHandler{}
	_ engine.InlineHandler = listenerHandler{}
	_ engine.ProtocolNamer = listenerHandler{}
)

// OnData is never called: OnOpen hands the connection to its conn.
func (h listenerHandler) OnData(c *engine.Conn, in []byte) int { return 0 }

// OnOpen installs the connection's MQTT handler.
func (h listenerHandler) OnOpen(ec *engine.Conn) {
	c := h.s.newConn(ec, nil)
	ec.SetHandler((*proto)(c))
}

// Inline says the handler runs on the loop.
func (listenerHandler) Inline() bool { return true }

// Protocol names the protocol.
func (listenerHandler) Protocol() string { return ProtocolName }
