package mqtt

import (
	"fmt"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

var versions = []Version{Version311, Version5}

// [MQTT-3.1.4-*], [MQTT-3.2.2-*]: CONNECT is answered with CONNACK.
func TestConnectConnack(t *testing.T) {
	b := startBroker(t, Config{})
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			c := dial(t, b.addr, v)
			ca := c.connect(&Connect{ClientID: []byte("c1-" + v.String()), CleanStart: true, KeepAlive: 30})
			if ca.ReasonCode != Success || ca.SessionPresent {
				t.Fatalf("CONNACK %+v", ca)
			}
			if v == Version5 {
				if ca.Props.ReceiveMaximum != DefaultMaxInflight || ca.Props.MaximumPacketSize != DefaultMaxPacketSize ||
					ca.Props.TopicAliasMaximum != DefaultTopicAliasMaximum {
					t.Fatalf("CONNACK properties %+v", ca.Props)
				}
			}
			c.send(&Pingreq{})
			if _, ok := c.next().(*Pingresp); !ok {
				t.Fatal("no PINGRESP")
			}
			c.send(&Disconnect{})
			c.closed()
		})
	}
	b.waitStats(t, "connections closed", func(s Stats) bool {
		return s.ConnectionsV311 == 0 && s.ConnectionsV5 == 0 && s.SessionsOnline == 0 && s.SessionsOffline == 0
	})
}

// [MQTT-3.1.3-7], [MQTT-3.1.3-8]: an empty client id needs clean session
// in 3.1.1; 5.0 gets an assigned one.
func TestEmptyClientID(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version311)
	if ca := c.connect(&Connect{}); ca.ReasonCode != ClientIdentifierNotValid {
		t.Fatalf("3.1.1 empty id without clean session: %v", ca.ReasonCode)
	}
	c.closed()
	c = dial(t, b.addr, Version311)
	if ca := c.connect(&Connect{CleanStart: true}); ca.ReasonCode != Success {
		t.Fatalf("3.1.1 empty id with clean session: %v", ca.ReasonCode)
	}
	c = dial(t, b.addr, Version5)
	ca := c.connect(&Connect{})
	if ca.ReasonCode != Success || !strings.HasPrefix(string(ca.Props.AssignedClientID), "auto-") {
		t.Fatalf("5.0 empty id: %+v", ca)
	}
}

// [MQTT-3.1.0-2], [MQTT-4.8.0-1]: a second CONNECT, a packet before
// CONNECT and a malformed packet close the connection (5.0 with a
// DISCONNECT carrying the reason).
func TestProtocolViolations(t *testing.T) {
	b := startBroker(t, Config{})
	// First packet not CONNECT.
	c := dial(t, b.addr, Version311)
	c.raw(AppendPingreq(nil))
	c.closed()
	// Second CONNECT.
	for _, v := range versions {
		c = connectOK(t, b.addr, v, "twice")
		c.raw(AppendConnect(nil, &Connect{Version: v, ClientID: []byte("twice"), CleanStart: true}))
		d := c.closed()
		if v == Version5 && (d == nil || d.ReasonCode != ProtocolError) {
			t.Fatalf("second CONNECT in 5.0: DISCONNECT %+v", d)
		}
	}
	// Reserved packet type 0, and a server-only packet from a client.
	c = connectOK(t, b.addr, Version5, "reserved")
	c.raw([]byte{0x00, 0x00})
	if d := c.closed(); d == nil || d.ReasonCode != MalformedPacket {
		t.Fatalf("reserved type: %+v", d)
	}
	c = connectOK(t, b.addr, Version5, "suback")
	c.raw(AppendSuback(nil, Version5, &Suback{PacketID: 1, ReasonCodes: []ReasonCode{0}}))
	if d := c.closed(); d == nil || d.ReasonCode != ProtocolError {
		t.Fatalf("SUBACK from client: %+v", d)
	}
	// Unsupported protocol level: CONNACK 0x01 in 3.1.1 form.
	c = dial(t, b.addr, Version311)
	bad := AppendConnect(nil, &Connect{Version: Version311, ClientID: []byte("x"), CleanStart: true})
	bad[8] = 3 // protocol level
	c.raw(bad)
	c.dec.Version = Version311
	if ca, ok := c.next().(*Connack); !ok || ca.ReasonCode != UnsupportedProtocolVersion {
		t.Fatalf("protocol level 3: %v", ca)
	}
	c.closed()
	if b.Stats().ProtocolErrors < 4 {
		t.Fatalf("protocol errors not counted: %+v", b.Stats())
	}
}

