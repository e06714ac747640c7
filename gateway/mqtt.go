package gateway

import (
	"encoding/json"
	"errors"
	"log/slog"
	"net/netip"
	"strings"
	"sync/atomic"
	"time"
	"unsafe"

	"github.com/nats-io/nats.go"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/mqtt"
)

// MQTT devices. The broker (package mqtt) runs on the gateway's engine, on
// its own listener (Config.MQTT) and at GET /mqtt on the device listener
// (MQTT over WebSocket); this file connects it to the hub:
//
//   - CONNECT's password is the device's token (the user name is free);
//     a device token's sub must equal the client id. With NoAuth the client
//     id is the device id and no password is needed.
//   - Topics map one to one onto NATS subjects, levels to tokens:
//     a/b/c <-> a.b.c. A topic with '.', '*' or '>' in a level, or an empty
//     level, cannot map and is refused (not_authorized); so is a filter
//     with them.
//   - devices/<id>/telemetry goes to the hub as telemetry (subject
//     devices.<id>.telemetry with the WebSocket transport's headers).
//   - devices/<id>/acks/<cmdid> with {"status","result"} acknowledges a
//     command; commands reach the device as PUBLISH on
//     devices/<id>/commands/<name> with {"id","name","payload"} (QoS 1; 5.0
//     adds Response Topic devices/<id>/acks/<cmdid> and the command id as
//     Correlation Data).
//   - Every other publish is routed to this node's subscribers and
//     published on NATS (header Warren-Node). A node subscribes on NATS
//     to what its MQTT clients subscribed to (the bridge: one NATS
//     subscription per distinct subject, device ids widened, never one
//     per device or per MQTT subscription), which brings other nodes' and
//     NATS clients' messages to its subscribers. Retained messages also go
//     on warren.mqtt.retained.<subject>, which every node follows.

// DefaultMQTTACL is the topics a device may use when Config.MQTTACL is
// empty: its own tree. %c stands for the client id, %u for the user name.
var DefaultMQTTACL = []string{"devices/%c/#"}

// Headers of messages the MQTT bridge publishes on NATS.
const (
	headerNode   = "Warren-Node"
	headerQoS    = "Warren-MQTT-QoS"
	headerRetain = "Warren-MQTT-Retain"
)

// mqttDevices connects the broker to the hub.
type mqttDevices struct {
	hub    *Hub
	bus    *Bus
	auth   Authenticator
	anon   bool
	node   string
	acl    []aclPattern
	now    func() time.Time
	broker *mqtt.Server
	br     *bridge
	rs     *retainSync // the retained messages' sync with other nodes
	fixed  string      // Config.MQTTBridgeSubject: one subscription, interest not followed
	certs  *certAuth

	refusedAuth, refusedID, bridgedOut, bridgedIn, unmappable atomic.Uint64
	unmappableIn                                              atomic.Uint64 // messages from NATS on a subject no topic maps onto

	// testHook, set by tests only, is called with "connect" as onConnect
	// begins, "connected" as it ends, "disconnect" as onDisconnect begins
	// and "disconnected" as it ends: tests order the hooks of two
	// connections with it.
	testHook atomic.Pointer[func(event string, c *mqtt.Client)]
}

// test calls the test hook, if a test set one.
func (d *mqttDevices) test(event string, c *mqtt.Client) {
	if h := d.testHook.Load(); h != nil {
		(*h)(event, c)
	}
}

// mqttDevice is what authenticating a CONNECT finds (by token here, by
// certificate in tlsauth.go); authenticate turns it into the client's
// mqttLink.
type mqttDevice struct {
	d     *mqttDevices
	ident Identity
}

// mqttLink is one MQTT client of the gateway, the broker's Client.Identity:
// for a device, the hub's Transport with the hub's session in it (one
// 80-byte allocation per device, TestMQTTLinkSize; the session's device id
// is the client id's string). Until onConnect hands it to the hub, s holds
// only the device id and the token's expiry. A client of a role the
// gateway does not know has no session (its s.Device is empty) and is
// bound by the ACL; a service has no link (mqttService).
type mqttLink struct {
	s      Session
	client atomic.Pointer[mqtt.Client] // set by onConnect; the broker is its Server
	reason atomic.Pointer[string]      // the gateway's reason for closing, if it closes
}

