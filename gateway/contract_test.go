package gateway

import (
	"context"
	"encoding/json"
	"log/slog"
	"maps"
	"net/http"
	"slices"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// Tests of what an outside check of issue 11 found: each one drives the
// gateway as a platform team would, with a real WebSocket client and a
// real NATS subscriber.

// TestPresenceFields: every presence event, online as well as offline,
// carries each field the contract names — a consumer that reads "reason"
// from an online event (where it is empty) finds it.
func TestPresenceFields(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-p.presence")
	nc.Flush()
	d := connect(t, g, "dev-p")
	d.c.Close()
	for _, want := range []struct{ state, reason string }{{"online", ""}, {"offline", ReasonDisconnected}} {
		m, err := pres.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", want.state, err)
		}
		var p map[string]any
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatalf("%s: %q: %v", want.state, m.Data, err)
		}
		for _, f := range []string{"device", "state", "node", "protocol", "remote", "reason", "at"} {
			if _, ok := p[f]; !ok {
				t.Errorf("%s presence %s has no %q (fields %v)", want.state, m.Data, f, slices.Sorted(maps.Keys(p)))
			}
		}
		if p["state"] != want.state || p["reason"] != want.reason || p["device"] != "dev-p" || p["node"] != "n1" {
			t.Errorf("presence %s, want state %q reason %q", m.Data, want.state, want.reason)
		}
	}
}

// TestServiceCommandRawPayload: a backend service's command over NATS
// whose payload is not JSON reaches the device as a JSON string of those
// bytes (as docs/gateway.md says), not as null, and the reply is the ack.
func TestServiceCommandRawPayload(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	d := connect(t, g, "dev-s")
	for _, c := range []struct{ sent, want string }{
		{`plain text, not JSON`, `"plain text, not JSON"`},
		{`{"level":3}`, `{"level":3}`},
		{``, `null`},
	} {
		got := make(chan string, 1)
		go func() {
			d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := d.c.ReadMessage()
			if err != nil {
				got <- "read: " + err.Error()
				return
			}
			var cmd struct {
				ID      string
				Payload json.RawMessage
			}
			json.Unmarshal(b, &cmd)
			d.send(`{"type":"ack","id":"` + cmd.ID + `","status":"ok","result":{"seen":true}}`)
			got <- string(cmd.Payload)
		}()
		m, err := nc.Request("devices.dev-s.commands.set", []byte(c.sent), 5*time.Second)
		if p := <-got; p != c.want {
			t.Errorf("sent %q: the device got payload %s, want %s", c.sent, p, c.want)
		}
		if err != nil {
			t.Fatalf("sent %q: request: %v", c.sent, err)
		}
		var a Ack
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Status != "ok" || string(a.Result) != `{"seen":true}` {
			t.Errorf("sent %q: reply %s (%v), want the device's ack", c.sent, m.Data, err)
		}
	}
}

// TestAckingDeviceOutlivesBroadcastsAndLateAcks: a device that acks every
// command it gets, as the protocol asks, is not closed for abuse — not
// by its acks of broadcast commands (which wait for no ack: they are
// taken without an error frame, and counted), nor by acks that come after
// their command's timeout (answered unknown_ack, and counted as bad
// frames, but not towards the abuse close). Before, twelve broadcasts, or
// ten late acks over the life of a connection, closed it with 1008.
func TestAckingDeviceOutlivesBroadcastsAndLateAcks(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	d := connect(t, g, "dev-b")
	for i := range 12 {
		if code, m := apiPost(t, g.APIAddr(), "/v1/broadcast", `{"name":"config","payload":{"v":1},"devices":["dev-b"]}`); code != 202 || m["sent"] != 1.0 {
			t.Fatalf("broadcast %d: %d %v", i, code, m)
		}
		cmd := d.read() // an error frame for the previous ack would come here
		id, _ := cmd["id"].(string)
		if cmd["type"] != "command" || cmd["name"] != "config" || !isBroadcastID(id) {
			t.Fatalf("broadcast %d: got %v, want the command with a broadcast id", i, cmd)
		}
		d.send(`{"type":"ack","id":"` + id + `","status":"ok","result":null}`)
	}
	for i := range 12 {
		if code, _ := apiPost(t, g.APIAddr(), "/v1/devices/dev-b/commands", `{"name":"slow","timeout":"20ms"}`); code != 504 {
			t.Fatalf("late %d: %d, want 504", i, code)
		}
		cmd := d.read()
		id, _ := cmd["id"].(string)
		if cmd["type"] != "command" || isBroadcastID(id) {
			t.Fatalf("late %d: got %v, want a unicast command", i, cmd)
		}
		d.send(`{"type":"ack","id":"` + id + `","status":"ok","result":null}`)
		if m := d.read(); m["type"] != "error" || m["code"] != "unknown_ack" || m["id"] != id {
			t.Fatalf("late ack %d: got %v, want unknown_ack", i, m)
		}
	}
	// Still connected: a command in time is answered.
	done := make(chan struct{})
	go func() { defer close(done); d.answer("ok", `{"alive":true}`) }()
	code, m := apiPost(t, g.APIAddr(), "/v1/devices/dev-b/commands", `{"name":"ping","timeout":"5s"}`)
	<-done
	if code != 200 || m["status"] != "ok" {
		t.Fatalf("after the broadcasts and late acks: %d %v", code, m)
	}
	if n := g.Hub().m.broadcastAcks.Load(); n != 12 {
		t.Errorf("broadcast acks counted %d, want 12", n)
	}
	if n := g.Hub().m.badFrames.Load(); n != 12 {
		t.Errorf("bad frames counted %d, want the 12 late acks", n)
	}
}

