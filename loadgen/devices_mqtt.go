package loadgen

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"math/rand/v2"
	"net"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/mqtt"
)

// The devices scenario over MQTT (-url mqtt://host:port, or mqtts:// with
// ALPN "mqtt"): each device is an MQTT client of the gateway's broker on
// the client engine, as docs/gateway.md maps devices onto MQTT. Device n
// connects with client id dev-<n> (user name the same) and its token as
// password, clean session/start, MQTT 3.1.1 unless MQTTDeviceConfig.Version
// asks for 5.0; it subscribes to devices/dev-<n>/commands/+ at QoS 1 and
// counts as connected once the SUBACK grants it. Its telemetry is a
// PUBLISH on devices/dev-<n>/telemetry whose payload is the data object of
// the WebSocket scenario's telemetry frame (so the NATS watch reads it the
// same way); a command (a PUBLISH on its commands topic with
// {"id","name","payload"}) gets a PUBACK and the ack the gateway expects,
// {"status":"ok"} on devices/dev-<n>/acks/<id> (on the 5.0 Response Topic
// with its Correlation Data when the command carries them). A 5.0
// DISCONNECT from the gateway is counted in DeviceReport.CloseCodes by
// reason code (139 server shutting down, 142 session taken over, 135 not
// authorized, 152 administrative action) and the device reconnects during
// the traffic as a WebSocket device does after a Close frame. Keep-alive
// pings go out when a device has been silent for the keep-alive, from the
// engine's idle timer. Nothing runs per device: the packets are decoded
// incrementally on the event loops by package mqtt's Decoder, one Scratch
// per loop, and written with its Append functions.

// MQTTDeviceConfig configures the devices of an mqtt:// or mqtts:// devices
// run. Its zero value is MQTT 3.1.1, telemetry and acks at QoS 0 and a 60 s
// keep-alive.
type MQTTDeviceConfig struct {
	// Version is the protocol level: 5 for MQTT 5.0; zero or 4 means 3.1.1.
	Version int `json:"version,omitempty"`
	// QoS is the QoS of the telemetry and of the acks the devices
	// publish: 0 or 1. Commands are subscribed to at QoS 1 whatever it is.
	QoS int `json:"qos,omitempty"`
	// KeepAlive is the keep-alive a device asks for in CONNECT, and how
	// long it stays silent before it sends PINGREQ (a 5.0 server's Server
	// Keep Alive replaces it). Zero means 60 s; negative means none
	// (keep-alive 0: the server never times the device out).
	KeepAlive time.Duration `json:"keep_alive,omitempty"`
	// MaxInflight bounds a device's QoS 1 publishes not yet acknowledged
	// by PUBACK (and the server's Receive Maximum bounds it further in
	// 5.0); telemetry due on a device at its bound goes to another
	// device, or is counted unsent. Zero means 64.
	MaxInflight int `json:"max_inflight,omitempty"`
	// Reconnect, when positive, makes the devices behave as field devices
	// do after the gateway goes away: once its first connect has been
	// tried, a device whose connection ends (or whose connect fails) for
	// any reason but the end of the run connects again after a random
	// delay below Reconnect, and again after each failure, until the run
	// ends; a 5.0 DISCONNECT from the gateway too (a device told
	// "server shutting down" waits as well). Each failure is still
	// counted. Zero means a device reconnects only after a 5.0 DISCONNECT
	// during the traffic, at once, as WebSocket devices do after a Close
	// frame.
	Reconnect time.Duration `json:"reconnect,omitempty"`
}

// Defaults of MQTTDeviceConfig.
const (
	defaultMQTTKeepAlive   = 60 * time.Second
	defaultMQTTMaxInflight = 64
)

func (m MQTTDeviceConfig) withDefaults() MQTTDeviceConfig {
	if m.KeepAlive == 0 {
		m.KeepAlive = defaultMQTTKeepAlive
	}
	if m.MaxInflight <= 0 {
		m.MaxInflight = defaultMQTTMaxInflight
	}
	m.MaxInflight = min(m.MaxInflight, 65535)
	return m
}

// isMQTTURL reports whether raw is an mqtt:// or mqtts:// URL.
func isMQTTURL(raw string) bool {
	return strings.HasPrefix(raw, "mqtt://") || strings.HasPrefix(raw, "mqtts://")
}

