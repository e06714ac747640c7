package gateway

import (
	"net"
	"strconv"
	"strings"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// TestMQTTWillAcrossNodes: a client's will reaches a subscriber on another
// node, and a retained will that node's retained store.
func TestMQTTWillAcrossNodes(t *testing.T) {
	a, b := startRoutedPair(t, func(node string, bc BusConfig) *Gateway { return startBridgeGateway(t, node, bc, 0) })
	got := make(chan string, 16)
	if tk := service(t, b, "watcher").Subscribe("st/#", 1, func(_ paho.Client, m paho.Message) {
		got <- m.Topic() + "=" + string(m.Payload())
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	pub := service(t, a, "svc-a")
	testutil.Eventually(t, 10*time.Second, "node B's interest at node A", func() bool {
		pub.Publish("st/warm", 1, false, "w").WaitTimeout(5 * time.Second)
		select {
		case <-got:
			return true
		case <-time.After(50 * time.Millisecond):
			return false
		}
	})

	// Clients with a will, retained or not, connect to node A; their
	// connections end without DISCONNECT.
	for _, retain := range []bool{false, true} {
		id := "dev-will-" + strconv.FormatBool(retain)
		tok, err := IssueToken(testSecret, id, RoleService, time.Hour, time.Now())
		if err != nil {
			t.Fatal(err)
		}
		c, err := net.Dial("tcp", a.MQTTAddr())
		if err != nil {
			t.Fatal(err)
		}
		c.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311, ClientID: []byte(id), CleanStart: true,
			KeepAlive: 60, Username: []byte("any"), Password: []byte(tok),
			Will: &mqtt.Will{QoS: mqtt.QoS1, Retain: retain, Topic: []byte("st/" + id), Payload: []byte("offline")}}))
		buf := make([]byte, 64)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		n, err := c.Read(buf)
		d := mqtt.Decoder{Version: mqtt.Version311}
		if _, p, derr := d.Decode(buf[:n], nil); err != nil || derr != nil || p.(*mqtt.Connack).ReasonCode != mqtt.Success {
			t.Fatalf("CONNACK: %v %v %v", err, derr, p)
		}
		c.Close()

		// Only the bridge brings a will that is not retained (a retained
		// one could also come with node B's retained sync).
		want := "st/" + id + "=offline"
		deadline := time.After(10 * time.Second)
	wait:
		for {
			select {
			case m := <-got:
				if m == want {
					break wait
				}
			case <-deadline:
				t.Fatalf("node B's subscriber did not get the will published on node A (%s)", want)
			}
		}
	}
	testutil.Eventually(t, 10*time.Second, "the retained will in node B's store", func() bool {
		return strings.Contains(strings.Join(retainedOf(b.MQTT()), " "), "st/dev-will-true=offline")
	})
}
