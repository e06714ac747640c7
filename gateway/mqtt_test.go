package gateway

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"
	"unsafe"

	paho "github.com/eclipse/paho.mqtt.golang"
	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// startMQTTGateway starts a gateway node with MQTT on a free port.
func startMQTTGateway(t *testing.T, node string, bc BusConfig) *Gateway {
	t.Helper()
	return startMQTTGatewayWith(t, node, bc, nil)
}

// startMQTTGatewayWith starts a gateway node with MQTT on a free port,
// its configuration changed by with (if not nil).
func startMQTTGatewayWith(t *testing.T, node string, bc BusConfig, with func(*Config)) *Gateway {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	cfg := Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", MQTT: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: node, Bus: bc, CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir()}
	if with != nil {
		with(&cfg)
	}
	g, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// mqttClient connects an Eclipse Paho (Go) client as id with password.
func mqttClient(t *testing.T, g *Gateway, id, password string) (paho.Client, error) {
	t.Helper()
	o := paho.NewClientOptions().AddBroker("tcp://" + g.MQTTAddr()).SetClientID(id).
		SetUsername("any").SetPassword(password).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second)
	c := paho.NewClient(o)
	tok := c.Connect()
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		return nil, tok.Error()
	}
	t.Cleanup(func() { c.Disconnect(0) })
	return c, nil
}

func mustMQTT(t *testing.T, g *Gateway, id string) paho.Client {
	t.Helper()
	c, err := mqttClient(t, g, id, token(t, id))
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// An MQTT device's telemetry lands where a WebSocket device's does, with
// the same headers; presence says mqtt.
func TestMQTTTelemetry(t *testing.T) {
	pub := needMosquitto(t)
	g := startMQTTGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.*.telemetry")
	pres, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()
	host, port, _ := net.SplitHostPort(g.MQTTAddr())
	for _, v := range []string{"mqttv311", "mqttv5"} {
		out, err := exec.Command(pub, "-h", host, "-p", port, "-V", v, "-i", "dev-1", "-u", "x", "-P", token(t, "dev-1"),
			"-q", "1", "-t", "devices/dev-1/telemetry", "-m", `{"t": 21.5}`).CombinedOutput()
		if err != nil {
			t.Fatalf("mosquitto_pub %s: %v %s", v, err, out)
		}
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if string(m.Data) != `{"t": 21.5}` || m.Subject != "devices.dev-1.telemetry" ||
			m.Header.Get("Warren-Device") != "dev-1" || m.Header.Get("Warren-Node") != "n1" ||
			m.Header.Get("Warren-Received") == "" {
			t.Fatalf("telemetry %s %q %v", m.Subject, m.Data, m.Header)
		}
		p, err := pres.NextMsg(5 * time.Second)
		if err != nil || !strings.Contains(string(p.Data), `"state":"online"`) || !strings.Contains(string(p.Data), `"protocol":"mqtt"`) {
			t.Fatalf("presence %v %s", err, p.Data)
		}
		if p, err = pres.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(p.Data), `"state":"offline"`) {
			t.Fatalf("presence offline %v %s", err, p.Data)
		}
	}
	// A bad token, and a token of another device, are refused.
	bad := exec.Command(pub, "-h", host, "-p", port, "-i", "dev-1", "-u", "x", "-P", "nope", "-t", "devices/dev-1/telemetry", "-m", "x")
	if out, err := bad.CombinedOutput(); err == nil {
		t.Fatalf("bad token accepted: %s", out)
	}
	if _, err := mqttClient(t, g, "dev-2", token(t, "dev-1")); err == nil {
		t.Fatal("a device token connected as another client id")
	}
}

func needMosquitto(t *testing.T) string {
	p, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto-clients not installed (scripts/test installs it)")
	}
	return p
}

// Commands from the management API reach an MQTT device as PUBLISH on
// devices/<id>/commands/<name>; its ack on devices/<id>/acks/<cmdid>
// answers the API.
func TestMQTTCommands(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
	c := mustMQTT(t, g, "dev-7")
	got := make(chan map[string]any, 1)
	tok := c.Subscribe("devices/dev-7/commands/#", 1, func(c paho.Client, m paho.Message) {
		var cmd map[string]any
		json.Unmarshal(m.Payload(), &cmd)
		got <- cmd
		if m.Topic() != "devices/dev-7/commands/reboot" {
			return
		}
		c.Publish("devices/dev-7/acks/"+cmd["id"].(string), 1, false, `{"status":"ok","result":{"rebooted":true}}`)
	})
	if !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	testutil.Eventually(t, 0, "online", func() bool { return g.Hub().Lookup("dev-7") != nil })
	code, m := apiPost(t, g.APIAddr(), "/v1/devices/dev-7/commands", `{"name":"reboot","payload":{"delay":1}}`)
	if code != 200 || m["status"] != "ok" {
		t.Fatalf("%d %v", code, m)
	}
	cmd := <-got
	if cmd["name"] != "reboot" || cmd["id"] == "" {
		t.Fatalf("%v", cmd)
	}
	// Not acknowledged: the API answers 504.
	code, _ = apiPost(t, g.APIAddr(), "/v1/devices/dev-7/commands", `{"name":"ignored","timeout":"300ms"}`)
	if code != 504 {
		t.Fatalf("unacknowledged command: %d", code)
	}
}