// checkMQTTDevices checks the MQTT settings of a devices run and resolves
// its mqtt://host:port or mqtts://host:port URL (port 1883 or 8883 when
// absent). The URL has no path: devices use the topics of their own tree.
func checkMQTTDevices(ctx context.Context, cfg Config) (target, error) {
	m := cfg.Devices.MQTT
	switch {
	case m.Version != 0 && m.Version != int(mqtt.Version311) && m.Version != int(mqtt.Version5):
		return target{}, fmt.Errorf("%w: MQTT version %d (want 4 for 3.1.1, or 5)", ErrScenario, m.Version)
	case m.QoS < 0 || m.QoS > 1:
		return target{}, fmt.Errorf("%w: device QoS %d (want 0 or 1)", ErrScenario, m.QoS)
	}
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Hostname() == "" {
		return target{}, fmt.Errorf("%w: %q (want mqtt://host:port or mqtts://host:port)", ErrBadURL, cfg.URL)
	}
	if (u.Path != "" && u.Path != "/") || u.RawQuery != "" {
		return target{}, fmt.Errorf("%w: %q: a devices run takes no topic prefix or query (devices use devices/<id>/…)",
			ErrBadURL, cfg.URL)
	}
	scheme, port := "http", u.Port()
	if u.Scheme == "mqtts" {
		scheme = "https"
	}
	switch {
	case port != "":
	case u.Scheme == "mqtts":
		port = "8883"
	default:
		port = "1883"
	}
	// parseTarget resolves the host as for HTTP; only the address, the
	// TLS flag and the server name are used.
	return parseTarget(ctx, scheme+"://"+net.JoinHostPort(u.Hostname(), port)+"/")
}

// Phases of an MQTT device's connect, in mqttDevState.phase.
const (
	mqConnack uint8 = iota // CONNECT sent
	mqSuback               // CONNACK accepted, SUBSCRIBE sent
	mqReady                // SUBACK granted: the device is connected
)

// mqttDevState is an MQTT device's session state, in its devConn, guarded
// by devConn.mu.
type mqttDevState struct {
	dec      mqtt.Decoder
	phase    uint8
	pid      uint16 // the last packet identifier used
	inflight uint16 // QoS 1 publishes not yet acknowledged
	max      uint16 // bound of inflight
	retrying bool   // a reconnect is scheduled
}

// nextID returns the next packet identifier (never 0).
func (s *mqttDevState) nextID() uint16 {
	s.pid++
	if s.pid == 0 {
		s.pid = 1
	}
	return s.pid
}

// mqttDevices is the MQTT side of a devices run.
type mqttDevices struct {
	r         *devRunner
	version   mqtt.Version
	qos       mqtt.QoS
	keepAlive time.Duration // zero: none
	inflight  uint16
	reconnect time.Duration  // MQTTDeviceConfig.Reconnect
	scratch   []mqtt.Scratch // one per event loop
}

func newMQTTDevices(r *devRunner) *mqttDevices {
	m := r.dc.MQTT.withDefaults()
	d := &mqttDevices{r: r, version: mqtt.Version311, qos: mqtt.QoS(m.QoS), inflight: uint16(m.MaxInflight),
		reconnect: m.Reconnect}
	if m.Version == int(mqtt.Version5) {
		d.version = mqtt.Version5
	}
	if m.KeepAlive > 0 {
		d.keepAlive = max(m.KeepAlive.Round(time.Second), time.Second)
	}
	loops := r.cfg.Loops
	if loops <= 0 {
		loops = 64 // any count: a loop takes the Scratch of its index modulo this
	}
	d.scratch = make([]mqtt.Scratch, loops)
	return d
}

// protocol names the run's transport in its report.
func (r *devRunner) protocol() string {
	if r.mq != nil {
		return mqtt.ProtocolName
	}
	return "websocket"
}

// topic appends device d's topic devices/dev-<n>/<leaf> to b.
func (m *mqttDevices) topic(b []byte, d *devConn, leaf string) []byte {
	b = append(b, "devices/dev-"...)
	b = strconv.AppendInt(b, int64(m.r.dc.First)+int64(d.idx)+1, 10)
	b = append(b, '/')
	return append(b, leaf...)
}

