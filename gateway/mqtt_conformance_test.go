package gateway

import (
	"net"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// connackOf sends a CONNECT of version v for client id id and returns the
// server's CONNACK, decoded in v.
func connackOf(t *testing.T, addr string, v mqtt.Version, id string) *mqtt.Connack {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: v, ClientID: []byte(id), CleanStart: true}))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	d := mqtt.Decoder{Version: v}
	var buf []byte
	tmp := make([]byte, 512)
	for {
		n, p, err := d.Decode(buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			ca, ok := p.(*mqtt.Connack)
			if !ok {
				t.Fatalf("expected CONNACK, got %T", p)
			}
			cp := *ca
			return &cp
		}
		k, err := c.Read(tmp)
		if err != nil {
			t.Fatalf("closed without a CONNACK: %v", err)
		}
		buf = append(buf, tmp[:k]...)
	}
}

// With -auth none the client id is the device id: one that is not a
// valid device id is refused as a client identifier (5.0 0x85; 3.1.1
// return code 2, [MQTT-3.1.3-9]), not as a bad user name or password.
func TestMQTTNoAuthBadClientID(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: NoAuth(), Node: "n1",
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	for _, v := range []mqtt.Version{mqtt.Version5, mqtt.Version311} {
		for _, id := range []string{"a/b", "dev+1", "dev 1"} {
			if ca := connackOf(t, g.MQTTAddr(), v, id); ca.ReasonCode != mqtt.ClientIdentifierNotValid {
				t.Errorf("%v, client id %q: CONNACK %v, want client_identifier_not_valid", v, id, ca.ReasonCode)
			}
		}
		if ca := connackOf(t, g.MQTTAddr(), v, "dev-ok"); ca.ReasonCode != mqtt.Success {
			t.Errorf("%v, a valid id: CONNACK %v", v, ca.ReasonCode)
		}
	}
	if n := g.mq.refusedID.Load(); n != 6 {
		t.Fatalf("refused for the client id: %d, want 6", n)
	}
	if n := g.mq.refusedAuth.Load(); n != 0 {
		t.Fatalf("refused as auth failures: %d", n)
	}
}

