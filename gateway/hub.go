package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"hash/maphash"
	"log/slog"
	"math"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"
	"unique"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/warrenhq/warren/internal/keytab"
)

// Transport is how the hub reaches a connected device, whatever protocol
// carries it (WebSocket today, MQTT next). Its methods never block.
type Transport interface {
	// Protocol names the transport ("websocket", "mqtt").
	Protocol() string
	// Remote is the device's address.
	Remote() netip.AddrPort
	// SendCommand queues a command for the device.
	SendCommand(cmd Command) error
	// Close closes the device's connection with a gateway reason
	// (ReasonReplaced, ReasonTokenExpired, ...).
	Close(reason string)
	// PauseRead stops reading from the device (backpressure);
	// ResumeRead undoes it.
	PauseRead()
	ResumeRead()
}

// Command is a control command for a device.
type Command struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
}

// Ack is a device's answer to a command. Status is "ok" or "error" from
// the device, or "timeout" when it did not answer in time.
type Ack struct {
	ID     string          `json:"id"`
	Status string          `json:"status"`
	Result json.RawMessage `json:"result,omitempty"`
}

// Gateway close and presence reasons. They label metrics, presence events
// and logs.
const (
	ReasonReplaced     = "replaced"      // another connection took the device's session
	ReasonTokenExpired = "token_expired" // the token's exp passed while connected
	ReasonAuthFailed   = "auth_failed"   // no or a bad token
	ReasonAbuse        = "abuse"         // repeated bad frames
	ReasonShutdown     = "shutdown"      // the node drained
	ReasonNodeLost     = "node_lost"     // the node holding the device went silent
	ReasonDisconnected = "disconnected"  // the connection closed
)

// Errors of command delivery.
var (
	// ErrOffline: the device is not connected anywhere in the cluster.
	ErrOffline = errors.New("gateway: device offline")
	// ErrCommandTimeout: the device did not acknowledge in time.
	ErrCommandTimeout = errors.New("gateway: command timed out")
	// ErrDraining: the node holding the device drains; it delivers no
	// new command (the API's 503 {"error":"draining"}, with Retry-After).
	ErrDraining = errors.New("gateway: node draining")
)

// Session is one connected device on this node. It is 64 bytes (a size
// class; TestDirEntry checks it): an idle device's share of the hub. A
// transport may embed it in its own per-connection object (the WebSocket
// and MQTT transports do) so that a device costs one allocation, not two.
// Its times past the connection's own are whole seconds: the token's
// expiry (a JWT's exp and a certificate's end are) and the last activity,
// as seconds after the connection.
type Session struct {
	Device string
	t      Transport
	since  int64 // unix ns connected

	// held is telemetry waiting while the device is paused (the rest of
	// the read that hit backpressure); nil until the first pause, so an
	// ordinary session does not carry it.
	held atomic.Pointer[heldQueue]

	expires uint32        // the token's exp, Unix seconds rounded up; 0: none
	last    atomic.Uint32 // the last activity, whole seconds after since
	seq     uint32        // the session's number on its node (modulo 2^32): node/seq is its id
	// state holds sPaused and sGone, and above them the bad frames of
	// the current window and that window's number (addBad).
	state atomic.Uint32
}

// Session state bits: two flags, then the bad frames of the current
// window (badBits: at most MaxBadFramesLimit), then the window's number
// since the session began (modulo 2^winBits: a session's window number
// wraps after 2^18 windows, which only makes an old count look current
// again if no bad frame came in exactly that long).
const (
	sPaused  = 1 << 0 // reading is paused (backpressure): telemetry is held
	sGone    = 1 << 1 // replaced or gone: reading is not resumed
	badShift = 2      // the bad frames count from this bit on
	badBits  = 12
	winShift = badShift + badBits
	winBits  = 32 - winShift

	badMask = (1<<badBits - 1) << badShift
	winMask = (1<<winBits - 1) << winShift
)

// MaxBadFramesLimit is the largest bad-frame count a session keeps per
// window; a larger Config.MaxBadFrames is treated as this.
const MaxBadFramesLimit = 1<<badBits - 1

// setExpires records the token's expiry (zero: none), rounded up to whole
// seconds (within 2106).
func (s *Session) setExpires(t time.Time) {
	if t.IsZero() {
		s.expires = 0
		return
	}
	sec := t.Unix()
	if t.Nanosecond() != 0 {
		sec++
	}
	s.expires = uint32(min(max(sec, 1), math.MaxUint32))
}

// expiresAt returns the token's expiry, Unix ns; 0 for none.
func (s *Session) expiresAt() int64 { return int64(s.expires) * int64(time.Second) }

// Identity returns the identity the device connected with (always a
// device: services hold no session).
func (s *Session) Identity() Identity {
	id := Identity{Device: s.Device, Role: RoleDevice}
	if s.expires != 0 {
		id.Expires = time.Unix(int64(s.expires), 0)
	}
	return id
}

// Transport returns the session's transport.
func (s *Session) Transport() Transport { return s.t }

// Touch records activity from the device, to the second.
func (s *Session) Touch(now time.Time) {
	d := (now.UnixNano() - s.since) / int64(time.Second)
	s.last.Store(uint32(min(max(d, 0), math.MaxUint32)))
}

// lastSeen returns the time of the device's last activity, to the second
// after it connected.
func (s *Session) lastSeen() time.Time {
	return time.Unix(0, s.since+int64(s.last.Load())*int64(time.Second))
}

// paused reports whether reading is paused; setPaused sets it and reports
// whether it was not set before.
func (s *Session) paused() bool { return s.state.Load()&sPaused != 0 }

func (s *Session) setPaused() bool { return s.state.Or(sPaused)&sPaused == 0 }

func (s *Session) clearPaused() { s.state.And(^uint32(sPaused)) }

// gone reports whether the session was replaced; setGone marks it.
func (s *Session) gone() bool { return s.state.Load()&sGone != 0 }

func (s *Session) setGone() { s.state.Or(sGone) }

// addBad counts one bad frame at now and returns the count in its
// window: fixed windows of length window since the session began, so a
// device's bad frames are counted over the last window or two, not its
// whole life (a device that errs once an hour is never closed for it).
// It costs no byte beyond the session's state word and no timer: the
// count restarts when a bad frame comes in a later window. window <= 0
// counts over the session's whole life.
func (s *Session) addBad(now time.Time, window time.Duration) int32 {
	var w uint32
	if window > 0 {
		w = uint32((now.UnixNano()-s.since)/int64(window)) << winShift & winMask
	}
	for {
		old := s.state.Load()
		n := (old & badMask) >> badShift
		if old&winMask != w {
			n = 0 // a new window
		}
		n = min(n+1, MaxBadFramesLimit)
		if s.state.CompareAndSwap(old, old&^(badMask|winMask)|w|n<<badShift) {
			return int32(n)
		}
	}
}

// DefaultDeviceHeldBytes is HubConfig.MaxHeldBytes's default (and
// Config.DeviceHeldBytes's, warren serve's -device-held-bytes).
const DefaultDeviceHeldBytes = 256 << 10

// heldQueue is a paused session's telemetry, bounded by
// HubConfig.MaxHeldBytes.
type heldQueue struct {
	mu    sync.Mutex
	msgs  []*nats.Msg
	bytes int
}

// heldQ returns s's held queue, making it on first use.
func (s *Session) heldQ() *heldQueue {
	if q := s.held.Load(); q != nil {
		return q
	}
	s.held.CompareAndSwap(nil, new(heldQueue))
	return s.held.Load()
}

// hold keeps m for when NATS has room; it reports false when limit
// (bytes of held payload) is reached.
func (s *Session) hold(m *nats.Msg, limit int) bool {
	q := s.heldQ()
	q.mu.Lock()
	defer q.mu.Unlock()
	if q.bytes+len(m.Data) > limit {
		return false
	}
	m.Data = append([]byte(nil), m.Data...) // the caller's buffer is not ours to keep
	q.msgs = append(q.msgs, m)
	q.bytes += len(m.Data)
	return true
}

// DeviceInfo is what the cluster knows of a device.
type DeviceInfo struct {
	Device      string    `json:"device"`
	State       string    `json:"state"`
	Node        string    `json:"node"`
	Protocol    string    `json:"protocol"`
	Remote      string    `json:"remote"`
	ConnectedAt time.Time `json:"connected_at"`
	LastSeen    time.Time `json:"last_seen"`
	session     string
}