// connect returns d's CONNECT.
func (m *mqttDevices) connect(d *devConn) ([]byte, error) {
	id := DeviceID(m.r.dc.First + int(d.idx))
	tok, err := gateway.IssueToken(m.r.dc.JWTSecret, id, gateway.RoleDevice, m.r.dc.TokenTTL, time.Now())
	if err != nil {
		return nil, err
	}
	p := mqtt.Connect{Version: m.version, CleanStart: true, KeepAlive: uint16(m.keepAlive / time.Second),
		ClientID: []byte(id), Username: []byte(id), Password: []byte(tok)}
	if m.version == mqtt.Version5 {
		p.Props.ReceiveMaximum = 65535
	}
	return mqtt.AppendConnect(make([]byte, 0, 64+len(id)*2+len(tok)), &p), nil
}

// canPublishLocked reports whether d may publish n telemetry messages now.
func (m *mqttDevices) canPublishLocked(d *devConn, n int) bool {
	return d.mq.phase == mqReady && (m.qos == 0 || int(d.mq.inflight)+n <= int(d.mq.max))
}

// appendTelemetryLocked appends to b the PUBLISH of one telemetry message
// of d: msg is the WebSocket scenario's frame text, whose data object is
// the payload.
func (m *mqttDevices) appendTelemetryLocked(b []byte, d *devConn, msg []byte) []byte {
	const head = `{"type":"telemetry","data":`
	var tb [48]byte
	p := mqtt.Publish{QoS: m.qos, Topic: m.topic(tb[:0], d, "telemetry"), Payload: msg[len(head) : len(msg)-1]}
	if p.QoS > 0 {
		p.PacketID = d.mq.nextID()
		d.mq.inflight++
	}
	return mqtt.AppendPublish(b, m.version, &p)
}

// mqttDevHandler is the engine handler of an MQTT device's connection.
type mqttDevHandler struct{ r *devRunner }

var (
	_ engine.OpenHandler    = mqttDevHandler{}
	_ engine.CloseHandler   = mqttDevHandler{}
	_ engine.TimeoutHandler = mqttDevHandler{}
	_ engine.ProtocolNamer  = mqttDevHandler{}
)

// Protocol names the connections in the engine's listings.
func (mqttDevHandler) Protocol() string { return "mqtt-device" }

// OnOpen sends the device's CONNECT (after the TLS handshake, for
// mqtts://).
func (h mqttDevHandler) OnOpen(c *engine.Conn) {
	r := h.r
	d := devHandler(h).devOf(c)
	if d == nil {
		c.Abort(engine.ReasonLocal)
		return
	}
	pkt, err := r.mq.connect(d)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ec = c
	d.state = csHandshake
	d.mq = mqttDevState{retrying: d.mq.retrying, dec: mqtt.Decoder{Version: r.mq.version, Scratch: &r.mq.scratch[c.Loop()%len(r.mq.scratch)]},
		max: r.mq.inflight}
	if err != nil {
		r.protocolErrorLocked(d, c, KindProtocol)
		return
	}
	if n, err := c.Write(pkt); err == nil {
		r.bytesOut.Add(int64(n))
	}
}

// OnData decodes the gateway's packets. The replies to one read leave in
// one write; a packet cut by the read is left to the engine until the
// rest arrives.
func (h mqttDevHandler) OnData(c *engine.Conn, in []byte) int {
	r := h.r
	d := devHandler(h).devOf(c)
	if d == nil {
		return len(in)
	}
	m := r.mq
	now := r.now()
	var out []byte
	flush := func() {
		if len(out) > 0 {
			if n, err := c.Write(out); err == nil {
				r.bytesOut.Add(int64(n))
			}
			pool.Put(out)
			out = nil
		}
	}
	used := 0
	d.mu.Lock()
	defer func() {
		flush()
		d.mu.Unlock()
		r.bytesIn.Add(int64(used))
	}()
	for d.state == csHandshake || d.state == csOpen {
		n, p, err := d.mq.dec.Decode(in[used:], nil)
		if err != nil {
			r.protocolErrorLocked(d, c, KindProtocol)
			used = len(in)
			return used
		}
		if n == 0 {
			return used
		}
		used += n
		var ok bool
		if out, ok = m.onPacketLocked(d, c, p, out, now); !ok {
			flush()
			used = len(in)
			return used
		}
	}
	used = len(in) // closing: discard the rest
	return used
}

