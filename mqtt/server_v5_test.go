package mqtt

import (
	"bytes"
	"fmt"
	"strings"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/internal/testutil"
)

// Properties of a PUBLISH are passed through to 5.0 subscribers
// [MQTT-3.3.2-4], [MQTT-3.3.2-15..20], with the remaining message expiry.
func TestPropertiesPassThrough(t *testing.T) {
	b := startBroker(t, Config{})
	sub := connectOK(t, b.addr, Version5, "props-sub")
	sub.send(&Subscribe{PacketID: 1, Props: Properties{SubscriptionIDs: []uint32{42}},
		Filters: []Subscription{{Filter: []byte("props/#"), QoS: 1}}})
	sub.next()
	pub := connectOK(t, b.addr, Version5, "props-pub")
	pub.send(&Publish{Topic: []byte("props/x"), Payload: []byte("{}"), QoS: 1, PacketID: 5,
		Props: Properties{PayloadFormat: 1, MessageExpiry: 100, ContentType: []byte("application/json"),
			ResponseTopic: []byte("resp/x"), CorrelationData: []byte{1, 2, 3},
			User: []UserProperty{{[]byte("k"), []byte("v1")}, {[]byte("k"), []byte("v2")}}}})
	pub.expectAck(TypePuback, 5)
	got := sub.expectPublish()
	pr := got.Props
	if pr.PayloadFormat != 1 || pr.MessageExpiry == 0 || pr.MessageExpiry > 100 ||
		string(pr.ContentType) != "application/json" || string(pr.ResponseTopic) != "resp/x" ||
		!bytes.Equal(pr.CorrelationData, []byte{1, 2, 3}) || len(pr.User) != 2 ||
		string(pr.User[1].Value) != "v2" || fmt.Sprint(pr.SubscriptionIDs) != "[42]" {
		t.Fatalf("properties: %+v", pr)
	}
	// A 3.1.1 subscriber gets the message without properties.
	v3 := connectOK(t, b.addr, Version311, "props-v3")
	v3.subscribe(1, QoS0, "props/#")
	pub.send(&Publish{Topic: []byte("props/y"), Payload: []byte("p"), Props: Properties{ContentType: []byte("x")}})
	if got := v3.expectPublish(); got.Payload != "p" {
		t.Fatalf("%+v", got)
	}
}

// Message expiry [MQTT-3.3.2-5]: a queued message past its expiry is not
// delivered.
func TestMessageExpiry(t *testing.T) {
	clock := testutil.NewFakeClock()
	b := startBroker(t, Config{Clock: clock})
	c := dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("expiry"), CleanStart: true, Props: Properties{SessionExpiry: 600}})
	c.subscribe(1, QoS1, "x")
	c.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	b.Publish(&Message{Topic: "x", Payload: []byte("short"), QoS: 1, MessageExpiry: 5})
	b.Publish(&Message{Topic: "x", Payload: []byte("long"), QoS: 1, MessageExpiry: 500})
	clock.Advance(10 * time.Second)
	c = dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("expiry"), Props: Properties{SessionExpiry: 600}})
	got := c.expectPublish()
	if got.Payload != "long" || got.Props.MessageExpiry > 490 || got.Props.MessageExpiry < 480 {
		t.Fatalf("%+v", got)
	}
	if b.Stats().Dropped[DropExpired] != 1 {
		t.Fatalf("expired drop not counted: %v", b.Stats().Dropped)
	}
}

