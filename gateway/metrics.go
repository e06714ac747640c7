package gateway

import (
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// hubMetrics are the gateway's counters; Collector turns them into
// metrics at scrape time.
type hubMetrics struct {
	online           atomic.Int64
	connects         atomic.Uint64
	replaced         atomic.Uint64
	pauses           atomic.Uint64
	telemetryIn      atomic.Uint64
	telemetryOut     atomic.Uint64
	presenceErrors   atomic.Uint64
	broadcastSent    atomic.Uint64
	broadcastOffline atomic.Uint64
	broadcastFailed  atomic.Uint64
	broadcastAcks    atomic.Uint64 // devices' acks of broadcast commands
	badFrames        atomic.Uint64
	authFailures     atomic.Uint64
	rateLimited      atomic.Uint64 // telemetry dropped by DeviceLimits (a counter of its own: no lock per drop)
	limitTableFull   atomic.Uint64 // telemetry let through because the limit table was full
	drainHeld        atomic.Uint64 // devices the drain kept open for their pending commands
	drainRefused     atomic.Uint64 // commands refused because the node drains
	handoffsExpired  atomic.Uint64 // hand-offs (Hub.handOff) no new connection ended in time

	mu           sync.Mutex
	disconnects  map[string]uint64    // by reason
	drops        map[string]uint64    // telemetry dropped, by reason
	commands     map[string]uint64    // by outcome: ok, error, timeout, offline, failed
	dirRequests  map[[2]string]uint64 // requests to a remote Directory, by op and result
	publishLat   prometheus.Histogram
	commandRTT   prometheus.Histogram
	publishHisto *prometheus.HistogramVec
}

func (m *hubMetrics) init() {
	m.disconnects = map[string]uint64{}
	m.drops = map[string]uint64{}
	m.commands = map[string]uint64{}
	m.dirRequests = map[[2]string]uint64{}
	m.publishLat = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "warren_gateway_telemetry_publish_seconds", Help: "Time to hand one telemetry message to NATS.",
		Buckets: []float64{0.00001, 0.00005, 0.0001, 0.0005, 0.001, 0.005, 0.01, 0.05, 0.1}})
	m.commandRTT = prometheus.NewHistogram(prometheus.HistogramOpts{
		Name: "warren_gateway_command_duration_seconds", Help: "Command round trip: sent to the device until its ack (or the timeout).",
		Buckets: []float64{0.001, 0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}})
}

func (m *hubMetrics) disconnect(reason string) {
	m.mu.Lock()
	m.disconnects[reason]++
	m.mu.Unlock()
}

// dropReasons are the telemetry drop reasons the hub counts itself
// (rate_limited is counted apart, when limits are on).
var dropReasons = []string{"bus_error", "held_overflow"}

func (m *hubMetrics) dropped(reason string) {
	m.mu.Lock()
	m.drops[reason]++
	m.mu.Unlock()
}

// dirRequest counts a request to the remote Directory.
func (m *hubMetrics) dirRequest(op, result string) {
	m.mu.Lock()
	m.dirRequests[[2]string{op, result}]++
	m.mu.Unlock()
}

// droppedCount returns the telemetry dropped for reason.
func (m *hubMetrics) droppedCount(reason string) uint64 {
	if reason == ReasonRateLimited {
		return m.rateLimited.Load()
	}
	m.mu.Lock()
	defer m.mu.Unlock()
	return m.drops[reason]
}

func (m *hubMetrics) observePublish(d time.Duration) { m.publishLat.Observe(d.Seconds()) }

// commandDone counts a command's outcome: ok, error (the device said so),
// timeout, offline or failed.
func (m *hubMetrics) commandDone(a Ack, err error, rtt time.Duration) {
	outcome := "failed"
	switch {
	case err == nil && a.Status == "ok":
		outcome = "ok"
	case err == nil:
		outcome = "error"
	case err == ErrCommandTimeout:
		outcome = "timeout"
	case err == ErrOffline:
		outcome = "offline"
	}
	m.mu.Lock()
	m.commands[outcome]++
	m.mu.Unlock()
	if err == nil || err == ErrCommandTimeout {
		m.commandRTT.Observe(rtt.Seconds())
	}
}