// onPacketLocked handles one packet from the gateway, appending what
// answers it to out. It returns false when d is closing.
func (m *mqttDevices) onPacketLocked(d *devConn, c *engine.Conn, p mqtt.Packet, out []byte,
	now int64) ([]byte, bool) {
	r := m.r
	switch p := p.(type) {
	case *mqtt.Connack:
		if d.mq.phase != mqConnack {
			break
		}
		if p.ReasonCode != mqtt.Success {
			m.refusedLocked(d, c)
			return out, false
		}
		if p.Props.Present.Has(mqtt.PropReceiveMaximum) && p.Props.ReceiveMaximum > 0 {
			d.mq.max = min(d.mq.max, p.Props.ReceiveMaximum)
		}
		ka := m.keepAlive
		if p.Props.Present.Has(mqtt.PropServerKeepAlive) {
			ka = time.Duration(p.Props.ServerKeepAlive) * time.Second
		}
		if ka > 0 {
			c.SetIdleTimeout(ka)
		}
		var tb [48]byte
		s := mqtt.Subscribe{PacketID: d.mq.nextID(),
			Filters: []mqtt.Subscription{{Filter: m.topic(tb[:0], d, "commands/+"), QoS: mqtt.QoS1}}}
		out = mqtt.AppendSubscribe(grow(out, 64), m.version, &s)
		d.mq.phase = mqSuback
		return out, true
	case *mqtt.Suback:
		if d.mq.phase != mqSuback {
			break
		}
		if len(p.ReasonCodes) != 1 || p.ReasonCodes[0] >= 0x80 {
			m.refusedLocked(d, c)
			return out, false
		}
		d.mq.phase = mqReady
		r.openedLocked(d, c, now)
		return out, true
	case *mqtt.Publish:
		if d.mq.phase != mqReady || p.QoS > mqtt.QoS1 {
			break
		}
		if p.QoS == mqtt.QoS1 {
			out = mqtt.AppendPuback(grow(out, 8), m.version, p.PacketID, mqtt.Success)
		}
		return m.commandLocked(d, p, out), true
	case *mqtt.Ack:
		if p.Kind != mqtt.TypePuback || d.mq.phase != mqReady {
			break
		}
		if d.mq.inflight > 0 {
			d.mq.inflight--
		}
		if p.ReasonCode >= 0x80 {
			r.gwErrors.Add(1) // the gateway refused the publish
		}
		return out, true
	case *mqtt.Pingresp:
		return out, true
	case *mqtt.Disconnect:
		// The gateway is closing (shutdown, taken over, token expired):
		// let it, and reconnect during the traffic.
		r.closeMu.Lock()
		r.closes[uint16(p.ReasonCode)]++
		r.closeMu.Unlock()
		d.announced = true
		c.Close()
		return out, false
	}
	r.protocolErrorLocked(d, c, KindProtocol)
	return out, false
}

// refusedLocked ends a connect the gateway refused (CONNACK or SUBACK
// with a failure), as a WebSocket handshake answered with another status
// than 101.
func (m *mqttDevices) refusedLocked(d *devConn, c *engine.Conn) {
	m.r.fail(KindBadStatus)
	m.r.endConnectLocked(d, false)
	d.state = csClosing
	c.Close()
}

// mqttCommand is what a device reads of a command's payload.
type mqttCommand struct {
	ID      string `json:"id"`
	Payload struct {
		N uint64 `json:"n"` // the load generator's command number
	} `json:"payload"`
}