// mqttService is the broker's Client.Identity of a service: any topic, no
// session.
type mqttService struct{}

var _ Transport = (*mqttLink)(nil)

// identityOf returns the broker's Client.Identity of an authenticated
// client (id: its client id, the same string as the device id of a
// device): mqttService for a service, else its link.
func identityOf(id string, ident Identity) any {
	if ident.Role == RoleService {
		return mqttService{}
	}
	l := &mqttLink{}
	if ident.Role == RoleDevice {
		l.s.Device = id
		if !ident.Expires.IsZero() {
			l.s.setExpires(ident.Expires)
		}
	}
	return l
}

// session returns the hub's session of a device once onConnect gave it,
// or nil. It runs on the client's event loop, as onConnect does.
func (l *mqttLink) session() *Session {
	if l.s.t == nil {
		return nil
	}
	return &l.s
}

func newMQTTDevices(hub *Hub, bus *Bus, auth Authenticator, cfg Config, now func() time.Time) *mqttDevices {
	d := &mqttDevices{hub: hub, bus: bus, auth: auth, node: cfg.Node, now: now}
	acl := cfg.MQTTACL
	if len(acl) == 0 {
		acl = DefaultMQTTACL
	}
	for _, p := range acl {
		d.acl = append(d.acl, aclPattern{p: p, c: strings.Contains(p, "%c"), u: strings.Contains(p, "%u")})
	}
	_, d.anon = auth.(noAuth)
	mc := cfg.MQTTConfig
	mc.Hooks = mqtt.Hooks{Authenticate: d.authenticate, Authorize: d.authorize, OnPublish: d.onPublish,
		OnConnect: d.onConnect, OnDisconnect: d.onDisconnect, OnWill: d.onWill, OnDrain: d.onDrain}
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	d.br = newBridgeBytes(bus.Conn(), d.fromNATS, cfg.MQTTBridgeMaxSubjects, cfg.MQTTBridgeQueue, cfg.MQTTBridgeQueueBytes, log)
	d.rs = newRetainSync(d, bus.Conn(), log)
	if cfg.MQTTClusterShares {
		// Share groups span the cluster: NATS gives each message to one
		// node with members of the group, which gives it to one of them.
		mc.ExternalShares = true
		mc.Hooks.OnShare = func(share string, added bool) {
			if added {
				d.br.addShare(share)
			} else {
				d.br.removeShare(share)
			}
		}
	}
	if d.fixed = cfg.MQTTBridgeSubject; d.fixed == "" {
		mc.Hooks.OnFilter = func(filter string, added bool) {
			if added {
				d.br.add(filter)
			} else {
				d.br.remove(filter)
			}
		}
	}
	if mc.Clock == nil {
		mc.Clock = clockFunc(now)
	}
	d.broker = mqtt.NewServer(mc)
	return d
}

type clockFunc func() time.Time

func (f clockFunc) Now() time.Time { return f() }

// start subscribes the node to retained messages, and to the fixed
// bridge subject when there is one (otherwise the bridge follows the
// broker's filters as clients subscribe).
func (d *mqttDevices) start() error {
	d.rs.begin() // mqttretain.go: what changes from now on wins over the sync
	if err := d.br.subscribeRetained(retainedPrefix + ">"); err != nil {
		return err
	}
	go d.rs.run()
	if d.fixed != "" {
		d.br.mu.Lock()
		defer d.br.mu.Unlock()
		return d.br.subscribeAll(d.fixed)
	}
	return nil
}

func (d *mqttDevices) close() {
	d.rs.close()
	d.br.close()
	d.broker.Close()
}