// presenceMsg is published on devices.<id>.presence.
type presenceMsg struct {
	Device      string    `json:"device"`
	State       string    `json:"state"`
	Node        string    `json:"node"`
	Protocol    string    `json:"protocol"`
	Remote      string    `json:"remote"`
	Reason      string    `json:"reason"` // "" when online: consumers read the field on every event
	At          time.Time `json:"at"`
	ConnectedAt time.Time `json:"connected_at"`
	Session     string    `json:"session"`
}

// HubConfig configures a Hub.
type HubConfig struct {
	// Node names this node; it must be unique in the cluster.
	Node string
	// Now is the clock (the engine's).
	Now func() time.Time
	// CommandTimeout is a command's default ack timeout. Zero means 5 s.
	CommandTimeout time.Duration
	// MaxCommandTimeout bounds a command's timeout. Zero means 60 s.
	MaxCommandTimeout time.Duration
	// MaxPending bounds commands waiting for an ack on this node; past it
	// commands fail at once. Zero means 100,000.
	MaxPending int
	// NodeTimeout is how long a silent node keeps its devices in the
	// directory. Zero means 3 s (heartbeats every second).
	NodeTimeout time.Duration
	// Directory, when set, names the machine whose directory this hub
	// asks (see Directory; a prefork worker's parent): the hub then holds
	// no entry for devices of other nodes and asks the directory over
	// NATS for them. Empty: the hub holds the whole cluster directory.
	Directory string
	// DirectoryTimeout bounds one request to the Directory. Zero means
	// 2 s.
	DirectoryTimeout time.Duration
	Logger           *slog.Logger
	// OnTelemetry, when set, is offered every telemetry message before it
	// is published, on the device's loop: it must not block nor keep data
	// (the webhook's queue).
	OnTelemetry func(device string, data []byte, now time.Time)
	// Limits limits each device's telemetry (see DeviceLimits). The
	// zero value limits nothing.
	Limits DeviceLimits
	// MaxHeldBytes bounds the telemetry payload bytes a device paused
	// for NATS backpressure holds: the rest of the read that hit it
	// (reading stops, so only frames already read arrive). Past it they
	// are dropped and counted (telemetry_dropped_total{reason=
	// "held_overflow"}). Zero means DefaultDeviceHeldBytes (256 KiB).
	MaxHeldBytes int
	// HandoffWait bounds an MQTT takeover's hand-off (see
	// DefaultHandoffWait; warren serve's -handoff-wait): how long a device
	// whose connection another connection took over by its client id stays
	// the device's, gone, waiting for the new connection to register,
	// before it is dropped and announced offline with reason replaced.
	// Zero or negative means DefaultHandoffWait (1 s).
	HandoffWait time.Duration
	// DrainTimeout is the node's drain deadline (warren serve's
	// -drain-timeout): a device kept open at the drain for its commands
	// still waiting for acks (see Drain) is let go at the latest
	// drainHoldFor(DrainTimeout) after the drain began, its commands
	// answered "timeout". Zero means 10 s.
	DrainTimeout time.Duration
}

const nShards = 64

// shard holds a part of the node's sessions, by device id: one pointer
// slot each (keytab: 11-16 bytes a device at its loads, against 30-60 for a
// map[string]*Session's key, value and control byte; TestHubShardTable).
type shard struct {
	mu sync.Mutex
	m  keytab.Table[*hubEntry]
	_  [56]byte // a shard is two cache lines
}

// hubEntry is a Session as a shard keeps it: keyed by its device id, which
// does not change while it is in the shard.
type hubEntry Session

// TableKey keys the session in its shard.
func (e *hubEntry) TableKey() string { return e.Device }

// get returns the shard's session of device, or nil; sh.mu is held.
func (sh *shard) get(device string) *Session { return (*Session)(sh.m.Get(device)) }

// set makes s the shard's session of its device and returns the one it
// replaces, or nil; sh.mu is held.
func (sh *shard) set(s *Session) *Session {
	old := sh.m.Get(s.Device)
	if old != nil {
		sh.m.Replace(old, (*hubEntry)(s))
	} else {
		sh.m.Put((*hubEntry)(s))
	}
	return (*Session)(old)
}

// drop removes s if it is the shard's session of its device, and reports
// whether it was; sh.mu is held.
func (sh *shard) drop(s *Session) bool { return sh.m.Remove((*hubEntry)(s)) }

// all calls fn with each of the shard's sessions; sh.mu is held.
func (sh *shard) all(fn func(*Session)) {
	sh.m.All(func(e *hubEntry) bool { fn((*Session)(e)); return true })
}

// pendingCmd is a command waiting for its device's ack.
type pendingCmd struct {
	device string
	done   func(Ack)
	timer  *time.Timer
	fired  atomic.Bool
}

// Hub holds this node's device sessions and the cluster's presence
// directory, publishes telemetry and presence, and routes commands: to a
// local device directly, to another node's devices through that node's
// command subject (one subscription per node, never per device).
type Hub struct {
	cfg     HubConfig
	node    unique.Handle[string] // cfg.Node, interned for the directory
	nodeHdr []string              // cfg.Node as a telemetry header value, shared by every message
	bus     *Bus
	nc      *nats.Conn
	log     *slog.Logger
	seed    maphash.Seed
	seq     atomic.Uint64
	started int64          // when Start ran, Unix ns: this run's sessions are not older
	lim     *deviceLimiter // nil: no DeviceLimits

	shards [nShards]shard
	dir    [nShards]dirShard

	pmu     sync.Mutex
	pending map[string]*pendingCmd

	// The reply subscription of commands sent to other nodes
	// (command_async.go), made on first use.
	rqMu     sync.Mutex
	rq       atomic.Pointer[requester]
	rqClosed bool // guarded by rqMu

	// draining is set when the node drains (Drain): no new command is
	// delivered, and once its last device has gone, the commands still
	// waiting for acks are answered at once. Set under pmu (deliver reads
	// it there), read anywhere.
	draining atomic.Bool
	// The drain's hold, guarded by pmu, made when the node drains
	// (beginDrainLocked): drainLeft counts each device's commands still
	// waiting for acks, drainHeld is the sessions kept open for them, and
	// drainEnd lets them go at the drain's deadline.
	drainLeft map[string]int
	drainHeld map[string]*Session
	drainEnd  *time.Timer

	nmu   sync.Mutex
	nodes map[string]nodeSeen // last heartbeat per other node

	serves string // the machine whose directory this hub serves (Directory); "" none

	pausedMu sync.Mutex
	paused   map[*Session]struct{}

	// hoMu guards handoffs: the sessions a transport handed off (an MQTT
	// takeover: handOff), each with the timer that drops it if no new
	// connection attaches in time; nil once Close ran. Taken under a
	// shard's mu, never the other way round.
	//
	// Lock order of the MQTT hand-off (a lock on the left may be held
	// while taking one on its right):
	//
	//	shard.mu  ->  hoMu
	//	shard.mu  ->  the broker's Server.mu (read)  ->  session.mu
	//
	// The second: attachIf's check, mqtt.Client.Current, asked under the
	// shard's lock so that the check and the attach are one step. The
	// broker holds none of its locks across a hook (mqtt/session.go), so
	// nothing takes a shard's lock under a broker lock. Its cost: a
	// connect's attach waits, holding its shard, while a writer holds
	// Server.mu (a subscribe, a takeover); Server.mu's read side is
	// sharded per loop (mqtt/rwlock.go), so readers do not contend with
	// each other. A lock-free check — a "taken over" bit the broker sets
	// on the old connection under its lock before the new connection's
	// OnConnect can run — would avoid that wait; it is not done: Current
	// also says "closed" and "not accepted", which such a bit would have
	// to repeat. No NATS publish runs under a shard's lock: nats.go's
	// Publish writes to the socket itself, holding the connection's lock,
	// once 32 KiB are buffered, and may wait there up to the bus's write
	// timeout (busWriteTimeout) while NATS is stalled; every device of the
	// shard would wait with it. So presence events are published after
	// unlocking, and their order is not the order of the hub's steps
	// (docs/gateway.md: consumers match an event to its session).
	hoMu     sync.Mutex
	handoffs map[*Session]*time.Timer
	// hoRun counts the hand-off timers not stopped: set, or fired and
	// their handoffExpired running. Close waits for it (closeHandoffs),
	// so that an expiry's offline event goes out before the bus closes.
	hoRun sync.WaitGroup
	// handoffWait is the hand-off's bound in ns: HubConfig.HandoffWait
	// (tests change it).
	handoffWait atomic.Int64
	// testAttach, set by tests only, runs as attachIf begins, before the
	// shard's lock.
	testAttach atomic.Pointer[func(s *Session)]
	// testExpired, set by tests only, runs in handoffExpired once the
	// shard's lock is released, before the offline event.
	testExpired atomic.Pointer[func(s *Session)]
	// testCloseWait, set by tests only, runs in closeHandoffs before it
	// waits for the expiries running.
	testCloseWait atomic.Pointer[func()]

	subs []*nats.Subscription
	stop chan struct{}
	wg   sync.WaitGroup
	m    hubMetrics
}

