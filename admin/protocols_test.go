package admin

import (
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

type httpStub struct{ st http1.Stats }

func (h httpStub) Stats() http1.Stats { return h.st }

type wsStub struct{ st websocket.Stats }

func (w wsStub) Stats() websocket.Stats { return w.st }

func TestProtocolCollectors(t *testing.T) {
	var hs http1.Stats
	hs.Requests[2], hs.Requests[4], hs.Refused, hs.HeaderTimeouts = 7, 2, 1, 3
	hs.DurationCounts[0], hs.DurationCounts[len(http1.DurationBuckets)] = 5, 1
	hs.DurationSum = 2 * time.Second
	reg := prometheus.NewRegistry()
	reg.MustRegister(HTTPCollector("", httpStub{hs}), WebSocketCollector("", wsStub{websocket.Stats{MessagesIn: 4, MessagesOut: 9, Open: 2, DeadPeers: 1}}))
	want := `
# HELP warren_http_requests_total HTTP requests answered, by status class.
# TYPE warren_http_requests_total counter
warren_http_requests_total{class="1xx"} 0
warren_http_requests_total{class="2xx"} 7
warren_http_requests_total{class="3xx"} 0
warren_http_requests_total{class="4xx"} 2
warren_http_requests_total{class="5xx"} 0
# HELP warren_websocket_messages_total WebSocket data messages, by direction.
# TYPE warren_websocket_messages_total counter
warren_websocket_messages_total{direction="in"} 4
warren_websocket_messages_total{direction="out"} 9
# HELP warren_websocket_connections Upgraded WebSocket connections open.
# TYPE warren_websocket_connections gauge
warren_websocket_connections 2
`
	if err := testutil.GatherAndCompare(reg, strings.NewReader(want), "warren_http_requests_total",
		"warren_websocket_messages_total", "warren_websocket_connections"); err != nil {
		t.Fatal(err)
	}
	n, err := testutil.GatherAndCount(reg, "warren_http_request_duration_seconds", "warren_websocket_dead_peers_total")
	if err != nil || n != 2 {
		t.Fatalf("count %d %v", n, err)
	}
}