// Topics map one to one onto subjects: a NATS subject with a '/' in a
// token is the image of no MQTT topic ('/' separates levels; a/b.c as a
// topic would be a/b/c, the image of a.b.c), so it does not reach MQTT
// subscribers, even of '#'; it is counted.
func TestMQTTSlashSubjectNotDelivered(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
	tok, err := IssueToken(testSecret, "backend", RoleService, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mqttClient(t, g, "backend", tok)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 1024)
	if tk := svc.Subscribe("#", 0, func(_ paho.Client, m paho.Message) {
		got <- m.Topic() + " " + string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	nc := natsConn(t, g)
	// The bridge's subscription reaches the server asynchronously: publish
	// the pair until the good one arrives. NATS keeps one publisher's
	// order, so each bad one was handled before the good one after it.
	deadline := time.Now().Add(10 * time.Second)
wait:
	for {
		if time.Now().After(deadline) {
			t.Fatal("no message from NATS reached the MQTT subscriber")
		}
		nc.Publish("n/b.x", []byte("bad"))
		nc.Publish("n.b.x", []byte("good"))
		nc.Flush()
		select {
		case s := <-got:
			if s != "n/b/x good" {
				t.Fatalf("delivered: %q", s)
			}
			break wait
		case <-time.After(200 * time.Millisecond):
		}
	}
	// What the other rounds brought: good ones only.
	for {
		select {
		case s := <-got:
			if s != "n/b/x good" {
				t.Fatalf("delivered: %q", s)
			}
			continue
		case <-time.After(200 * time.Millisecond):
		}
		break
	}
	if g.mq.unmappableIn.Load() == 0 {
		t.Fatal("the unmappable subject was not counted")
	}
}

// A device may not publish on the subjects the gateway itself publishes
// and trusts, whatever its ACL: its presence (a forged presence event of
// another device, published on the forger's own devices/<id>/presence,
// took that device's directory entry and closed its connection as
// replaced), the cluster's warren.> and _INBOX.>. PUBACK 0x87, and a
// will on them is refused with CONNACK 0x87.
func TestMQTTDeviceCannotForgePresence(t *testing.T) {
	for _, acl := range [][]string{nil, {"#"}} {
		g := startMQTTGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.MQTTACL = acl })
		victim := rawMQTT(t, g.MQTTAddr(), "dev-2", token(t, "dev-2"))
		testutil.Eventually(t, 0, "dev-2 online", func() bool { return g.Hub().Lookup("dev-2") != nil })
		att := rawMQTT(t, g.MQTTAddr(), "dev-1", token(t, "dev-1"))
		forged := `{"device":"dev-2","state":"online","node":"ghost","protocol":"mqtt","session":"ghost/1",` +
			`"at":"2030-01-01T00:00:00Z","connected_at":"2030-01-01T00:00:00Z"}`
		topics := []string{"devices/dev-1/presence", "warren/nodes/heartbeat", "_INBOX/x"}
		if acl != nil {
			topics = append(topics, "devices/dev-2/presence")
		}
		for i, topic := range topics {
			att.Write(mqtt.AppendPublish(nil, mqtt.Version5, &mqtt.Publish{Topic: []byte(topic), QoS: mqtt.QoS1,
				PacketID: uint16(i + 1), Payload: []byte(forged)}))
			if a, ok := readMQTT(t, att).(*mqtt.Ack); !ok || a.ReasonCode != mqtt.NotAuthorized {
				t.Fatalf("ACL %v, publish on %s: %+v", acl, topic, a)
			}
		}
		// The device's own tree is still its own.
		att.Write(mqtt.AppendPublish(nil, mqtt.Version5, &mqtt.Publish{Topic: []byte("devices/dev-1/status"), QoS: mqtt.QoS1,
			PacketID: 9, Payload: []byte("up")}))
		if a, ok := readMQTT(t, att).(*mqtt.Ack); !ok || a.ReasonCode != mqtt.Success {
			t.Fatalf("ACL %v, publish on its own status: %+v", acl, a)
		}
		// A will on its presence.
		c, err := net.Dial("tcp", g.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, ClientID: []byte("dev-3"), CleanStart: true,
			Username: []byte("u"), Password: []byte(token(t, "dev-3")),
			Will: &mqtt.Will{Topic: []byte("devices/dev-3/presence"), Payload: []byte(forged)}}))
		if ca, ok := readMQTT(t, c).(*mqtt.Connack); !ok || ca.ReasonCode != mqtt.NotAuthorized {
			t.Fatalf("ACL %v, will on presence: %+v", acl, ca)
		}
		c.Close()
		// The victim is still connected, and the directory still has it here.
		victim.Write(mqtt.AppendPingreq(nil))
		if _, ok := readMQTT(t, victim).(*mqtt.Pingresp); !ok {
			t.Fatalf("ACL %v: the victim lost its connection", acl)
		}
		if d := g.Hub().Lookup("dev-2"); d == nil || d.Node != "n1" {
			t.Fatalf("ACL %v: dev-2's directory entry: %+v", acl, d)
		}
	}
}

