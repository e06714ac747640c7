package gateway

import (
	"log/slog"
	"time"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/mqtt"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/websocket"
)

// Config configures a Gateway. The zero value serves devices on
// 127.0.0.1:8080 and the management API on 127.0.0.1:8081 with an
// embedded NATS server on 127.0.0.1:4222; every field says what zero
// means.
type Config struct {
	// Addr is the device listener (HTTP/1.1 + WebSocket; devices connect
	// at GET /v1/connect). Zero means 127.0.0.1:8080.
	Addr string
	// API is the management API listener. Zero means 127.0.0.1:8081;
	// "-" disables it.
	API string
	// APIToken, when set, is required as Authorization: Bearer on the
	// management API.
	APIToken string
	// Auth authenticates devices. Nil means an HS256 secret loaded from
	// (or created in) DataDir.
	Auth Authenticator
	// DataDir holds state that must survive restarts (the generated JWT
	// secret). Zero means ./warren-data.
	DataDir string
	// Bus configures NATS (embedded server or an external cluster). Its
	// Node and Logger default to the gateway's.
	Bus BusConfig
	// Node names this node in the cluster (presence, headers). Zero means
	// the host name and process id.
	Node string
	// Directory names the machine whose Directory this node asks for
	// devices of other nodes (a prefork worker of `warren serve -procs`:
	// its parent runs the machine's Directory). Empty: the node holds the
	// whole cluster directory itself.
	Directory string
	// CommandTimeout is the default ack timeout of a command. Zero means
	// 5 s; MaxCommandTimeout (zero: 60 s) bounds what a request may ask.
	CommandTimeout    time.Duration
	MaxCommandTimeout time.Duration
	// MaxPending bounds commands waiting for acks on this node. Zero
	// means 100,000.
	MaxPending int
	// MaxBadFrames closes a device (reason abuse, close 1008) after this
	// many refused frames within one BadFrameWindow. Zero means 10;
	// negative never closes; at most MaxBadFramesLimit (4,095).
	MaxBadFrames int
	// BadFrameWindow is the window MaxBadFrames counts over: fixed
	// windows from the connection's start, so a device reaches the bound
	// only by sending MaxBadFrames bad frames within one window (or, at
	// a window's edge, within two). Zero means DefaultBadFrameWindow (1
	// minute); negative counts over the connection's whole life.
	BadFrameWindow time.Duration
	// DeviceLimits limits each device's telemetry rate, by device id (so a
	// reconnect does not reset it), over WebSocket and MQTT alike. The
	// zero value limits nothing (warren serve's -device-rate).
	DeviceLimits DeviceLimits
	// RetryHintMin and RetryHintJitter make the reconnect hint a draining
	// node gives its devices in the close 1001 reason: a delay of at least
	// RetryHintMin plus a random share of RetryHintJitter, so devices come
	// back spread out. Zero means 1 s and 10 s.
	RetryHintMin    time.Duration
	RetryHintJitter time.Duration
	// DeviceHeldBytes bounds the telemetry bytes each device paused for
	// NATS backpressure holds (see HubConfig.MaxHeldBytes); past it its
	// messages are dropped, counted with reason held_overflow. Zero means
	// DefaultDeviceHeldBytes (256 KiB).
	DeviceHeldBytes int
	// HandoffWait bounds an MQTT takeover's hand-off (HubConfig.HandoffWait,
	// warren serve's -handoff-wait). Zero or negative means DefaultHandoffWait
	// (1 s).
	HandoffWait time.Duration
	// DrainTimeout is how long the node's drain may take (warren serve's
	// -drain-timeout; the engine's Shutdown context is what ends it). A
	// device with commands waiting for its acks when the drain begins is
	// kept open until they are answered, at most until the drain timeout
	// less a quarter of it (at most 2 s less), when they are answered
	// "timeout" (504) and it gets its 1001. Zero means 10 s.
	DrainTimeout time.Duration
	// WebSocket configures device connections (message size, pings,
	// deflate); Accept and Inline are the gateway's.
	WebSocket websocket.Config
	// MQTT is the MQTT listener (3.1.1 and 5.0); MQTT over WebSocket is
	// then served at GET /mqtt on the device listener too. Empty disables
	// MQTT (warren serve's -mqtt defaults to 127.0.0.1:1883).
	MQTT string
	// MQTTConfig configures the broker: limits, queues, rates, session
	// expiry (see mqtt.Config); its Hooks are the gateway's.
	MQTTConfig mqtt.Config
	// MQTTACL lists the topic filters a device may publish and subscribe
	// to, %c standing for its client id and %u for its user name. Empty
	// means DefaultMQTTACL (devices/%c/#). Services may use any topic.
	MQTTACL []string
	// MQTTBridgeSubject, when set, is the one NATS subject each node
	// subscribes to for MQTT messages of other nodes and NATS clients
	// (">": everything), whatever its MQTT clients subscribe to. Empty
	// means the node follows its MQTT subscribers' interest: a NATS
	// subscription per distinct subject their filters map to, up to
	// MQTTBridgeMaxSubjects.
	MQTTBridgeSubject string
	// MQTTBridgeMaxSubjects bounds the NATS subscriptions a node makes to
	// follow its MQTT subscribers' interest (one per distinct subject their
	// filters map to, device ids widened: devices/<id>/x → devices.*.x).
	// Past it the node subscribes to every subject (">") instead. Zero
	// means DefaultMQTTBridgeMaxSubjects (1024).
	MQTTBridgeMaxSubjects int
	// MQTTBridgeQueue bounds the messages from NATS waiting for the node's
	// MQTT bridge, which hands them to the node's MQTT subscribers one at
	// a time, in the order NATS sent them. Past it the NATS client drops
	// them (warren_gateway_mqtt_bridge_dropped_total{reason="queue_full"},
	// logged). Zero means DefaultMQTTBridgeQueue (16384). The bound is in
	// messages, not bytes (the NATS client's byte limits do not apply to
	// a channel subscription): at worst MQTTBridgeQueue × (the NATS max
	// payload + ≈ 250 bytes), 16,384 × 1 MiB ≈ 16 GiB with the embedded
	// server's 1 MiB; lower it where large messages are expected.
	MQTTBridgeQueue int
	// MQTTBridgeQueueBytes bounds the bytes of the messages waiting in the
	// MQTT bridge's queue (payload, subject, headers and 256 bytes each),
	// which the bridge fills from the NATS client's hand-off (up to
	// MQTTBridgeQueue messages) before each message it hands on; a
	// message that would pass it is dropped
	// (warren_gateway_mqtt_bridge_dropped_total{reason="queue_bytes_full"},
	// logged). Zero means DefaultMQTTBridgeQueueBytes (64 MiB); negative
	// means no byte bound.
	MQTTBridgeQueueBytes int64

	// MQTTClusterShares makes an MQTT share group ($share/group/filter)
	// get each message once across the cluster instead of once per node
	// with members: every node with members of the group joins a NATS
	// queue group for it (at most MQTTBridgeMaxSubjects groups a node), and
	// NATS picks one of those nodes per message (mqtt.Config.ExternalShares).
	// Off by default: docs/mqtt.md says what it costs a share group (a
	// round trip through NATS for every message, nothing while NATS is
	// down, no 5.0 properties, members on a node with only offline members
	// still picked).
	MQTTClusterShares bool
	// TLS, when set, serves devices over TLS too: https + wss on TLSAddr
	// (the routes of Addr) and MQTT over TLS on MQTTS (ALPN "mqtt"). With
	// a client CA (mutual TLS) a device may connect without a token: its
	// id is the certificate's identity (see docs/gateway.md). The caller
	// owns the server (Watch, Close); nil disables both listeners.
	TLS *tlsx.Server
	// TLSAddr is the https + wss device listener. Empty disables it.
	TLSAddr string
	// MQTTS is the MQTT over TLS listener (conventionally :8883). Empty
	// disables it; it needs TLS and MQTT.
	MQTTS string
	// Upstream lists legacy backends (http://host:port): requests on the
	// device listeners that the gateway does not serve itself (WebSocket
	// upgrades included) are forwarded to them through an upstream
	// Cluster. Empty answers those 404.
	Upstream []string
	// UpstreamCluster and UpstreamProxy configure that cluster and proxy;
	// zero fields take the upstream and proxy packages' defaults.
	UpstreamCluster upstream.ClusterConfig
	UpstreamProxy   proxy.Config
	// Webhook delivers telemetry to an HTTP endpoint in JSON batches too;
	// its zero value (no URL) disables it.
	Webhook WebhookConfig
	// HTTP configures both listeners' HTTP (timeouts, limits).
	HTTP http1.Config
	// Logger receives the gateway's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultAddr    = "127.0.0.1:8080"
	DefaultAPI     = "127.0.0.1:8081"
	DefaultDataDir = "./warren-data"
	// DefaultBadFrameWindow is Config.BadFrameWindow's default.
	DefaultBadFrameWindow = time.Minute
)

// The reconnect hint's defaults (Config.RetryHintMin, RetryHintJitter).
const (
	defaultRetryHintMin    = time.Second
	defaultRetryHintJitter = 10 * time.Second
)

func (c Config) withDefaults() Config {
	if c.Addr == "" {
		c.Addr = DefaultAddr
	}
	if c.API == "" {
		c.API = DefaultAPI
	}
	if c.DataDir == "" {
		c.DataDir = DefaultDataDir
	}
	if c.MaxBadFrames == 0 {
		c.MaxBadFrames = 10
	}
	if c.BadFrameWindow == 0 {
		c.BadFrameWindow = DefaultBadFrameWindow
	}
	if c.RetryHintMin <= 0 {
		c.RetryHintMin = defaultRetryHintMin
	}
	if c.RetryHintJitter <= 0 {
		c.RetryHintJitter = defaultRetryHintJitter
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}
