package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/internal/testutil"
)

// apiAnswer is an API response as a test reads it.
type apiAnswer struct {
	code  int
	retry string
	body  map[string]any
	err   error
}

// postCommand sends a command through the API at addr and returns its
// answer on a channel.
func postCommand(addr, device, body string) <-chan apiAnswer {
	ch := make(chan apiAnswer, 1)
	go func() {
		resp, err := http.Post("http://"+addr+"/v1/devices/"+device+"/commands", "application/json", strings.NewReader(body))
		if err != nil {
			ch <- apiAnswer{err: err}
			return
		}
		defer resp.Body.Close()
		var m map[string]any
		json.NewDecoder(resp.Body).Decode(&m)
		ch <- apiAnswer{code: resp.StatusCode, retry: resp.Header.Get("Retry-After"), body: m}
	}()
	return ch
}

// readClose reads d until its connection closes and returns how.
func (d *device) readClose(within time.Duration) error {
	d.c.SetReadDeadline(time.Now().Add(within))
	for {
		if _, _, err := d.c.ReadMessage(); err != nil {
			return err
		}
	}
}

// TestDrainFinishesCommandsInFlight: SIGTERM's drain while a command
// waits for its device's ack. The device stays open — its telemetry
// still published — and acks a second later: the API answers 200 with the
// ack, and only then the device gets its 1001 with the retry hint and
// goes offline with reason shutdown. A new command for it meanwhile,
// sent through another node, is refused with 503 draining and
// Retry-After. The drain ends well within its deadline.
func TestDrainFinishesCommandsInFlight(t *testing.T) {
	ns := cluster(t, 2)
	a, b := ns[0], ns[1]
	d := connect(t, a, "dev-d")
	testutil.Eventually(t, 0, "dev-d known on node-b", func() bool { return b.Hub().Lookup("dev-d") != nil })
	nc := natsConn(t, b)
	tel, _ := nc.SubscribeSync("devices.dev-d.telemetry")
	pres, _ := nc.SubscribeSync("devices.dev-d.presence")
	nc.Flush()

	inFlight := postCommand(a.APIAddr(), "dev-d", `{"name":"slow","timeout":"20s"}`)
	cmd := d.read()
	if cmd["type"] != "command" {
		t.Fatalf("got %v, want the command", cmd)
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		drained <- a.eng.Shutdown(ctx)
	}()
	testutil.Eventually(t, 0, "the device held by the drain", func() bool { return a.Hub().m.drainHeld.Load() == 1 })

	refused := <-postCommand(b.APIAddr(), "dev-d", `{"name":"late","timeout":"5s"}`)
	// Retry-After: the longest reconnect hint (1 s + 10 s by default), when
	// the device is back, rather than a 404 offline in between.
	if refused.err != nil || refused.code != 503 || refused.body["error"] != "draining" || refused.retry != "11" {
		t.Fatalf("a new command during the drain: %d %v Retry-After %q %v, want 503 draining with Retry-After 11",
			refused.code, refused.body, refused.retry, refused.err)
	}
	d.send(`{"type":"telemetry","data":{"t":1}}`)
	if m, err := tel.NextMsg(5 * time.Second); err != nil || string(m.Data) != `{"t":1}` {
		t.Fatalf("telemetry of a held device: %v %v", m, err)
	}
	time.Sleep(time.Second) // the device is slow to act on its command
	d.send(`{"type":"ack","id":"` + cmd["id"].(string) + `","status":"ok","result":{"done":true}}`)
	select {
	case r := <-inFlight:
		if r.err != nil || r.code != 200 || r.body["status"] != "ok" {
			t.Fatalf("the command in flight: %d %v %v, want 200 with the ack", r.code, r.body, r.err)
		}
		if res, _ := r.body["result"].(map[string]any); res["done"] != true {
			t.Fatalf("the command's result: %v", r.body)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command in flight unanswered")
	}
	err := d.readClose(10 * time.Second)
	if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != 1001 || !strings.Contains(ce.Text, "retry-after=") {
		t.Fatalf("the device's close: %v, want 1001 with retry-after=", err)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
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

// TestDrainCommandTimesOut: a device held by the drain whose command
// times out (1 s, within the drain's 30 s hold) is answered 504 at the
// command's timeout and let go then: the drain ends long before its
// hold would, within the 10 s its context gives it. A device without
// commands is closed at the drain's start as before.
func TestDrainCommandTimesOut(t *testing.T) {
	g := startGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.DrainTimeout = 40 * time.Second })
	d := connect(t, g, "dev-d")
	idle := connect(t, g, "dev-idle")
	inFlight := postCommand(g.APIAddr(), "dev-d", `{"name":"slow","timeout":"3s"}`)
	if m := d.read(); m["type"] != "command" {
		t.Fatalf("got %v, want the command", m)
	}
	idleClosed := make(chan error, 1)
	go func() { idleClosed <- idle.readClose(5 * time.Second) }()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	drained := make(chan error, 1)
	go func() { drained <- g.eng.Shutdown(ctx) }()
	// The hold is what keeps dev-d open until its command's timeout.
	testutil.Eventually(t, 0, "the device held by the drain", func() bool { return g.Hub().m.drainHeld.Load() == 1 })
	if ce, ok := (<-idleClosed).(*gorilla.CloseError); !ok || ce.Code != 1001 {
		t.Fatalf("the idle device's close: %v, want 1001", ce)
	}
	if r := <-inFlight; r.err != nil || r.code != 504 || r.body["error"] != "timeout" {
		t.Fatalf("the command in flight: %d %v %v, want 504 timeout", r.code, r.body, r.err)
	}
	if ce, ok := d.readClose(5 * time.Second).(*gorilla.CloseError); !ok || ce.Code != 1001 {
		t.Fatalf("the held device's close: %v, want 1001", ce)
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v (the held device was not let go at its command's timeout)", err)
	}
}

// TestDrainFinishesMQTTCommands: the same for an MQTT device (Eclipse
// Paho, 3.1.1): held at the drain while its command waits, it acks a
// second later, the API answers 200 with the ack, and only then its
// connection is closed, with presence offline for reason shutdown.
func TestDrainFinishesMQTTCommands(t *testing.T) {
	g := startMQTTGateway(t, "n1", BusConfig{})
	lost := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker("tcp://" + g.MQTTAddr()).SetClientID("dev-m").
		SetUsername("any").SetPassword(token(t, "dev-m")).SetAutoReconnect(false).SetConnectRetry(false).
		SetConnectTimeout(5 * time.Second).SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	c := paho.NewClient(o)
	if tok := c.Connect(); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("connect: %v", tok.Error())
	}
	defer c.Disconnect(0)
	cmds := make(chan string, 1)
	if tok := c.Subscribe("devices/dev-m/commands/#", 1, func(_ paho.Client, m paho.Message) {
		var cmd map[string]any
		json.Unmarshal(m.Payload(), &cmd)
		id, _ := cmd["id"].(string)
		cmds <- id
	}); !tok.WaitTimeout(5*time.Second) || tok.Error() != nil {
		t.Fatalf("subscribe: %v", tok.Error())
	}
	testutil.Eventually(t, 0, "online", func() bool { return g.Hub().Lookup("dev-m") != nil })
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-m.presence")
	nc.Flush()

	inFlight := postCommand(g.APIAddr(), "dev-m", `{"name":"slow","timeout":"20s"}`)
	var id string
	select {
	case id = <-cmds:
	case <-time.After(10 * time.Second):
		t.Fatal("the command did not reach the device")
	}
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
		defer cancel()
		drained <- g.eng.Shutdown(ctx)
	}()
	testutil.Eventually(t, 0, "the device held by the drain", func() bool { return g.Hub().m.drainHeld.Load() == 1 })
	time.Sleep(time.Second) // the device is slow to act on its command
	select {
	case err := <-lost:
		t.Fatalf("the device was closed before its ack: %v", err)
	default:
	}
	c.Publish("devices/dev-m/acks/"+id, 1, false, `{"status":"ok","result":{"done":true}}`)
	select {
	case r := <-inFlight:
		if r.err != nil || r.code != 200 || r.body["status"] != "ok" {
			t.Fatalf("the command in flight: %d %v %v, want 200 with the ack", r.code, r.body, r.err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the command in flight unanswered")
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Fatal("the device not closed after its last ack")
	}
	if err := <-drained; err != nil {
		t.Fatalf("drain: %v", err)
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