// TestBroadcastDevicesAndPrefix: a broadcast names devices or a prefix.
// With both, the prefix won and a listed device it did not match was
// neither sent the command nor counted offline; now the request is
// refused with 400.
func TestBroadcastDevicesAndPrefix(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	connect(t, g, "dev-1")
	connect(t, g, "other-1")
	if code, m := apiPost(t, g.APIAddr(), "/v1/broadcast", `{"name":"x","devices":["other-1"],"prefix":"dev-"}`); code != 400 {
		t.Fatalf("devices and prefix: %d %v, want 400", code, m)
	}
	for _, c := range []struct {
		body          string
		sent, offline float64
	}{
		{`{"name":"x","devices":["other-1","ghost"]}`, 1, 1},
		{`{"name":"x","prefix":"other-"}`, 1, 0},
	} {
		code, m := apiPost(t, g.APIAddr(), "/v1/broadcast", c.body)
		if code != 202 || m["sent"] != c.sent || m["offline"] != c.offline {
			t.Fatalf("%s: %d %v, want 202 sent %v offline %v", c.body, code, m, c.sent, c.offline)
		}
	}
}

// TestLastSeenOnAnotherNode: GET /v1/devices/{id} and the list, asked of
// a node that does not hold the device, give its connect time as
// last_seen (the last the directory heard of it), not Go's zero time
// "0001-01-01T00:00:00Z"; the holding node gives its last activity.
func TestLastSeenOnAnotherNode(t *testing.T) {
	ns := cluster(t, 2)
	a, b := ns[0], ns[1]
	connect(t, b, "dev-l")
	testutil.Eventually(t, 0, "dev-l known on node-a", func() bool { return a.Hub().Lookup("dev-l") != nil })
	for _, g := range ns {
		for _, path := range []string{"/v1/devices/dev-l", "/v1/devices?prefix=dev-l"} {
			resp, err := http.Get("http://" + g.APIAddr() + path)
			if err != nil {
				t.Fatal(err)
			}
			var body struct {
				DeviceInfo
				Devices []DeviceInfo `json:"devices"`
			}
			err = json.NewDecoder(resp.Body).Decode(&body)
			resp.Body.Close()
			d := body.DeviceInfo
			if len(body.Devices) == 1 {
				d = body.Devices[0]
			}
			if err != nil || d.Device != "dev-l" || d.ConnectedAt.IsZero() || d.LastSeen.Before(d.ConnectedAt) {
				t.Errorf("%s %s: %+v (%v): want last_seen at or after connected_at", g.Node(), path, d, err)
			}
		}
	}
}