// Topic aliases from the client [MQTT-3.3.2-7..12].
func TestTopicAliasInbound(t *testing.T) {
	b := startBroker(t, Config{TopicAliasMaximum: 2})
	sub := connectOK(t, b.addr, Version5, "alias-sub")
	sub.subscribe(1, QoS0, "alias/#")
	c := connectOK(t, b.addr, Version5, "alias-pub")
	c.send(&Publish{Topic: []byte("alias/one"), Payload: []byte("1"), Props: Properties{TopicAlias: 1}})
	c.send(&Publish{Payload: []byte("2"), Props: Properties{TopicAlias: 1}})
	for _, want := range []string{"1", "2"} {
		if got := sub.expectPublish(); got.Topic != "alias/one" || got.Payload != want {
			t.Fatalf("%+v", got)
		}
	}
	c.send(&Publish{Payload: []byte("3"), Props: Properties{TopicAlias: 2}}) // never set
	if d := c.closed(); d == nil || d.ReasonCode != ProtocolError {
		t.Fatalf("unknown alias: %+v", d)
	}
	c = connectOK(t, b.addr, Version5, "alias-pub2")
	c.send(&Publish{Topic: []byte("alias/x"), Props: Properties{TopicAlias: 3}}) // over the maximum
	if d := c.closed(); d == nil || d.ReasonCode != TopicAliasInvalid {
		t.Fatalf("alias over maximum: %+v", d)
	}
}

// Topic aliases to the client [MQTT-3.3.2-9..10]: the server sets one per
// topic up to the client's Topic Alias Maximum and then sends the alias
// alone.
func TestTopicAliasOutbound(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("alias-out"), CleanStart: true, Props: Properties{TopicAliasMaximum: 1}})
	c.subscribe(1, QoS0, "ao/#")
	for i, topic := range []string{"ao/1", "ao/1", "ao/2", "ao/1"} {
		b.Publish(&Message{Topic: topic, Payload: []byte(fmt.Sprint(i))})
		got := c.expectPublish()
		switch i {
		case 0:
			if got.Topic != "ao/1" || got.Props.TopicAlias != 1 {
				t.Fatalf("alias not set: %+v", got)
			}
		case 1, 3:
			if got.Topic != "" || got.Props.TopicAlias != 1 {
				t.Fatalf("alias not used: %+v", got)
			}
		case 2: // over the client's maximum: the topic in full
			if got.Topic != "ao/2" || got.Props.TopicAlias != 0 {
				t.Fatalf("%+v", got)
			}
		}
	}
	// A client that allows none gets none.
	v := connectOK(t, b.addr, Version5, "alias-none")
	v.subscribe(1, QoS0, "ao/#")
	b.Publish(&Message{Topic: "ao/1", Payload: []byte("x")})
	if got := v.expectPublish(); got.Topic != "ao/1" || got.Props.Present.Has(PropTopicAlias) {
		t.Fatalf("%+v", got)
	}
}

// No local [MQTT-3.8.3-3] and subscription identifiers of overlapping
// subscriptions [MQTT-3.3.4-3..5].
func TestNoLocalAndSubscriptionIDs(t *testing.T) {
	b := startBroker(t, Config{})
	c := connectOK(t, b.addr, Version5, "nl")
	c.send(&Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("nl/x"), NoLocal: true}}})
	c.next()
	c.pub("nl/x", "mine", QoS0, 0, false)
	c.quiet(50 * time.Millisecond)
	other := connectOK(t, b.addr, Version5, "nl-other")
	other.pub("nl/x", "theirs", QoS0, 0, false)
	if got := c.expectPublish(); got.Payload != "theirs" {
		t.Fatalf("%+v", got)
	}
	s := connectOK(t, b.addr, Version5, "ids")
	s.send(&Subscribe{PacketID: 1, Props: Properties{SubscriptionIDs: []uint32{7}}, Filters: []Subscription{{Filter: []byte("ids/+")}}})
	s.next()
	s.send(&Subscribe{PacketID: 2, Props: Properties{SubscriptionIDs: []uint32{9}}, Filters: []Subscription{{Filter: []byte("ids/#")}}})
	s.next()
	other.pub("ids/a", "x", QoS0, 0, false)
	got := s.expectPublish()
	ids := fmt.Sprint(got.Props.SubscriptionIDs)
	if ids != "[7 9]" && ids != "[9 7]" {
		t.Fatalf("subscription ids %v", ids)
	}
	s.quiet(50 * time.Millisecond)
}