// QoS 0, 1 and 2 both ways, with the full PUBACK / PUBREC / PUBREL /
// PUBCOMP flows [MQTT-4.3.*].
func TestPublishQoS(t *testing.T) {
	b := startBroker(t, Config{})
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			sub := connectOK(t, b.addr, v, "sub-"+v.String())
			if codes := sub.subscribe(1, QoS2, "q/"+v.String()+"/#"); codes[0] != GrantedQoS2 {
				t.Fatalf("SUBACK %v", codes)
			}
			pub := connectOK(t, b.addr, v, "pub-"+v.String())
			topic := "q/" + v.String() + "/x"

			pub.pub(topic, "zero", QoS0, 0, false)
			if p := sub.expectPublish(); p.Payload != "zero" || p.QoS != 0 {
				t.Fatalf("QoS 0: %+v", p)
			}

			pub.pub(topic, "one", QoS1, 11, false)
			pub.expectAck(TypePuback, 11)
			p := sub.expectPublish()
			if p.Payload != "one" || p.QoS != 1 || p.PacketID == 0 {
				t.Fatalf("QoS 1: %+v", p)
			}
			sub.send(&Ack{Kind: TypePuback, PacketID: p.PacketID})

			pub.pub(topic, "two", QoS2, 12, false)
			pub.expectAck(TypePubrec, 12)
			pub.send(&Ack{Kind: TypePubrel, PacketID: 12})
			pub.expectAck(TypePubcomp, 12)
			p = sub.expectPublish()
			if p.Payload != "two" || p.QoS != 2 {
				t.Fatalf("QoS 2: %+v", p)
			}
			sub.send(&Ack{Kind: TypePubrec, PacketID: p.PacketID})
			sub.expectAck(TypePubrel, p.PacketID)
			sub.send(&Ack{Kind: TypePubcomp, PacketID: p.PacketID})

			// A QoS 2 PUBLISH sent again before PUBREL is not delivered twice
			// [MQTT-4.3.3-9].
			pub.pub(topic, "dup", QoS2, 13, false)
			pub.expectAck(TypePubrec, 13)
			pub.send(&Publish{Topic: []byte(topic), Payload: []byte("dup"), QoS: QoS2, PacketID: 13, Dup: true})
			pub.expectAck(TypePubrec, 13)
			pub.send(&Ack{Kind: TypePubrel, PacketID: 13})
			pub.expectAck(TypePubcomp, 13)
			p = sub.expectPublish()
			sub.send(&Ack{Kind: TypePubrec, PacketID: p.PacketID})
			sub.expectAck(TypePubrel, p.PacketID)
			sub.send(&Ack{Kind: TypePubcomp, PacketID: p.PacketID})
			sub.quiet(50 * time.Millisecond)

			// Overlapping subscriptions: one delivery at the highest QoS
			// granted [MQTT-3.3.4-2], at most the publication's.
			sub.subscribe(2, QoS0, topic)
			pub.pub(topic, "max", QoS1, 14, false)
			pub.expectAck(TypePuback, 14)
			if p := sub.expectPublish(); p.QoS != 1 {
				t.Fatalf("overlapping subscriptions: %+v", p)
			} else {
				sub.send(&Ack{Kind: TypePuback, PacketID: p.PacketID})
			}
			sub.quiet(50 * time.Millisecond)
			// Delivered at the lower of the publication's and the
			// subscription's QoS.
			sub.send(&Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("q/" + v.String() + "/#")}})
			sub.next()
			pub.pub(topic, "min", QoS1, 15, false)
			pub.expectAck(TypePuback, 15)
			if p := sub.expectPublish(); p.QoS != 0 {
				t.Fatalf("lower QoS: %+v", p)
			}
		})
	}
	b.waitStats(t, "inflight drained", func(s Stats) bool { return s.QueuedMessages == 0 })
}

