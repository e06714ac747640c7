package loadgen

import (
	"context"
	"log/slog"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// The MQTT mode against warren's broker: every message published comes
// back, at each QoS, closed and open loop.
func TestMQTTLoad(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: slog.New(slog.DiscardHandler)})
	b := mqtt.NewServer(mqtt.Config{PublishRate: -1}) // a closed loop on loopback outruns the per-client default (1000/s)
	defer b.Close()
	ln, err := b.Listen(e, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	for _, c := range []struct {
		qos string
		rps float64
	}{{"0", 0}, {"1", 0}, {"2", 0}, {"1", 500}} {
		rep, err := Run(context.Background(), Config{URL: "mqtt://" + ln.Addr().String() + "/lt?qos=" + c.qos,
			Conns: 20, Duration: 500 * time.Millisecond, RPS: c.rps, Inflight: 2, Timeout: 5 * time.Second})
		if err != nil {
			t.Fatal(err)
		}
		if rep.Protocol != "mqtt" || rep.Connects != 20 || rep.Requests == 0 || rep.Requests != rep.Sent ||
			len(rep.Errors) != 0 || rep.Latency.P50 <= 0 {
			t.Fatalf("qos %s rps %v: %+v", c.qos, c.rps, rep)
		}
	}
	if _, err := Run(context.Background(), Config{URL: "mqtt://" + ln.Addr().String() + "/lt?qos=3"}); err == nil {
		t.Fatal("qos 3 accepted")
	}
}