// NewHub returns a hub publishing on bus. Start subscribes and starts its
// background work.
func NewHub(cfg HubConfig, bus *Bus) *Hub {
	if cfg.Now == nil {
		cfg.Now = time.Now
	}
	if cfg.CommandTimeout <= 0 {
		cfg.CommandTimeout = 5 * time.Second
	}
	if cfg.MaxCommandTimeout <= 0 {
		cfg.MaxCommandTimeout = 60 * time.Second
	}
	if cfg.MaxPending <= 0 {
		cfg.MaxPending = 100_000
	}
	if cfg.NodeTimeout <= 0 {
		cfg.NodeTimeout = 3 * time.Second
	}
	if cfg.DirectoryTimeout <= 0 {
		cfg.DirectoryTimeout = 2 * time.Second
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = 10 * time.Second
	}
	if cfg.MaxHeldBytes <= 0 {
		cfg.MaxHeldBytes = DefaultDeviceHeldBytes
	}
	if cfg.HandoffWait <= 0 {
		cfg.HandoffWait = DefaultHandoffWait
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	h := &Hub{cfg: cfg, node: unique.Make(cfg.Node), nodeHdr: []string{cfg.Node}, bus: bus, nc: bus.Conn(), log: cfg.Logger, seed: maphash.MakeSeed(),
		pending: make(map[string]*pendingCmd), nodes: make(map[string]nodeSeen),
		paused: make(map[*Session]struct{}), handoffs: make(map[*Session]*time.Timer), stop: make(chan struct{}),
		lim: newDeviceLimiter(cfg.Limits)}
	h.handoffWait.Store(int64(cfg.HandoffWait))
	h.m.init()
	return h
}

// Node returns this node's name.
func (h *Hub) Node() string { return h.cfg.Node }

// Subjects of the gateway's NATS traffic.
const (
	subjPresenceAll = "devices.*.presence"
	subjCommandsAll = "devices.*.commands.*"
	subjHeartbeat   = "warren.nodes.heartbeat"
	subjSync        = "warren.presence.sync"
)

func nodeCommandSubject(node string) string   { return "warren.node." + node + ".command" }
func nodeBroadcastSubject(node string) string { return "warren.node." + node + ".broadcast" }
func nodeReplacedSubject(node string) string  { return "warren.node." + node + ".replaced" }
func presenceSubject(id string) string        { return "devices." + id + ".presence" }

// Start subscribes to presence, heartbeats and this node's commands, takes
// a snapshot of the cluster's presence, and starts the sweeper.
func (h *Hub) Start() error {
	h.started = h.cfg.Now().UnixNano()
	// A hub with a directory follows every device's presence; a hub that
	// asks a remote Directory does not (a prefork worker would otherwise
	// receive, and its NATS server buffer, every presence event of the
	// cluster): the Directory tells it on its replaced subject when a
	// device it holds connected again elsewhere.
	presence := struct {
		subj string
		fn   nats.MsgHandler
	}{subjPresenceAll, h.onPresence}
	if h.remoteDir() {
		presence.subj, presence.fn = nodeReplacedSubject(h.cfg.Node), h.onReplaced
	}
	subs := []struct {
		subj string
		fn   nats.MsgHandler
	}{
		presence,
		{subjHeartbeat, h.onHeartbeat},
		{subjSync, h.onSync},
		{nodeCommandSubject(h.cfg.Node), h.onNodeCommand},
		{nodeBroadcastSubject(h.cfg.Node), h.onNodeBroadcast},
		{subjCommandsAll, h.onServiceCommand},
	}
	if h.serves != "" {
		subs = append(subs, []struct {
			subj string
			fn   nats.MsgHandler
		}{{dirSubject(h.serves, "get"), h.onDirGet}, {dirSubject(h.serves, "list"), h.onDirList},
			{dirSubject(h.serves, "command"), h.onDirCommand},
			{dirSubject(h.serves, "broadcast"), h.onDirBroadcast}, {dirSubject(h.serves, "count"), h.onDirCount}}...)
	}
	for _, s := range subs {
		sub, err := h.nc.Subscribe(s.subj, s.fn)
		if err != nil {
			return err
		}
		sub.SetPendingLimits(1<<20, 256<<20)
		h.subs = append(h.subs, sub)
	}
	if h.nc.IsConnected() { // else Flush waits out its 10 s: the start goes on, nats.go replays the subscriptions
		h.nc.Flush()
	}
	if !h.remoteDir() {
		h.syncPresence()
	}
	// The first heartbeat goes out now, not a second from now: it tells
	// the cluster when this run started, and so that the devices a
	// previous run of the same node left in the directories are gone.
	h.heartbeat()
	h.wg.Add(1)
	go h.sweep()
	return nil
}

// Close stops the hub's background work and unsubscribes.
func (h *Hub) Close() {
	select {
	case <-h.stop:
		return
	default:
	}
	close(h.stop)
	h.wg.Wait()
	for _, s := range h.subs {
		s.Unsubscribe()
	}
	h.closeReplies()
	h.closeHandoffs()
	h.pmu.Lock()
	if h.drainEnd != nil {
		h.drainEnd.Stop()
	}
	for id, p := range h.pending {
		if p.timer != nil {
			p.timer.Stop()
		}
		delete(h.pending, id)
		if p.fired.CompareAndSwap(false, true) {
			go p.done(Ack{ID: id, Status: "timeout"})
		}
	}
	h.pmu.Unlock()
}

func (h *Hub) shardOf(id string) int { return int(maphash.String(h.seed, id) % nShards) }

// Connect registers a device's new connection on this node and announces
// it. An older connection of the same device, here or on another node, is
// closed with ReasonReplaced.
func (h *Hub) Connect(ident Identity, t Transport) *Session {
	s := new(Session)
	h.attach(s, ident, t)
	return s
}

// attach is Connect with a session the transport allocated (zero, in its
// own connection object).
func (h *Hub) attach(s *Session, ident Identity, t Transport) { h.attachIf(s, ident, t, nil) }

// attachIf is attach when still (if not nil) reports true, asked under
// the device's shard lock as part of the attach; it reports whether s was
// attached. A transport whose connection another connection of the device
// may take over at the transport (MQTT: mqtt.Client.Current) passes the
// check, so that a connection superseded before it attached — a device
// reconnecting twice in quick succession, whose second connection's
// attach may come first, from another event loop — is refused rather
// than registered over the newer connection (which it would close as
// replaced). The check and the attach are one step under the lock: a
// takeover after the check comes with its own attach after this one,
// which replaces s. A refused s is not attached (its Transport stays
// nil), no event is published, and it counts as replaced: the newer
// connection took it over.
func (h *Hub) attachIf(s *Session, ident Identity, t Transport, still func() bool) bool {
	if s.Device != ident.Device {
		s.Device = ident.Device // (a transport's session may hold it already: no write, no race with its readers)
	}
	sh := &h.shards[h.shardOf(s.Device)]
	if fn := h.testAttach.Load(); fn != nil {
		(*fn)(s)
	}
	sh.mu.Lock()
	if still != nil && !still() {
		sh.mu.Unlock()
		h.m.replaced.Add(1)
		return false
	}
	now := h.cfg.Now()
	// A session is never older than its hub's run (a wall clock stepped
	// back must not make it look like a previous run's: see onPresence).
	// Set under the lock, once the attach is decided: no other goroutine
	// sees s before it is in the shard.
	s.t, s.since, s.seq = t, max(now.UnixNano(), h.started), uint32(h.seq.Add(1))
	if !ident.Expires.IsZero() {
		s.setExpires(ident.Expires)
	}
	s.last.Store(0)
	old := sh.set(s)
	sh.mu.Unlock()
	if old != nil {
		h.endHandoff(old)
		old.setGone()
		h.m.replaced.Add(1)
		old.t.Close(ReasonReplaced)
	} else {
		h.m.online.Add(1)
	}
	h.m.connects.Add(1)
	if !h.remoteDir() {
		h.dirSet(s.Device, h.entryOfSession(s))
	}
	h.publishPresence(h.infoOf(s), "online", "", now)
	return true
}

// letGo ends what the hub holds for s's connection beyond the session:
// a paused read and a drain's hold.
func (h *Hub) letGo(s *Session) {
	h.unpause(s)
	if h.draining.Load() {
		h.pmu.Lock()
		if h.drainHeld[s.Device] == s {
			delete(h.drainHeld, s.Device)
		}
		h.pmu.Unlock()
	}
}

// Disconnect unregisters a closed connection and announces the device
// offline with reason, unless another connection replaced it.
func (h *Hub) Disconnect(s *Session, reason string) {
	sh := &h.shards[h.shardOf(s.Device)]
	sh.mu.Lock()
	cur := sh.drop(s)
	sh.mu.Unlock()
	h.letGo(s)
	if !cur {
		return // replaced: the new session announced itself
	}
	h.m.disconnect(reason)
	h.offline(s, reason)
}

// offline announces dropped session s offline with reason.
func (h *Hub) offline(s *Session, reason string) {
	now := h.cfg.Now()
	h.dropped(s)
	h.publishPresence(h.infoOf(s), "offline", reason, now)
}

// dropped is offline but for the event: the online count, and the
// directory entry of s removed.
func (h *Hub) dropped(s *Session) {
	if h.m.online.Add(-1) == 0 && h.draining.Load() {
		go h.failPending()
	}
	if !h.remoteDir() {
		e := h.entryOfSession(s)
		h.dirDelete(s.Device, &e)
	}
}

// DefaultHandoffWait is HubConfig.HandoffWait's default (and
// Config.HandoffWait's, warren serve's -handoff-wait). It bounds a
// hand-off (Hub.handOff): a session whose connection another connection
// of its device took over at the transport stays the device's this long
// at most, waiting for the new connection to attach. A second is long
// enough for the new connection's CONNECT to reach OnConnect on a loaded
// node, and short enough that a service which took a device's client id
// does not leave the device looking online for long.
const DefaultHandoffWait = time.Second

// handOff is Disconnect for a connection whose session another
// connection of the same device took over at the transport (an MQTT
// client id connecting again: the broker closes the old connection
// before the new one's OnConnect, on another event loop, so the hub may
// hear of the close first). The device is not offline: it is between
// connections. If s is still the device's session, it stays so, marked
// gone (commands to it fail at once as offline: deliver), with no event
// and no count, until the new connection attaches and replaces it (one
// replacement counted, no offline event) or, past HubConfig.HandoffWait with
// no attach (the client id was taken by a client that is not the device:
// a service, a client of another role), it is dropped and announced
// offline with ReasonReplaced (handoffs_expired_total,
// disconnects_total{reason="replaced"}), or, if the hub closes first,
// with ReasonShutdown (Close). If another connection replaced s already,
// there is nothing left to do. A transport whose connection the hub
// itself was closing (Transport.Close) disconnects with that reason
// instead, takeover or not.
func (h *Hub) handOff(s *Session) {
	sh := &h.shards[h.shardOf(s.Device)]
	sh.mu.Lock()
	held := false
	if sh.get(s.Device) == s {
		h.hoMu.Lock()
		if h.handoffs != nil { // nil: the hub closed
			s.setGone()
			wait := time.Duration(h.handoffWait.Load())
			h.hoRun.Add(1)
			h.handoffs[s] = time.AfterFunc(wait, func() {
				defer h.hoRun.Done()
				h.handoffExpired(s)
			})
			held = true
		}
		h.hoMu.Unlock()
	}
	sh.mu.Unlock()
	if !held {
		h.Disconnect(s, ReasonReplaced)
		return
	}
	h.letGo(s)
}

// closeHandoffs ends the hand-offs under way as the hub closes: their
// timers stopped, each session still its device's dropped and announced
// offline (shutdown), as a connection the shutdown closed is (no new
// connection of the device attaches to a closing hub). It runs before the
// bus closes, for the events to go out; handOff holds nothing more once
// it ran (handoffs is nil). It waits for the expiries already running
// (their timers fired), whose offline events go out before the bus
// closes too.
func (h *Hub) closeHandoffs() {
	h.hoMu.Lock()
	held := make([]*Session, 0, len(h.handoffs))
	for s, t := range h.handoffs {
		if t.Stop() {
			h.hoRun.Done()
		}
		held = append(held, s)
	}
	h.handoffs = nil
	h.hoMu.Unlock()
	for _, s := range held {
		// A timer that fired already races its handoffExpired here:
		// whichever drops s announces it, once.
		sh := &h.shards[h.shardOf(s.Device)]
		sh.mu.Lock()
		cur := sh.drop(s)
		sh.mu.Unlock()
		if cur {
			h.m.disconnect(ReasonShutdown)
			h.offline(s, ReasonShutdown)
		}
	}
	if fn := h.testCloseWait.Load(); fn != nil {
		(*fn)()
	}
	h.hoRun.Wait()
}

// endHandoff stops the hand-off timer of s, if s was handed off.
func (h *Hub) endHandoff(s *Session) {
	h.hoMu.Lock()
	if t := h.handoffs[s]; t != nil {
		if t.Stop() {
			h.hoRun.Done()
		}
		delete(h.handoffs, s)
	}
	h.hoMu.Unlock()
}

// handoffExpired drops handed-off session s when no new connection has
// replaced it in time, and announces the device offline (replaced: its
// connection was taken over).
//
// The event goes out after the shard's lock is released, as Disconnect's
// does (see hoMu for why): a new connection of the device attaching
// right then may publish its online event first. Presence consumers
// match an offline event to its session (the hub's own directory does:
// onPresence deletes an entry only of the same session), so the device
// stays online for them either way.
func (h *Hub) handoffExpired(s *Session) {
	sh := &h.shards[h.shardOf(s.Device)]
	sh.mu.Lock()
	cur := sh.drop(s)
	sh.mu.Unlock()
	h.hoMu.Lock()
	if h.handoffs != nil {
		delete(h.handoffs, s)
	}
	h.hoMu.Unlock()
	if fn := h.testExpired.Load(); fn != nil {
		(*fn)(s)
	}
	if !cur {
		return
	}
	h.m.handoffsExpired.Add(1)
	h.m.replaced.Add(1)
	h.m.disconnect(ReasonReplaced)
	h.offline(s, ReasonReplaced)
}

// Local returns this node's session of device, or nil.
func (h *Hub) Local(device string) *Session {
	sh := &h.shards[h.shardOf(device)]
	sh.mu.Lock()
	defer sh.mu.Unlock()
	return sh.get(device)
}

// LocalCount returns the devices connected to this node.
func (h *Hub) LocalCount() int64 { return h.m.online.Load() }

func (h *Hub) infoOf(s *Session) *DeviceInfo {
	return &DeviceInfo{Device: s.Device, State: "online", Node: h.cfg.Node, Protocol: s.t.Protocol(),
		Remote: s.t.Remote().String(), ConnectedAt: time.Unix(0, s.since), session: sessionID(h.cfg.Node, uint64(s.seq))}
}

func (h *Hub) publishPresence(d *DeviceInfo, state, reason string, now time.Time) {
	b, _ := json.Marshal(presenceMsg{Device: d.Device, State: state, Node: d.Node, Protocol: d.Protocol,
		Remote: d.Remote, Reason: reason, At: now.UTC(), ConnectedAt: d.ConnectedAt.UTC(), Session: d.session})
	if err := h.nc.Publish(presenceSubject(d.Device), b); err != nil {
		h.m.presenceErrors.Add(1)
	}
}

// Lookup returns what the cluster knows of device: online somewhere, or
// nil.
func (h *Hub) Lookup(device string) *DeviceInfo {
	d, _ := h.lookup(device)
	return d
}

// lookup is Lookup, with the error of a remote directory that did not
// answer.
func (h *Hub) lookup(device string) (*DeviceInfo, error) {
	if h.remoteDir() {
		return h.remoteLookup(device)
	}
	return h.dirLookup(device), nil
}

// dirLookup is Lookup in the hub's own directory.
func (h *Hub) dirLookup(device string) *DeviceInfo {
	e, ok := h.dirGet(device)
	if !ok {
		return nil
	}
	d := e.info(device)
	if s := h.Local(device); s != nil && e.node == h.node && s.seq == e.seq {
		d.LastSeen = s.lastSeen()
	}
	return d
}

// List returns online devices whose ids start with prefix, sorted, after
// the cursor id, at most limit of them, and the cursor for the next page
// ("" at the end).
func (h *Hub) List(prefix, cursor string, limit int) ([]DeviceInfo, string) {
	out, next, _ := h.list(prefix, cursor, limit)
	return out, next
}

// list is List, with the error of a remote directory that did not
// answer.
func (h *Hub) list(prefix, cursor string, limit int) ([]DeviceInfo, string, error) {
	if h.remoteDir() {
		return h.remoteList(prefix, cursor, limit)
	}
	out, next := h.dirList(prefix, cursor, limit)
	return out, next, nil
}

// dirList is List in the hub's own directory.
func (h *Hub) dirList(prefix, cursor string, limit int) ([]DeviceInfo, string) {
	var ids []string
	for i := range h.dir {
		ds := &h.dir[i]
		ds.mu.RLock()
		ds.t.All(func(r *dirRec) bool {
			if id := r.TableKey(); strings.HasPrefix(id, prefix) && id > cursor {
				ids = append(ids, id)
			}
			return true
		})
		ds.mu.RUnlock()
	}
	slices.Sort(ids)
	next := ""
	if limit > 0 && len(ids) > limit {
		ids = ids[:limit]
		next = ids[limit-1]
	}
	out := make([]DeviceInfo, 0, len(ids))
	for _, id := range ids {
		if d := h.dirLookup(id); d != nil {
			out = append(out, *d)
		}
	}
	return out, next
}

// onPresence applies another node's presence event: the directory follows,
// and a local session of a device that connected elsewhere later is
// replaced.
func (h *Hub) onPresence(m *nats.Msg) {
	var p presenceMsg
	if json.Unmarshal(m.Data, &p) != nil || p.Node == h.cfg.Node {
		return
	}
	if !presenceOf(m.Subject, p.Device) || m.Header.Get(headerQoS) != "" {
		// Only a node's own event on the device's own subject counts: not
		// one naming another device, nor an MQTT client's publish that the
		// bridge carried (it has the bridge's header).
		return
	}
	started := h.heard(p.Node)
	e, ok := entryOf(&p)
	if !ok || e.since < started {
		return // (a session of a previous run of the node, arriving late)
	}
	if p.State != "online" {
		h.dirDelete(p.Device, &e)
		return
	}
	if lost, ok := h.dirPut(p.Device, e); ok && h.serves != "" && lost.node != h.node {
		// A Directory tells the node of the session that lost (the one
		// held before, or this one when it came late) to close it: its
		// workers do not follow presence. Nodes that hold a directory
		// decide alike for themselves and ignore the notice.
		b, _ := json.Marshal(replacedNotice{Device: p.Device, Seq: lost.seq})
		h.nc.Publish(nodeReplacedSubject(lost.node.Value()), b)
	}
	if s := h.Local(p.Device); s != nil {
		mine := h.entryOfSession(s)
		if e.newer(&mine) {
			h.replaceLocal(s)
		}
	}
}

// presenceOf reports whether subject is device's presence subject,
// devices.<device>.presence, without building it.
func presenceOf(subject, device string) bool {
	const pre, suf = "devices.", ".presence"
	return len(subject) == len(pre)+len(device)+len(suf) && strings.HasPrefix(subject, pre) &&
		strings.HasSuffix(subject, suf) && subject[len(pre):len(pre)+len(device)] == device
}

// replacedNotice tells a node that its session seq of Device lost to a
// later connection of the device elsewhere.
type replacedNotice struct {
	Device string `json:"device"`
	Seq    uint32 `json:"seq"`
}

// onReplaced closes the local session a Directory says was replaced, if
// it is still the one the notice names.
func (h *Hub) onReplaced(m *nats.Msg) {
	var r replacedNotice
	if json.Unmarshal(m.Data, &r) != nil {
		return
	}
	if s := h.Local(r.Device); s != nil && s.seq == r.Seq {
		h.replaceLocal(s)
	}
}

// replaceLocal drops local session s, replaced by a connection of its
// device on another node, and closes it with ReasonReplaced.
func (h *Hub) replaceLocal(s *Session) {
	sh := &h.shards[h.shardOf(s.Device)]
	sh.mu.Lock()
	cur := sh.drop(s)
	if cur {
		h.m.online.Add(-1)
	}
	sh.mu.Unlock()
	if !cur {
		return
	}
	h.endHandoff(s)
	s.setGone()
	h.m.replaced.Add(1)
	s.t.Close(ReasonReplaced)
}

// nodeSeen is what a hub knows of another node: when it was last heard
// from, when its current run started, and whether it holds a directory
// (only those announce a lost node's devices offline).
type nodeSeen struct {
	at      time.Time
	started int64 // the node's run started, Unix ns (its heartbeats say); 0 not yet known
	remote  bool  // it asks a Directory: it holds none
}

// heard notes that node is alive and returns when its run started (0: not
// known yet).
func (h *Hub) heard(node string) int64 {
	h.nmu.Lock()
	n := h.nodes[node]
	n.at = time.Now()
	h.nodes[node] = n
	h.nmu.Unlock()
	return n.started
}

// Heartbeat headers: hdrDirectory names the machine whose Directory the
// node asks (a node that holds a directory sends none); hdrStarted is when
// the node's run started, Unix ns.
const (
	hdrDirectory = "Warren-Directory"
	hdrStarted   = "Warren-Started"
)

func (h *Hub) onHeartbeat(m *nats.Msg) {
	node := string(m.Data)
	if node == h.cfg.Node || node == "" {
		return
	}
	var started int64
	remote := false
	if m.Header != nil {
		remote = m.Header.Get(hdrDirectory) != ""
		started, _ = strconv.ParseInt(m.Header.Get(hdrStarted), 10, 64)
	}
	h.nmu.Lock()
	prev := h.nodes[node]
	if started < prev.started {
		started = prev.started // (a late heartbeat of an earlier run)
	}
	h.nodes[node] = nodeSeen{at: time.Now(), remote: remote, started: started}
	h.nmu.Unlock()
	if started > prev.started && !h.remoteDir() {
		// A new run of the node (or the first heartbeat heard from it):
		// what the directory holds of it from before it started belongs
		// to a previous run, killed and restarted faster than
		// NodeTimeout would notice.
		if n := h.dropDevices([]unique.Handle[string]{unique.Make(node)}, started); n > 0 {
			h.log.Warn("gateway: node restarted; the devices of its previous run are offline", "node", node, "devices", n)
		}
	}
}

// heartbeat tells the cluster this node is alive, and since when.
func (h *Hub) heartbeat() {
	m := &nats.Msg{Subject: subjHeartbeat, Data: []byte(h.cfg.Node),
		Header: nats.Header{hdrStarted: {strconv.FormatInt(h.started, 10)}}}
	if h.remoteDir() {
		m.Header[hdrDirectory] = []string{h.cfg.Directory}
	}
	h.nc.PublishMsg(m)
}

// onSync answers a node that starts with this node's sessions.
func (h *Hub) onSync(m *nats.Msg) {
	if m.Reply == "" || string(m.Data) == h.cfg.Node {
		return
	}
	var batch []presenceMsg
	flush := func() {
		b, _ := json.Marshal(batch)
		h.nc.Publish(m.Reply, b)
		batch = batch[:0]
	}
	now := h.cfg.Now().UTC()
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		sh.all(func(s *Session) {
			d := h.infoOf(s)
			batch = append(batch, presenceMsg{Device: d.Device, State: "online", Node: d.Node, Protocol: d.Protocol,
				Remote: d.Remote, At: now, ConnectedAt: d.ConnectedAt.UTC(), Session: d.session})
		})
		sh.mu.Unlock()
		if len(batch) >= 500 {
			flush()
		}
	}
	flush()
}

