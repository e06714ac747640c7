package tlsx

import (
	"errors"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Handshake results, the "result" label of warren_tls_handshakes_total.
const (
	ResultOK            = "ok"
	ResultFailed        = "failed"                     // crypto/tls refused the handshake (bad ClientHello, no shared suite, bad client certificate)
	ResultTimeout       = "timeout"                    // not finished within HandshakeTimeout
	ResultFlightTimeout = "flight_timeout"             // the client's next record did not come within FlightTimeout
	ResultNotTLS        = "not_tls"                    // the first bytes were not a TLS handshake record
	ResultPlainHTTP     = "plain_http"                 // plaintext HTTP sent to the TLS port (answered 400)
	ResultAborted       = "aborted"                    // the peer closed during the handshake
	ResultBadCert       = "bad_client_certificate"     // mutual TLS: the client certificate was refused (expired, unknown CA, wrong usage)
	ResultRevoked       = "revoked_client_certificate" // mutual TLS: a revocation list (Config.CRLFile) lists the client certificate or its CA
)

// Record layers, the "layer" label of warren_tls_record_layers_total.
const (
	LayerWarren    = "warren"     // warren's record layer (TLS 1.3; TLS 1.2 AEAD suites)
	LayerCryptoTLS = "crypto_tls" // crypto/tls's, driven from the loop (a TLS 1.2 connection warren's layer could not take)
)

// Refusal bounds, the "bound" label of warren_tls_refused_total: checked
// before any TLS work.
const (
	BoundPerIP     = "per_ip"     // Config.RatePerIP
	BoundListener  = "listener"   // Config.Rate
	BoundQueueFull = "queue_full" // Config.HandshakeQueue
	BoundBanned    = "banned"     // a flapping client, banned for Config.BanDuration
)

// metrics are a Server's counters, exposed by Collector.
type metrics struct {
	handshakes  *prometheus.CounterVec // result, version
	duration    prometheus.Histogram
	queue       prometheus.GaugeFunc
	workers     prometheus.GaugeFunc
	computing   prometheus.GaugeFunc
	lowered     prometheus.GaugeFunc
	spare       prometheus.GaugeFunc
	collections prometheus.Counter
	bursts      prometheus.Counter
	burst       prometheus.GaugeFunc
	expiry      prometheus.GaugeFunc
	refused     *prometheus.CounterVec // bound
	records     *prometheus.CounterVec // error (record-layer close detail)
	layers      *prometheus.CounterVec // version, layer
	keyUpdates  prometheus.Counter
	reloads     *prometheus.CounterVec // result
	flaps       prometheus.Counter
	bans        prometheus.Counter
	banned      prometheus.GaugeFunc
	crlNext     prometheus.GaugeFunc // collected only with revocation lists that have a NextUpdate
	s           *Server
}

func newMetrics(namespace string, s *Server) *metrics {
	if namespace == "" {
		namespace = "warren"
	}
	m := &metrics{
		s: s,
		crlNext: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_crl_next_update_seconds",
			Help: "Seconds until the earliest NextUpdate of the certificate revocation lists in force (negative once one is stale: it stays in force until a newer one is loaded)."}, func() float64 {
			if set := s.crls.Load(); set != nil {
				return time.Until(set.nextUpdate).Seconds()
			}
			return 0
		}),
		handshakes: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_handshakes_total",
			Help: "TLS handshakes by result (ok, failed, bad_client_certificate, revoked_client_certificate, timeout, flight_timeout, not_tls, plain_http, aborted) and negotiated version."}, []string{"result", "version"}),
		duration: prometheus.NewHistogram(prometheus.HistogramOpts{Namespace: namespace, Name: "tls_handshake_duration_seconds",
			Help:    "Time from the ClientHello's arrival to the end of the handshake, queueing included.",
			Buckets: []float64{.0005, .001, .002, .005, .01, .02, .05, .1, .2, .5, 1, 2, 5, 10}}),
		queue: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_handshake_queue_depth",
			Help: "Handshakes waiting for a handshake worker."}, func() float64 { return float64(len(s.jobs)) }),
		workers: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_handshake_workers",
			Help: "Handshake workers running (Config.HandshakeWorkers at most; GOMAXPROCS of them stay when idle)."}, func() float64 { return float64(s.live.Load()) }),
		computing: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_handshakes_computing",
			Help: "Handshakes holding a CPU slot now (Config.HandshakeCPU at most)."}, func() float64 {
			if s.cpu == nil {
				return 0
			}
			return float64(s.cpu.held(s.cfg.HandshakeCPU))
		}),
		lowered: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_handshake_threads_lowered",
			Help: "Handshake workers on an OS thread of their own at a lowered priority (Config.HandshakeNice; Linux)."}, func() float64 { return float64(s.lowered.Load()) }),
		spare: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_spare_procs",
			Help: "Ps (GOMAXPROCS) this server added while handshakes run, so that lowered handshake threads never hold the ones the loops need (Config.HandshakeNice)."}, func() float64 { return float64(s.spareProcs()) }),
		collections: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "tls_collections_total",
			Help: "Garbage collections run after a burst of handshakes (Config.CollectAfter)."}),
		bursts: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "tls_gc_bursts_total",
			Help: "Bursts of handshakes that raised the garbage collector's target (Config.BurstGCPercent, Config.BurstRate)."}),
		burst: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_gc_burst",
			Help: "1 while this server holds the garbage collector's target raised for a burst of handshakes, else 0."}, func() float64 {
			if s.inBurst() {
				return 1
			}
			return 0
		}),
		expiry: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_certificate_expiry_seconds",
			Help: "Seconds until the served certificate's NotAfter (negative once expired)."}, func() float64 {
			return time.Until(s.cert.Load().notAfter).Seconds()
		}),
		refused: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_refused_total",
			Help: "Connections refused before any TLS work, by bound (banned, per_ip, listener, queue_full)."}, []string{"bound"}),
		records: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_record_errors_total",
			Help: "Connections closed by the record layer after the handshake, by reason."}, []string{"reason"}),
		layers: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_record_layers_total",
			Help: "Established TLS connections by version and record layer: warren (its own, on the loop) or crypto_tls (crypto/tls driven from the loop, for a TLS 1.2 connection warren's layer does not take)."}, []string{"version", "layer"}),
		keyUpdates: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "tls_key_updates_total",
			Help: "TLS 1.3 KeyUpdate messages received."}),
		reloads: prometheus.NewCounterVec(prometheus.CounterOpts{Namespace: namespace, Name: "tls_certificate_reloads_total",
			Help: "Certificate reloads by result (ok, error: the old certificate stays)."}, []string{"result"}),
		flaps: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "tls_short_connections_total",
			Help: "Connections that ended short (failed or abandoned handshake, or closed within the ban lifetime), counted toward flapping bans."}),
		bans: prometheus.NewCounter(prometheus.CounterOpts{Namespace: namespace, Name: "tls_bans_total",
			Help: "Client IPs banned for flapping (too many short connections over the ban window)."}),
		banned: prometheus.NewGaugeFunc(prometheus.GaugeOpts{Namespace: namespace, Name: "tls_banned_ips",
			Help: "Client IPs banned now."}, func() float64 {
			if s.flaps == nil {
				return 0
			}
			return float64(s.flaps.len(s.cfg.Clock.Now()))
		}),
	}
	return m
}

