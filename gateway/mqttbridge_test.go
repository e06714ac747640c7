package gateway

import (
	"sync/atomic"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/internal/testutil"
)

func TestInterestSubject(t *testing.T) {
	for filter, want := range map[string]string{
		"a/b/c":                    "a.b.c",
		"a/+/c":                    "a.*.c",
		"a/#":                      "a.>",
		"#":                        ">",
		"devices/dev-7/commands/+": "devices.*.commands.*",
		"devices/dev-7/#":          "devices.*.>",
		"devices/dev-7":            "devices.*",
		"devices/+/telemetry":      "devices.*.telemetry",
		"devices/#":                "devices.>",
		"devices":                  "devices",
		"$SYS/x":                   "",
		"a.b/c":                    "",
		"a//b":                     "",
	} {
		got, ok := interestSubject(filter)
		if got != want || ok != (want != "") {
			t.Errorf("interestSubject(%q) = %q, %v; want %q", filter, got, ok, want)
		}
	}
}

// startBridgeGateway starts a gateway node with MQTT and the given bridge
// bound.
func startBridgeGateway(t *testing.T, node string, bc BusConfig, maxSubjects int) *Gateway {
	t.Helper()
	return startMQTTGatewayWith(t, node, bc, func(c *Config) { c.MQTTBridgeMaxSubjects = maxSubjects })
}

// startRoutedPair starts node-a and node-b with start, node B's embedded
// NATS server routed to node A's, and waits for the route and for both
// nodes' retained syncs.
func startRoutedPair(t *testing.T, start func(node string, bc BusConfig) *Gateway) (a, b *Gateway) {
	t.Helper()
	a = start("node-a", BusConfig{ClusterListen: "127.0.0.1:0"})
	b = start("node-b", BusConfig{ClusterListen: "127.0.0.1:0",
		Routes: []string{"nats://" + a.Bus().ClusterAddr().String()}})
	testutil.Eventually(t, 10*time.Second, "the NATS route", func() bool {
		return a.Bus().Embedded().NumRoutes() >= 1 && b.Bus().Embedded().NumRoutes() >= 1
	})
	// Their retained syncs are over (neither had an answer: ≈ 4 s), so
	// that no fill from one's answer lands in the middle of a test.
	for _, g := range []*Gateway{a, b} {
		select {
		case <-g.mq.rs.exited:
		case <-time.After(20 * time.Second):
			t.Fatalf("%s's retained sync did not end", g.Node())
		}
	}
	return a, b
}