// Collector returns the gateway's metrics (warren_gateway_*): devices
// online on this node, connects, disconnects by reason, telemetry in,
// published and dropped by reason, publish latency, command outcomes and
// round trips, broadcasts, pauses for NATS backpressure, bad frames and
// NATS connection state.
func (h *Hub) Collector() prometheus.Collector { return hubCollector{h} }

type hubCollector struct{ h *Hub }

var (
	descOnline      = prometheus.NewDesc("warren_gateway_devices_online", "Devices connected to this node.", nil, nil)
	descDirectory   = prometheus.NewDesc("warren_gateway_devices_known", "Devices online in the cluster, as this node's directory knows them.", nil, nil)
	descConnects    = prometheus.NewDesc("warren_gateway_connects_total", "Device connections accepted.", nil, nil)
	descDisconnects = prometheus.NewDesc("warren_gateway_disconnects_total", "Device disconnections by reason.", []string{"reason"}, nil)
	descReplaced    = prometheus.NewDesc("warren_gateway_sessions_replaced_total", "Sessions closed because the device connected again (here or on another node).", nil, nil)
	descTelIn       = prometheus.NewDesc("warren_gateway_telemetry_received_total", "Telemetry messages received from devices.", nil, nil)
	descTelOut      = prometheus.NewDesc("warren_gateway_telemetry_published_total", "Telemetry messages published to NATS.", nil, nil)
	descTelDrop     = prometheus.NewDesc("warren_gateway_telemetry_dropped_total", "Telemetry messages dropped, by reason.", []string{"reason"}, nil)
	descPauses      = prometheus.NewDesc("warren_gateway_backpressure_pauses_total", "Devices paused because NATS could not take their telemetry.", nil, nil)
	descCommands    = prometheus.NewDesc("warren_gateway_commands_total", "Commands by outcome: ok, error, timeout, offline, failed.", []string{"outcome"}, nil)
	descPending     = prometheus.NewDesc("warren_gateway_commands_pending", "Commands waiting for a device's ack on this node.", nil, nil)
	descForwarded   = prometheus.NewDesc("warren_gateway_commands_forwarded_pending", "Commands this node's API sent to the node holding the device and waits to hear from (bounded by -max-pending).", nil, nil)
	descBroadcast   = prometheus.NewDesc("warren_gateway_broadcast_total", "Broadcast deliveries by result: sent, offline or failed (NATS did not take it); acked counts devices' acks of broadcast commands.", []string{"result"}, nil)
	descBadFrames   = prometheus.NewDesc("warren_gateway_bad_frames_total", "Device frames refused (not JSON, unknown type, unknown ack).", nil, nil)
	descAuthFail    = prometheus.NewDesc("warren_gateway_auth_failures_total", "Connections refused for a missing, bad or expired token.", nil, nil)
	descNATS        = prometheus.NewDesc("warren_gateway_nats_connected", "1 while the NATS connection is up.", nil, nil)
	descNATSBuf     = prometheus.NewDesc("warren_gateway_nats_buffered_bytes", "Bytes published and not yet sent to NATS (-nats-pending-bytes bounds them while connected, -nats-reconnect-buffer while not).", nil, nil)
	descNATSReco    = prometheus.NewDesc("warren_gateway_nats_reconnects_total", "NATS reconnections.", nil, nil)
	descLimitKeys   = prometheus.NewDesc("warren_gateway_device_limit_keys", "Devices whose telemetry rate buckets are held (-device-limit-keys bounds it).", nil, nil)
	descLimitFull   = prometheus.NewDesc("warren_gateway_device_limit_table_full_total", "Telemetry messages let through unlimited because the device limit table was full of busy devices.", nil, nil)
	descDrainHeld   = prometheus.NewDesc("warren_gateway_drain_held_devices_total", "Devices a drain kept open until the commands waiting for their acks were answered.", nil, nil)
	descHandoffs    = prometheus.NewDesc("warren_gateway_handoffs_expired_total", "Device sessions an MQTT takeover handed off that no new connection of the device took up within a second (the client id was taken by a client that is not the device): dropped, announced offline with reason replaced.", nil, nil)
	descDrainRefuse = prometheus.NewDesc("warren_gateway_drain_refused_commands_total", "Commands refused because the node holding the device drains (API 503 draining).", nil, nil)
	descDirRequests = prometheus.NewDesc("warren_gateway_directory_requests_total",
		"Requests of a prefork worker to its machine's directory, by op (get, list, broadcast, count) and result (ok, timeout, error).",
		[]string{"op", "result"}, nil)
)