// authenticate checks a CONNECT: the password is the token (NoAuth: the
// client id is the device id and the password is ignored).
func (d *mqttDevices) authenticate(ci *mqtt.ConnectInfo) (any, mqtt.ReasonCode, string) {
	if cert := certIdentity(ci.Conn); cert.id != "" {
		v, code, reason := d.authenticateCert(ci, cert) // gateway/tlsauth.go
		if dev, ok := v.(*mqttDevice); ok && code == mqtt.Success {
			return identityOf(ci.ClientID, dev.ident), code, reason
		}
		return v, code, reason
	}
	var ident Identity
	var err error
	if d.anon {
		ident, err = d.auth.Authenticate(ci.ClientID, d.now()) // NoAuth: the client id is the device id
	} else {
		ident, err = d.auth.Authenticate(string(ci.Password), d.now())
	}
	if err != nil {
		if d.anon && errors.Is(err, ErrBadDeviceID) {
			// The client id is what is refused: 0x85, and in 3.1.1
			// return code 2 [MQTT-3.1.3-9], not a bad password.
			d.refusedID.Add(1)
			return nil, mqtt.ClientIdentifierNotValid, "client id is not a device id ([A-Za-z0-9_-], 1 to 128 bytes)"
		}
		d.refusedAuth.Add(1)
		d.hub.m.authFailures.Add(1)
		return nil, mqtt.BadUserNameOrPassword, AuthReason(err)
	}
	if ident.Role == RoleDevice && ident.Device != ci.ClientID {
		// A credential may not take over another device's session.
		d.refusedID.Add(1)
		return nil, mqtt.ClientIdentifierNotValid, "client id must be the token's device id"
	}
	return identityOf(ci.ClientID, ident), mqtt.Success, ""
}

// mappable reports whether an MQTT topic or filter maps onto a NATS
// subject: no empty level, no '.', '*' or '>' in a level.
func mappable(topic string) bool {
	// One pass over the bytes: authorize runs it for every PUBLISH
	// (strings.Split allocated the levels' slice each time).
	prev := byte('/') // a leading '/' is an empty first level
	for i := 0; i < len(topic); i++ {
		b := topic[i]
		switch b {
		case '/':
			if prev == '/' {
				return false // an empty level
			}
		case '.', '*', '>', ' ', '\t', '\r', '\n':
			return false
		}
		prev = b
	}
	return prev != '/' // an empty last level, or an empty topic
}

// subject maps an MQTT topic name or filter onto a NATS subject.
func subject(topic string) string {
	s := strings.ReplaceAll(topic, "/", ".")
	if strings.HasSuffix(s, ".#") || s == "#" {
		s = strings.TrimSuffix(s, "#") + ">"
	}
	return strings.ReplaceAll(s, "+", "*")
}

// topicOf maps a NATS subject onto an MQTT topic name.
func topicOf(subject string) string { return strings.ReplaceAll(subject, ".", "/") }

// authorize applies the topic mapping and the ACL: a service may use any
// topic, a device those under its ACL patterns.
func (d *mqttDevices) authorize(c *mqtt.Client, a mqtt.Action, topic string) bool {
	if !mappable(topic) {
		d.unmappable.Add(1)
		return false
	}
	switch c.Identity.(type) {
	case mqttService:
		return true
	case *mqttLink:
	default:
		return false
	}
	if a == mqtt.ActionPublish && reservedTopic(topic) {
		return false
	}
	// A client id or user name stands for one level of a pattern only when
	// it is one: with a '/', '+' or '#' (the user name is the client's to
	// choose) it would widen the pattern to other devices' topics, and a
	// pattern that names it does not apply.
	var b1, b2 [256]byte
	for _, p := range d.acl {
		// p with %c and then %u replaced, built on the stack: authorize
		// runs for every PUBLISH.
		x := p.p
		if p.c {
			if !aclLevel(c.ID) {
				continue
			}
			b := appendReplace(b1[:0], x, "%c", c.ID)
			x = unsafe.String(unsafe.SliceData(b), len(b))
		}
		if p.u {
			user := c.Username()
			if !aclLevel(user) {
				continue
			}
			b := appendReplace(b2[:0], x, "%u", user)
			x = unsafe.String(unsafe.SliceData(b), len(b))
		}
		// A filter is allowed when the pattern covers it: matching the
		// filter as if it were a topic does exactly that. (Match keeps
		// neither string.)
		if mqtt.Match(x, topic) {
			return true
		}
	}
	return false
}

// aclLevel reports whether s may stand for a level of an ACL pattern: not
// empty, and no '/', '+', '#' (nor the '%' of another placeholder).
func aclLevel(s string) bool {
	for i := 0; i < len(s); i++ {
		switch s[i] {
		case '/', '+', '#', '%':
			return false
		}
	}
	return s != ""
}

// aclPattern is a pattern of Config.MQTTACL, with whether it names the
// client id (%c) and the user name (%u).
type aclPattern struct {
	p    string
	c, u bool
}

