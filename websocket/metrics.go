package websocket

import (
	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the server's counters,
// computed on scrape from Stats. Metric names start with namespace; empty
// means "warren":
//
//	warren_websocket_messages_total{direction="in|out"}  counter  data messages
//	warren_websocket_upgrades_total                       counter  handshakes answered 101
//	warren_websocket_refused_total                        counter  handshakes refused
//	warren_websocket_connections                          gauge    upgraded connections open
//	warren_websocket_pings_total                          counter  liveness pings sent
//	warren_websocket_dead_peers_total                     counter  peers closed for not answering pings
//	warren_websocket_protocol_errors_total                counter  connections failed with 1002/1007/1009
//	warren_websocket_read_pauses_total                    counter  connections not read: MaxHandlerBacklog reached
//
// Register it once, with the admin listener (admin.New's extra collectors)
// or any prometheus.Registerer; it is safe for concurrent scrapes. The
// close codes themselves are counted by the engine, as close details.
func (s *Server) Collector(namespace string) prometheus.Collector {
	return newCollector(namespace, s.Stats)
}

// collector turns a Stats snapshot into constant metrics at scrape time.
type collector struct {
	stats                                                         func() Stats
	messages, upgrades, refused, open, pings, dead, proto, pauses *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(namespace string, stats func() Stats) *collector {
	if namespace == "" {
		namespace = "warren"
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_websocket_"+name, help, labels, nil)
	}
	return &collector{stats: stats,
		messages: d("messages_total", "WebSocket data messages, by direction.", "direction"),
		upgrades: d("upgrades_total", "WebSocket handshakes answered with 101."),
		refused:  d("refused_total", "WebSocket handshakes refused with an error status."),
		open:     d("connections", "Upgraded WebSocket connections open."),
		pings:    d("pings_total", "Liveness pings sent."),
		dead:     d("dead_peers_total", "Connections closed because the peer stopped answering pings."),
		proto:    d("protocol_errors_total", "Connections failed with close code 1002, 1007 or 1009."),
		pauses:   d("read_pauses_total", "Connections not read for a while: the messages waiting for their handler reached MaxHandlerBacklog (-ws-max-backlog)."),
	}
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.messages, c.upgrades, c.refused, c.open, c.pings, c.dead, c.proto, c.pauses} {
		ch <- d
	}
}

// Collect takes one Stats snapshot and sends it as constant metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	counter(c.messages, st.MessagesIn, "in")
	counter(c.messages, st.MessagesOut, "out")
	counter(c.upgrades, st.Upgrades)
	counter(c.refused, st.Refused)
	ch <- prometheus.MustNewConstMetric(c.open, prometheus.GaugeValue, float64(st.Open))
	counter(c.pings, st.PingsSent)
	counter(c.dead, st.DeadPeers)
	counter(c.proto, st.ProtocolErrors)
	counter(c.pauses, st.ReadPauses)
}