// ACLs: a device may use only devices/<id>/#; topics that can't map onto
// NATS subjects are refused. Publishes are routed locally and bridged to
// NATS; NATS messages reach MQTT subscribers.
func TestMQTTACLAndBridge(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	status, _ := nc.SubscribeSync("devices.dev-1.status")
	nc.Flush()
	d1 := mustMQTT(t, g, "dev-1")
	in := make(chan string, 4)
	if tok := d1.Subscribe("devices/dev-1/config", 0, func(_ paho.Client, m paho.Message) { in <- string(m.Payload()) }); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatal(tok.Error())
	}
	// Subscribing to another device's tree is refused (SUBACK 0x80).
	tok := d1.Subscribe("devices/dev-2/#", 0, nil)
	tok.WaitTimeout(5 * time.Second)
	if st, ok := tok.(*paho.SubscribeToken); !ok || st.Result()["devices/dev-2/#"] != 0x80 {
		t.Fatalf("subscribe to another device: %v", tok.(*paho.SubscribeToken).Result())
	}
	// Publish: bridged to NATS.
	d1.Publish("devices/dev-1/status", 1, false, "up").WaitTimeout(5 * time.Second)
	m, err := status.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "up" || m.Header.Get("Warren-Node") != "n1" {
		t.Fatalf("bridged out: %v %v", err, m)
	}
	// NATS to MQTT.
	nc.Publish("devices.dev-1.config", []byte("cfg-1"))
	select {
	case p := <-in:
		if p != "cfg-1" {
			t.Fatal(p)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("NATS message not delivered to the MQTT subscriber")
	}
	if s := g.MQTT().Stats(); s.Dropped[5] != 0 {
		t.Fatalf("not_authorized drops: %v", s.Dropped)
	}
}

// A service subscribed over MQTT gets telemetry of WebSocket and MQTT
// devices on the same node, once each.
func TestMQTTServiceSeesTelemetry(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
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
		got <- m.Topic() + " " + string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	ws := connect(t, g, "ws-dev")
	ws.send(`{"type":"telemetry","data":{"via":"ws"}}`)
	mq := mustMQTT(t, g, "mq-dev")
	mq.Publish("devices/mq-dev/telemetry", 0, false, `{"via":"mqtt"}`)
	want := map[string]bool{`devices/ws-dev/telemetry {"via":"ws"}`: true, `devices/mq-dev/telemetry {"via":"mqtt"}`: true}
	for range 2 {
		select {
		case s := <-got:
			if !want[s] {
				t.Fatalf("unexpected %q", s)
			}
			delete(want, s)
		case <-time.After(5 * time.Second):
			t.Fatalf("missing %v", want)
		}
	}
	select {
	case s := <-got:
		t.Fatalf("delivered twice: %q", s)
	case <-time.After(200 * time.Millisecond):
	}
}

func TestMappable(t *testing.T) {
	for topic, ok := range map[string]bool{"a/b/c": true, "a/+/#": true, "a.b": false, "a/*": false, "a/>": false,
		"a//b": false, "/a": false, "devices/d-1/telemetry": true, "a/": false, "": false, "/": false, "a b": false,
		"a/\tb": false, "a\n": false, "#": true, "+/+": true, "$SYS/x": true, "ü/ß": true} {
		if mappable(topic) != ok {
			t.Errorf("mappable(%q) = %v", topic, !ok)
		}
	}
	if subject("a/+/#") != "a.*.>" || subject("a/b") != "a.b" || topicOf("a.b.c") != "a/b/c" {
		t.Fatal(subject("a/+/#"))
	}
}

// rawMQTT connects a 5.0 client with the package's own codec and returns
// it after a successful CONNACK.
func rawMQTT(t *testing.T, addr, id, password string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, ClientID: []byte(id), CleanStart: true,
		Username: []byte("u"), Password: []byte(password)}))
	if ca, ok := readMQTT(t, c).(*mqtt.Connack); !ok || ca.ReasonCode != mqtt.Success {
		t.Fatalf("CONNACK %+v", ca)
	}
	return c
}

