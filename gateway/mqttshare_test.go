package gateway

import (
	"fmt"
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestMQTTSharesAcrossNodes: an MQTT share group with members on two nodes
// gets each message once across the cluster — from an MQTT client on
// either node and from a NATS client — and both nodes' members take part;
// a plain subscriber gets every message; the last member leaving a node
// ends its queue subscription there.
func TestMQTTSharesAcrossNodes(t *testing.T) {
	a := startBridgeGateway(t, "node-a", BusConfig{ClusterListen: "127.0.0.1:0"}, 0)
	b := startBridgeGateway(t, "node-b", BusConfig{ClusterListen: "127.0.0.1:0",
		Routes: []string{"nats://" + a.Bus().ClusterAddr().String()}}, 0)
	testutil.Eventually(t, 10*time.Second, "the NATS route", func() bool {
		return a.Bus().Embedded().NumRoutes() >= 1 && b.Bus().Embedded().NumRoutes() >= 1
	})

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