// service connects an MQTT client with a service token.
func service(t *testing.T, g *Gateway, id string) paho.Client {
	t.Helper()
	tok, err := IssueToken(testSecret, id, RoleService, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	c, err := mqttClient(t, g, id, tok)
	if err != nil {
		t.Fatal(err)
	}
	return c
}

// counting subscribes c to filter and counts what arrives.
func counting(t *testing.T, c paho.Client, filter string) *atomic.Int64 {
	t.Helper()
	var n atomic.Int64
	if tk := c.Subscribe(filter, 0, func(paho.Client, paho.Message) { n.Add(1) }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	return &n
}

// TestMQTTBridgeInterest: a node subscribes on NATS to what its MQTT
// clients subscribe to, device ids widened, and nothing else; overlapping
// subjects deliver a message once; the last unsubscribe ends the NATS
// subscription; retained messages reach a node that had no interest when
// they were published.
func TestMQTTBridgeInterest(t *testing.T) {
	a, b := startRoutedPair(t, func(node string, bc BusConfig) *Gateway { return startBridgeGateway(t, node, bc, 0) })
	br := b.mq.br

	// Two clients on node B with overlapping filters (x.*.c and x.>).
	c1, c2 := service(t, b, "svc-1"), service(t, b, "svc-2")
	n1 := counting(t, c1, "x/+/c")
	n2 := counting(t, c2, "x/#")
	// Devices' own filters map onto one subject between them.
	for _, id := range []string{"dev-1", "dev-2"} {
		if tk := mustMQTT(t, b, id).Subscribe("devices/"+id+"/commands/+", 1, func(paho.Client, paho.Message) {}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	if got := br.subjects.Load(); got != 3 {
		t.Fatalf("node B follows %d subjects, want 3 (x.*.c, x.>, devices.*.commands.*)", got)
	}

	// Publish on node A until the interest has reached it, then once more
	// with a message nobody on B wants before it.
	pub := service(t, a, "svc-a")
	testutil.Eventually(t, 10*time.Second, "x/1/c from node A on node B", func() bool {
		pub.Publish("x/1/c", 0, false, "hello").WaitTimeout(5 * time.Second)
		time.Sleep(50 * time.Millisecond)
		return n1.Load() > 0 && n2.Load() > 0
	})
	// Let the last of those arrive: node B's intake stays still for 300 ms.
	for deadline, last := time.Now().Add(5*time.Second), int64(-1); time.Now().Before(deadline); {
		cur := int64(b.mq.bridgedIn.Load())
		if cur == last {
			break
		}
		last = cur
		time.Sleep(300 * time.Millisecond)
	}
	n1.Store(0)
	n2.Store(0)
	in := b.mq.bridgedIn.Load()
	pub.Publish("y/1", 0, false, "nobody on B").WaitTimeout(5 * time.Second)
	pub.Publish("x/2/c", 0, false, "once").WaitTimeout(5 * time.Second)
	testutil.Eventually(t, 10*time.Second, "x/2/c on node B", func() bool { return n1.Load() == 1 && n2.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n1.Load() != 1 || n2.Load() != 1 {
		t.Fatalf("x/2/c delivered %d and %d times, want once each", n1.Load(), n2.Load())
	}
	if got := b.mq.bridgedIn.Load() - in; got != 1 {
		t.Fatalf("node B took %d messages from NATS, want 1 (y/1 is nobody's interest there)", got)
	}

	// The last subscriber of x/# leaves: its NATS subscription goes.
	if tk := c2.Unsubscribe("x/#"); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	testutil.Eventually(t, 10*time.Second, "x.> unsubscribed", func() bool { return br.subjects.Load() == 2 })
	br.mu.RLock()
	subs := len(br.order)
	br.mu.RUnlock()
	if subs != 2 {
		t.Fatalf("%d NATS subscriptions, want 2", subs)
	}

	// A retained message published on A while nobody on B wants it.
	pub.Publish("r/1", 1, true, "kept").WaitTimeout(5 * time.Second)
	testutil.Eventually(t, 10*time.Second, "the retained message on node B", func() bool {
		return b.MQTT().Stats().Retained == 1
	})
	got := make(chan string, 2)
	if tk := c1.Subscribe("r/1", 0, func(_ paho.Client, m paho.Message) { got <- string(m.Payload()) }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	select {
	case s := <-got:
		if s != "kept" {
			t.Fatalf("retained %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no retained message on node B")
	}
}

// TestMQTTBridgeOverflow: past its bound the bridge follows every subject
// with one subscription, counted, and still delivers each message once.
func TestMQTTBridgeOverflow(t *testing.T) {
	g := startBridgeGateway(t, "n1", BusConfig{}, 2)
	c := service(t, g, "svc")
	n := counting(t, c, "p/1")
	counting(t, c, "p/2")
	if g.mq.br.overflowed.Load() != 0 {
		t.Fatal("overflowed at 2 subjects")
	}
	m := counting(t, c, "p/3")
	if g.mq.br.overflowed.Load() != 1 || g.mq.br.subjects.Load() != 3 {
		t.Fatalf("overflowed %d times, %d subjects", g.mq.br.overflowed.Load(), g.mq.br.subjects.Load())
	}
	// Once the switch to ">" is done (TestBridgeSwitchExact publishes
	// during it), the one subscription takes everything, once.
	testutil.Eventually(t, 10*time.Second, "the switch to >", func() bool {
		g.mq.br.mu.RLock()
		defer g.mq.br.mu.RUnlock()
		return g.mq.br.all != nil && g.mq.br.pending == nil && len(g.mq.br.order) == 0
	})
	nc := natsConn(t, g)
	nc.Publish("p.1", []byte("a"))
	nc.Publish("p.3", []byte("b"))
	nc.Publish("q.1", []byte("nobody"))
	nc.Flush()
	testutil.Eventually(t, 10*time.Second, "p/1 and p/3", func() bool { return n.Load() == 1 && m.Load() == 1 })
	time.Sleep(200 * time.Millisecond)
	if n.Load() != 1 || m.Load() != 1 {
		t.Fatalf("delivered %d and %d times, want once each", n.Load(), m.Load())
	}
}

// TestMQTTBridgeMetrics: the bridge's queue and its drops are exported
// (a pedantic registry also checks the collector's descriptions).
func TestMQTTBridgeMetrics(t *testing.T) {
	g := startBridgeGateway(t, "n1", BusConfig{}, 0)
	reg := prometheus.NewPedanticRegistry()
	if err := reg.Register(g.mq.collector()); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := map[string]bool{} // name and labels
	for _, mf := range mfs {
		for _, m := range mf.GetMetric() {
			labels := ""
			for _, l := range m.GetLabel() {
				labels += l.GetName() + "=" + l.GetValue()
			}
			found[mf.GetName()+"{"+labels+"}"] = true
		}
	}
	for _, want := range []string{
		"warren_gateway_mqtt_bridge_dropped_total{reason=queue_full}",
		"warren_gateway_mqtt_bridge_dropped_total{reason=unmappable}",
		"warren_gateway_mqtt_bridge_queued{}",
	} {
		if !found[want] {
			t.Errorf("%s not exported", want)
		}
	}
}