// readMQTT reads one 5.0 packet (nil when the connection closes first).
func readMQTT(t *testing.T, c net.Conn) mqtt.Packet {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	d := mqtt.Decoder{Version: mqtt.Version5}
	var buf []byte
	tmp := make([]byte, 1024)
	for {
		if n, p, err := d.Decode(buf, nil); err != nil {
			t.Fatal(err)
		} else if n > 0 {
			return p
		}
		k, err := c.Read(tmp)
		if err != nil {
			return nil
		}
		buf = append(buf, tmp[:k]...)
	}
}

// An MQTT device whose token expires is disconnected with 0x87 and goes
// offline with reason token_expired; a WebSocket connection of the same
// device replaces an MQTT one (DISCONNECT 0x8E) and the other way round.
func TestMQTTExpiryAndReplace(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Clock: clk})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "n1", Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-x.presence")
	nc.Flush()
	tok, _ := IssueToken(testSecret, "dev-x", RoleDevice, time.Minute, clk.Now())
	c := rawMQTT(t, g.MQTTAddr(), "dev-x", tok)
	if m, err := pres.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(m.Data), `"online"`) {
		t.Fatalf("online: %v", err)
	}
	clk.Advance(2 * time.Minute)
	if d, ok := readMQTT(t, c).(*mqtt.Disconnect); !ok || d.ReasonCode != mqtt.NotAuthorized {
		t.Fatalf("expiry: %+v", d)
	}
	m, err := pres.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"reason":"token_expired"`) {
		t.Fatalf("offline: %v %s", err, m.Data)
	}

	// MQTT replaced by WebSocket.
	tok, _ = IssueToken(testSecret, "dev-y", RoleDevice, time.Hour, clk.Now())
	c = rawMQTT(t, g.MQTTAddr(), "dev-y", tok)
	testutil.Eventually(t, 0, "dev-y online", func() bool { return g.Hub().Lookup("dev-y") != nil })
	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	if d, ok := readMQTT(t, c).(*mqtt.Disconnect); !ok || d.ReasonCode != mqtt.SessionTakenOver {
		t.Fatalf("replaced MQTT connection got %+v", d)
	}
	// WebSocket replaced by MQTT.
	rawMQTT(t, g.MQTTAddr(), "dev-y", tok)
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := ws.ReadMessage(); err == nil {
		t.Fatal("WebSocket connection not closed")
	} else if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != CloseReplaced {
		t.Fatalf("replaced WebSocket: %v", err)
	}
	if info := g.Hub().Lookup("dev-y"); info == nil || info.Protocol != "mqtt" {
		t.Fatalf("dev-y: %+v", info)
	}
}

// Across nodes: a publish on node A reaches an MQTT subscriber on node C
// (through the NATS bridge, one subscription per node), and a command
// sent through node A's API reaches an MQTT device on node C.
func TestMQTTCluster(t *testing.T) {
	a := startMQTTGateway(t, "node-a", BusConfig{ClusterListen: "127.0.0.1:0"})
	route := "nats://" + a.Bus().ClusterAddr().String()
	b := startMQTTGateway(t, "node-b", BusConfig{ClusterListen: "127.0.0.1:0", Routes: []string{route}})
	c := startMQTTGateway(t, "node-c", BusConfig{ClusterListen: "127.0.0.1:0", Routes: []string{route}})
	testutil.Eventually(t, 10*time.Second, "the NATS routes", func() bool {
		return a.Bus().Embedded().NumRoutes() >= 2 && b.Bus().Embedded().NumRoutes() >= 2 && c.Bus().Embedded().NumRoutes() >= 2
	})
	onC := mustMQTT(t, c, "dev-c")
	got := make(chan string, 4)
	tk := onC.Subscribe("devices/dev-c/#", 1, func(cl paho.Client, m paho.Message) {
		if strings.HasSuffix(m.Topic(), "/presence") {
			return // the hub's presence events reach MQTT subscribers too
		}
		got <- m.Topic() + " " + string(m.Payload())
		if strings.HasPrefix(m.Topic(), "devices/dev-c/commands/") {
			var cmd map[string]any
			json.Unmarshal(m.Payload(), &cmd)
			cl.Publish("devices/dev-c/acks/"+cmd["id"].(string), 1, false, `{"status":"ok","result":"on c"}`)
		}
	})
	if !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	// A service on node A publishes to the device's tree.
	tok, _ := IssueToken(testSecret, "svc-a", RoleService, time.Hour, time.Now())
	svc, err := mqttClient(t, a, "svc-a", tok)
	if err != nil {
		t.Fatal(err)
	}
	// The NATS interest has to reach node A first: publish until it arrives.
	deadline := time.Now().Add(10 * time.Second)
	for delivered := false; !delivered; {
		svc.Publish("devices/dev-c/config", 1, false, "from a").WaitTimeout(5 * time.Second)
		select {
		case s := <-got:
			if s != "devices/dev-c/config from a" {
				t.Fatalf("got %q", s)
			}
			delivered = true
		case <-time.After(200 * time.Millisecond):
			if time.Now().After(deadline) {
				t.Fatal("publish on node A never reached node C")
			}
		}
	}
	testutil.Eventually(t, 10*time.Second, "dev-c known on node A", func() bool {
		d := a.Hub().Lookup("dev-c")
		return d != nil && d.Node == "node-c"
	})
	code, m := apiPost(t, a.APIAddr(), "/v1/devices/dev-c/commands", `{"name":"lamp","timeout":"5s"}`)
	if code != 200 || m["status"] != "ok" || m["result"] != "on c" {
		t.Fatalf("command across nodes: %d %v", code, m)
	}
}

// With NoAuth (-auth none) the client id is the device id, whatever the
// password.
func TestMQTTNoAuth(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: NoAuth(), Node: "n1",
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	rawMQTT(t, g.MQTTAddr(), "anon-1", "")
	rawMQTT(t, g.MQTTAddr(), "anon-2", "whatever")
	for _, id := range []string{"anon-1", "anon-2"} {
		testutil.Eventually(t, 0, id+" online", func() bool { return g.Hub().Lookup(id) != nil })
	}
}

// An MQTT device is one allocation besides the broker's: its link with
// the hub's session in it, whose device id is the client id's string.
func TestMQTTLinkSize(t *testing.T) {
	if n := unsafe.Sizeof(mqttLink{}); n > 80 {
		t.Fatalf("mqttLink is %d bytes, over 80", n)
	}
	exp := time.Unix(1700000000, 5)
	id := strings.Clone("dev-1")
	l, _ := identityOf(id, Identity{Device: "dev-1", Role: RoleDevice, Expires: exp}).(*mqttLink)
	if l == nil || l.s.Device != "dev-1" || unsafe.StringData(l.s.Device) != unsafe.StringData(id) || l.session() != nil {
		t.Fatalf("device link: %+v", l)
	}
	// The session keeps the expiry in whole seconds, rounded up.
	if got := l.s.Identity(); got.Device != "dev-1" || got.Role != RoleDevice || !got.Expires.Equal(time.Unix(1700000001, 0)) {
		t.Fatalf("identity %+v", got)
	}
	// A service uses any topic and has no session; a role the gateway
	// does not know neither.
	if v := identityOf("svc", Identity{Device: "svc", Role: RoleService}); v != (mqttService{}) {
		t.Fatalf("service identity: %#v", v)
	}
	if l, _ := identityOf("x", Identity{Device: "x", Role: "other"}).(*mqttLink); l == nil || l.s.Device != "" {
		t.Fatalf("other role's link: %+v", l)
	}
}

// appendReplace is strings.ReplaceAll into a buffer, and cutDeviceTopic
// strings.CutPrefix with the device's prefix, neither allocating.
func TestMQTTTopicHelpers(t *testing.T) {
	for _, c := range [][3]string{
		{"devices/%c/#", "%c", "dev-1"}, {"%c/%c", "%c", "x"}, {"a/b", "%c", "x"}, {"%u%u", "%u", ""},
		{"devices/%c/%u", "%u", "%c"}, {"", "%c", "y"},
	} {
		if got, want := string(appendReplace(nil, c[0], c[1], c[2])), strings.ReplaceAll(c[0], c[1], c[2]); got != want {
			t.Errorf("appendReplace(%q, %q, %q) = %q, want %q", c[0], c[1], c[2], got, want)
		}
	}
	for _, c := range [][2]string{
		{"devices/dev-1/telemetry", "dev-1"}, {"devices/dev-1/acks/x", "dev-1"}, {"devices/dev-10/telemetry", "dev-1"},
		{"devices/dev-1", "dev-1"}, {"device/dev-1/telemetry", "dev-1"}, {"devices//t", ""}, {"", "d"},
	} {
		rest, ok := cutDeviceTopic(c[0], c[1])
		wantRest, wantOK := strings.CutPrefix(c[0], "devices/"+c[1]+"/")
		if rest != wantRest || ok != wantOK {
			t.Errorf("cutDeviceTopic(%q, %q) = %q, %v; want %q, %v", c[0], c[1], rest, ok, wantRest, wantOK)
		}
	}
	var b [64]byte
	if n := testing.AllocsPerRun(100, func() {
		appendReplace(b[:0], "devices/%c/#", "%c", "dev-12345")
		cutDeviceTopic("devices/dev-12345/telemetry", "dev-12345")
	}); n != 0 {
		t.Errorf("%v allocations", n)
	}
}