// Wildcards [MQTT-4.7.1-*], $-topics [MQTT-4.7.2-1], UNSUBSCRIBE
// [MQTT-3.10.4-*].
func TestWildcardsAndUnsubscribe(t *testing.T) {
	b := startBroker(t, Config{})
	c := connectOK(t, b.addr, Version5, "wild")
	codes := c.subscribe(1, QoS0, "sport/+/player1", "sport/tennis/#", "#", "+/monitor", "bad/#/x", "a+b")
	want := []ReasonCode{0, 0, 0, 0, TopicFilterInvalid, TopicFilterInvalid}
	if fmt.Sprint(codes) != fmt.Sprint(want) {
		t.Fatalf("SUBACK %v, want %v", codes, want)
	}
	p := connectOK(t, b.addr, Version5, "wild-pub")
	p.pub("sport/tennis/player1", "x", QoS0, 0, false)
	if got := c.expectPublish(); got.Topic != "sport/tennis/player1" {
		t.Fatalf("%+v", got)
	}
	c.quiet(50 * time.Millisecond) // one delivery for several matching subscriptions
	p.pub("$SYS/monitor", "sys", QoS0, 0, false)
	c.quiet(50 * time.Millisecond)
	c.subscribe(2, QoS0, "$SYS/#")
	p.pub("$SYS/monitor", "sys", QoS0, 0, false)
	if got := c.expectPublish(); got.Payload != "sys" {
		t.Fatalf("%+v", got)
	}
	c.send(&Unsubscribe{PacketID: 3, Filters: [][]byte{[]byte("#"), []byte("nope")}})
	ua, ok := c.next().(*Unsuback)
	if !ok || ua.PacketID != 3 || fmt.Sprint(ua.ReasonCodes) != fmt.Sprint([]ReasonCode{Success, NoSubscriptionExisted}) {
		t.Fatalf("UNSUBACK %+v", ua)
	}
	p.pub("other", "x", QoS0, 0, false)
	c.quiet(50 * time.Millisecond)
}

// Retained messages [MQTT-3.3.1-5..11], retain handling and retain as
// published (5.0).
func TestRetained(t *testing.T) {
	b := startBroker(t, Config{})
	p := connectOK(t, b.addr, Version5, "ret-pub")
	p.pub("r/a", "A", QoS1, 1, true)
	p.expectAck(TypePuback, 1)
	p.pub("r/b", "B", QoS0, 0, true)
	b.waitStats(t, "retained", func(s Stats) bool { return s.Retained == 2 })

	c := connectOK(t, b.addr, Version311, "ret-sub")
	c.subscribe(1, QoS1, "r/a")
	if got := c.expectPublish(); got.Payload != "A" || !got.Retain || got.QoS != 1 {
		t.Fatalf("retained: %+v", got)
	} else {
		c.send(&Ack{Kind: TypePuback, PacketID: got.PacketID})
	}
	c.subscribe(2, QoS0, "r/+")
	seen := map[string]bool{}
	for range 2 {
		got := c.expectPublish()
		if !got.Retain {
			t.Fatalf("not flagged retained: %+v", got)
		}
		seen[got.Payload] = true
	}
	if !seen["A"] || !seen["B"] {
		t.Fatalf("retained for wildcard: %v", seen)
	}
	// Live messages are forwarded with retain 0 [MQTT-3.3.1-9].
	p.pub("r/a", "A2", QoS0, 0, true)
	if got := c.expectPublish(); got.Retain {
		t.Fatalf("live message flagged retained: %+v", got)
	}
	// An empty payload deletes [MQTT-3.3.1-10].
	p.pub("r/a", "", QoS0, 0, true)
	c.expectPublish()
	b.waitStats(t, "retained deleted", func(s Stats) bool { return s.Retained == 1 })

	// 5.0 retain handling 2: never; 1: only for a new subscription;
	// retain as published keeps the flag.
	v5 := connectOK(t, b.addr, Version5, "ret-v5")
	v5.send(&Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("r/b"), RetainHandling: 2}}})
	v5.next()
	v5.quiet(50 * time.Millisecond)
	v5.send(&Subscribe{PacketID: 2, Filters: []Subscription{{Filter: []byte("r/+"), RetainHandling: 1, RetainAsPublished: true}}})
	v5.next()
	if got := v5.expectPublish(); got.Payload != "B" {
		t.Fatalf("%+v", got)
	}
	v5.send(&Subscribe{PacketID: 3, Filters: []Subscription{{Filter: []byte("r/+"), RetainHandling: 1, RetainAsPublished: true}}})
	v5.next()
	v5.quiet(50 * time.Millisecond)
	p.pub("r/c", "C", QoS0, 0, true)
	got := v5.expectPublish()
	if !got.Retain {
		t.Fatalf("retain as published: %+v", got)
	}
	if got.Topic == "r/c" {
		// r/b's subscription (rh 2) and r/+ overlap only for r/b.
		return
	}
	t.Fatalf("%+v", got)
}

