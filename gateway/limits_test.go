package gateway

import (
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// startLimitedGateway starts a gateway with DeviceLimits l on an engine
// with a fake clock (and MQTT when mqtt is true).
func startLimitedGateway(t *testing.T, l DeviceLimits, withMQTT bool) (*Gateway, *testutil.FakeClock) {
	t.Helper()
	fc := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Clock: fc})
	cfg := Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "n1", CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir(), DeviceLimits: l}
	if withMQTT {
		cfg.MQTT = "127.0.0.1:0"
	}
	g, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g, fc
}

// connectAt connects a WebSocket device with a token valid at the fake
// clock's time.
func connectAt(t *testing.T, g *Gateway, fc *testutil.FakeClock, id string) *device {
	t.Helper()
	tok, err := IssueToken(testSecret, id, RoleDevice, time.Hour, fc.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect", http.Header{"Authorization": {"Bearer " + tok}})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	testutil.Eventually(t, 0, "the device online", func() bool { return g.Hub().Lookup(id) != nil })
	return &device{t: t, c: c, id: id}
}

// expectTelemetry reads the next telemetry message from sub and checks it.
func expectTelemetry(t *testing.T, sub *nats.Subscription, want string) {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil || string(m.Data) != want {
		t.Fatalf("telemetry: want %s, got %v %v", want, m, err)
	}
}

// A WebSocket device over its rate: the excess is dropped and counted, the
// device told once per wait (not once per message), and it publishes again
// once the wait is over. Reconnecting does not refill its bucket.
func TestDeviceRateLimitWebSocket(t *testing.T) {
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 2, FloodFactor: -1}, false)
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.*.telemetry")
	nc.Flush()
	d := connectAt(t, g, fc, "dev-r")
	d.send(`{"type":"telemetry","data":1}`)
	d.send(`{"type":"telemetry","data":2}`)
	expectTelemetry(t, sub, "1")
	expectTelemetry(t, sub, "2")
	for i := 3; i <= 6; i++ {
		d.send(fmt.Sprintf(`{"type":"telemetry","data":%d}`, i))
	}
	m := d.read()
	if m["type"] != "error" || m["code"] != ReasonRateLimited || m["retry_after_ms"] != float64(1000) {
		t.Fatalf("rate-limited notice: %v", m)
	}
	// Only one notice for the four drops: the next frame the device gets
	// answers its bad frame.
	d.send(`not json`)
	if m := d.read(); m["code"] != "bad_json" {
		t.Fatalf("want one notice per wait, then bad_json; got %v", m)
	}
	if n := g.Hub().m.droppedCount(ReasonRateLimited); n != 4 {
		t.Fatalf("dropped rate_limited = %d, want 4", n)
	}
	if _, err := sub.NextMsg(50 * time.Millisecond); err == nil {
		t.Fatal("a message over the limit was published")
	}

	fc.Advance(time.Second)
	d.send(`{"type":"telemetry","data":7}`)
	expectTelemetry(t, sub, "7")

	// A reconnect keeps the (empty) bucket: the next message is dropped
	// and the new connection told.
	d.c.Close()
	testutil.Eventually(t, 0, "the device offline", func() bool { return g.Hub().Lookup("dev-r") == nil })
	d = connectAt(t, g, fc, "dev-r")
	d.send(`{"type":"telemetry","data":8}`)
	if m := d.read(); m["code"] != ReasonRateLimited {
		t.Fatalf("after reconnect: %v", m)
	}
	fc.Advance(time.Second)
	d.send(`{"type":"telemetry","data":9}`)
	expectTelemetry(t, sub, "9")
	if n := g.Hub().m.droppedCount(ReasonRateLimited); n != 5 {
		t.Fatalf("dropped rate_limited = %d, want 5", n)
	}
}

// A device that keeps flooding far past its rate is closed with
// rate_limited (close 4002).
func TestDeviceRateLimitFloodCloses(t *testing.T) {
	// Refusals drain at FloodFactor × Rate = 1/s from a bucket of
	// 1 × 1 × 3 s: the fourth refusal in a moment closes.
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 1, FloodFactor: 1, FloodWindow: 3 * time.Second}, false)
	nc := natsConn(t, g)
	dis, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()
	d := connectAt(t, g, fc, "dev-f")
	for i := 0; i < 5; i++ {
		d.send(`{"type":"telemetry","data":1}`)
	}
	d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, _, err := d.c.ReadMessage()
		if err == nil {
			continue
		}
		ce, ok := err.(*gorilla.CloseError)
		if !ok || ce.Code != CloseRateLimited || ce.Text != ReasonRateLimited {
			t.Fatalf("flood close: %v", err)
		}
		break
	}
	for {
		m, err := dis.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), `"offline"`) {
			if !strings.Contains(string(m.Data), `"reason":"rate_limited"`) {
				t.Fatalf("offline presence: %s", m.Data)
			}
			break
		}
	}
}