// syncPresence asks the other nodes for their sessions.
func (h *Hub) syncPresence() {
	inbox := nats.NewInbox()
	ch := make(chan *nats.Msg, 1024)
	sub, err := h.nc.ChanSubscribe(inbox, ch)
	if err != nil {
		return
	}
	defer sub.Unsubscribe()
	h.nc.PublishRequest(subjSync, inbox, []byte(h.cfg.Node))
	quiet := time.NewTimer(300 * time.Millisecond)
	defer quiet.Stop()
	for {
		select {
		case m := <-ch:
			var batch []presenceMsg
			if json.Unmarshal(m.Data, &batch) == nil {
				for _, p := range batch {
					h.heard(p.Node)
					if e, ok := entryOf(&p); ok {
						h.dirSet(p.Device, e)
					}
				}
			}
			quiet.Reset(100 * time.Millisecond)
		case <-quiet.C:
			return
		}
	}
}

// Reannounce publishes every local session again (after NATS reconnects).
func (h *Hub) Reannounce() {
	now := h.cfg.Now()
	h.Sessions(func(s *Session) { h.publishPresence(h.infoOf(s), "online", "", now) })
}

// sweep sends heartbeats, forgets silent nodes' devices, closes sessions
// whose token expired and resumes paused devices.
func (h *Hub) sweep() {
	defer h.wg.Done()
	beat := time.NewTicker(time.Second)
	defer beat.Stop()
	relief := time.NewTicker(50 * time.Millisecond)
	defer relief.Stop()
	for {
		select {
		case <-h.stop:
			return
		case <-relief.C:
			h.resumePaused()
		case <-beat.C:
			h.heartbeat()
			h.forgetSilentNodes()
			h.expireTokens()
		}
	}
}