// Will messages [MQTT-3.1.2-8..10]: published when the connection ends
// without DISCONNECT, not after a normal one; 5.0 will delay and
// DisconnectWithWillMessage.
func TestWill(t *testing.T) {
	b := startBroker(t, Config{})
	w := connectOK(t, b.addr, Version5, "watcher")
	w.subscribe(1, QoS1, "will/#")

	for _, v := range versions {
		c := dial(t, b.addr, v)
		c.connect(&Connect{ClientID: []byte("dies-" + v.String()), CleanStart: true,
			Will: &Will{Topic: []byte("will/" + v.String()), Payload: []byte("gone"), QoS: 1}})
		c.c.Close()
		got := w.expectPublish()
		if got.Topic != "will/"+v.String() || got.Payload != "gone" {
			t.Fatalf("will: %+v", got)
		}
		w.send(&Ack{Kind: TypePuback, PacketID: got.PacketID})

		c = dial(t, b.addr, v)
		c.connect(&Connect{ClientID: []byte("bye-" + v.String()), CleanStart: true,
			Will: &Will{Topic: []byte("will/bye"), Payload: []byte("x")}})
		c.send(&Disconnect{})
		c.closed()
		w.quiet(50 * time.Millisecond)
	}
	// DISCONNECT 0x04 publishes the will.
	c := dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("with-will"), CleanStart: true,
		Will: &Will{Topic: []byte("will/asked"), Payload: []byte("x")}})
	c.send(&Disconnect{ReasonCode: DisconnectWithWillMessage})
	if got := w.expectPublish(); got.Topic != "will/asked" {
		t.Fatalf("%+v", got)
	}
	// Will delay: not published when the session resumes in time; published
	// by the sweep once due.
	connDelayed := func() *client {
		c := dial(t, b.addr, Version5)
		c.connect(&Connect{ClientID: []byte("delayed"), Props: Properties{SessionExpiry: 3600},
			Will: &Will{Topic: []byte("will/delayed"), Payload: []byte("late"), Props: Properties{WillDelay: 30}}})
		return c
	}
	c = connDelayed()
	c.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	c = connDelayed() // resumes: the pending will is cancelled
	b.sweep(time.Now().Add(time.Hour))
	w.quiet(50 * time.Millisecond)
	c.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	b.sweep(time.Now().Add(10 * time.Second))
	w.quiet(50 * time.Millisecond)
	b.sweep(time.Now().Add(31 * time.Second))
	if got := w.expectPublish(); got.Payload != "late" {
		t.Fatalf("%+v", got)
	}
	if b.Stats().WillsPublished != 4 {
		t.Fatalf("wills published: %d", b.Stats().WillsPublished)
	}
}

// Session takeover [MQTT-3.1.4-3]: the old connection is closed, in 5.0
// with DISCONNECT 0x8E.
func TestTakeover(t *testing.T) {
	var taken atomic.Int32
	b := startBroker(t, Config{Hooks: Hooks{OnDisconnect: func(c *Client, r engine.CloseReason, code ReasonCode, takenOver bool) {
		if takenOver {
			taken.Add(1)
		}
	}}})
	for _, v := range versions {
		old := connectOK(t, b.addr, v, "same")
		old.subscribe(1, QoS1, "t/x")
		nc := dial(t, b.addr, v)
		ca := nc.connect(&Connect{ClientID: []byte("same"), KeepAlive: 60})
		if ca.ReasonCode != Success || !ca.SessionPresent {
			t.Fatalf("takeover CONNACK %+v", ca)
		}
		d := old.closed()
		if v == Version5 && (d == nil || d.ReasonCode != SessionTakenOver) {
			t.Fatalf("old connection got %+v", d)
		}
		// The subscription moved to the new connection.
		b.Publish(&Message{Topic: "t/x", Payload: []byte("hi")})
		if got := nc.expectPublish(); got.Payload != "hi" {
			t.Fatalf("%+v", got)
		}
		nc.send(&Disconnect{})
		nc.closed()
	}
	b.waitStats(t, "takeovers", func(s Stats) bool { return s.Takeovers == 2 && taken.Load() == 2 })
}