// MQTT telemetry goes through the same per-device limit, whatever the
// connection: the excess is dropped and counted.
func TestDeviceRateLimitMQTT(t *testing.T) {
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 1, FloodFactor: -1}, true)
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.*.telemetry")
	nc.Flush()
	tok, _ := IssueToken(testSecret, "dev-m", RoleDevice, time.Hour, fc.Now())
	c, err := mqttClient(t, g, "dev-m", tok)
	if err != nil {
		t.Fatal(err)
	}
	for _, p := range []string{"a", "b", "c"} {
		if tk := c.Publish("devices/dev-m/telemetry", 1, false, p); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	expectTelemetry(t, sub, "a")
	if n := g.Hub().m.droppedCount(ReasonRateLimited); n != 2 {
		t.Fatalf("dropped rate_limited = %d, want 2", n)
	}
	fc.Advance(time.Second)
	c.Publish("devices/dev-m/telemetry", 0, false, "d").WaitTimeout(5 * time.Second)
	expectTelemetry(t, sub, "d")
}

// The limiter's key table is bounded: idle devices are evicted, and a
// device finding it full of busy ones is let through and counted.
func TestDeviceLimitKeyTable(t *testing.T) {
	l := newDeviceLimiter(DeviceLimits{Rate: 1, Burst: 1, MaxKeys: limShards})
	now := time.Unix(1_700_000_000, 0)
	full := 0
	for i := 0; i < 10*limShards; i++ {
		if v, _, f := l.check(fmt.Sprint("d", i), 1, now); v != limitPass {
			t.Fatalf("a new device refused: %v", v)
		} else if f {
			full++
		}
	}
	if keys, tf := l.stats(); keys > limShards || tf != uint64(full) || full == 0 {
		t.Fatalf("keys %d (bound %d), table full %d/%d", keys, limShards, tf, full)
	}
	// A second later every bucket is full again: a new device evicts an
	// idle one and gets a bucket of its own.
	now = now.Add(time.Second)
	if _, _, f := l.check("e", 1, now); f {
		t.Fatal("table full with idle keys only")
	}
	if keys, _ := l.stats(); keys > limShards {
		t.Fatalf("keys %d over the bound %d", keys, limShards)
	}
	if newDeviceLimiter(DeviceLimits{}) != nil {
		t.Fatal("zero DeviceLimits should limit nothing")
	}
}

// The check on the telemetry path does not allocate.
func TestDeviceLimitNoAlloc(t *testing.T) {
	l := newDeviceLimiter(DeviceLimits{Rate: 1000, Burst: 10})
	now := time.Unix(1_700_000_000, 0)
	dev := "device-1234"
	l.check(dev, 10, now)
	if n := testing.AllocsPerRun(1000, func() {
		now = now.Add(time.Millisecond)
		l.check(dev, 10, now)
	}); n != 0 {
		t.Fatalf("check allocates %v times", n)
	}
	if n := testing.AllocsPerRun(1000, func() { l.check(dev, 10, now) }); n != 0 {
		t.Fatalf("a refusing check allocates %v times", n)
	}
}

func BenchmarkDeviceLimitCheck(b *testing.B) {
	l := newDeviceLimiter(DeviceLimits{Rate: 1e9, Burst: 1 << 30})
	devs := make([]string, 1024)
	for i := range devs {
		devs[i] = fmt.Sprint("device-", i)
	}
	now := time.Unix(1_700_000_000, 0)
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			l.check(devs[i&1023], 10, now)
			i++
		}
	})
}

// With DeviceLimits on, a published message allocates no more than
// without (TestTelemetryAllocs), and a dropped one nothing.
func TestTelemetryAllocsLimited(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1e6, Burst: 1 << 20, FloodFactor: -1}, false)
	connectAt(t, g, fc, "dev-a")
	s := g.Hub().Local("dev-a")
	data := []byte(`{"t":1,"temp":21.5}`)
	now := fc.Now()
	allocs := testing.AllocsPerRun(1000, func() { g.Hub().Telemetry(s, data, now) })
	if allocs > 3 {
		t.Errorf("%.1f allocations per limited telemetry message, want at most 3", allocs)
	}
	g2, fc2 := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 1, FloodFactor: -1}, false)
	connectAt(t, g2, fc2, "dev-b")
	s = g2.Hub().Local("dev-b")
	now = fc2.Now()
	g2.Hub().Telemetry(s, data, now)
	g2.Hub().Telemetry(s, data, now) // the notice
	if n := testing.AllocsPerRun(1000, func() { g2.Hub().Telemetry(s, data, now) }); n != 0 {
		t.Errorf("a dropped message allocates %v times", n)
	}
}

