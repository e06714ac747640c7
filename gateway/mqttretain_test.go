package gateway

import (
	"bytes"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// retainedOf lists a broker's retained messages as "topic=payload".
func retainedOf(b *mqtt.Server) []string {
	var out []string
	for m := range b.RetainedMessages() {
		out = append(out, m.Topic+"="+string(m.Payload))
	}
	sort.Strings(out)
	return out
}

// TestMQTTRetainedSync: a node that starts after retained messages were
// published elsewhere (or restarts) takes them from a node that has them,
// and a subscriber on it gets them; a deleted one stays deleted; one node
// answers.
func TestMQTTRetainedSync(t *testing.T) {
	a := startBridgeGateway(t, "node-a", BusConfig{ClusterListen: "127.0.0.1:0"}, 0)
	pub := service(t, a, "svc-a")
	for _, m := range []struct {
		topic, payload string
		qos            byte
	}{{"r/1", "one", 1}, {"r/2", "two", 0}, {"r/3", "three", 1}, {"r/3", "", 1},
		{"cfg/x/y", strings.Repeat("y", 200<<10), 1}, {"cfg/x/z", strings.Repeat("z", 200<<10), 1}} {
		if tk := pub.Publish(m.topic, m.qos, true, m.payload); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	// A's own sync is over (nobody answered it) once it answers others.
	testutil.Eventually(t, 10*time.Second, "node A's store and its answering subscription", func() bool {
		a.mq.rs.mu.Lock()
		defer a.mq.rs.mu.Unlock()
		return a.MQTT().Stats().Retained == 4 && a.mq.rs.answers != nil
	})
	want := retainedOf(a.MQTT())

	for _, node := range []string{"node-b", "node-b-again"} {
		b := startBridgeGateway(t, node, BusConfig{ClusterListen: "127.0.0.1:0",
			Routes: []string{"nats://" + a.Bus().ClusterAddr().String()}}, 0)
		testutil.Eventually(t, 10*time.Second, node+" synced", func() bool {
			return b.mq.rs.synced.Load() == 4
		})
		if got := retainedOf(b.MQTT()); strings.Join(got, "\n") != strings.Join(want, "\n") {
			t.Fatalf("%s retains %d messages, want node A's %d", node, len(got), len(want))
		}
		got := make(chan paho.Message, 4)
		c := service(t, b, "svc-"+node)
		if tk := c.Subscribe("r/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
		seen := map[string]string{}
		for range 2 {
			select {
			case m := <-got:
				if !m.Retained() {
					t.Fatalf("%s: %s came without the retain flag", node, m.Topic())
				}
				seen[m.Topic()] = string(m.Payload())
			case <-time.After(5 * time.Second):
				t.Fatalf("%s: the subscriber got %v, want r/1 and r/2", node, seen)
			}
		}
		if seen["r/1"] != "one" || seen["r/2"] != "two" {
			t.Fatalf("%s: the subscriber got %v", node, seen)
		}
		b.Close() // the next one starts as this node would after a restart
	}
	testutil.Eventually(t, 10*time.Second, "node A's two answers counted", func() bool {
		return a.mq.rs.answered.Load() == 2
	})
}

// TestRetainSyncKeepsNewer: what changed on the node while its sync ran
// (touch) is not replaced by the answer's copy, deleted or not; what did
// not change and holds nothing is filled; a malformed part is an error
// that keeps what came before it.
func TestRetainSyncKeepsNewer(t *testing.T) {
	g := startBridgeGateway(t, "solo", BusConfig{}, 0)
	r := &retainSync{d: g.mq, touched: map[string]struct{}{}}
	r.syncing.Store(true)
	br := g.MQTT()
	// A client that subscribed before the answer came gets what it fills.
	early := make(chan string, 8)
	if tk := service(t, g, "early").Subscribe("t/#", 1, func(_ paho.Client, m paho.Message) {
		early <- m.Topic() + "=" + string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}

	br.Retain(&mqtt.Message{Topic: "t/newer", Payload: []byte("new")})
	r.touch("t/newer")
	r.touch("t/deleted") // deleted here while the sync ran
	br.Retain(&mqtt.Message{Topic: "t/kept", Payload: []byte("here")})

	var part []byte
	for _, kv := range [][2]string{{"t/newer", "old"}, {"t/deleted", "old"}, {"t/kept", "old"}, {"t/filled", "old"}} {
		part = appendRetained(part, kv[0], []byte(kv[1]), mqtt.QoS1)
	}
	if k, err := r.apply(part); k != 4 || err != nil {
		t.Fatal(err)
	}
	got := strings.Join(retainedOf(br), " ")
	if want := "t/filled=old t/kept=here t/newer=new"; got != want {
		t.Fatalf("retained %q, want %q", got, want)
	}
	if r.synced.Load() != 1 {
		t.Fatalf("synced %d, want 1", r.synced.Load())
	}
	select {
	case got := <-early:
		if got != "t/filled=old" {
			t.Fatalf("the early subscriber got %s, want only t/filled=old", got)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the early subscriber did not get the topic the answer filled")
	}

	bad := appendRetained(nil, "t/more", []byte("x"), mqtt.QoS0)
	bad = append(bad, 0x05, 't') // a topic of 5 bytes, 1 there
	if _, err := r.apply(bad); err == nil {
		t.Fatal("a truncated part was taken")
	}
	if !strings.Contains(strings.Join(retainedOf(br), " "), "t/more=x") {
		t.Fatal("the whole record before the truncated one was not stored")
	}

	// Past the bound on changed topics the sync stops taking the answer.
	for i := 0; i <= retainSyncMaxTouched; i++ {
		r.touch("many/" + strconv.Itoa(i))
	}
	if _, err := r.apply(appendRetained(nil, "t/late", []byte("x"), mqtt.QoS0)); err != nil {
		t.Fatal(err)
	}
	if strings.Contains(strings.Join(retainedOf(br), " "), "t/late") {
		t.Fatal("an answer was taken after the sync stopped")
	}
}

// TestRetainedRecords: a record round-trips; every truncation of one, a
// QoS over 2 and a huge length are refused.
func TestRetainedRecords(t *testing.T) {
	rec := appendRetained(nil, "a/b", []byte("payload"), mqtt.QoS2)
	topic, payload, qos, rest, ok := decodeRetained(rec)
	if !ok || topic != "a/b" || !bytes.Equal(payload, []byte("payload")) || qos != mqtt.QoS2 || len(rest) != 0 {
		t.Fatalf("round trip: %q %q %d %d %v", topic, payload, qos, len(rest), ok)
	}
	if len(rec) > retainedRecordSize("a/b", []byte("payload")) {
		t.Fatal("retainedRecordSize is below a record's size")
	}
	for i := 0; i < len(rec); i++ {
		if _, _, _, _, ok := decodeRetained(rec[:i]); ok {
			t.Fatalf("a record cut at %d of %d was taken", i, len(rec))
		}
	}
	badQoS := bytes.Clone(rec)
	badQoS[1+3] = 3
	if _, _, _, _, ok := decodeRetained(badQoS); ok {
		t.Fatal("QoS 3 was taken")
	}
	if _, _, _, _, ok := decodeRetained([]byte{0xff, 0xff, 0xff, 0xff, 0x0f}); ok {
		t.Fatal("a 4 GiB topic length was taken")
	}
}