// Persistent sessions [MQTT-3.1.2-4..6], [MQTT-4.4.0-1]: QoS 1 and 2
// messages are queued while the client is offline and delivered on
// reconnect; unacknowledged ones are sent again with DUP.
func TestSessionResume(t *testing.T) {
	b := startBroker(t, Config{})
	for _, v := range versions {
		t.Run(v.String(), func(t *testing.T) {
			id := "persist-" + v.String()
			props := Properties{}
			if v == Version5 {
				props.SessionExpiry = 600
			}
			c := dial(t, b.addr, v)
			c.connect(&Connect{ClientID: []byte(id), CleanStart: v == Version5, Props: props})
			c.subscribe(1, QoS2, "p/"+id)
			b.Publish(&Message{Topic: "p/" + id, Payload: []byte("m1"), QoS: 1})
			first := c.expectPublish() // not acknowledged
			c.c.Close()
			b.waitStats(t, "offline", func(Stats) bool { return offline(b, id) })
			b.Publish(&Message{Topic: "p/" + id, Payload: []byte("m2"), QoS: 1})
			b.Publish(&Message{Topic: "p/" + id, Payload: []byte("m3"), QoS: 0}) // dropped: offline
			b.Publish(&Message{Topic: "p/" + id, Payload: []byte("m4"), QoS: 2})

			c = dial(t, b.addr, v)
			ca := c.connect(&Connect{ClientID: []byte(id), Props: props})
			if !ca.SessionPresent {
				t.Fatal("session not present")
			}
			got := c.expectPublish()
			if got.Payload != "m1" || !got.Dup || got.PacketID != first.PacketID {
				t.Fatalf("redelivery: %+v (first %+v)", got, first)
			}
			c.send(&Ack{Kind: TypePuback, PacketID: got.PacketID})
			if got = c.expectPublish(); got.Payload != "m2" || got.Dup {
				t.Fatalf("queued: %+v", got)
			}
			c.send(&Ack{Kind: TypePuback, PacketID: got.PacketID})
			if got = c.expectPublish(); got.Payload != "m4" || got.QoS != 2 {
				t.Fatalf("queued QoS 2: %+v", got)
			}
			c.send(&Ack{Kind: TypePubrec, PacketID: got.PacketID})
			c.expectAck(TypePubrel, got.PacketID)
			// Disconnect before PUBCOMP: PUBREL is sent again on reconnect.
			c.c.Close()
			b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOnline == 0 })
			c = dial(t, b.addr, v)
			c.connect(&Connect{ClientID: []byte(id), Props: props})
			c.expectAck(TypePubrel, got.PacketID)
			c.send(&Ack{Kind: TypePubcomp, PacketID: got.PacketID})
			c.quiet(50 * time.Millisecond)
			// Clean start discards the session.
			c.send(&Disconnect{})
			c.closed()
			c = dial(t, b.addr, v)
			if ca := c.connect(&Connect{ClientID: []byte(id), CleanStart: true}); ca.SessionPresent {
				t.Fatal("clean start resumed the session")
			}
		})
	}
	if b.Stats().Dropped[DropOffline] != 2 {
		t.Fatalf("offline QoS 0 drops: %v", b.Stats().Dropped)
	}
}

// Session expiry (5.0 3.1.2.11.2, 3.1.1 Clean Session 0 with the server's
// cap): the sweep ends an offline session past its expiry.
func TestSessionExpiry(t *testing.T) {
	b := startBroker(t, Config{MaxSessionExpiry: time.Minute})
	c := dial(t, b.addr, Version5)
	ca := c.connect(&Connect{ClientID: []byte("exp"), CleanStart: true, Props: Properties{SessionExpiry: 7200}})
	if ca.Props.SessionExpiry != 60 {
		t.Fatalf("capped expiry not announced: %+v", ca.Props)
	}
	c.subscribe(1, QoS1, "e")
	c.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	b.Publish(&Message{Topic: "e", Payload: []byte("x"), QoS: 1})
	b.sweep(time.Now().Add(30 * time.Second))
	if s := b.Stats(); s.SessionsOffline != 1 || s.QueuedMessages != 1 {
		t.Fatalf("expired early: %+v", s)
	}
	b.sweep(time.Now().Add(61 * time.Second))
	s := b.Stats()
	if s.SessionsOffline != 0 || s.QueuedMessages != 0 || s.QueuedBytes != 0 || s.Subscriptions != 0 ||
		s.Dropped[DropSessionEnded] != 1 {
		t.Fatalf("not expired: %+v", s)
	}
	// DISCONNECT may not raise an expiry of 0 [MQTT-3.14.2-2].
	c = dial(t, b.addr, Version5)
	c.connect(&Connect{ClientID: []byte("exp0"), CleanStart: true})
	c.send(&Disconnect{Props: Properties{SessionExpiry: 10}})
	if d := c.closed(); d == nil || d.ReasonCode != ProtocolError {
		t.Fatalf("%+v", d)
	}
}

