package gateway

import (
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// TestMQTTRetainedQuotaAcrossNodes: a retained message that its
// publisher's node refuses to keep (-mqtt-max-retained-bytes-per-client)
// still reaches the subscribers of both nodes, and neither node retains
// it: it crosses the bridge as a plain message. The one that fits is
// retained on both.
func TestMQTTRetainedQuotaAcrossNodes(t *testing.T) {
	a, b := startRoutedPair(t, func(node string, bc BusConfig) *Gateway {
		return startMQTTGatewayWith(t, node, bc, func(c *Config) { c.MQTTConfig.MaxRetainedBytesPerClient = 1000 })
	})
	got := make(chan paho.Message, 4)
	sub := service(t, b, "svc-sub")
	if tk := sub.Subscribe("q/#", 1, func(_ paho.Client, m paho.Message) { got <- m }); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	pub := service(t, a, "svc-pub")
	// Node B's interest has reached node A once a probe gets across.
	testutil.Eventually(t, 10*time.Second, "a probe from node A at node B", func() bool {
		pub.Publish("q/probe", 0, false, "p")
		select {
		case m := <-got:
			return m.Topic() == "q/probe"
		case <-time.After(100 * time.Millisecond):
			return false
		}
	})
	for len(got) > 0 {
		<-got
	}
	body := strings.Repeat("b", 600) // one fits in 1000 bytes, two don't
	for _, topic := range []string{"q/1", "q/2"} {
		if tk := pub.Publish(topic, 1, true, body); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
	}
	seen := map[string]bool{}
	for deadline := time.After(10 * time.Second); !seen["q/1"] || !seen["q/2"]; {
		select {
		case m := <-got:
			seen[m.Topic()] = true // (a late probe too)
		case <-deadline:
			t.Fatalf("node B's subscriber got %v, want q/1 and q/2", seen)
		}
	}
	testutil.Eventually(t, 10*time.Second, "q/1 retained on node B", func() bool {
		return strings.Join(retainedOf(b.MQTT()), ",") == "q/1="+body
	})
	if got := retainedOf(a.MQTT()); strings.Join(got, ",") != "q/1="+body {
		t.Fatalf("node A retains %v, want q/1 only", got)
	}
	if d := a.MQTT().Stats().Dropped[mqtt.DropRetainedClientFull]; d != 1 {
		t.Fatalf("node A counted %d retained_client_full, want 1", d)
	}
	if got := retainedOf(b.MQTT()); len(got) != 1 {
		t.Fatalf("node B retains %v, want q/1 only", got)
	}
}