// reservedTopic reports whether topic maps onto a subject the gateway
// itself publishes and trusts, which no device may publish on whatever its
// ACL: a device's presence (devices.<id>.presence: every node's directory
// follows it, and a forged event would take another device's entry and
// close its connection as replaced) and the cluster's own subjects
// (warren.>, and _INBOX.> where requests are answered).
func reservedTopic(topic string) bool {
	if rest, ok := strings.CutPrefix(topic, "devices/"); ok {
		i := strings.IndexByte(rest, '/')
		return i >= 0 && rest[i+1:] == "presence"
	}
	first, _, _ := strings.Cut(topic, "/")
	return first == "warren" || first == "_INBOX"
}

// appendReplace appends s to dst with every old replaced by new, as
// strings.ReplaceAll does (old is not empty).
func appendReplace(dst []byte, s, old, new string) []byte {
	for {
		i := strings.Index(s, old)
		if i < 0 {
			return append(dst, s...)
		}
		dst = append(append(dst, s[:i]...), new...)
		s = s[i+len(old):]
	}
}

// cutDeviceTopic is strings.CutPrefix(topic, "devices/"+device+"/")
// without building the prefix.
func cutDeviceTopic(topic, device string) (string, bool) {
	rest, ok := strings.CutPrefix(topic, "devices/")
	if !ok {
		return topic, false
	}
	if rest, ok = strings.CutPrefix(rest, device); !ok {
		return topic, false
	}
	if rest, ok = strings.CutPrefix(rest, "/"); !ok {
		return topic, false
	}
	return rest, true
}

// onConnect registers a device with the hub. Lock order: the hub's shard,
// then the broker's locks (Client.Current under Hub.attachIf).
func (d *mqttDevices) onConnect(c *mqtt.Client, _ bool) {
	d.test("connect", c)
	defer d.test("connected", c)
	l, _ := c.Identity.(*mqttLink)
	if l == nil {
		return // a service
	}
	l.client.Store(c)
	if l.s.Device == "" {
		return // not a device
	}
	// Attached only if the broker still holds this connection for the
	// client id, checked under the hub's lock with the attach: a
	// connection a newer one took over before this hook ran (the newer
	// one's OnConnect may run first, on another loop) must not replace
	// it in the hub, nor close it as replaced (Hub.attachIf).
	d.hub.attachIf(&l.s, l.s.Identity(), l, c.Current)
}

// onDrain keeps a device open at the drain while commands wait for its
// acks (Hub.drainHold); the hub then closes it (Close, ReasonShutdown:
// 5.0 DISCONNECT server_shutting_down).
func (d *mqttDevices) onDrain(c *mqtt.Client) bool {
	l, _ := c.Identity.(*mqttLink)
	if l == nil {
		return false
	}
	s := l.session()
	return s != nil && d.hub.drainHold(s)
}

// onDisconnect unregisters a device.
func (d *mqttDevices) onDisconnect(c *mqtt.Client, reason engine.CloseReason, code mqtt.ReasonCode, takenOver bool) {
	d.test("disconnect", c)
	defer d.test("disconnected", c)
	l, _ := c.Identity.(*mqttLink)
	if l == nil {
		return
	}
	s := l.session()
	if s == nil {
		return
	}
	if r := l.reason.Load(); r != nil {
		// The hub closed the connection for a reason of its own
		// (token_expired, abuse, rate_limited, certificate_revoked,
		// shutdown, replaced): that reason stands, even if the device's
		// reconnect took the closing connection over meanwhile — the new
		// connection's attach announces it online again (perhaps
		// published before this offline: presence consumers match an
		// event to its session, docs/gateway.md).
		d.hub.Disconnect(s, *r)
		return
	}
	if takenOver {
		// The device connected again: its new connection attaches (or
		// attached already) and replaces this one (Hub.handOff).
		d.hub.handOff(s)
		return
	}
	why := ReasonDisconnected
	switch {
	case reason == engine.ReasonShutdown:
		why = ReasonShutdown
	case reason != engine.ReasonPeerClosed && reason != engine.ReasonLocal:
		why = reason.String()
	}
	d.hub.Disconnect(s, why)
}