func (c hubCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{descOnline, descDirectory, descConnects, descDisconnects, descReplaced, descTelIn,
		descTelOut, descTelDrop, descPauses, descCommands, descPending, descForwarded, descBroadcast, descBadFrames, descAuthFail,
		descNATS, descNATSReco, descNATSBuf, descDirRequests, descLimitKeys, descLimitFull,
		descDrainHeld, descDrainRefuse, descHandoffs} {
		ch <- d
	}
	c.h.m.publishLat.Describe(ch)
	c.h.m.commandRTT.Describe(ch)
}

func (c hubCollector) Collect(ch chan<- prometheus.Metric) {
	h, m := c.h, &c.h.m
	g := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	n := func(d *prometheus.Desc, v uint64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, float64(v), lv...)
	}
	g(descOnline, float64(m.online.Load()))
	if !h.remoteDir() {
		g(descDirectory, float64(h.dirLen()))
	} else if n, ok := h.remoteCount(); ok {
		// A prefork worker holds no directory: its machine's does.
		g(descDirectory, float64(n))
	}
	n(descConnects, m.connects.Load())
	n(descReplaced, m.replaced.Load())
	n(descTelIn, m.telemetryIn.Load())
	n(descTelOut, m.telemetryOut.Load())
	n(descPauses, m.pauses.Load())
	n(descBadFrames, m.badFrames.Load())
	n(descAuthFail, m.authFailures.Load())
	n(descBroadcast, m.broadcastSent.Load(), "sent")
	n(descBroadcast, m.broadcastOffline.Load(), "offline")
	n(descBroadcast, m.broadcastFailed.Load(), "failed")
	n(descBroadcast, m.broadcastAcks.Load(), "acked")
	n(descDrainHeld, m.drainHeld.Load())
	n(descDrainRefuse, m.drainRefused.Load())
	n(descHandoffs, m.handoffsExpired.Load())
	g(descPending, float64(h.Pending()))
	g(descForwarded, float64(h.forwardedPending()))
	up := 0.0
	if h.bus.Connected() {
		up = 1
	}
	g(descNATS, up)
	if n, err := h.nc.Buffered(); err == nil {
		g(descNATSBuf, float64(n))
	}
	n(descNATSReco, h.bus.reco.Load())
	if h.lim != nil {
		keys, _ := h.lim.stats()
		g(descLimitKeys, float64(keys))
		n(descLimitFull, m.limitTableFull.Load())
		n(descTelDrop, m.rateLimited.Load(), ReasonRateLimited)
	}
	m.mu.Lock()
	for r, v := range m.disconnects {
		n(descDisconnects, v, r)
	}
	for _, r := range dropReasons {
		n(descTelDrop, m.drops[r], r) // present from the start, for alerts
	}
	for r, v := range m.drops {
		if !slices.Contains(dropReasons, r) {
			n(descTelDrop, v, r)
		}
	}
	for _, o := range []string{"ok", "error", "timeout", "offline", "failed"} {
		n(descCommands, m.commands[o], o)
	}
	for k, v := range m.dirRequests {
		n(descDirRequests, v, k[0], k[1])
	}
	m.mu.Unlock()
	m.publishLat.Collect(ch)
	m.commandRTT.Collect(ch)
}
