package gateway

import (
	"testing"
	"time"

	"github.com/warrenhq/warren/mqtt"
)

// TestMQTTFloodCloseEndsRead: a device the hub closes for flooding from
// inside the broker's OnPublish (the telemetry limits' flood close) has
// nothing more of that read handled: the telemetry after the PUBLISH that
// closed it is neither counted, limited nor acknowledged. Ten telemetry
// PUBLISHes go in one write; with a rate of 1 a second, a burst of 1 and
// a flood bucket of 1, the first passes, the second is refused and the
// third refused and closes the device.
func TestMQTTFloodCloseEndsRead(t *testing.T) {
	g := startPortableMQTT(t, func(c *Config) {
		c.DeviceLimits = DeviceLimits{Rate: 1, Burst: 1, FloodFactor: 1, FloodWindow: time.Second}
	})
	h := g.Hub()
	c := dialMQTT(t, g.MQTTAddr(), "dev-k", token(t, "dev-k"), mqtt.Version5, true)
	var out []byte
	for i := 1; i <= 10; i++ {
		out = mqtt.Append(out, mqtt.Version5, &mqtt.Publish{Topic: []byte("devices/dev-k/telemetry"),
			Payload: []byte(`{"t":1}`), QoS: mqtt.QoS1, PacketID: uint16(i)})
	}
	c.Write(out)
	var acks []uint16
	var disc *mqtt.Disconnect
	for p := c.next(t); p != nil; p = c.next(t) {
		switch p := p.(type) {
		case *mqtt.Ack:
			acks = append(acks, p.PacketID)
		case *mqtt.Disconnect:
			cp := *p
			disc = &cp
		}
	}
	if disc == nil || disc.ReasonCode != mqtt.MessageRateTooHigh {
		t.Fatalf("DISCONNECT %+v, want 0x96", disc)
	}
	if len(acks) != 3 {
		t.Errorf("PUBACKs %v, want the first three only", acks)
	}
	if in, limited := h.m.telemetryIn.Load(), h.m.rateLimited.Load(); in != 3 || limited != 2 {
		t.Errorf("telemetry received %d, rate limited %d; want 3, 2", in, limited)
	}
}