// onPublish turns a device's telemetry and acks into hub calls, and
// bridges every other publish onto NATS. It runs on the event loop.
func (d *mqttDevices) onPublish(c *mqtt.Client, m *mqtt.Message) (bool, mqtt.ReasonCode) {
	if m.Retain {
		d.rs.touch(m.Topic)
	}
	l, _ := c.Identity.(*mqttLink)
	now := d.now()
	if l != nil {
		if s := l.session(); s != nil {
			s.Touch(now)
			rest, ok := cutDeviceTopic(m.Topic, s.Device)
			switch {
			case ok && rest == "telemetry":
				// Telemetry keeps nothing of the payload (it copies what
				// it holds), as for a WebSocket frame's read buffer.
				if !d.hub.Telemetry(s, m.Payload, now) {
					// Over the device's limit: a 5.0 client's PUBACK or
					// PUBREC says quota_exceeded (the PUBACK codes have
					// no rate code; DISCONNECT's 0x96 comes with a flood
					// close).
					return true, mqtt.QuotaExceeded
				}
				return true, mqtt.Success
			case ok && strings.HasPrefix(rest, "acks/"):
				var a struct {
					Status string          `json:"status"`
					Result json.RawMessage `json:"result"`
				}
				id := strings.TrimPrefix(rest, "acks/")
				if json.Unmarshal(m.Payload, &a) == nil && (a.Status == "ok" || a.Status == "error") {
					d.hub.Ack(s, Ack{ID: id, Status: a.Status, Result: append(json.RawMessage(nil), a.Result...)})
				} else {
					d.hub.m.badFrames.Add(1)
				}
				return true, mqtt.Success
			}
		}
	}
	d.bridgeOut(m)
	return true, mqtt.Success
}

// onWill bridges a will message onto NATS as onPublish does the other
// publishes: subscribers on other nodes get a client's will, and their
// retained stores a retained one.
func (d *mqttDevices) onWill(clientID string, m *mqtt.Message) {
	if m.Retain {
		d.rs.touch(m.Topic)
	}
	if rest, ok := cutDeviceTopic(m.Topic, clientID); ok && rest == "telemetry" && ValidDeviceID(clientID) {
		// A device's will on its telemetry is its last telemetry: with
		// the headers a consumer of telemetry reads (Warren-Device,
		// Warren-Received), as its other messages there have. (It keeps
		// Warren-MQTT-QoS: this node's bridge must not route it twice.)
		d.bridgeOutAs(m, clientID, d.now())
		return
	}
	d.bridgeOut(m)
}

// bridgeOut publishes a message of this node's MQTT clients on NATS
// (headers Warren-Node, Warren-MQTT-QoS, Warren-MQTT-Retain), and a
// retained one on retainedPrefix too.
func (d *mqttDevices) bridgeOut(m *mqtt.Message) { d.bridgeOutAs(m, "", time.Time{}) }

// bridgeOutAs is bridgeOut, with the telemetry headers Warren-Device and
// Warren-Received (at) when device is not empty.
func (d *mqttDevices) bridgeOutAs(m *mqtt.Message, device string, at time.Time) {
	nm := &nats.Msg{Subject: subject(m.Topic), Data: append([]byte(nil), m.Payload...), Header: nats.Header{}}
	if device != "" {
		nm.Header.Set(hdrDevice, device)
		nm.Header.Set(hdrReceived, string(appendReceived(nil, at))) // as the telemetry path writes it
	}
	nm.Header.Set(headerNode, d.node)
	nm.Header.Set(headerQoS, string('0'+byte(m.QoS)))
	if m.Retain {
		nm.Header.Set(headerRetain, "1")
	}
	if err := d.bus.Publish(nm); err == nil {
		d.bridgedOut.Add(1)
	}
	if m.Retain {
		// Every node's retained store gets it, whatever its interest.
		rm := &nats.Msg{Subject: retainedPrefix + nm.Subject, Data: nm.Data, Header: nm.Header}
		if err := d.bus.Publish(rm); err == nil {
			d.bridgedOut.Add(1)
		}
	}
}

// qosOf is the MQTT QoS a bridged message carries (Warren-MQTT-QoS), 0
// for a message without it (a NATS client's).
func qosOf(m *nats.Msg) mqtt.QoS {
	if q := m.Header.Get(headerQoS); q == "1" || q == "2" {
		return mqtt.QoS(q[0] - '0')
	}
	return mqtt.QoS0
}

