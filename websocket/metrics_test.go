package websocket

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	st := Stats{Upgrades: 3, Refused: 1, MessagesIn: 4, MessagesOut: 9, Open: 2, PingsSent: 5, DeadPeers: 1, ProtocolErrors: 6, ReadPauses: 7}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector("", func() Stats { return st }))
	want := `
# HELP warren_websocket_messages_total WebSocket data messages, by direction.
# TYPE warren_websocket_messages_total counter
warren_websocket_messages_total{direction="in"} 4
warren_websocket_messages_total{direction="out"} 9
# HELP warren_websocket_upgrades_total WebSocket handshakes answered with 101.
# TYPE warren_websocket_upgrades_total counter
warren_websocket_upgrades_total 3
# HELP warren_websocket_refused_total WebSocket handshakes refused with an error status.
# TYPE warren_websocket_refused_total counter
warren_websocket_refused_total 1
# HELP warren_websocket_connections Upgraded WebSocket connections open.
# TYPE warren_websocket_connections gauge
warren_websocket_connections 2
# HELP warren_websocket_pings_total Liveness pings sent.
# TYPE warren_websocket_pings_total counter
warren_websocket_pings_total 5
# HELP warren_websocket_dead_peers_total Connections closed because the peer stopped answering pings.
# TYPE warren_websocket_dead_peers_total counter
warren_websocket_dead_peers_total 1
# HELP warren_websocket_protocol_errors_total Connections failed with close code 1002, 1007 or 1009.
# TYPE warren_websocket_protocol_errors_total counter
warren_websocket_protocol_errors_total 6
# HELP warren_websocket_read_pauses_total Connections not read for a while: the messages waiting for their handler reached MaxHandlerBacklog (-ws-max-backlog).
# TYPE warren_websocket_read_pauses_total counter
warren_websocket_read_pauses_total 7
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want)); err != nil {
		t.Fatal(err)
	}
}

// TestServerCollector scrapes a live server's collector under a namespace
// of its own after one upgrade and one echoed message.
func TestServerCollector(t *testing.T) {
	srv := startServer(t, Config{}, Echo)
	c := dialRaw(t, srv.addr)
	c.send(OpText, true, []byte("hi"))
	c.expect(OpText)
	reg := prometheus.NewRegistry()
	reg.MustRegister(srv.ws.Collector("edge"))
	want := `
# HELP edge_websocket_messages_total WebSocket data messages, by direction.
# TYPE edge_websocket_messages_total counter
edge_websocket_messages_total{direction="in"} 1
edge_websocket_messages_total{direction="out"} 1
# HELP edge_websocket_upgrades_total WebSocket handshakes answered with 101.
# TYPE edge_websocket_upgrades_total counter
edge_websocket_upgrades_total 1
# HELP edge_websocket_connections Upgraded WebSocket connections open.
# TYPE edge_websocket_connections gauge
edge_websocket_connections 1
`
	// The server counts a message out after its write returns, which may
	// be after the client has read it: compare until it matches.
	var err error
	for deadline := time.Now().Add(5 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if err = promtest.GatherAndCompare(reg, strings.NewReader(want), "edge_websocket_messages_total",
			"edge_websocket_upgrades_total", "edge_websocket_connections"); err == nil {
			return
		}
	}
	t.Fatal(err)
}