// forgetSilentNodes drops the directory entries of nodes not heard from
// within NodeTimeout; the first live node by name among those holding a
// directory announces their devices offline with ReasonNodeLost. A hub
// that asks a remote directory holds nothing to drop nor to announce.
func (h *Hub) forgetSilentNodes() {
	now := time.Now()
	var lost []string
	h.nmu.Lock()
	for n, seen := range h.nodes {
		if now.Sub(seen.at) > h.cfg.NodeTimeout {
			lost = append(lost, n)
			delete(h.nodes, n)
		}
	}
	h.nmu.Unlock()
	if len(lost) == 0 || h.remoteDir() {
		return
	}
	h.log.Warn("gateway: nodes silent; their devices are offline", "nodes", lost)
	lostH := make([]unique.Handle[string], len(lost))
	for i, n := range lost {
		lostH[i] = unique.Make(n)
	}
	h.dropDevices(lostH, 0)
}

// dropDevices removes from the directory the devices of nodes that
// connected before (Unix ns; 0: whenever), and announces them offline
// with ReasonNodeLost if this hub is the first live node by name among
// those holding a directory. It returns how many it removed.
func (h *Hub) dropDevices(nodes []unique.Handle[string], before int64) int {
	announce := true
	h.nmu.Lock()
	for n, seen := range h.nodes {
		if !seen.remote && n < h.cfg.Node && !slices.Contains(nodes, unique.Make(n)) {
			announce = false
		}
	}
	h.nmu.Unlock()
	at := h.cfg.Now()
	dropped := 0
	for i := range h.dir {
		ds := &h.dir[i]
		var gone []*DeviceInfo
		ds.mu.Lock()
		var drop []*dirRec // (the table is not changed while walked)
		ds.t.All(func(r *dirRec) bool {
			if slices.Contains(nodes, r.node) && (before == 0 || r.since < before) {
				drop = append(drop, r)
			}
			return true
		})
		for _, r := range drop {
			e := r.entry()
			gone = append(gone, e.info(r.TableKey()))
			ds.t.Remove(r)
		}
		ds.mu.Unlock()
		dropped += len(gone)
		if announce {
			for _, d := range gone {
				h.publishPresence(d, "offline", ReasonNodeLost, at)
			}
		}
	}
	return dropped
}

