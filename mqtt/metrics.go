package mqtt

import "github.com/prometheus/client_golang/prometheus"

// Collector returns a Prometheus collector of the server's counters,
// computed on scrape from Stats. Metric names start with namespace; empty
// means "warren":
//
//	warren_mqtt_connections{version="3.1.1|5.0"}        gauge    accepted connections open
//	warren_mqtt_pending_connections                     gauge    connections before their CONNECT
//	warren_mqtt_connects_refused_total                  counter  CONNECTs answered with a failure
//	warren_mqtt_packets_total{direction,type}           counter  control packets by type
//	warren_mqtt_publishes_total{direction,qos}          counter  PUBLISH packets by QoS
//	warren_mqtt_dropped_total{reason}                   counter  messages not delivered, by DropReason
//	warren_mqtt_queued_messages                         gauge    QoS 1/2 messages held for clients
//	warren_mqtt_queued_bytes                            gauge    their bytes
//	warren_mqtt_retained_messages                       gauge    retained messages
//	warren_mqtt_retained_bytes                          gauge    their bytes (MaxRetainedBytes)
//	warren_mqtt_retained_clients                        gauge    clients holding retained messages
//	warren_mqtt_sessions{state="online|offline"}        gauge    sessions
//	warren_mqtt_subscriptions                           gauge    subscriptions
//	warren_mqtt_takeovers_total                         counter  sessions taken over
//	warren_mqtt_keepalive_timeouts_total                counter  clients closed for keep-alive
//	warren_mqtt_wills_published_total                   counter  will messages published
//	warren_mqtt_wills                                   gauge    pending wills the sessions hold
//	warren_mqtt_will_bytes                              gauge    their bytes (MaxWillBytes)
//	warren_mqtt_wills_refused_total                     counter  CONNECTs refused for MaxWillBytes
//	warren_mqtt_protocol_errors_total                   counter  connections closed for a protocol error
//	warren_mqtt_rate_limited_total                      counter  clients disconnected for their publish rate
//
// Register it once, with the admin listener or any prometheus.Registerer;
// it is safe for concurrent scrapes. Close reasons and MQTT reason codes
// of closed connections are counted by the engine, as close details.
func (s *Server) Collector(namespace string) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(namespace+"_mqtt_"+name, help, labels, nil)
	}
	return &collector{s: s,
		conns:     d("connections", "Accepted MQTT connections open, by protocol version.", "version"),
		pending:   d("pending_connections", "MQTT connections that have not sent an accepted CONNECT."),
		refused:   d("connects_refused_total", "CONNECTs answered with a failure reason code."),
		packets:   d("packets_total", "MQTT control packets, by direction and type.", "direction", "type"),
		publishes: d("publishes_total", "PUBLISH packets, by direction and QoS.", "direction", "qos"),
		dropped:   d("dropped_total", "Messages not delivered or not retained, by reason.", "reason"),
		qmsgs:     d("queued_messages", "QoS 1 and 2 messages held for clients, inflight included."),
		qbytes:    d("queued_bytes", "Bytes of the messages held for clients."),
		retained:  d("retained_messages", "Retained messages."),
		rbytes:    d("retained_bytes", "Bytes of the retained messages, as the store's bounds count them."),
		rclients:  d("retained_clients", "Clients holding at least one retained message."),
		sessions:  d("sessions", "Sessions, by state.", "state"),
		subs:      d("subscriptions", "Subscriptions across sessions."),
		takeovers: d("takeovers_total", "Sessions taken over by a new connection."),
		keepalive: d("keepalive_timeouts_total", "Clients closed for exceeding 1.5 times their keep-alive."),
		wills:     d("wills_published_total", "Will messages published."),
		willsHeld: d("wills", "Pending will messages the sessions hold."),
		willBytes: d("will_bytes", "Bytes of the pending will messages, as MaxWillBytes counts them."),
		willsRef:  d("wills_refused_total", "CONNECTs refused because their will would pass MaxWillBytes."),
		proto:     d("protocol_errors_total", "Connections closed for a malformed packet or a protocol violation."),
		rate:      d("rate_limited_total", "Clients disconnected for exceeding their publish rate."),
	}
}

type collector struct {
	s                                                    *Server
	conns, pending, refused, packets, publishes, dropped *prometheus.Desc
	qmsgs, qbytes, retained, sessions, subs, takeovers   *prometheus.Desc
	keepalive, wills, proto, rate                        *prometheus.Desc
	rbytes, rclients, willsHeld, willBytes, willsRef     *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.conns, c.pending, c.refused, c.packets, c.publishes, c.dropped,
		c.qmsgs, c.qbytes, c.retained, c.sessions, c.subs, c.takeovers, c.keepalive, c.wills, c.proto, c.rate,
		c.rbytes, c.rclients, c.willsHeld, c.willBytes, c.willsRef} {
		ch <- d
	}
}

// Collect takes one Stats snapshot and sends it as constant metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.s.Stats()
	counter := func(d *prometheus.Desc, v uint64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), labels...)
	}
	gauge := func(d *prometheus.Desc, v int64, labels ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, float64(v), labels...)
	}
	gauge(c.conns, st.ConnectionsV311, Version311.String())
	gauge(c.conns, st.ConnectionsV5, Version5.String())
	gauge(c.pending, st.Pending)
	counter(c.refused, st.ConnectsRefused)
	for t := TypeConnect; t <= TypeAuth; t++ {
		counter(c.packets, st.PacketsIn[t], "in", t.String())
		counter(c.packets, st.PacketsOut[t], "out", t.String())
	}
	for q, name := range []string{"0", "1", "2"} {
		counter(c.publishes, st.PublishesIn[q], "in", name)
		counter(c.publishes, st.PublishesOut[q], "out", name)
	}
	for _, r := range DropReasons() {
		counter(c.dropped, st.Dropped[r], r.String())
	}
	gauge(c.qmsgs, st.QueuedMessages)
	gauge(c.qbytes, st.QueuedBytes)
	gauge(c.retained, st.Retained)
	gauge(c.rbytes, st.RetainedBytes)
	gauge(c.rclients, st.RetainedClients)
	gauge(c.sessions, st.SessionsOnline, "online")
	gauge(c.sessions, st.SessionsOffline, "offline")
	gauge(c.subs, st.Subscriptions)
	counter(c.takeovers, st.Takeovers)
	counter(c.keepalive, st.KeepAliveTimeouts)
	counter(c.wills, st.WillsPublished)
	gauge(c.willsHeld, st.Wills)
	gauge(c.willBytes, st.WillBytes)
	counter(c.willsRef, st.WillsRefused)
	counter(c.proto, st.ProtocolErrors)
	counter(c.rate, st.RateLimited)
}