// recordErrors counts a record-layer failure by its close detail.
func (m *metrics) recordErrors(err error) {
	var re *recordError
	var pa *peerAlertError
	switch {
	case errors.As(err, &re):
		m.records.WithLabelValues(re.detail).Inc()
	case errors.As(err, &pa):
		m.records.WithLabelValues(pa.String()).Inc()
	}
}

// Describe sends every descriptor.
func (m *metrics) Describe(ch chan<- *prometheus.Desc) {
	m.handshakes.Describe(ch)
	m.duration.Describe(ch)
	m.queue.Describe(ch)
	m.workers.Describe(ch)
	m.computing.Describe(ch)
	m.lowered.Describe(ch)
	m.spare.Describe(ch)
	m.collections.Describe(ch)
	m.bursts.Describe(ch)
	m.burst.Describe(ch)
	m.expiry.Describe(ch)
	m.refused.Describe(ch)
	m.records.Describe(ch)
	m.layers.Describe(ch)
	m.keyUpdates.Describe(ch)
	m.reloads.Describe(ch)
	m.flaps.Describe(ch)
	m.bans.Describe(ch)
	m.banned.Describe(ch)
	m.crlNext.Describe(ch)
}

// Collect sends every metric.
func (m *metrics) Collect(ch chan<- prometheus.Metric) {
	m.handshakes.Collect(ch)
	m.duration.Collect(ch)
	m.queue.Collect(ch)
	m.workers.Collect(ch)
	m.computing.Collect(ch)
	m.lowered.Collect(ch)
	m.spare.Collect(ch)
	m.collections.Collect(ch)
	m.bursts.Collect(ch)
	m.burst.Collect(ch)
	m.expiry.Collect(ch)
	m.refused.Collect(ch)
	m.records.Collect(ch)
	m.layers.Collect(ch)
	m.keyUpdates.Collect(ch)
	m.reloads.Collect(ch)
	m.flaps.Collect(ch)
	m.bans.Collect(ch)
	m.banned.Collect(ch)
	if set := m.s.crls.Load(); set != nil && !set.nextUpdate.IsZero() {
		m.crlNext.Collect(ch)
	}
}

// versionName labels a TLS version.
func versionName(v uint16) string {
	switch v {
	case 0x0304:
		return "1.3"
	case 0x0303:
		return "1.2"
	case 0:
		return "none"
	}
	return "other"
}
