package gateway

import (
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// startMQTTGateway starts a gateway node with MQTT on a free port.
func startMQTTGateway(t *testing.T, node string, bc BusConfig) *Gateway {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", MQTT: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: node, Bus: bc, CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir()})
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

func TestMappable(t *testing.T) {
	for topic, ok := range map[string]bool{"a/b/c": true, "a/+/#": true, "a.b": false, "a/*": false, "a/>": false,
		"a//b": false, "/a": false, "devices/d-1/telemetry": true} {
		if mappable(topic) != ok {
			t.Errorf("mappable(%q) = %v", topic, !ok)
		}
	}
	if subject("a/+/#") != "a.*.>" || subject("a/b") != "a.b" || topicOf("a.b.c") != "a/b/c" {
		t.Fatal(subject("a/+/#"))
	}
}
