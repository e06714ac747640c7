package mqtt

import (
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestOnWill: the hook hears of a will the broker publishes (a connection
// ending without DISCONNECT), with its client and message, before the
// local subscribers get it; a normal DISCONNECT publishes none.
func TestOnWill(t *testing.T) {
	var mu sync.Mutex
	var heard []string
	b := startBroker(t, Config{Hooks: Hooks{OnWill: func(id string, m *Message) {
		mu.Lock()
		heard = append(heard, id+" "+m.Topic+" "+string(m.Payload))
		mu.Unlock()
	}}})
	sub := connectOK(t, b.addr, Version311, "sub")
	sub.subscribe(1, QoS1, "will/#")

	for _, normal := range []bool{true, false} {
		c := dial(t, b.addr, Version311)
		id := "gone"
		if normal {
			id = "polite"
		}
		if ca := c.connect(&Connect{ClientID: []byte(id), CleanStart: true, KeepAlive: 60,
			Will: &Will{QoS: QoS1, Topic: []byte("will/" + id), Payload: []byte("bye")}}); ca.ReasonCode != Success {
			t.Fatalf("CONNACK %v", ca.ReasonCode)
		}
		if normal {
			c.send(&Disconnect{})
		}
		c.c.Close()
	}
	if p := sub.expectPublish(); p.Topic != "will/gone" {
		t.Fatalf("the subscriber got %s, want will/gone", p.Topic)
	}
	testutil.Eventually(t, 5*time.Second, "the hook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(heard) > 0
	})
	mu.Lock()
	defer mu.Unlock()
	if len(heard) != 1 || heard[0] != "gone will/gone bye" {
		t.Fatalf("OnWill heard %q, want only the will of the connection that ended without DISCONNECT", heard)
	}
}