// fromRetained brings another node's retained message to this node: it
// is retained here too, and routed to the local subscribers.
func (d *mqttDevices) fromRetained(m *nats.Msg) {
	if m.Header.Get(headerNode) == d.node {
		return
	}
	topic := topicOf(strings.TrimPrefix(m.Subject, retainedPrefix))
	d.rs.touch(topic)
	if _, err := d.broker.Publish(&mqtt.Message{Topic: topic, Payload: m.Data, QoS: qosOf(m), Retain: true}); err == nil {
		d.bridgedIn.Add(1)
	}
}

// fromNATS brings a message of another node, of a NATS client or of this
// node's hub (a WebSocket device's telemetry) to this node's MQTT
// subscribers. What this node's MQTT clients published was routed locally
// already and is skipped, and so are the gateway's own subjects.
func (d *mqttDevices) fromNATS(m *nats.Msg) {
	if strings.IndexByte(m.Subject, '/') >= 0 {
		// No MQTT topic maps onto a subject with a '/' in a token ('/'
		// separates the levels): as a topic it would name another subject
		// (a/b.c would be a/b/c, the image of a.b.c). Dropped, counted.
		d.unmappableIn.Add(1)
		return
	}
	if isRetainedSub(m) {
		d.fromRetained(m)
		return
	}
	if strings.HasPrefix(m.Subject, "warren.") || strings.HasPrefix(m.Subject, "_INBOX.") ||
		strings.HasPrefix(m.Subject, "$") {
		return
	}
	if isShareSub(m) {
		// NATS picked this node for one of its share groups: every message
		// on the subject, this node's own included (mqttbridge.go). A
		// group that has just left the node has no member to take it.
		if share := d.br.shareOf(m); share != "" {
			if n, err := d.broker.PublishShared(&mqtt.Message{Topic: topicOf(m.Subject), Payload: m.Data, QoS: qosOf(m),
				Retain: m.Header.Get(headerRetain) == "1"}, share); err == nil && n > 0 {
				d.bridgedIn.Add(1)
			}
		}
		return
	}
	if m.Header.Get(headerQoS) != "" && m.Header.Get(headerRetain) == "1" {
		return // a node's retained message: fromRetained takes it
	}
	if m.Header.Get(headerNode) == d.node {
		if m.Header.Get(headerQoS) != "" {
			return // this node's bridge: routed locally already
		}
		// This node's hub: telemetry of an MQTT device was routed locally
		// already; a WebSocket device's was not.
		if dev, ok := strings.CutPrefix(m.Subject, "devices."); ok {
			if id, ok := strings.CutSuffix(dev, ".telemetry"); ok {
				if s := d.hub.Local(id); s != nil {
					if _, isMQTT := s.Transport().(*mqttLink); isMQTT {
						return
					}
				}
			}
		}
	}
	retain := m.Header.Get(headerRetain) == "1" // a NATS client's retained message
	if retain {
		d.rs.touch(topicOf(m.Subject))
	}
	if _, err := d.broker.Publish(&mqtt.Message{Topic: topicOf(m.Subject), Payload: m.Data, QoS: qosOf(m),
		Retain: retain}); err == nil {
		d.bridgedIn.Add(1)
	}
}

func (l *mqttLink) Protocol() string { return mqtt.ProtocolName }

func (l *mqttLink) Remote() netip.AddrPort {
	if c := l.client.Load(); c != nil {
		return c.Remote()
	}
	return netip.AddrPort{}
}

func (l *mqttLink) PauseRead() {
	if c := l.client.Load(); c != nil {
		c.PauseRead()
	}
}

func (l *mqttLink) ResumeRead() {
	if c := l.client.Load(); c != nil {
		c.ResumeRead()
	}
}

// mqttCommand is the payload of a command to an MQTT device.
type mqttCommand struct {
	ID      string          `json:"id"`
	Name    string          `json:"name"`
	Payload json.RawMessage `json:"payload"`
}

