package gateway

import (
	"encoding/json"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestReannounceAfterNATSReconnect: NATS restarts (a new, empty server on
// the same port: a backend that was away heard nothing); once the bus
// reconnects, the node announces its devices online again.
func TestReannounceAfterNATSReconnect(t *testing.T) {
	ns := runNATS(t, server.RANDOM_PORT)
	addr := ns.Addr().String()
	g := startGateway(t, "n1", BusConfig{URLs: []string{"nats://" + addr}})
	connect(t, g, "dev-ra1")
	connect(t, g, "dev-ra2")

	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Eventually(t, 0, "the bus to see NATS gone", func() bool { return !g.Bus().Connected() })
	_, p, _ := strings.Cut(addr, ":")
	port, _ := strconv.Atoi(p)
	_, sub := restartNATS(t, port, "devices.*.presence")
	start := time.Now()
	seen := map[string]bool{}
	for len(seen) < 2 {
		m, err := sub.NextMsg(20 * time.Second)
		if err != nil {
			t.Fatalf("re-announced after the reconnect: %v, want dev-ra1 and dev-ra2 (%v)", seen, err)
		}
		var p presenceMsg
		if json.Unmarshal(m.Data, &p) == nil && p.State == "online" && p.Node == "n1" {
			seen[p.Device] = true
		}
	}
	t.Logf("re-announced %v after NATS came back", time.Since(start).Round(time.Millisecond))
}

// TestRetryHintJitter: the drain's close reason carries a retry delay
// spread over [RetryHintMin, RetryHintMin+RetryHintJitter), so devices do
// not all come back at once.
func TestRetryHintJitter(t *testing.T) {
	d := newWSDevices(nil, NoAuth(), Config{RetryHintMin: 2 * time.Second, RetryHintJitter: 4 * time.Second}.withDefaults(),
		time.Now)
	seen := map[int]bool{}
	for range 200 {
		r := d.goingAway(nil)
		_, ms, ok := strings.Cut(r, "retry-after=")
		n, err := strconv.Atoi(strings.TrimSuffix(ms, "ms"))
		if !ok || err != nil || n < 2000 || n >= 6000 {
			t.Fatalf("hint %q: want retry-after= within [2000ms, 6000ms)", r)
		}
		seen[n/500] = true
	}
	if len(seen) < 6 {
		t.Errorf("hints fell in %d of the 8 half-second buckets: not spread", len(seen))
	}
}