// expireTokens closes sessions whose token expired.
func (h *Hub) expireTokens() {
	now := h.cfg.Now()
	for i := range h.shards {
		sh := &h.shards[i]
		var exp []*Session
		sh.mu.Lock()
		sh.all(func(s *Session) {
			if e := s.expiresAt(); e != 0 && now.UnixNano() >= e {
				exp = append(exp, s)
			}
		})
		sh.mu.Unlock()
		for _, s := range exp {
			s.t.Close(ReasonTokenExpired)
		}
	}
}

// appendReceived appends t as Warren-Received: RFC 3339 in UTC with all
// nine digits of nanoseconds, "2006-01-02T15:04:05.000000000Z"
// (time.RFC3339Nano drops trailing zeros, so one header in ten was
// shorter, and one whose time fell on a whole second had no fraction at
// all; a consumer reading it with a fixed layout failed). It formats the
// seconds with time.RFC3339, which AppendFormat has a fast path for, and
// writes the fraction itself: the same cost as RFC3339Nano, where that
// fixed layout through AppendFormat's general path took 2-3 times as long
// (≈ 100 against ≈ 300 ns a message, 5 interleaved pairs).
func appendReceived(b []byte, t time.Time) []byte {
	t = t.UTC()
	b = t.AppendFormat(b, time.RFC3339)
	b = b[:len(b)-1] // its Z
	var f [10]byte
	f[0] = '.'
	ns := t.Nanosecond()
	for i := 9; i >= 1; i-- {
		f[i] = byte('0' + ns%10)
		ns /= 10
	}
	return append(append(b, f[:]...), 'Z')
}

// Telemetry headers, in canonical form.
const (
	hdrDevice   = "Warren-Device"
	hdrNode     = "Warren-Node"
	hdrReceived = "Warren-Received"
)

// Telemetry publishes one telemetry payload of s: data is the exact bytes
// the device sent. Telemetry does not keep data once it returns (what it
// holds it copies), so a transport may pass its read buffer. Under NATS
// backpressure the device is paused with the message held, and published
// when NATS catches up: nothing is dropped silently. With
// HubConfig.Limits, a message over the device's rate is dropped and
// counted first (see DeviceLimits), and Telemetry returns false, so that
// a transport can tell the device (an MQTT 5.0 PUBACK's reason code);
// otherwise it returns true.
func (h *Hub) Telemetry(s *Session, data []byte, now time.Time) bool {
	h.m.telemetryIn.Add(1)
	if h.lim != nil && !h.limitTelemetry(s, len(data), now) {
		return false
	}
	if h.cfg.OnTelemetry != nil {
		h.cfg.OnTelemetry(s.Device, data, now)
	}
	tm := telemetryPool.Get().(*telemetryMsg)
	defer tm.release()
	// The subject and the Warren-Received header in tm.buf, one after the
	// other (a longer id than buf holds would move both to a new array of
	// their own, which the strings then keep alive: still valid).
	b := append(append(append(tm.buf[:0], "devices."...), s.Device...), ".telemetry"...)
	n := len(b)
	b = appendReceived(b, now)
	tm.m.Subject, tm.m.Data = unsafe.String(unsafe.SliceData(b), n), data
	tm.dev[0] = s.Device
	tm.recv[0] = unsafe.String(&b[n], len(b)-n)
	tm.m.Header[hdrNode] = h.nodeHdr
	if s.paused() {
		// Reading is paused; frames of the read already in flight are
		// held too.
		if !s.hold(tm.detach(), h.cfg.MaxHeldBytes) {
			h.m.dropped("held_overflow")
		}
		return true
	}
	start := time.Now()
	err := h.bus.Publish(&tm.m)
	switch {
	case err == nil:
		h.m.telemetryOut.Add(1)
		h.m.observePublish(time.Since(start))
	case errors.Is(err, ErrBackpressure):
		h.pause(s, tm.detach())
	default:
		h.m.dropped("bus_error")
	}
	return true
}

// telemetryMsg is a telemetry message made once and reused: its header
// map and value slices are set in place for each message, which NATS
// encodes before Publish returns. A message that must be kept (held under
// backpressure) is detached into one of its own.
type telemetryMsg struct {
	m         nats.Msg
	dev, recv [1]string
	// buf holds the subject's and the Warren-Received header's bytes,
	// which m's strings point into: the two strings a message needs cost
	// no allocation. Valid until release: NATS copies them into its
	// buffer before Publish returns, detach copies them out.
	buf [len("devices.") + MaxDeviceIDLen + len(".telemetry") + 40]byte
}

var telemetryPool = sync.Pool{New: func() any {
	tm := new(telemetryMsg)
	tm.m.Header = nats.Header{hdrDevice: tm.dev[:], hdrNode: nil, hdrReceived: tm.recv[:]}
	return tm
}}

// detach returns a copy of the message that shares nothing with tm.
func (tm *telemetryMsg) detach() *nats.Msg {
	return &nats.Msg{Subject: strings.Clone(tm.m.Subject), Data: tm.m.Data, Header: nats.Header{
		hdrDevice: {tm.dev[0]}, hdrNode: tm.m.Header[hdrNode], hdrReceived: {strings.Clone(tm.recv[0])}}}
}

// release clears tm's references and returns it to the pool.
func (tm *telemetryMsg) release() {
	tm.m.Subject, tm.m.Data, tm.dev[0], tm.recv[0] = "", nil, "", ""
	tm.m.Header[hdrNode] = nil
	telemetryPool.Put(tm)
}