// Shared subscriptions (5.0 4.8.2): each message goes to one member of a
// group; plain subscribers still get theirs.
func TestSharedSubscriptions(t *testing.T) {
	b := startBroker(t, Config{})
	var members []*client
	for i := range 3 {
		m := connectOK(t, b.addr, Version5, fmt.Sprintf("member-%d", i))
		m.subscribe(1, QoS1, "$share/g/work/#")
		members = append(members, m)
	}
	plain := connectOK(t, b.addr, Version311, "plain")
	plain.subscribe(1, QoS0, "work/#")
	const n = 30
	for i := range n {
		b.Publish(&Message{Topic: "work/x", Payload: []byte(fmt.Sprint(i)), QoS: 0})
	}
	for range n {
		plain.expectPublish()
	}
	got := 0
	for _, m := range members {
		for {
			p, err := m.nextErr(100 * time.Millisecond)
			if err != nil {
				break
			}
			if _, ok := p.(*Publish); ok {
				got++
			}
		}
	}
	if got != n {
		t.Fatalf("shared group got %d messages, want %d", got, n)
	}
	// An invalid share name is refused per filter.
	if codes := members[0].subscribe(2, QoS0, "$share/g+x/a", "$share/g"); codes[0] != TopicFilterInvalid || codes[1] != TopicFilterInvalid {
		t.Fatalf("%v", codes)
	}
}

// Receive Maximum of the client [MQTT-3.3.4-7..9]: no more QoS 1 and 2
// messages inflight than it allows; the rest waits.
func TestReceiveMaximumOutbound(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("rm"), CleanStart: true, Props: Properties{ReceiveMaximum: 2}})
	c.subscribe(1, QoS1, "rm")
	for i := range 5 {
		b.Publish(&Message{Topic: "rm", Payload: []byte(fmt.Sprint(i)), QoS: 1})
	}
	a, bb := c.expectPublish(), c.expectPublish()
	c.quiet(100 * time.Millisecond)
	if s := b.Stats(); s.QueuedMessages != 5 {
		t.Fatalf("queued %d", s.QueuedMessages)
	}
	c.send(&Ack{Kind: TypePuback, PacketID: a.PacketID})
	if got := c.expectPublish(); got.Payload != "2" {
		t.Fatalf("%+v", got)
	}
	c.quiet(50 * time.Millisecond)
	_ = bb
}

// The server's Receive Maximum [MQTT-3.3.4-9]: more unreleased QoS 2
// PUBLISHes than announced close with 0x93.
func TestReceiveMaximumInbound(t *testing.T) {
	b := startBroker(t, Config{MaxInflight: 2})
	c := connectOK(t, b.addr, Version5, "rmi")
	for i := uint16(1); i <= 3; i++ {
		c.pub("x", "y", QoS2, i, false)
	}
	c.expectAck(TypePubrec, 1)
	c.expectAck(TypePubrec, 2)
	if d := c.closed(); d == nil || d.ReasonCode != ReceiveMaximumExceeded {
		t.Fatalf("%+v", d)
	}
}

// Maximum Packet Size of the client [MQTT-3.1.2-24]: a larger message is
// not sent to it; of the server: a larger packet closes with 0x95.
func TestMaximumPacketSize(t *testing.T) {
	b := startBroker(t, Config{Limits: Limits{MaxPacketSize: 1024}})
	c := dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("mps"), CleanStart: true, Props: Properties{MaximumPacketSize: 100}})
	c.subscribe(1, QoS0, "big")
	b.Publish(&Message{Topic: "big", Payload: make([]byte, 200)})
	b.Publish(&Message{Topic: "big", Payload: []byte("small")})
	if got := c.expectPublish(); got.Payload != "small" {
		t.Fatalf("%+v", got)
	}
	if b.Stats().Dropped[DropTooLarge] != 1 {
		t.Fatal("too large drop not counted")
	}
	c.pub("big", strings.Repeat("x", 2000), QoS0, 0, false)
	if d := c.closed(); d == nil || d.ReasonCode != PacketTooLarge {
		t.Fatalf("%+v", d)
	}
}

