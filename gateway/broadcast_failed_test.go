package gateway

import (
	"encoding/json"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestBroadcastFailedCounted: a broadcast NATS does not take (here: its
// message over node A's max_payload) is counted as failed, in the answer
// and in broadcast_total{result="failed"}, not as sent; a small one to the
// same device is sent and arrives.
func TestBroadcastFailedCounted(t *testing.T) {
	a := startGateway(t, "node-a", BusConfig{ClusterListen: "127.0.0.1:0", MaxPayload: 128 << 10})
	b := startGateway(t, "node-b", BusConfig{ClusterListen: "127.0.0.1:0", Routes: []string{"nats://" + a.Bus().ClusterAddr().String()}})
	testutil.Eventually(t, 10*time.Second, "the NATS route", func() bool { return a.Bus().Embedded().NumRoutes() >= 1 })
	d := connect(t, b, "dev-far")
	testutil.Eventually(t, 0, "dev-far known on node-a", func() bool { return a.Hub().Lookup("dev-far") != nil })

	big, _ := json.Marshal(map[string]any{"name": "fw", "payload": strings.Repeat("x", 200<<10), "devices": []string{"dev-far"}})
	code, m := apiPost(t, a.APIAddr(), "/v1/broadcast", string(big))
	if code != 202 || m["sent"] != 0.0 || m["failed"] != 1.0 {
		t.Fatalf("broadcast over NATS's max_payload: %d %v, want 202 with failed 1", code, m)
	}
	if got := a.Hub().m.broadcastFailed.Load(); got != 1 {
		t.Fatalf("broadcast_total{result=failed} %d, want 1", got)
	}
	code, m = apiPost(t, a.APIAddr(), "/v1/broadcast", `{"name":"blink","devices":["dev-far"]}`)
	if code != 202 || m["sent"] != 1.0 || m["failed"] != 0.0 {
		t.Fatalf("small broadcast: %d %v", code, m)
	}
	if cmd := d.read(); cmd["name"] != "blink" {
		t.Fatalf("the device got %v, want the small broadcast (the big one never left node A)", cmd)
	}
}

func TestBroadcastBatches(t *testing.T) {
	ids := []string{"aaaa", "bbbb", "cccc", "dddd", "eeee"}
	var got [][]string
	broadcastBatches(ids, 15, func(b []string) { got = append(got, b) }) // 7 bytes an id: two a batch
	if len(got) != 3 || len(got[0]) != 2 || len(got[2]) != 1 {
		t.Fatalf("batches %v", got)
	}
	got = nil
	broadcastBatches(ids, 1, func(b []string) { got = append(got, b) }) // not even one fits: one each
	if len(got) != 5 {
		t.Fatalf("batches %v", got)
	}
	many := make([]string, 2500)
	got = nil
	broadcastBatches(many, 1<<20, func(b []string) { got = append(got, b) })
	if len(got) != 3 || len(got[0]) != 1000 {
		t.Fatalf("%d batches, first %d", len(got), len(got[0]))
	}
}

// TestDropReasonsFromStart: the telemetry drop reasons the hub counts are
// series from the start, at 0, so an alert on them has something to read.
func TestDropReasonsFromStart(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	reg := prometheus.NewRegistry()
	reg.MustRegister(g.Hub().Collector())
	want := `
# HELP warren_gateway_telemetry_dropped_total Telemetry messages dropped, by reason.
# TYPE warren_gateway_telemetry_dropped_total counter
warren_gateway_telemetry_dropped_total{reason="bus_error"} 0
warren_gateway_telemetry_dropped_total{reason="held_overflow"} 0
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), "warren_gateway_telemetry_dropped_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := promtest.GatherAndCount(reg, "warren_gateway_nats_buffered_bytes"); err != nil || n != 1 {
		t.Fatalf("warren_gateway_nats_buffered_bytes: %d series, %v", n, err)
	}
}