// SendCommand publishes the command on devices/<id>/commands/<name> at QoS
// 1, to whichever of the device's subscriptions match; it never blocks.
func (l *mqttLink) SendCommand(cmd Command) error {
	payload := cmd.Payload
	if len(payload) == 0 {
		payload = json.RawMessage("null")
	}
	b, err := json.Marshal(mqttCommand{ID: cmd.ID, Name: cmd.Name, Payload: payload})
	if err != nil {
		return err
	}
	c := l.client.Load()
	if c == nil {
		return ErrOffline
	}
	id := l.s.Device
	_, err = c.Server().Publish(&mqtt.Message{Topic: "devices/" + id + "/commands/" + cmd.Name, Payload: b,
		QoS: mqtt.QoS1, ResponseTopic: "devices/" + id + "/acks/" + cmd.ID, CorrelationData: []byte(cmd.ID),
		ContentType: "application/json", PayloadFormat: 1})
	return err
}

// Close ends the device's connection with a gateway reason.
func (l *mqttLink) Close(reason string) {
	r := reason
	l.reason.CompareAndSwap(nil, &r)
	c := l.client.Load()
	if c == nil {
		return
	}
	if reason == ReasonShutdown {
		c.GoingAway() // the drain's own goodbye, as for a device it did not hold
		return
	}
	code := mqtt.AdministrativeAction
	switch reason {
	case ReasonReplaced:
		code = mqtt.SessionTakenOver
	case ReasonTokenExpired, ReasonCertRevoked:
		code = mqtt.NotAuthorized
	case ReasonRateLimited:
		code = mqtt.MessageRateTooHigh
	}
	c.Disconnect(code, reason)
}

// mqttCollector exports the gateway's MQTT counters:
//
//	warren_gateway_mqtt_refused_total{reason="auth|client_id"}  counter  CONNECTs refused
//	warren_gateway_mqtt_bridged_total{direction="out|in"}       counter  messages bridged to and from NATS
//	warren_gateway_mqtt_unmappable_total                        counter  topics refused for not mapping onto NATS
//	warren_gateway_mqtt_bridge_dropped_total{reason="queue_full|unmappable"} counter  messages from NATS dropped: the bridge's queue was full, or their subject has a '/' (no MQTT topic maps onto it)
//	warren_gateway_mqtt_bridge_queued                           gauge    messages from NATS waiting in the bridge's queue
//	warren_gateway_mqtt_bridge_shares                           gauge    MQTT share groups with members on the node (one NATS queue subscription each; -mqtt-cluster-shares)
//	warren_gateway_mqtt_bridge_shares_refused_total             counter  share groups not followed: the node had MQTTBridgeMaxSubjects already
//	warren_gateway_mqtt_retained_sync_total{result="stored|answered|too_large"} counter  the retained messages' sync (mqttretain.go)
type mqttCollector struct {
	d                                            *mqttDevices
	refused, bridged, unmappable                 *prometheus.Desc
	bridgeSubjects, bridgeOverflow, bridgeErrors *prometheus.Desc
	bridgeDropped, bridgeQueued                  *prometheus.Desc
	bridgeQueuedBytes                            *prometheus.Desc
	retainedSync, bridgeShares, sharesRefused    *prometheus.Desc
}