// commandLocked acknowledges a command: {"status":"ok"} (and the
// arrival's {"result":{"at":…}} for a load generator's) on the command's
// 5.0 Response Topic (with its Correlation Data), or on
// devices/<id>/acks/<command id>.
func (m *mqttDevices) commandLocked(d *devConn, p *mqtt.Publish, out []byte) []byte {
	r := m.r
	var tb [48]byte
	if !strings.HasPrefix(string(p.Topic), string(m.topic(tb[:0], d, "commands/"))) {
		return out // not a command: nothing to answer
	}
	var cmd mqttCommand
	err := json.Unmarshal(p.Payload, &cmd)
	var te *json.UnmarshalTypeError
	if errors.As(err, &te) { // a payload not the load generator's ({"n":…}): acked all the same
		err, cmd.Payload.N = nil, 0
	}
	if err != nil || cmd.ID == "" {
		r.fail(KindProtocol)
		return out
	}
	r.cmdFrames.Add(1)
	var ab [128]byte
	var pb [64]byte
	ack := mqtt.Publish{QoS: m.qos, Payload: append(pb[:0], `{"status":"ok"`...)}
	if cmd.Payload.N != 0 { // a load generator's: when it arrived, for the commander's split
		ack.Payload = appendArrival(append(ack.Payload, `,"result":`...), r.wall0+r.now())
	}
	ack.Payload = append(ack.Payload, '}')
	if len(p.Props.ResponseTopic) > 0 {
		ack.Topic = p.Props.ResponseTopic
		ack.Props.CorrelationData = p.Props.CorrelationData
	} else {
		ack.Topic = append(m.topic(ab[:0], d, "acks/"), cmd.ID...)
	}
	if ack.QoS > 0 {
		ack.PacketID = d.mq.nextID()
		d.mq.inflight++
	}
	out = mqtt.AppendPublish(grow(out, 32+len(ack.Topic)+len(ack.Payload)+len(ack.Props.CorrelationData)),
		m.version, &ack)
	r.acks.Add(1)
	return out
}

// grow returns out, or a pooled buffer when it is nil, with room for n
// more bytes (append grows it further if need be).
func grow(out []byte, n int) []byte {
	if out == nil {
		return pool.Get(max(n, 256))[:0]
	}
	return pool.Grow(out, n)
}

func (h mqttDevHandler) OnClose(c *engine.Conn, reason engine.CloseReason, err error) {
	r := h.r
	d := devHandler(h).devOf(c)
	if d == nil {
		return
	}
	d.mu.Lock()
	current := d.ec == nil || d.ec == c
	// devHandler.OnClose queues these for a redial at once itself, unless
	// the devices reconnect after a delay (redialAtOnce).
	queued := d.state == csOpen && d.announced && r.inTraffic.Load() && r.redialAtOnce()
	d.mu.Unlock()
	devHandler(h).OnClose(c, reason, err)
	if current && !queued {
		r.reconnectLater(d)
	}
}

// redialAtOnce reports whether a device the gateway closed cleanly during
// the traffic (a WebSocket Close frame, an MQTT 5.0 DISCONNECT) connects
// again at once. MQTT devices with a reconnect delay do not: they wait
// for it as after any other end of their connection, as field devices
// told "server shutting down" do, instead of all coming back at once to a
// gateway that may still be draining.
func (r *devRunner) redialAtOnce() bool { return r.mq == nil || r.mq.reconnect <= 0 }

// reconnectLater schedules a reconnect of d after a random delay below
// MQTTDeviceConfig.Reconnect, when the run has one and d is not connected,
// connecting or already scheduled.
func (r *devRunner) reconnectLater(d *devConn) {
	if r.mq == nil || r.mq.reconnect <= 0 || r.finished.Load() {
		return
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != csIdle || d.mq.retrying || !d.settled {
		return
	}
	d.mq.retrying = true
	r.redialAfter(rand.N(r.mq.reconnect), d, func() bool {
		d.mu.Lock()
		defer d.mu.Unlock()
		d.mq.retrying = false
		return d.state == csIdle
	})
}

// OnTimeout sends PINGREQ when a connected device has been silent for
// its keep-alive.
func (h mqttDevHandler) OnTimeout(c *engine.Conn, reason engine.CloseReason) bool {
	d := devHandler(h).devOf(c)
	if d == nil || reason != engine.ReasonIdleTimeout {
		return false
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.ec != c || d.state != csOpen || d.announced {
		return d.state == csHandshake // the handshake has its own timeout
	}
	if n, err := c.Write(mqtt.AppendPingreq(nil)); err == nil {
		h.r.bytesOut.Add(int64(n))
	}
	return true
}
