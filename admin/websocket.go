package admin

import (
	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/websocket"
)

// WebSocketSource is what WebSocketCollector reads; *websocket.Server
// satisfies it.
type WebSocketSource interface {
	Stats() websocket.Stats
}

// WebSocketCollector exports a WebSocket server's counters, computed on
// scrape:
//
//	warren_websocket_messages_total{direction="in|out"}  data messages
//	warren_websocket_upgrades_total                       handshakes answered 101
//	warren_websocket_refused_total                        handshakes refused
//	warren_websocket_connections                          upgraded connections open
//	warren_websocket_pings_total                          liveness pings sent
//	warren_websocket_dead_peers_total                     peers closed for not answering pings
//	warren_websocket_protocol_errors_total                connections failed with 1002/1007/1009
func WebSocketCollector(namespace string, src WebSocketSource) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_websocket_"+name, help, labels, nil)
	}
	return &wsCollector{src: src,
		messages: d("messages_total", "WebSocket data messages, by direction.", "direction"),
		upgrades: d("upgrades_total", "WebSocket handshakes answered with 101."),
		refused:  d("refused_total", "WebSocket handshakes refused with an error status."),
		open:     d("connections", "Upgraded WebSocket connections open."),
		pings:    d("pings_total", "Liveness pings sent."),
		dead:     d("dead_peers_total", "Connections closed because the peer stopped answering pings."),
		proto:    d("protocol_errors_total", "Connections failed with close code 1002, 1007 or 1009."),
	}
}

type wsCollector struct {
	src                                                   WebSocketSource
	messages, upgrades, refused, open, pings, dead, proto *prometheus.Desc
}

func (w *wsCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{w.messages, w.upgrades, w.refused, w.open, w.pings, w.dead, w.proto} {
		ch <- d
	}
}

func (w *wsCollector) Collect(ch chan<- prometheus.Metric) {
	st := w.src.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(w.messages, st.MessagesIn, "in")
	counter(w.messages, st.MessagesOut, "out")
	counter(w.upgrades, st.Upgrades)
	counter(w.refused, st.Refused)
	ch <- prometheus.MustNewConstMetric(w.open, prometheus.GaugeValue, float64(st.Open))
	counter(w.pings, st.PingsSent)
	counter(w.dead, st.DeadPeers)
	counter(w.proto, st.ProtocolErrors)
}