// An idle subscriber holds no buffer and no QoS state: no batched output,
// no publishing state, no session flow state, and its engine connection
// no unconsumed input.
func TestIdleHoldsNothing(t *testing.T) {
	b := startBroker(t, Config{})
	c := connectOK(t, b.addr, Version5, "idle")
	c.subscribe(1, QoS1, "idle/x")
	b.Publish(&Message{Topic: "idle/x", Payload: []byte("one"), QoS: 1})
	got := c.expectPublish()
	c.send(&Ack{Kind: TypePuback, PacketID: got.PacketID})
	b.waitStats(t, "acked", func(s Stats) bool { return s.QueuedMessages == 0 })
	b.mu.RLock()
	ss := b.sessions.Get("idle")
	b.mu.RUnlock()
	ss.mu.Lock()
	cn, fl := ss.conn, ss.fl
	ss.mu.Unlock()
	if cn == nil || fl != nil {
		t.Fatalf("session: conn %v, flow state %+v", cn, fl)
	}
	type view struct {
		out, in bool
		queued  int
	}
	ch := make(chan view, 1)
	cn.ec.Post(func() {
		cn.wmu.Lock()
		out := cn.out != nil
		cn.wmu.Unlock()
		ch <- view{out: out, in: cn.in != nil, queued: cn.ec.QueuedBytes()}
	})
	if v := <-ch; v.out || v.in || v.queued != 0 {
		t.Fatalf("idle connection holds %+v", v)
	}
}

// A 3.1.1 client over TCP, and a 5.0 client that sets no limits, hold no
// connExt; a 5.0 client's Receive Maximum, Maximum Packet Size and Topic
// Alias Maximum live there.
func TestConnExtOnlyWhenNeeded(t *testing.T) {
	b := startBroker(t, Config{})
	connOf := func(id string) *conn {
		t.Helper()
		b.mu.RLock()
		ss := b.sessions.Get(id)
		b.mu.RUnlock()
		if ss == nil {
			t.Fatalf("no session %q", id)
		}
		ss.mu.Lock()
		defer ss.mu.Unlock()
		return ss.conn
	}
	connectOK(t, b.addr, Version311, "v3")
	connectOK(t, b.addr, Version5, "v5")
	for _, id := range []string{"v3", "v5"} {
		if cn := connOf(id); cn.x != nil || cn.recvMax() != 65535 || cn.ws() != nil {
			t.Errorf("%s: ext %+v, receive maximum %d", id, cn.x, cn.recvMax())
		}
	}
	c := dial(t, b.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("lim"), CleanStart: true, Props: Properties{
		Present:        setOf(PropReceiveMaximum, PropMaximumPacketSize, PropTopicAliasMaximum),
		ReceiveMaximum: 3, MaximumPacketSize: 1000, TopicAliasMaximum: 2}}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	cn := connOf("lim")
	if x := cn.x; x == nil || x.recvMax != 3 || x.maxOut != 1000 || x.aliasMax != 2 || cn.recvMax() != 3 {
		t.Fatalf("ext %+v", x)
	}
	// The limits apply: a PUBLISH over 1000 bytes is dropped, the next
	// one arrives with a topic alias.
	c.subscribe(1, QoS0, "lim/t")
	b.Publish(&Message{Topic: "lim/t", Payload: make([]byte, 2000)})
	b.Publish(&Message{Topic: "lim/t", Payload: []byte("small")})
	if p := c.expectPublish(); string(p.Payload) != "small" || p.Props.TopicAlias != 1 {
		t.Fatalf("got %q alias %d", p.Payload, p.Props.TopicAlias)
	}
}

