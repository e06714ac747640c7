package mqtt

import (
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// A normal DISCONNECT discards the will when it is received
// [MQTT-3.14.4-3]: a takeover that comes while the closing connection's
// output is still flushing does not publish it.
func TestWillDiscardedOnNormalDisconnectBeforeFlush(t *testing.T) {
	for _, v := range []Version{Version311, Version5} {
		// The queued output (12.8 MB) must stay under the engine's high
		// watermark, or a is closed as a slow consumer (and its will
		// rightly published) before its DISCONNECT is read.
		b := startBroker(t, Config{}, engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond, WriteHighWater: 64 << 20})
		sub := connectOK(t, b.addr, Version311, "sub")
		sub.subscribe(1, QoS0, "will/#")
		a, _ := connectWill(t, b, v, "a", "x", 0, 0)
		a.subscribe(1, QoS0, "bulk")
		big := []byte(strings.Repeat("b", 64<<10))
		for range 200 { // a reads nothing: its output queues
			b.Publish(&Message{Topic: "bulk", Payload: big})
		}
		a.send(&Disconnect{})
		// Wait for the DISCONNECT to be handled: the will gauge drops to 0
		// (without the fix, only once a has closed, which it cannot while
		// its output is unread: give up waiting after a second then).
		for end := time.Now().Add(time.Second); b.Stats().Wills != 0 && time.Now().Before(end); {
			time.Sleep(5 * time.Millisecond)
		}
		connectWill(t, b, v, "a", "y", 0, 0)
		b.waitStats(t, "taker's will held", func(s Stats) bool { return s.Wills == 1 })
		if p, err := sub.nextErr(time.Second); err == nil {
			t.Fatalf("%v: after a's normal DISCONNECT, the takeover published %q; stats %+v", v, p.(*Publish).Payload, b.Stats())
		}
		if st := b.Stats(); st.WillsPublished != 0 || st.Wills != 1 {
			t.Fatalf("%v: %d wills published, %d held; want 0 and the taker's 1", v, st.WillsPublished, st.Wills)
		}
	}
}