// An MQTT device that keeps flooding is closed too, with presence offline
// reason rate_limited.
func TestDeviceRateLimitMQTTFlood(t *testing.T) {
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 1, FloodFactor: 1, FloodWindow: 2 * time.Second}, true)
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()
	tok, _ := IssueToken(testSecret, "dev-mf", RoleDevice, time.Hour, fc.Now())
	c, err := mqttClient(t, g, "dev-mf", tok)
	if err != nil {
		t.Fatal(err)
	}
	for range 6 {
		c.Publish("devices/dev-mf/telemetry", 0, false, "x")
	}
	for {
		m, err := pres.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatal(err)
		}
		if strings.Contains(string(m.Data), `"offline"`) {
			if !strings.Contains(string(m.Data), `"reason":"rate_limited"`) {
				t.Fatalf("offline presence: %s", m.Data)
			}
			break
		}
	}
	testutil.Eventually(t, 0, "the client disconnected", func() bool { return !c.IsConnectionOpen() })
}

// -device-bytes-rate: a device's bytes are limited too; a refusal for
// bytes says how long until the bucket holds the message, and a message
// bigger than the burst is charged the whole burst.
func TestDeviceLimitBytes(t *testing.T) {
	l := newDeviceLimiter(DeviceLimits{Rate: 1000, BytesRate: 100, BytesBurst: 100, FloodFactor: -1})
	now := time.Unix(1_700_000_000, 0)
	if v, _, _ := l.check("d", 60, now); v != limitPass {
		t.Fatalf("60 of 100 bytes: %v", v)
	}
	v, wait, _ := l.check("d", 60, now)
	if v != limitNotify || wait != 200*time.Millisecond {
		t.Fatalf("60 more bytes: %v, wait %v; want a notice and 200ms", v, wait)
	}
	now = now.Add(time.Second)
	if v, _, _ := l.check("d", 1<<20, now); v != limitPass {
		t.Fatalf("a message over the burst with the bucket full: %v", v)
	}
	if v, _, _ := l.check("d", 1, now); v == limitPass {
		t.Fatal("the big message should have emptied the bucket")
	}
	if n := testing.AllocsPerRun(100, func() { l.check("d", 10, now) }); n != 0 {
		t.Fatalf("check with bytes allocates %v times", n)
	}
}

// An MQTT 5.0 device over its limit gets quota_exceeded (0x97) in the
// PUBACK of the refused message (PUBACK has no rate code), and a flood
// close is DISCONNECT 0x96 Message rate too high.
func TestDeviceRateLimitMQTT5(t *testing.T) {
	g, fc := startLimitedGateway(t, DeviceLimits{Rate: 1, Burst: 1, FloodFactor: 1, FloodWindow: 2 * time.Second}, true)
	tok, _ := IssueToken(testSecret, "dev-m5", RoleDevice, time.Hour, fc.Now())
	c := rawMQTT(t, g.MQTTAddr(), "dev-m5", tok)
	pub := func(qos mqtt.QoS, id uint16) {
		c.Write(mqtt.AppendPublish(nil, mqtt.Version5, &mqtt.Publish{QoS: qos, PacketID: id,
			Topic: []byte("devices/dev-m5/telemetry"), Payload: []byte("x")}))
	}
	pub(mqtt.QoS1, 1)
	if a, ok := readMQTT(t, c).(*mqtt.Ack); !ok || a.PacketID != 1 || a.ReasonCode != mqtt.Success {
		t.Fatalf("first PUBACK %+v", a)
	}
	pub(mqtt.QoS1, 2)
	if a, ok := readMQTT(t, c).(*mqtt.Ack); !ok || a.PacketID != 2 || a.ReasonCode != mqtt.QuotaExceeded {
		t.Fatalf("PUBACK over the limit %+v", a)
	}
	for range 6 {
		pub(mqtt.QoS0, 0)
	}
	for {
		p := readMQTT(t, c)
		if p == nil {
			t.Fatal("closed without DISCONNECT")
		}
		if d, ok := p.(*mqtt.Disconnect); ok {
			if d.ReasonCode != mqtt.MessageRateTooHigh {
				t.Fatalf("flood close %+v", d)
			}
			break
		}
	}
}
