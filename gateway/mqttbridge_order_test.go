package gateway

import (
	"strconv"
	"sync"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestMQTTBridgeRetainedOrder: one publisher's retained and plain
// messages on one topic reach another node's subscriber in the order they
// were published (MQTT's ordered topic), though a retained message also
// travels on the retained subject every node follows.
func TestMQTTBridgeRetainedOrder(t *testing.T) {
	a, b := startRoutedPair(t, func(node string, bc BusConfig) *Gateway { return startBridgeGateway(t, node, bc, 0) })

	var mu sync.Mutex
	var got []int
	sub := service(t, b, "svc-b")
	if tk := sub.Subscribe("o/1", 1, func(_ paho.Client, m paho.Message) {
		n, err := strconv.Atoi(string(m.Payload()))
		if err != nil {
			n = -1 // a warm-up message
		}
		mu.Lock()
		got = append(got, n)
		mu.Unlock()
	}); !tk.WaitTimeout(5*time.Second) || tk.Error() != nil {
		t.Fatal(tk.Error())
	}

	// Publish on node A until node B's interest has reached it.
	pub := service(t, a, "svc-a")
	testutil.Eventually(t, 10*time.Second, "o/1 from node A on node B", func() bool {
		pub.Publish("o/1", 1, false, "warm-up").WaitTimeout(5 * time.Second)
		time.Sleep(50 * time.Millisecond)
		mu.Lock()
		defer mu.Unlock()
		return len(got) > 0
	})
	time.Sleep(300 * time.Millisecond) // the warm-up's stragglers
	mu.Lock()
	got = got[:0]
	mu.Unlock()

	// Every third message retained; QoS 1 from one client: an ordered topic.
	const n = 300
	for i := 0; i < n; i++ {
		pub.Publish("o/1", 1, i%3 == 0, strconv.Itoa(i))
	}
	testutil.Eventually(t, 10*time.Second, "every message on node B", func() bool {
		mu.Lock()
		defer mu.Unlock()
		k := 0
		for _, v := range got {
			if v >= 0 {
				k++
			}
		}
		return k >= n
	})
	mu.Lock()
	defer mu.Unlock()
	next := 0
	for _, v := range got {
		if v < 0 {
			continue
		}
		if v != next {
			t.Fatalf("node B's subscriber got %d after %d: out of order (%v)", v, next-1, got)
		}
		next++
	}
}