func (d *mqttDevices) collector() prometheus.Collector {
	return &mqttCollector{d: d,
		refused:    prometheus.NewDesc("warren_gateway_mqtt_refused_total", "MQTT CONNECTs refused by the gateway, by reason.", []string{"reason"}, nil),
		bridged:    prometheus.NewDesc("warren_gateway_mqtt_bridged_total", "MQTT messages bridged to and from NATS.", []string{"direction"}, nil),
		unmappable: prometheus.NewDesc("warren_gateway_mqtt_unmappable_total", "MQTT topics and filters refused for not mapping onto NATS subjects.", nil, nil),
		bridgeSubjects: prometheus.NewDesc("warren_gateway_mqtt_bridge_subjects",
			"Distinct NATS subjects the node's MQTT subscriptions map to (the bridge subscribes to each, up to -mqtt-bridge-max-subjects).", nil, nil),
		bridgeOverflow: prometheus.NewDesc("warren_gateway_mqtt_bridge_overflow_total",
			"Times the node's MQTT interest went over -mqtt-bridge-max-subjects (the bridge then follows every subject).", nil, nil),
		bridgeErrors: prometheus.NewDesc("warren_gateway_mqtt_bridge_subscribe_errors_total", "NATS subscribes of the MQTT bridge that failed.", nil, nil),
		bridgeDropped: prometheus.NewDesc("warren_gateway_mqtt_bridge_dropped_total",
			"Messages from NATS the MQTT bridge did not hand on, by reason (queue_full: its queue, -mqtt-bridge-queue, was full; queue_bytes_full: the message's bytes would have taken the queue past -mqtt-bridge-queue-bytes; unmappable: a subject with a '/', onto which no MQTT topic maps).", []string{"reason"}, nil),
		bridgeQueued: prometheus.NewDesc("warren_gateway_mqtt_bridge_queued", "Messages from NATS waiting in the MQTT bridge: in its hand-off from the NATS client and in its queue (up to -mqtt-bridge-queue each, so up to twice it).", nil, nil),
		bridgeQueuedBytes: prometheus.NewDesc("warren_gateway_mqtt_bridge_queued_bytes",
			"Bytes of the messages from NATS waiting in the MQTT bridge's queue past its hand-off (up to -mqtt-bridge-queue-bytes).", nil, nil),
		bridgeShares: prometheus.NewDesc("warren_gateway_mqtt_bridge_shares",
			"MQTT share groups ($share/group/filter) with members on the node: one NATS queue subscription each, in a queue group every node with members of the group joins.", nil, nil),
		sharesRefused: prometheus.NewDesc("warren_gateway_mqtt_bridge_shares_refused_total",
			"MQTT share groups the node did not follow across the cluster (-mqtt-cluster-shares): it followed -mqtt-bridge-max-subjects groups already; their members here get nothing.", nil, nil),
		retainedSync: prometheus.NewDesc("warren_gateway_mqtt_retained_sync_total",
			"The retained MQTT messages' sync between nodes: messages stored from another node's answer at start (stored), answers sent to starting nodes (answered), messages left out of an answer for being too large for one NATS message (too_large).", []string{"result"}, nil),
	}
}

// Describe sends every descriptor.
func (c *mqttCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.refused
	ch <- c.bridged
	ch <- c.unmappable
	ch <- c.bridgeSubjects
	ch <- c.bridgeOverflow
	ch <- c.bridgeErrors
	ch <- c.bridgeDropped
	ch <- c.bridgeQueued
	ch <- c.bridgeQueuedBytes
	ch <- c.retainedSync
	ch <- c.bridgeShares
	ch <- c.sharesRefused
}

// Collect sends the counters.
func (c *mqttCollector) Collect(ch chan<- prometheus.Metric) {
	n := func(d *prometheus.Desc, v uint64, l ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), l...)
	}
	n(c.refused, c.d.refusedAuth.Load(), "auth")
	n(c.refused, c.d.refusedID.Load(), "client_id")
	n(c.bridged, c.d.bridgedOut.Load(), "out")
	n(c.bridged, c.d.bridgedIn.Load(), "in")
	n(c.unmappable, c.d.unmappable.Load())
	ch <- prometheus.MustNewConstMetric(c.bridgeSubjects, prometheus.GaugeValue, float64(c.d.br.subjects.Load()))
	n(c.bridgeOverflow, c.d.br.overflowed.Load())
	n(c.bridgeErrors, c.d.br.subErrors.Load())
	n(c.bridgeDropped, c.d.br.dropped(), ReasonBridgeQueueFull)
	n(c.bridgeDropped, c.d.br.bytesDrops.Load(), ReasonBridgeQueueBytesFull)
	n(c.bridgeDropped, c.d.unmappableIn.Load(), "unmappable")
	ch <- prometheus.MustNewConstMetric(c.bridgeQueued, prometheus.GaugeValue, float64(c.d.br.queued()))
	ch <- prometheus.MustNewConstMetric(c.bridgeQueuedBytes, prometheus.GaugeValue, float64(c.d.br.queuedBytes.Load()))
	ch <- prometheus.MustNewConstMetric(c.bridgeShares, prometheus.GaugeValue, float64(c.d.br.sharesFollowed()))
	n(c.sharesRefused, c.d.br.sharesRefused.Load())
	n(c.retainedSync, c.d.rs.synced.Load(), "stored")
	n(c.retainedSync, c.d.rs.answered.Load(), "answered")
	n(c.retainedSync, c.d.rs.skipped.Load(), "too_large")
}
