package gateway

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// startSharesGateway starts a gateway node with MQTT and
// MQTTClusterShares.
func startSharesGateway(t *testing.T, node string, bc BusConfig) *Gateway {
	t.Helper()
	return startMQTTGatewayWith(t, node, bc, func(c *Config) { c.MQTTClusterShares = true })
}

// TestMQTTSharesAcrossNodes: with MQTTClusterShares an MQTT share group with members on two nodes
// gets each message once across the cluster — from an MQTT client on
// either node and from a NATS client — and both nodes' members take part;
// a plain subscriber gets every message; the last member leaving a node
// ends its queue subscription there.
func TestMQTTSharesAcrossNodes(t *testing.T) {
	a, b := startRoutedPair(t, func(node string, bc BusConfig) *Gateway { return startSharesGateway(t, node, bc) })

	var mu sync.Mutex
	got := map[string][]string{} // payload → members that got it
	plain := map[string]int{}
	member := func(g *Gateway, id string) paho.Client {
		c := service(t, g, id)
		if tk := c.Subscribe("$share/workers/jobs/#", 1, func(_ paho.Client, m paho.Message) {
			mu.Lock()
			got[string(m.Payload())] = append(got[string(m.Payload())], id)
			mu.Unlock()
		}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
			t.Fatal(tk.Error())
		}
		return c
	}
	member(a, "a1")
	member(a, "a2")
	b1 := member(b, "b1")
	b2 := member(b, "b2")
	ps := service(t, b, "plain")
	if tk := ps.Subscribe("jobs/#", 1, func(_ paho.Client, m paho.Message) {
		mu.Lock()
		plain[string(m.Payload())]++
		mu.Unlock()
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	if a.mq.br.sharesFollowed() != 1 || b.mq.br.sharesFollowed() != 1 {
		t.Fatalf("share groups followed: %d and %d, want 1 and 1", a.mq.br.sharesFollowed(), b.mq.br.sharesFollowed())
	}

	// Until the queue subscriptions and the interest have crossed the
	// route, warm-up messages from node A reach node B's members.
	pubA := service(t, a, "pub-a")
	testutil.Eventually(t, 10*time.Second, "node A's publish at node B's members and plain subscriber", func() bool {
		pubA.Publish("jobs/warm", 1, false, "warm").WaitTimeout(5 * time.Second)
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		onB := false
		for _, id := range got["warm"] {
			onB = onB || id[0] == 'b'
		}
		return onB && plain["warm"] > 0
	})

	// 300 messages: from MQTT clients on node A and node B, and from a
	// NATS client.
	pubB := service(t, b, "pub-b")
	nc := natsConn(t, a)
	const n = 100
	for i := range n {
		for _, p := range []paho.Client{pubA, pubB} {
			if tk := p.Publish("jobs/x", 1, false, fmt.Sprintf("%p-%d", p, i)); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
				t.Fatal(tk.Error())
			}
		}
		if err := nc.Publish("jobs.y", []byte("nats-"+strconv.Itoa(i))); err != nil {
			t.Fatal(err)
		}
	}
	want := map[string]bool{}
	for i := range n {
		want[fmt.Sprintf("%p-%d", pubA, i)] = true
		want[fmt.Sprintf("%p-%d", pubB, i)] = true
		want["nats-"+strconv.Itoa(i)] = true
	}
	testutil.Eventually(t, 10*time.Second, "every message at the group and the plain subscriber", func() bool {
		mu.Lock()
		defer mu.Unlock()
		for p := range want {
			if len(got[p]) == 0 || plain[p] == 0 {
				return false
			}
		}
		return true
	})
	time.Sleep(300 * time.Millisecond) // duplicates would be in by now
	mu.Lock()
	perNode := map[byte]int{}
	for p := range want {
		if len(got[p]) != 1 || plain[p] != 1 {
			mu.Unlock()
			t.Fatalf("%s: the group got it %d times %v, the plain subscriber %d; want once each", p, len(got[p]), got[p], plain[p])
		}
		perNode[got[p][0][0]]++
	}
	mu.Unlock()
	if perNode['a'] == 0 || perNode['b'] == 0 {
		t.Fatalf("messages per node's members %v: one node took them all", perNode)
	}

	// b1 and b2 leave: node B no longer follows the group.
	b1.Unsubscribe("$share/workers/jobs/#").WaitTimeout(5 * time.Second)
	if b.mq.br.sharesFollowed() != 1 {
		t.Fatal("node B stopped following the group with b2 still in it")
	}
	b2.Disconnect(0) // its clean session ends with the connection
	testutil.Eventually(t, 10*time.Second, "node B's share subscription ended", func() bool {
		return b.mq.br.sharesFollowed() == 0
	})
}

// TestMQTTShareLeftNoFallThrough: a message that reaches a node through a
// share group's subscription after the group has left it goes to nobody
// there (the plain subscribers had their own copy); and without
// MQTTClusterShares a node keeps no share subscription at all.
func TestMQTTShareLeftNoFallThrough(t *testing.T) {
	g := startSharesGateway(t, "solo", BusConfig{})
	got := make(chan string, 4)
	if tk := service(t, g, "plain").Subscribe("jobs/#", 1, func(_ paho.Client, m paho.Message) {
		got <- m.Topic()
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	g.mq.fromNATS(&nats.Msg{Subject: "jobs.late", Data: []byte("x"), Header: nats.Header{},
		Sub: &nats.Subscription{Queue: shareQueue("$share/gone/jobs/#")}})
	if _, err := g.MQTT().Publish(&mqtt.Message{Topic: "jobs/marker", Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	select {
	case topic := <-got:
		if topic != "jobs/marker" {
			t.Fatalf("the plain subscriber got %s: a share group's message fell through to it", topic)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no marker")
	}

	off := startBridgeGateway(t, "per-node", BusConfig{}, 0)
	if tk := service(t, off, "member").Subscribe("$share/g/jobs/#", 1, func(paho.Client, paho.Message) {}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}
	if n := off.mq.br.sharesFollowed(); n != 0 {
		t.Fatalf("without MQTTClusterShares the node follows %d share groups on NATS", n)
	}
}