// TestQoS0TransientViews checks that a QoS 0 message routed as a view of
// its packet (routeMessage) leaves nothing behind that points into the
// publisher's buffer: an outbound topic alias keeps its own copy of the
// topic, a retained QoS 0 message and an injected one are copied, and
// what a subscriber gets later is what was published.
func TestQoS0TransientViews(t *testing.T) {
	b := startBroker(t, Config{})
	sub := dial(t, b.addr, Version5)
	if ca := sub.connect(&Connect{ClientID: []byte("sub"), CleanStart: true, Props: Properties{
		Present: setOf(PropTopicAliasMaximum), TopicAliasMaximum: 4}}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	sub.subscribe(1, QoS1, "tv/#")
	pub := connectOK(t, b.addr, Version311, "pub")
	// Each PUBLISH comes after i PINGREQs in the same write, so that its
	// topic sits elsewhere in the read buffer each time: an alias keyed
	// by a view of an earlier packet would no longer match its topic.
	topics := []string{"tv/aa", "tv/bb", "tv/aa", "tv/cc", "tv/bb", "tv/aa"}
	alias := map[string]uint16{}
	for i, tp := range topics {
		var w []byte
		for range i {
			w = AppendPingreq(w)
		}
		pub.raw(AppendPublish(w, Version311, &Publish{Topic: []byte(tp), Payload: []byte(fmt.Sprint("p", i))}))
		p := sub.expectPublish()
		if p.QoS != QoS0 || p.Payload != fmt.Sprint("p", i) {
			t.Fatalf("%d: got %+v", i, p)
		}
		a := p.Props.TopicAlias
		if p.Topic != "" {
			if _, known := alias[tp]; p.Topic != tp || known {
				t.Fatalf("%d: topic %q (alias %d), want %q once, known %v", i, p.Topic, a, tp, alias)
			}
			alias[tp] = a
		} else if a == 0 || alias[tp] != a {
			t.Fatalf("%d: %s sent as alias %d, known %v", i, tp, a, alias)
		}
	}
	// A retained QoS 0 message is stored as a copy.
	pub.pub("tv/rr", "kept", QoS0, 0, true)
	sub.expectPublish()
	pub.pub("tv/zz", "next", QoS0, 0, false)
	sub.expectPublish()
	late := connectOK(t, b.addr, Version311, "late")
	late.subscribe(1, QoS0, "tv/rr")
	if p := late.expectPublish(); p.Topic != "tv/rr" || p.Payload != "kept" || !p.Retain {
		t.Fatalf("retained: got %+v", p)
	}
	// An injected QoS 0 message reaches the subscriber; the caller's
	// buffer is the caller's again once Publish returns.
	buf := []byte("inj1")
	if n, err := b.Publish(&Message{Topic: "tv/in", Payload: buf}); n != 1 || err != nil {
		t.Fatalf("Publish: %d, %v", n, err)
	}
	copy(buf, "XXXX")
	if p := sub.expectPublish(); p.Payload != "inj1" {
		t.Fatalf("injected: got %+v", p)
	}
}

// TestSelfDeliveryCorked checks a client's own messages, written into its
// batched output while its loop handles its input (writePublish): they
// arrive in order, and one over the client's Maximum Packet Size is
// dropped without cutting the others.
func TestSelfDeliveryCorked(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("self"), CleanStart: true, Props: Properties{
		Present: setOf(PropMaximumPacketSize), MaximumPacketSize: 1000}}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	c.subscribe(1, QoS1, "self/t")
	var w []byte
	for i, size := range []int{10, 2000, 20, 990, 30} {
		w = AppendPublish(w, Version5, &Publish{Topic: []byte("self/t"), Payload: []byte(strings.Repeat(string(rune('a'+i)), size))})
	}
	c.raw(w)
	for _, want := range []string{strings.Repeat("a", 10), strings.Repeat("c", 20), strings.Repeat("e", 30)} {
		if p := c.expectPublish(); p.Payload != want {
			t.Fatalf("got %d bytes %.5q..., want %d of %.1q", len(p.Payload), p.Payload, len(want), want)
		}
	}
	b.waitStats(t, "two dropped as too large", func(s Stats) bool { return s.Dropped[DropTooLarge] == 2 })
}