func (h *Hub) pause(s *Session, m *nats.Msg) {
	if !s.hold(m, h.cfg.MaxHeldBytes) {
		h.m.dropped("held_overflow")
	}
	if s.setPaused() {
		h.m.pauses.Add(1)
		h.pausedMu.Lock()
		h.paused[s] = struct{}{}
		h.pausedMu.Unlock()
		s.t.PauseRead()
	}
}

func (h *Hub) unpause(s *Session) {
	h.pausedMu.Lock()
	delete(h.paused, s)
	h.pausedMu.Unlock()
}

// resumePaused publishes held telemetry and resumes reading once NATS has
// room again.
func (h *Hub) resumePaused() {
	h.pausedMu.Lock()
	if len(h.paused) == 0 {
		h.pausedMu.Unlock()
		return
	}
	h.pausedMu.Unlock()
	if !h.bus.Relieved() {
		return
	}
	h.pausedMu.Lock()
	ss := make([]*Session, 0, len(h.paused))
	for s := range h.paused {
		ss = append(ss, s)
	}
	h.pausedMu.Unlock()
	for _, s := range ss {
		q := s.heldQ()
		q.mu.Lock()
		for len(q.msgs) > 0 {
			m := q.msgs[0]
			if err := h.bus.Publish(m); err != nil {
				q.mu.Unlock()
				return // still congested
			}
			h.m.telemetryOut.Add(1)
			q.msgs[0] = nil
			q.msgs = q.msgs[1:]
			q.bytes -= len(m.Data)
		}
		q.msgs = nil
		q.mu.Unlock()
		h.unpause(s)
		s.clearPaused()
		if !s.gone() {
			s.t.ResumeRead()
		}
	}
}

// Command sends a command to device wherever it is connected and waits for
// its ack, at most timeout (zero: the default). It fails with ErrOffline
// when the device is connected nowhere and ErrCommandTimeout when the ack
// does not come in time.
func (h *Hub) Command(ctx context.Context, device, name string, payload json.RawMessage, timeout time.Duration) (Ack, error) {
	type result struct {
		ack Ack
		err error
	}
	ch := make(chan result, 1)
	h.CommandAsync(ctx, device, name, payload, timeout, func(a Ack, err error) { ch <- result{a, err} })
	r := <-ch
	return r.ack, r.err
}

func (h *Hub) clampTimeout(d time.Duration) time.Duration {
	if d <= 0 {
		d = h.cfg.CommandTimeout
	}
	return min(d, h.cfg.MaxCommandTimeout)
}

// nodeCommand is a command forwarded to the node holding the device.
type nodeCommand struct {
	Device  string          `json:"device"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Timeout string          `json:"timeout"`
}

type nodeReply struct {
	Ack   Ack    `json:"ack"`
	Error string `json:"error,omitempty"`
}

// ErrTooManyPending: MaxPending commands already wait for acks here.
var ErrTooManyPending = errors.New("gateway: too many commands waiting for acks")

// deliver sends a command to a local session and calls done once with its
// ack, or with status "timeout". It never blocks. A session that is gone
// — replaced, or handed off between an MQTT device's old connection and
// its new one (handOff) — is sent nothing: ErrOffline at once, as for a
// device connected nowhere, rather than a command to a closed connection
// that would wait out its timeout (the caller may retry: the device is
// back once its new connection has attached).
func (h *Hub) deliver(s *Session, name string, payload json.RawMessage, timeout time.Duration, done func(Ack)) error {
	if s.gone() {
		return ErrOffline
	}
	id := nuid.Next()
	p := &pendingCmd{device: s.Device, done: done}
	h.pmu.Lock()
	if h.draining.Load() {
		h.pmu.Unlock()
		h.m.drainRefused.Add(1)
		return ErrDraining
	}
	if len(h.pending) >= h.cfg.MaxPending {
		h.pmu.Unlock()
		return ErrTooManyPending
	}
	h.pending[id] = p
	p.timer = time.AfterFunc(timeout, func() { h.finish(id, Ack{ID: id, Status: "timeout"}) })
	h.pmu.Unlock()
	if err := s.t.SendCommand(Command{ID: id, Name: name, Payload: payload}); err != nil {
		h.pmu.Lock()
		var release *Session
		if h.pending[id] == p {
			delete(h.pending, id)
			release = h.drainDoneLocked(p.device)
		}
		p.timer.Stop()
		h.pmu.Unlock()
		if release != nil {
			release.t.Close(ReasonShutdown)
		}
		return err
	}
	return nil
}

// finish completes a pending command once.
func (h *Hub) finish(id string, a Ack) bool {
	h.pmu.Lock()
	p := h.pending[id]
	var release *Session
	if p != nil {
		delete(h.pending, id)
		p.timer.Stop()
		release = h.drainDoneLocked(p.device)
	}
	h.pmu.Unlock()
	if p == nil || !p.fired.CompareAndSwap(false, true) {
		return false
	}
	p.done(a)
	if release != nil {
		// The last command the drain kept the device open for is
		// answered: it gets its goodbye now.
		release.t.Close(ReasonShutdown)
	}
	return true
}

// Ack delivers a device's ack; it reports false for an unknown id (or an
// ack of another device's command).
func (h *Hub) Ack(s *Session, a Ack) bool {
	h.pmu.Lock()
	p := h.pending[a.ID]
	h.pmu.Unlock()
	if p == nil || p.device != s.Device {
		return false
	}
	return h.finish(a.ID, a)
}

// Drain tells the hub its node drains (the engine's Shutdown has begun).
// From then on the node delivers no new command to its devices
// (ErrDraining). A device with commands still waiting for its acks is kept
// open by its transport (drainHold) until the last of them is acked or
// times out, and then closed with ReasonShutdown (WebSocket 1001 with the
// retry hint, MQTT 5.0 DISCONNECT server_shutting_down); its telemetry
// flows meanwhile. At drainHoldFor(HubConfig.DrainTimeout) after the drain
// began, the commands still waiting are answered "timeout" (the API's
// 504) and their devices closed alike. Once the last local device has
// gone, no ack can come for the commands still waiting, and they are
// answered "timeout" at once rather than when each one's timeout ends.
// Safe to call from any goroutine, more than once.
func (h *Hub) Drain() {
	h.pmu.Lock()
	h.beginDrainLocked()
	h.pmu.Unlock()
	if h.m.online.Load() == 0 {
		go h.failPending()
	}
}

// drainHoldFor is how long after the drain began the devices kept open
// for their commands are let go: the drain timeout less a quarter of it,
// at most 2 s less, which leaves the close handshakes time within the
// deadline.
func drainHoldFor(timeout time.Duration) time.Duration {
	return timeout - min(timeout/4, 2*time.Second)
}

// beginDrainLocked starts the node's drain once: no new command is
// delivered (draining), the commands waiting for acks are counted per
// device, and the hold's end is set. h.pmu is held.
func (h *Hub) beginDrainLocked() {
	if h.drainLeft != nil {
		return
	}
	h.draining.Store(true)
	h.drainLeft = make(map[string]int)
	h.drainHeld = make(map[string]*Session)
	for _, p := range h.pending {
		h.drainLeft[p.device]++
	}
	h.drainEnd = time.AfterFunc(drainHoldFor(h.cfg.DrainTimeout), h.failPending)
}

// drainHold reports whether the drain keeps s open: true when the
// device has commands waiting for its acks; the hub closes it with
// ReasonShutdown once they are answered (see Drain). A transport asks it
// when the engine drains the device's connection; it starts the node's
// drain if Drain has not run yet.
func (h *Hub) drainHold(s *Session) bool {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	h.beginDrainLocked()
	if h.drainLeft[s.Device] == 0 || s.gone() {
		return false
	}
	h.drainHeld[s.Device] = s
	h.m.drainHeld.Add(1)
	return true
}

// drainDoneLocked counts one of device's commands answered during the
// drain and returns the session to close when it was the last one the
// drain kept it open for, or nil. h.pmu is held.
func (h *Hub) drainDoneLocked(device string) *Session {
	if h.drainLeft == nil {
		return nil
	}
	if n := h.drainLeft[device] - 1; n > 0 {
		h.drainLeft[device] = n
		return nil
	}
	delete(h.drainLeft, device)
	s := h.drainHeld[device]
	delete(h.drainHeld, device)
	return s
}

// failPending answers every command waiting for an ack with status
// "timeout" (see Drain).
func (h *Hub) failPending() {
	h.pmu.Lock()
	ids := make([]string, 0, len(h.pending))
	for id := range h.pending {
		ids = append(ids, id)
	}
	h.pmu.Unlock()
	for _, id := range ids {
		h.finish(id, Ack{ID: id, Status: "timeout"})
	}
}

// Pending returns the commands waiting for acks on this node.
func (h *Hub) Pending() int {
	h.pmu.Lock()
	defer h.pmu.Unlock()
	return len(h.pending)
}

// onNodeCommand serves a command another node forwarded here. It answers
// asynchronously: the subscription goroutine never waits for the device.
func (h *Hub) onNodeCommand(m *nats.Msg) {
	var c nodeCommand
	if json.Unmarshal(m.Data, &c) != nil || m.Reply == "" {
		return
	}
	timeout, _ := time.ParseDuration(c.Timeout)
	h.serveRemote(c.Device, c.Name, c.Payload, h.clampTimeout(timeout), m.Reply, true)
}

// onServiceCommand serves a request a backend service sent to
// devices.<id>.commands.<name>; only the node holding the device answers,
// with the device's ack.
func (h *Hub) onServiceCommand(m *nats.Msg) {
	parts := strings.Split(m.Subject, ".")
	if len(parts) != 4 || m.Reply == "" {
		return
	}
	h.serveRemote(parts[1], parts[3], json.RawMessage(m.Data), h.cfg.CommandTimeout, m.Reply, false)
}

func (h *Hub) serveRemote(device, name string, payload json.RawMessage, timeout time.Duration, reply string, wrapped bool) {
	s := h.Local(device)
	if s == nil {
		if wrapped {
			b, _ := json.Marshal(nodeReply{Error: "offline"})
			h.nc.Publish(reply, b)
		}
		return
	}
	if len(payload) == 0 {
		payload = nil
	}
	if payload != nil && !json.Valid(payload) {
		// A service's raw bytes travel as a JSON string (not as the
		// RawMessage, which json.Marshal refuses for not being JSON).
		b, _ := json.Marshal(string(payload))
		payload = b
	}
	start := time.Now()
	err := h.deliver(s, name, payload, timeout, func(a Ack) {
		var b []byte
		if wrapped {
			b, _ = json.Marshal(nodeReply{Ack: a})
		} else {
			b, _ = json.Marshal(a)
		}
		var err error
		if a.Status == "timeout" {
			err = ErrCommandTimeout
		}
		h.m.commandDone(a, err, time.Since(start))
		h.nc.Publish(reply, b)
	})
	if err != nil {
		msg := err.Error()
		switch {
		case errors.Is(err, ErrDraining):
			msg = "draining" // nodeAnswer's ErrDraining
		case errors.Is(err, ErrOffline):
			// Between an MQTT device's connections (deliver): answered at
			// once, nodeAnswer's ErrOffline for a node, {"error":"offline"}
			// for a service, rather than left to its timeout.
			msg = "offline"
		}
		b, _ := json.Marshal(nodeReply{Error: msg})
		h.nc.Publish(reply, b)
	}
}

// broadcastIDPrefix starts the id of every broadcast command (a unicast
// command's id is a bare 22-character NUID): a broadcast waits for no
// ack, so a device's ack of one is taken and counted, not refused as an
// ack for an unknown id (a device that acks every command it gets, as the
// protocol asks, is not closed for abuse after a few broadcasts).
const broadcastIDPrefix = "b-"

// broadcastID returns a new broadcast command id.
func broadcastID() string { return broadcastIDPrefix + nuid.Next() }

// isBroadcastID reports whether id has the form of a broadcast command's.
func isBroadcastID(id string) bool {
	return len(id) == len(broadcastIDPrefix)+22 && strings.HasPrefix(id, broadcastIDPrefix)
}

// BroadcastAck takes a device's ack of a broadcast command (see
// isBroadcastID) and reports true, or reports false when id is not a
// broadcast's.
func (h *Hub) BroadcastAck(id string) bool {
	if !isBroadcastID(id) {
		return false
	}
	h.m.broadcastAcks.Add(1)
	return true
}

// BroadcastResult counts a broadcast's fan-out.
type BroadcastResult struct {
	Sent    int `json:"sent"`
	Offline int `json:"offline"`
	// Failed counts devices online on another node whose command NATS
	// did not take (a batch over NATS's max_payload, the connection
	// closed, the machine's directory not answering).
	Failed int `json:"failed"`
}

type nodeBroadcast struct {
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload,omitempty"`
	Devices []string        `json:"devices"`
}