// Keep-alive [MQTT-3.1.2-24 (3.1.1: 3.1.2-24)]: a client silent for 1.5
// times its keep-alive is closed, in 5.0 with 0x8D; PINGREQ keeps it.
func TestKeepAlive(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version5)
	// A 2 s keep-alive (3 s with its grace) against pings every 500 ms:
	// a loaded machine's stall of a second must not close the client.
	c.connect(&Connect{ClientID: []byte("ka"), CleanStart: true, KeepAlive: 2})
	start := time.Now()
	for range 3 {
		time.Sleep(500 * time.Millisecond)
		c.send(&Pingreq{})
		c.next()
	}
	d := c.closed()
	if d == nil || d.ReasonCode != KeepAliveTimeout {
		t.Fatalf("%+v", d)
	}
	if el := time.Since(start); el < 4*time.Second {
		t.Fatalf("closed after %v, before 1.5 x keep-alive of silence", el)
	}
	b.waitStats(t, "keep-alive counted", func(s Stats) bool { return s.KeepAliveTimeouts == 1 })

	// Server keep-alive: the cap is announced to a 5.0 client asking more.
	b2 := startBroker(t, Config{MaxKeepAlive: 30 * time.Second})
	c = dial(t, b2.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("ka2"), CleanStart: true, KeepAlive: 600}); ca.Props.ServerKeepAlive != 30 {
		t.Fatalf("%+v", ca.Props)
	}
}

// The connect timeout closes a connection that sends no CONNECT.
func TestConnectTimeout(t *testing.T) {
	b := startBroker(t, Config{ConnectTimeout: 100 * time.Millisecond})
	c := dial(t, b.addr, Version311)
	c.closed()
	b.waitStats(t, "pending", func(s Stats) bool { return s.Pending == 0 })
}

// Bounds: subscriptions per client, queued messages per session, topic
// length and levels, publish rate.
func TestBounds(t *testing.T) {
	b := startBroker(t, Config{MaxSubscriptions: 2, MaxQueuedMessages: 2, MaxTopicLevels: 3, MaxTopicLength: 20,
		PublishRate: 5, PublishBurst: 5})
	c := connectOK(t, b.addr, Version5, "bounds")
	codes := c.subscribe(1, QoS1, "a", "b", "c", "a/b/c/d", strings.Repeat("x", 21))
	want := []ReasonCode{GrantedQoS1, GrantedQoS1, QuotaExceeded, TopicFilterInvalid, TopicFilterInvalid}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("SUBACK %v", codes)
	}
	// Resubscribing to an existing filter is not a new subscription.
	if codes := c.subscribe(2, QoS0, "a"); codes[0] != GrantedQoS0 {
		t.Fatalf("%v", codes)
	}
	c.send(&Disconnect{Props: Properties{SessionExpiry: 0}})
	c.closed()

	q := dial(t, b.addr, Version5)
	q.connect(&Connect{ClientID: []byte("queue"), CleanStart: true, Props: Properties{SessionExpiry: 60}})
	q.subscribe(1, QoS1, "q")
	q.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	for range 4 {
		b.Publish(&Message{Topic: "q", Payload: []byte("m"), QoS: 1})
	}
	if s := b.Stats(); s.QueuedMessages != 2 || s.Dropped[DropQueueFull] != 2 {
		t.Fatalf("queue bound: %+v", s)
	}

	p := connectOK(t, b.addr, Version5, "topics")
	p.pub("a/b/c/d", "x", QoS0, 0, false)
	if d := p.closed(); d == nil || d.ReasonCode != TopicNameInvalid {
		t.Fatalf("%+v", d)
	}
	r := connectOK(t, b.addr, Version5, "rate")
	var burst []byte
	for i := range 20 {
		burst = AppendPublish(burst, Version5, &Publish{Topic: []byte("a"), Payload: []byte(fmt.Sprint(i))})
	}
	r.raw(burst)
	if d := r.closed(); d == nil || d.ReasonCode != MessageRateTooHigh {
		t.Fatalf("%+v", d)
	}
	b.waitStats(t, "rate limited", func(s Stats) bool { return s.RateLimited == 1 })
}