// TestDrainAnswersWaitingCommands: a device whose command waits for an
// ack that never comes is kept open by the drain (its ack could still
// come) until the drain's hold ends, drainHoldFor(DrainTimeout) — here
// 1.5 s of a 2 s drain timeout: the command is answered 504 then, the
// device gets its 1001, and the drain ends within its deadline. Before
// the hold, the device was closed at once and the command answered 504
// as soon as the last device had gone; before that, the API request
// waited out the command's own timeout (here a minute), which held the
// drain until its deadline cut the request off with no answer at all.
func TestDrainAnswersWaitingCommands(t *testing.T) {
	g := startGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.DrainTimeout = 2 * time.Second })
	d := connect(t, g, "dev-d")
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-d.presence")
	nc.Flush()
	type answer struct {
		code int
		body map[string]any
		err  error
	}
	api := make(chan answer, 1)
	go func() {
		resp, err := http.Post("http://"+g.APIAddr()+"/v1/devices/dev-d/commands", "application/json",
			strings.NewReader(`{"name":"slow","timeout":"60s"}`))
		if err != nil {
			api <- answer{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		api <- answer{code: resp.StatusCode, body: m}
	}()
	if m := d.read(); m["type"] != "command" { // the device never acks it
		t.Fatalf("got %v, want the command", m)
	}
	closed := make(chan error, 1)
	go func() { // the device reads on, and answers the drain's close
		d.c.SetReadDeadline(time.Now().Add(20 * time.Second))
		for {
			if _, _, err := d.c.ReadMessage(); err != nil {
				closed <- err
				return
			}
		}
	}()
	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if err := g.eng.Shutdown(ctx); err != nil {
		t.Fatalf("drain: %v (the waiting command held it to its deadline)", err)
	}
	select {
	case a := <-api:
		if a.err != nil || a.code != 504 || a.body["error"] != "timeout" {
			t.Fatalf("waiting command: %d %v %v, want 504 timeout", a.code, a.body, a.err)
		}
	case <-time.After(20 * time.Second): // the answer may still be on its way when the drain ends; its timeout is 60 s
		t.Fatal("the command unanswered")
	}
	if err := <-closed; err == nil {
		t.Fatal("device not closed")
	} else if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != 1001 {
		t.Fatalf("close: %v, want 1001", err)
	}
	for {
		m, err := pres.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("presence offline: %v", err)
		}
		if strings.Contains(string(m.Data), `"offline"`) {
			if !strings.Contains(string(m.Data), `"reason":"shutdown"`) {
				t.Fatalf("offline presence %s, want reason shutdown", m.Data)
			}
			break
		}
	}
}

// TestNATSUnreachableAtStart: with -nats naming a server that is not
// there (a typo, or NATS not up yet), the node starts and nats.go retries
// in the background — and now the bus says so in a warning that names the
// URL without its credentials; before, nothing was logged at all.
func TestNATSUnreachableAtStart(t *testing.T) {
	addr := testutil.RefusedAddr(t)
	var logs syncBuffer
	bus, err := StartBus(BusConfig{URLs: []string{"nats://svc:hunter2@" + addr}, Node: "n1",
		Logger: slog.New(slog.NewTextHandler(&logs, nil))})
	if err != nil {
		t.Fatal(err)
	}
	defer bus.Close()
	out := logs.String()
	if !strings.Contains(out, "NATS not reachable") || !strings.Contains(out, "nats://redacted@"+addr) {
		t.Fatalf("log %q: want a warning naming the URL", out)
	}
	if strings.Contains(out, "hunter2") {
		t.Fatalf("log %q shows the password", out)
	}
	if bus.Connected() {
		t.Fatal("connected to nothing")
	}
}

// TestReceivedHeaderNanoseconds: Warren-Received is RFC 3339 with all
// nine digits of nanoseconds, whatever the time — here a whole second,
// which time.RFC3339Nano wrote with no fraction at all.
func TestReceivedHeaderNanoseconds(t *testing.T) {
	clk := testutil.NewFakeClock() // on a whole second
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Clock: clk})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "-", Auth: NewHMACAuth(testSecret), Node: "n1",
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.dev-h.telemetry")
	nc.Flush()
	tok, _ := IssueToken(testSecret, "dev-h", RoleDevice, time.Hour, clk.Now())
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect?token="+tok, nil)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	for _, step := range []time.Duration{0, 500 * time.Millisecond, 120 * time.Microsecond, 7} {
		clk.Advance(step)
		c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":1}`))
		m, err := sub.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		h := m.Header.Get("Warren-Received")
		at, err := time.Parse("2006-01-02T15:04:05.000000000Z07:00", h)
		if err != nil || !at.Equal(clk.Now()) {
			t.Fatalf("Warren-Received %q (%v): want %s with nine digits of nanoseconds", h, err, clk.Now().UTC())
		}
	}
}

// TestAppendReceived: appendReceived writes what the fixed layout
// "2006-01-02T15:04:05.000000000Z07:00" does in UTC, without its cost.
func TestAppendReceived(t *testing.T) {
	for _, ns := range []int64{0, 1, 10, 500_000_000, 525_773_490, 999_999_999} {
		at := time.Unix(1_796_598_074, ns).In(time.FixedZone("X", 3600))
		want := at.UTC().Format("2006-01-02T15:04:05.000000000Z07:00")
		if got := string(appendReceived([]byte("x"), at)); got != "x"+want {
			t.Errorf("ns %d: %q, want %q", ns, got, "x"+want)
		}
	}
}