// Broadcast sends a command, without waiting for acks, to devices (or,
// with prefix, to every online device whose id starts with it), wherever
// they are connected. It never blocks on a device.
func (h *Hub) Broadcast(name string, payload json.RawMessage, devices []string, prefix string) BroadcastResult {
	var r BroadcastResult
	if h.remoteDir() {
		r = h.remoteBroadcast(name, payload, devices, prefix)
	} else {
		r = h.dirBroadcast(name, payload, devices, prefix)
	}
	h.m.broadcastSent.Add(uint64(r.Sent))
	h.m.broadcastOffline.Add(uint64(r.Offline))
	h.m.broadcastFailed.Add(uint64(r.Failed))
	return r
}

// broadcastBatches splits ids into the batches of one node's broadcast:
// at most 1,000 devices, and at most maxBytes of ids (the rest of the
// message — name, payload, JSON — is fixed); a batch that cannot hold even
// one id is all of them, and fails to publish.
func broadcastBatches(ids []string, maxBytes int, fn func([]string)) {
	for len(ids) > 0 {
		n, size := 0, 0
		for n < len(ids) && n < 1000 {
			size += len(ids[n]) + 3 // quotes and comma
			if n > 0 && size > maxBytes {
				break
			}
			n++
		}
		fn(ids[:n])
		ids = ids[n:]
	}
}

// dirBroadcast is Broadcast on the hub's own directory.
func (h *Hub) dirBroadcast(name string, payload json.RawMessage, devices []string, prefix string) BroadcastResult {
	var r BroadcastResult
	if prefix != "" || len(devices) == 0 {
		devices = devices[:0]
		for i := range h.dir {
			ds := &h.dir[i]
			ds.mu.RLock()
			ds.t.All(func(r *dirRec) bool {
				if id := r.TableKey(); strings.HasPrefix(id, prefix) {
					devices = append(devices, id)
				}
				return true
			})
			ds.mu.RUnlock()
		}
	}
	remote := map[string][]string{}
	for _, id := range devices {
		if s := h.Local(id); s != nil {
			// A gone session (between an MQTT device's connections:
			// deliver) is offline, as for a command.
			if !s.gone() && s.t.SendCommand(Command{ID: broadcastID(), Name: name, Payload: payload}) == nil {
				r.Sent++
			} else {
				r.Offline++
			}
			continue
		}
		if d := h.dirLookup(id); d != nil && d.Node != h.cfg.Node {
			remote[d.Node] = append(remote[d.Node], id)
			r.Sent++
			continue
		}
		r.Offline++
	}
	// The message but its ids, as encoded (json escapes <, > and & in the
	// payload); ids need no escaping (ValidDeviceID).
	empty, _ := json.Marshal(nodeBroadcast{Name: name, Payload: payload})
	maxPayload := int(h.nc.MaxPayload())
	if maxPayload <= 0 {
		maxPayload = 1 << 20 // not connected yet: NATS's default
	}
	for node, ids := range remote {
		broadcastBatches(ids, maxPayload-len(empty), func(batch []string) {
			b, _ := json.Marshal(nodeBroadcast{Name: name, Payload: payload, Devices: batch})
			if err := h.nc.Publish(nodeBroadcastSubject(node), b); err != nil {
				r.Sent -= len(batch)
				r.Failed += len(batch)
				h.log.Warn("gateway: broadcast to a node not sent", "node", node, "devices", len(batch), "bytes", len(b), "error", err)
			}
		})
	}
	return r
}

func (h *Hub) onNodeBroadcast(m *nats.Msg) {
	var b nodeBroadcast
	if json.Unmarshal(m.Data, &b) != nil {
		return
	}
	for _, id := range b.Devices {
		if s := h.Local(id); s != nil && !s.gone() {
			s.t.SendCommand(Command{ID: broadcastID(), Name: b.Name, Payload: b.Payload})
		}
	}
}

// Sessions calls fn for every local session (for drain and /debug).
func (h *Hub) Sessions(fn func(*Session)) {
	for i := range h.shards {
		sh := &h.shards[i]
		sh.mu.Lock()
		ss := make([]*Session, 0, sh.m.Len())
		sh.all(func(s *Session) { ss = append(ss, s) })
		sh.mu.Unlock()
		for _, s := range ss {
			fn(s)
		}
	}
}