// A device's will on its telemetry topic lands on devices.<id>.telemetry
// with the telemetry headers (Warren-Device, Warren-Node,
// Warren-Received) and the exact payload, as its other telemetry does, and
// reaches a local MQTT subscriber once.
func TestMQTTWillAsTelemetry(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.*.telemetry")
	nc.Flush()
	tok, err := IssueToken(testSecret, "backend", RoleService, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	svc, err := mqttClient(t, g, "backend", tok)
	if err != nil {
		t.Fatal(err)
	}
	got := make(chan string, 8)
	if tk := svc.Subscribe("devices/+/telemetry", 0, func(_ paho.Client, m paho.Message) {
		got <- string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	payload := "\x00last\xff"
	c, err := net.Dial("tcp", g.MQTTAddr())
	if err != nil {
		t.Fatal(err)
	}
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311, ClientID: []byte("dev-1"), CleanStart: true,
		HasUsername: true, Username: []byte("u"), HasPassword: true, Password: []byte(token(t, "dev-1")), KeepAlive: 60,
		Will: &mqtt.Will{Topic: []byte("devices/dev-1/telemetry"), Payload: []byte(payload), QoS: mqtt.QoS1}}))
	testutil.Eventually(t, 0, "dev-1 online", func() bool { return g.Hub().Lookup("dev-1") != nil })
	c.Close() // no DISCONNECT: the will goes out
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	if string(m.Data) != payload || m.Subject != "devices.dev-1.telemetry" || m.Header.Get("Warren-Device") != "dev-1" ||
		m.Header.Get("Warren-Node") != "n1" || len(m.Header.Get("Warren-Received")) != len("2006-01-02T15:04:05.000000000Z") {
		t.Fatalf("will as telemetry: %s %q %v", m.Subject, m.Data, m.Header)
	}
	select {
	case p := <-got:
		if p != payload {
			t.Fatalf("local subscriber got %q", p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the local subscriber did not get the will")
	}
	select {
	case p := <-got:
		t.Fatalf("the local subscriber got the will twice (%q)", p)
	case <-time.After(300 * time.Millisecond):
	}
}

// An ACL pattern's %u (and %c) stands for one level: a user name with a
// '/', '+' or '#' — the client chooses it freely — does not widen the
// pattern to other users' topics (users/%u/# with user '#' was users/#/#,
// every user's tree); such a pattern does not apply to that client.
func TestMQTTACLPlaceholderIsOneLevel(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: NoAuth(), Node: "n1",
		Logger: quietLog(), DataDir: t.TempDir(), MQTTACL: []string{"devices/%c/#", "users/%u/#"}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	try := func(user, filter, topic string) (mqtt.ReasonCode, mqtt.ReasonCode) {
		t.Helper()
		c, err := net.Dial("tcp", g.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, ClientID: []byte("dev-9"), CleanStart: true,
			HasUsername: user != "", Username: []byte(user)}))
		if ca, ok := readMQTT(t, c).(*mqtt.Connack); !ok || ca.ReasonCode != mqtt.Success {
			t.Fatalf("user %q: CONNACK %+v", user, ca)
		}
		// The PUBLISH first: subscribed, the client would get its own
		// message too.
		c.Write(mqtt.AppendPublish(nil, mqtt.Version5, &mqtt.Publish{Topic: []byte(topic), QoS: mqtt.QoS1, PacketID: 2}))
		a, ok := readMQTT(t, c).(*mqtt.Ack)
		if !ok {
			t.Fatalf("user %q: no PUBACK", user)
		}
		c.Write(mqtt.AppendSubscribe(nil, mqtt.Version5, &mqtt.Subscribe{PacketID: 1,
			Filters: []mqtt.Subscription{{Filter: []byte(filter)}}}))
		sa, ok := readMQTT(t, c).(*mqtt.Suback)
		if !ok {
			t.Fatalf("user %q: no SUBACK", user)
		}
		return sa.ReasonCodes[0], a.ReasonCode
	}
	for _, tc := range []struct{ user, filter, topic string }{
		{"#", "users/#", "users/alice/x"},
		{"+", "users/+/x", "users/alice/x"},
		{"alice/x", "users/alice/x/#", "users/alice/x/y"},
		{"", "users/#", "users//x"},
	} {
		if sub, pub := try(tc.user, tc.filter, tc.topic); sub != mqtt.NotAuthorized || pub != mqtt.NotAuthorized {
			t.Errorf("user %q: SUBSCRIBE %s %v, PUBLISH %s %v; want both not_authorized", tc.user, tc.filter, sub, tc.topic, pub)
		}
	}
	// A plain user name gets its own tree, and the other patterns still apply.
	if sub, pub := try("alice", "users/alice/#", "users/alice/x"); sub != mqtt.GrantedQoS0 || pub != mqtt.Success {
		t.Errorf("alice in her tree: %v %v", sub, pub)
	}
	if sub, pub := try("#", "devices/dev-9/#", "devices/dev-9/x"); sub != mqtt.GrantedQoS0 || pub != mqtt.Success {
		t.Errorf("user '#' in its device tree: %v %v", sub, pub)
	}
}

// BenchmarkMQTTAuthorize is the ACL check every PUBLISH of a device pays
// (telemetry included), with the default pattern devices/%c/#.
func BenchmarkMQTTAuthorize(b *testing.B) {
	d := &mqttDevices{acl: []aclPattern{{p: DefaultMQTTACL[0], c: true}}}
	c := &mqtt.Client{ID: "dev-12345", Identity: &mqttLink{}}
	b.ReportAllocs()
	for b.Loop() {
		if !d.authorize(c, mqtt.ActionPublish, "devices/dev-12345/telemetry") {
			b.Fatal("refused")
		}
	}
}

func TestReservedTopicAndACLLevel(t *testing.T) {
	for topic, want := range map[string]bool{"devices/dev-1/presence": true, "devices/x/presence": true,
		"devices/dev-1/presence/x": false, "devices/a/b/presence": false, "devices/presence": false,
		"devices/dev-1/telemetry": false, "warren/nodes/heartbeat": true, "warren": true, "warrenx/a": false,
		"_INBOX/abc": true, "x/_INBOX": false} {
		if reservedTopic(topic) != want {
			t.Errorf("reservedTopic(%q) = %v", topic, !want)
		}
	}
	for s, want := range map[string]bool{"dev-1": true, "": false, "a/b": false, "+": false, "#": false, "%c": false, "ü": true} {
		if aclLevel(s) != want {
			t.Errorf("aclLevel(%q) = %v", s, !want)
		}
	}
}