// Total queued bytes across sessions are bounded.
func TestTotalQueueBound(t *testing.T) {
	b := startBroker(t, Config{MaxQueuedBytesTotal: 2000})
	for i := range 3 {
		c := dial(t, b.addr, Version5)
		c.connect(&Connect{ClientID: []byte(fmt.Sprint("tq", i)), CleanStart: true, Props: Properties{SessionExpiry: 60}})
		c.subscribe(1, QoS1, "tq")
		c.c.Close()
	}
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 3 })
	for range 10 {
		b.Publish(&Message{Topic: "tq", Payload: make([]byte, 100), QoS: 1})
	}
	s := b.Stats()
	if s.QueuedBytes > 2000 || s.Dropped[DropTotalQueueFull] == 0 {
		t.Fatalf("%+v", s)
	}
}

// Hooks: authentication, ACLs and the bridge.
func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var bridged []string
	var connected []string
	b := startBroker(t, Config{Hooks: Hooks{
		Authenticate: func(ci *ConnectInfo) (any, ReasonCode, string) {
			if string(ci.Password) != "secret" {
				return nil, BadUserNameOrPassword, "wrong password"
			}
			return "ident-" + ci.ClientID, Success, ""
		},
		Authorize: func(c *Client, a Action, topic string) bool {
			return strings.HasPrefix(topic, "devices/"+c.ID+"/") || topic == "devices/"+c.ID
		},
		OnPublish: func(c *Client, m *Message) (bool, ReasonCode) {
			if strings.HasSuffix(m.Topic, "/refuse") {
				return true, QuotaExceeded
			}
			if strings.HasSuffix(m.Topic, "/refuse-bad-code") {
				return true, MessageRateTooHigh // not a PUBACK code: sent as UnspecifiedError
			}
			mu.Lock()
			defer mu.Unlock()
			bridged = append(bridged, c.Identity.(string)+" "+m.Topic)
			return !strings.HasSuffix(m.Topic, "/bridge-only"), Success
		},
		OnConnect: func(c *Client, present bool) {
			mu.Lock()
			defer mu.Unlock()
			connected = append(connected, c.ID)
		},
	}})
	for _, v := range versions {
		c := dial(t, b.addr, v)
		ca := c.connect(&Connect{ClientID: []byte("d1"), CleanStart: true, HasUsername: true, Username: []byte("u"),
			Password: []byte("nope")})
		if ca.ReasonCode != BadUserNameOrPassword {
			t.Fatalf("%v: %v", v, ca.ReasonCode)
		}
		if v == Version5 && string(ca.Props.ReasonString) != "wrong password" {
			t.Fatalf("reason string %q", ca.Props.ReasonString)
		}
		c.closed()
	}
	c := dial(t, b.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("d1"), CleanStart: true, Username: []byte("u"), Password: []byte("secret")}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	codes := c.subscribe(1, QoS1, "devices/d1/#", "devices/d2/#")
	if codes[0] != GrantedQoS1 || codes[1] != NotAuthorized {
		t.Fatalf("%v", codes)
	}
	c.pub("devices/d2/x", "no", QoS1, 1, false)
	if rc := c.expectAck(TypePuback, 1); rc != NotAuthorized {
		t.Fatalf("%v", rc)
	}
	c.pub("devices/d1/x", "yes", QoS1, 2, false)
	// The subscriber is the publisher itself: PUBLISH and PUBACK both come.
	var sawPub, sawAck bool
	for !sawPub || !sawAck {
		switch p := c.next().(type) {
		case *Publish:
			sawPub = string(p.Payload) == "yes"
			c.send(&Ack{Kind: TypePuback, PacketID: p.PacketID})
		case *Ack:
			sawAck = p.PacketID == 2
		}
	}
	c.pub("devices/d1/bridge-only", "b", QoS0, 0, false)
	c.quiet(50 * time.Millisecond)
	// Refused by OnPublish with a code: not routed to the subscriber, the
	// PUBACK (or PUBREC, ending the QoS 2 flow) carries the code.
	c.pub("devices/d1/refuse", "r", QoS1, 3, false)
	if rc := c.expectAck(TypePuback, 3); rc != QuotaExceeded {
		t.Fatalf("refused QoS 1: %v", rc)
	}
	c.pub("devices/d1/refuse", "r", QoS2, 4, false)
	if rc := c.expectAck(TypePubrec, 4); rc != QuotaExceeded {
		t.Fatalf("refused QoS 2: %v", rc)
	}
	// The flow ended: the same packet id starts a new one.
	c.pub("devices/d1/refuse-bad-code", "r", QoS2, 4, false)
	if rc := c.expectAck(TypePubrec, 4); rc != UnspecifiedError {
		t.Fatalf("refused QoS 2 again: %v", rc)
	}
	c.quiet(50 * time.Millisecond) // nothing delivered
	if n := b.Stats().Dropped[DropRefused]; n != 3 {
		t.Fatalf("refused drops %d, want 3", n)
	}
	// 3.1.1 has no refusal code: a success ack, nothing routed.
	c3 := dial(t, b.addr, Version311)
	if ca := c3.connect(&Connect{ClientID: []byte("d9"), CleanStart: true, HasUsername: true, Username: []byte("u"),
		Password: []byte("secret")}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	c3.pub("devices/d9/refuse", "r", QoS1, 5, false)
	if rc := c3.expectAck(TypePuback, 5); rc != Success {
		t.Fatalf("refused QoS 1 over 3.1.1: %v", rc)
	}
	c3.quiet(50 * time.Millisecond)
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(bridged) != "[ident-d1 devices/d1/x ident-d1 devices/d1/bridge-only]" {
		t.Fatalf("bridged %v", bridged)
	}
	if fmt.Sprint(connected) != "[d1 d9]" {
		t.Fatalf("connected %v", connected)
	}
	// A will on a topic the client may not publish to fails CONNECT.
	w := dial(t, b.addr, Version5)
	if ca := w.connect(&Connect{ClientID: []byte("d3"), CleanStart: true, Password: []byte("secret"),
		Will: &Will{Topic: []byte("elsewhere"), Payload: []byte("x")}}); ca.ReasonCode != NotAuthorized {
		t.Fatalf("%v", ca.ReasonCode)
	}
}

// Drain: 5.0 clients get DISCONNECT 0x8B, or 0x9C with the server
// reference when one is configured.
func TestDrain(t *testing.T) {
	for _, ref := range []string{"", "other.example:1883"} {
		b := startBroker(t, Config{ServerReference: ref})
		c := connectOK(t, b.addr, Version5, "drain")
		v3 := connectOK(t, b.addr, Version311, "drain3")
		go b.e.Shutdown(t.Context())
		d := c.closed()
		want := ServerShuttingDown
		if ref != "" {
			want = UseAnotherServer
		}
		if d == nil || d.ReasonCode != want || string(d.Props.ServerReference) != ref {
			t.Fatalf("%+v", d)
		}
		if d := v3.closed(); d != nil {
			t.Fatalf("3.1.1 got %+v", d)
		}
	}
	// Over WebSocket: DISCONNECT, then the close 1001.
	b := startBroker(t, Config{})
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(gorilla.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("wsdrain"), CleanStart: true}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	go b.e.Shutdown(t.Context())
	if got := readWS(t, ws, Version5); got != "disconnect" {
		t.Fatalf("drained WebSocket client got %s", got)
	}
}
