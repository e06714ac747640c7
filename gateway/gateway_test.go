package gateway

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

var testSecret = []byte("0123456789abcdef0123456789abcdef")

func quietLog() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startGateway starts a gateway node on its own engine, with bus settings
// bc (an in-process embedded NATS server when zero).
func startGateway(t *testing.T, node string, bc BusConfig) *Gateway {
	t.Helper()
	return startGatewayWith(t, node, bc, nil)
}

// startGatewayWith is startGateway with the test's own settings: set,
// when not nil, changes the configuration before the node starts.
func startGatewayWith(t *testing.T, node string, bc BusConfig, set func(*Config)) *Gateway {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	cfg := Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: node, Bus: bc, CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir()}
	if set != nil {
		set(&cfg)
	}
	g, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func token(t *testing.T, device string) string {
	t.Helper()
	tok, err := IssueToken(testSecret, device, RoleDevice, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// device is a test device on a real WebSocket client.
type device struct {
	t  *testing.T
	c  *gorilla.Conn
	id string
}

func connect(t *testing.T, g *Gateway, id string) *device {
	t.Helper()
	h := http.Header{"Authorization": {"Bearer " + token(t, id)}}
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect", h)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testutil.Eventually(t, 0, "the device online", func() bool { return g.Hub().Lookup(id) != nil })
	return &device{t: t, c: c, id: id}
}

func (d *device) send(s string) {
	d.t.Helper()
	if err := d.c.WriteMessage(gorilla.TextMessage, []byte(s)); err != nil {
		d.t.Fatal(err)
	}
}

func (d *device) read() map[string]any {
	d.t.Helper()
	d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	_, b, err := d.c.ReadMessage()
	if err != nil {
		d.t.Fatalf("%s: read: %v", d.id, err)
	}
	var m map[string]any
	if err := json.Unmarshal(b, &m); err != nil {
		d.t.Fatalf("%s: frame %q: %v", d.id, b, err)
	}
	return m
}

// answer acks the next command the device receives with result.
func (d *device) answer(status, result string) map[string]any {
	d.t.Helper()
	m := d.read()
	if m["type"] != "command" {
		d.t.Fatalf("%s: want a command, got %v", d.id, m)
	}
	d.send(`{"type":"ack","id":"` + m["id"].(string) + `","status":"` + status + `","result":` + result + `}`)
	return m
}

func apiPost(t *testing.T, addr, path, body string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Post("http://"+addr+path, "application/json", strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

func natsConn(t *testing.T, g *Gateway) *nats.Conn {
	t.Helper()
	nc, err := nats.Connect("", nats.InProcessServer(g.Bus().Embedded()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	return nc
}

func TestTelemetryToNATS(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.*.telemetry")
	pres, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()
	d := connect(t, g, "dev-1")
	m, err := pres.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"state":"online"`) {
		t.Fatalf("presence: %v %s", err, m.Data)
	}
	d.send(`{"type":"telemetry","data": {"t": 21.5,  "unit":"C"}}`)
	d.c.WriteMessage(gorilla.BinaryMessage, []byte{1, 2, 3})
	m, err = sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatal(err)
	}
	// Exactly the bytes of the data value, not re-encoded.
	if string(m.Data) != `{"t": 21.5,  "unit":"C"}` || m.Subject != "devices.dev-1.telemetry" {
		t.Fatalf("telemetry %s %q", m.Subject, m.Data)
	}
	if m.Header.Get("Warren-Device") != "dev-1" || m.Header.Get("Warren-Node") != "n1" {
		t.Fatalf("headers %v", m.Header)
	}
	if _, err := time.Parse(time.RFC3339Nano, m.Header.Get("Warren-Received")); err != nil {
		t.Fatalf("Warren-Received: %v", err)
	}
	m, err = sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != "\x01\x02\x03" {
		t.Fatalf("binary telemetry %q %v", m.Data, err)
	}
	d.c.Close()
	m, err = pres.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"state":"offline"`) {
		t.Fatalf("presence offline: %v %s", err, m.Data)
	}
}

func TestCommandsThroughAPI(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	d := connect(t, g, "dev-2")
	// The device's connection is labelled with its id for /debug/conns.
	testutil.Eventually(t, 0, "the device label in Conns", func() bool {
		for _, ci := range g.eng.Conns() {
			if ci.Label == "dev-2" && ci.Protocol == "websocket" {
				return true
			}
		}
		return false
	})
	done := make(chan struct{})
	go func() {
		defer close(done)
		cmd := d.answer("ok", `{"applied":true}`)
		if cmd["name"] != "reboot" {
			t.Errorf("command %v", cmd)
		}
	}()
	code, m := apiPost(t, g.APIAddr(), "/v1/devices/dev-2/commands", `{"name":"reboot","payload":{"delay":1},"timeout":"5s"}`)
	<-done
	if code != 200 || m["status"] != "ok" || m["result"].(map[string]any)["applied"] != true {
		t.Fatalf("command: %d %v", code, m)
	}
	// Offline device: 404.
	if code, m := apiPost(t, g.APIAddr(), "/v1/devices/nobody/commands", `{"name":"x"}`); code != 404 || m["error"] != "offline" {
		t.Fatalf("offline: %d %v", code, m)
	}
	// No ack in time: 504.
	if code, _ := apiPost(t, g.APIAddr(), "/v1/devices/dev-2/commands", `{"name":"slow","timeout":"100ms"}`); code != 504 {
		t.Fatalf("timeout: %d", code)
	}
	d.read() // the unanswered command
	// Bad body: 400.
	if code, _ := apiPost(t, g.APIAddr(), "/v1/devices/dev-2/commands", `{"nam`); code != 400 {
		t.Fatalf("bad body: %d", code)
	}
	// GET /v1/devices/{id} and the list.
	resp, err := http.Get("http://" + g.APIAddr() + "/v1/devices/dev-2")
	if err != nil {
		t.Fatal(err)
	}
	var info map[string]any
	json.NewDecoder(resp.Body).Decode(&info)
	resp.Body.Close()
	if info["state"] != "online" || info["node"] != "n1" || info["protocol"] != "websocket" {
		t.Fatalf("device info %v", info)
	}
}

func TestBadFramesAndAbuse(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	d := connect(t, g, "dev-3")
	for _, c := range []struct{ in, code string }{
		{`not json`, "bad_json"},
		{`{"type":"weather"}`, "unknown_type"},
		{`{"type":"ack","id":"nope","status":"ok"}`, "unknown_ack"},
	} {
		d.send(c.in)
		if m := d.read(); m["type"] != "error" || m["code"] != c.code {
			t.Fatalf("%s: %v", c.in, m)
		}
	}
	for i := 0; i < 10; i++ {
		d.send(`{}`)
	}
	d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		if _, _, err := d.c.ReadMessage(); err != nil {
			if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != 1008 {
				t.Fatalf("abuse close: %v", err)
			}
			break
		}
	}
}

func TestReplaceAndAuth(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	old := connect(t, g, "dev-4")
	connect(t, g, "dev-4")
	old.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := old.c.ReadMessage(); err == nil {
		t.Fatal("old connection not closed")
	} else if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != CloseReplaced {
		t.Fatalf("replaced: %v", err)
	}
	// A bad token is refused before the upgrade.
	_, resp, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect?token=garbage", nil)
	if err == nil || resp == nil || resp.StatusCode != 401 {
		t.Fatalf("bad token: %v %v", resp, err)
	}
}

// TestAdminDevicesPanel: the admin listener's /api/stats carries the
// gateway's figures for the dashboard's devices panel, and /metrics its
// series.
func TestAdminDevicesPanel(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	adm, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Logger: quietLog()}, g.eng, g.Collectors()...)
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	defer adm.Shutdown(context.Background())
	d := connect(t, g, "dev-5")
	d.send(`{"type":"telemetry","data":1}`)
	testutil.Eventually(t, 0, "the devices panel figures", func() bool {
		resp, err := http.Get("http://" + adm.Addr().String() + "/api/stats")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var st struct {
			Gateway *struct {
				Online      float64 `json:"online"`
				TelemetryIn float64 `json:"telemetry_in"`
			} `json:"gateway"`
		}
		json.NewDecoder(resp.Body).Decode(&st)
		return st.Gateway != nil && st.Gateway.Online == 1 && st.Gateway.TelemetryIn == 1
	})
	resp, err := http.Get("http://" + adm.Addr().String() + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{"warren_gateway_devices_online 1", `warren_gateway_commands_total{outcome="ok"}`,
		"warren_gateway_nats_connected 1", `warren_websocket_connections`} {
		if !strings.Contains(string(b), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}

// TestTokenExpiresWhileConnected: a device whose token's exp passes is
// closed with 4001 and announced offline with reason token_expired. The
// gateway reads the engine's clock, so the test moves time by hand.
func TestTokenExpiresWhileConnected(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Clock: clk})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", Auth: NewHMACAuth(testSecret), Node: "n1",
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-x.presence")
	nc.Flush()
	tok, _ := IssueToken(testSecret, "dev-x", RoleDevice, time.Minute, clk.Now())
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if m, err := pres.NextMsg(5 * time.Second); err != nil || !strings.Contains(string(m.Data), `"online"`) {
		t.Fatalf("online: %v", err)
	}
	clk.Advance(2 * time.Minute)
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := c.ReadMessage(); err == nil {
		t.Fatal("not closed")
	} else if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != CloseTokenExpired {
		t.Fatalf("close: %v", err)
	}
	m, err := pres.NextMsg(5 * time.Second)
	if err != nil || !strings.Contains(string(m.Data), `"reason":"token_expired"`) {
		t.Fatalf("offline: %v %s", err, m.Data)
	}
}
