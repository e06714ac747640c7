package upstream

import (
	"strings"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus promCollector of the cluster's figures,
// computed at scrape time from Stats, in the spirit of Envoy's
// cluster.<name>.upstream_cx_*, upstream_rq_*, circuit_breakers.*,
// outlier_detection.* and health_check.* statistics. Every metric has a
// cluster label; names start with namespace (empty means "warren"):
//
//	warren_upstream_cx_total                      counter  connections dialled
//	warren_upstream_cx_active                     gauge    connections open or connecting
//	warren_upstream_cx_connect_fail_total         counter  connects refused, unreachable or timed out
//	warren_upstream_cx_destroy_total              counter  open connections closed
//	warren_upstream_cx_keepalive_retired_total    counter  idle connections retired before the backend's Keep-Alive timeout
//	warren_upstream_cx_overflow_total             counter  dials refused by max connections
//	warren_upstream_rq_total                      counter  requests
//	warren_upstream_rq_active                     gauge    requests in progress
//	warren_upstream_rq_pending_active             gauge    requests waiting for a connection
//	warren_upstream_rq_pending_total              counter  requests that waited for a connection
//	warren_upstream_rq_pending_overflow_total     counter  requests refused by the pending bounds
//	warren_upstream_rq_pending_timeout_total      counter  requests that waited too long for a connection
//	warren_upstream_rq_overflow_total             counter  requests refused by max requests
//	warren_upstream_rq_timeout_total              counter  requests past the overall timeout
//	warren_upstream_rq_per_try_timeout_total      counter  attempts past the per-try timeout
//	warren_upstream_rq_retry_total                counter  retries
//	warren_upstream_rq_retry_reused_conn_total    counter  free retries after a reused connection failed before any byte
//	warren_upstream_rq_retry_overflow_total       counter  retries refused by the budget or max retries
//	warren_upstream_rq_hedged_total               counter  second attempts sent after the hedge delay
//	warren_upstream_rq_hedge_won_total            counter  hedged attempts that answered first
//	warren_upstream_rq_rate_limited_total         counter  requests refused by the rate limit (its queue full)
//	warren_upstream_rq_throttled_total            counter  requests and retries delayed to their rate limit slot
//	warren_upstream_rq_retry_rate_limited_total   counter  retries and hedges not made for want of a rate limit slot
//	warren_upstream_rq_pipelined_total            counter  requests written behind others on a connection
//	warren_upstream_rq_pipeline_reset_total       counter  pipelined requests whose connection closed before their response (retried)
//	warren_upstream_rq_other_loop_total           counter  requests started on a connection of another event loop than their caller's
//	warren_upstream_host_overflow_total{resource} counter  per-host thresholds hit (connections, pending, requests, retries)
//	warren_upstream_rq_xx_total{class}            counter  responses by status class
//	warren_upstream_rq_failure_total{reason}      counter  requests failed without a response, by Failure
//	warren_upstream_circuit_breaker_open          gauge    1 while the breaker is open or half-open
//	warren_upstream_circuit_breaker_rejected_total counter requests refused by the breaker
//	warren_upstream_circuit_breaker_trips_total   counter  moves to open
//	warren_upstream_outlier_ejections_total       counter  hosts ejected
//	warren_upstream_outlier_ejected               gauge    hosts ejected now
//	warren_upstream_outlier_ejections_enforced_total{kind} counter hosts ejected by trigger (consecutive_5xx, consecutive_gateway_failure, failure_percentage)
//	warren_upstream_circuit_breakers_limit{resource}  gauge the cluster's thresholds (connections, pending, requests, retries; -1: none)
//	warren_upstream_circuit_breakers_active{resource} gauge their use now
//	warren_upstream_circuit_breakers_open{resource}   gauge 1 while the resource is at its threshold (the next one is refused)
//	warren_upstream_membership_healthy            gauge    hosts healthy, not ejected, not draining
//	warren_upstream_membership_total              gauge    hosts
//	warren_upstream_health_check_total{result}    counter  active checks by result (success, failure)
//	warren_upstream_tls_handshake_total{result}   counter  TLS handshakes to https hosts by result (success, failure)
func (c *Cluster) Collector(namespace string) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	return &promCollector{c: c, ns: namespace + "_upstream_"}
}

type promCollector struct {
	c  *Cluster
	ns string
}

type metricDef struct {
	name, help string
	kind       prometheus.ValueType
	label      string
}

var metricDefs = []metricDef{
	{"cx_total", "Connections dialled.", prometheus.CounterValue, ""},
	{"cx_active", "Connections open or connecting.", prometheus.GaugeValue, ""},
	{"cx_connect_fail_total", "Connects refused, unreachable or timed out.", prometheus.CounterValue, ""},
	{"cx_destroy_total", "Open connections closed.", prometheus.CounterValue, ""},
	{"cx_keepalive_retired_total", "Idle connections retired before the backend's Keep-Alive timeout.", prometheus.CounterValue, ""},
	{"cx_overflow_total", "Dials refused by the max connections threshold.", prometheus.CounterValue, ""},
	{"rq_total", "Requests.", prometheus.CounterValue, ""},
	{"rq_active", "Requests in progress.", prometheus.GaugeValue, ""},
	{"rq_pending_active", "Requests waiting for a connection.", prometheus.GaugeValue, ""},
	{"rq_pending_total", "Requests that waited for a connection.", prometheus.CounterValue, ""},
	{"rq_pending_overflow_total", "Requests refused by the pending bounds.", prometheus.CounterValue, ""},
	{"rq_pending_timeout_total", "Requests that waited too long for a connection.", prometheus.CounterValue, ""},
	{"rq_overflow_total", "Requests refused by the max requests threshold.", prometheus.CounterValue, ""},
	{"rq_timeout_total", "Requests past the overall timeout.", prometheus.CounterValue, ""},
	{"rq_per_try_timeout_total", "Attempts past the per-try timeout.", prometheus.CounterValue, ""},
	{"rq_retry_total", "Retries.", prometheus.CounterValue, ""},
	{"rq_retry_reused_conn_total", "Retries after a reused connection failed before any response byte.", prometheus.CounterValue, ""},
	{"rq_retry_overflow_total", "Retries refused by the retry budget or max retries.", prometheus.CounterValue, ""},
	{"rq_hedged_total", "Second attempts sent after the hedge delay.", prometheus.CounterValue, ""},
	{"rq_hedge_won_total", "Hedged attempts that answered first.", prometheus.CounterValue, ""},
	{"rq_rate_limited_total", "Requests refused by the rate limit (its queue full).", prometheus.CounterValue, ""},
	{"rq_throttled_total", "Requests and retries delayed to their rate limit slot.", prometheus.CounterValue, ""},
	{"rq_retry_rate_limited_total", "Retries and hedges not made for want of a rate limit slot.", prometheus.CounterValue, ""},
	{"rq_pipelined_total", "Requests written behind others on a connection (pipelining).", prometheus.CounterValue, ""},
	{"rq_pipeline_reset_total", "Pipelined requests whose connection closed before their response started.", prometheus.CounterValue, ""},
	{"rq_other_loop_total", "Requests started on a connection of another event loop than their caller's.", prometheus.CounterValue, ""},
	{"host_overflow_total", "Per-host thresholds hit, by resource.", prometheus.CounterValue, "resource"},
	{"rq_xx_total", "Responses by status class.", prometheus.CounterValue, "class"},
	{"rq_failure_total", "Requests failed without a response, by reason.", prometheus.CounterValue, "reason"},
	{"circuit_breaker_open", "1 while the breaker is open or half-open.", prometheus.GaugeValue, ""},
	{"circuit_breaker_rejected_total", "Requests refused by the breaker.", prometheus.CounterValue, ""},
	{"circuit_breaker_trips_total", "Moves of the breaker to open.", prometheus.CounterValue, ""},
	{"outlier_ejections_total", "Hosts ejected by outlier detection.", prometheus.CounterValue, ""},
	{"outlier_ejections_enforced_total", "Hosts ejected by outlier detection, by what triggered the ejection (Envoy's ejections_enforced_*).", prometheus.CounterValue, "kind"},
	{"circuit_breakers_limit", "The cluster's resource thresholds, by resource (-1: none).", prometheus.GaugeValue, "resource"},
	{"circuit_breakers_active", "Use of the cluster's resource thresholds now, by resource.", prometheus.GaugeValue, "resource"},
	{"circuit_breakers_open", "1 while a resource is at its threshold, so the next one is refused (Envoy's cx_open, rq_pending_open, rq_open, rq_retry_open).", prometheus.GaugeValue, "resource"},
	{"outlier_ejected", "Hosts ejected now.", prometheus.GaugeValue, ""},
	{"membership_healthy", "Hosts healthy, not ejected and not draining.", prometheus.GaugeValue, ""},
	{"membership_total", "Hosts.", prometheus.GaugeValue, ""},
	{"health_check_total", "Active health checks by result.", prometheus.CounterValue, "result"},
	{"tls_handshake_total", "TLS handshakes to https hosts by result (a failure also counts as a connect failure).", prometheus.CounterValue, "result"},
}

func (k *promCollector) desc(d metricDef) *prometheus.Desc {
	labels := []string{"cluster"}
	if d.label != "" {
		labels = append(labels, d.label)
	}
	return prometheus.NewDesc(k.ns+d.name, d.help, labels, nil)
}

// Describe sends every descriptor.
func (k *promCollector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range metricDefs {
		ch <- k.desc(d)
	}
}

// Collect takes one Stats snapshot and sends it as constant metrics.
func (k *promCollector) Collect(ch chan<- prometheus.Metric) {
	s := k.c.Stats()
	name := s.Name
	open := 0.0
	if s.BreakerState == BreakerOpen.String() || s.BreakerState == BreakerHalfOpen.String() {
		open = 1
	}
	healthy := 0
	var hcOK, hcFail uint64
	for _, h := range s.Hosts {
		if h.Healthy && !h.Ejected && !h.Draining {
			healthy++
		}
		hcOK += h.HealthOK
		hcFail += h.HealthFail
	}
	plain := map[string]float64{
		"cx_total": float64(s.CxTotal), "cx_active": float64(s.CxActive), "cx_connect_fail_total": float64(s.CxConnectFail),
		"cx_destroy_total": float64(s.CxClosed), "cx_keepalive_retired_total": float64(s.CxKeepAlive),
		"cx_overflow_total": float64(s.CxOverflow), "rq_total": float64(s.RqTotal), "rq_active": float64(s.RqActive),
		"rq_pending_active": float64(s.RqPendingActive), "rq_pending_total": float64(s.RqPendingTotal),
		"rq_pending_overflow_total": float64(s.RqPendingOver), "rq_pending_timeout_total": float64(s.RqPendingTO),
		"rq_overflow_total": float64(s.RqOverflow), "rq_timeout_total": float64(s.RqTimeout),
		"rq_per_try_timeout_total": float64(s.RqPerTryTimeout), "rq_retry_total": float64(s.RqRetry),
		"rq_retry_reused_conn_total": float64(s.RqRetryReused), "rq_retry_overflow_total": float64(s.RqRetryOverflow),
		"circuit_breaker_open": open, "circuit_breaker_rejected_total": float64(s.BreakerRejected),
		"circuit_breaker_trips_total": float64(s.BreakerTrips), "outlier_ejections_total": float64(s.Ejections),
		"outlier_ejected": float64(s.EjectedNow), "membership_healthy": float64(healthy),
		"membership_total": float64(len(s.Hosts)), "rq_hedged_total": float64(s.RqHedged),
		"rq_hedge_won_total": float64(s.RqHedgeWon), "rq_rate_limited_total": float64(s.RqRateLimited),
		"rq_throttled_total": float64(s.RqThrottled), "rq_retry_rate_limited_total": float64(s.RqRetryRateLimited),
		"rq_pipelined_total": float64(s.RqPipelined), "rq_pipeline_reset_total": float64(s.RqPipelineReset),
		"rq_other_loop_total": float64(s.RqOtherLoop),
	}
	for _, d := range metricDefs {
		desc := k.desc(d)
		switch d.label {
		case "":
			ch <- prometheus.MustNewConstMetric(desc, d.kind, plain[d.name], name)
		case "class":
			for _, cl := range classNames[1:] {
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.RqStatus[cl]), name, cl)
			}
		case "reason":
			for _, f := range Failures() {
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.RqFailures[f.String()]), name, f.String())
			}
		case "kind":
			for e := EjectConsecutive5xx; e < numEjections; e++ {
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.EjectionsByKind[e.String()]), name, e.String())
			}
		case "resource":
			if strings.HasPrefix(d.name, "circuit_breakers_") {
				for r := Resource(0); r < numResources; r++ {
					ts := s.CircuitBreakers[r.String()]
					v := float64(ts.Active)
					switch d.name {
					case "circuit_breakers_limit":
						v = float64(ts.Limit)
					case "circuit_breakers_open":
						v = 0
						if ts.Limit >= 0 && ts.Active >= ts.Limit {
							v = 1
						}
					}
					ch <- prometheus.MustNewConstMetric(desc, d.kind, v, name, r.String())
				}
				continue
			}
			for _, r := range hostResourceNames {
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.HostOverflow[r]), name, r)
			}
		case "result":
			if d.name == "tls_handshake_total" {
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.TLSHandshakes), name, "success")
				ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(s.TLSHandshakeFail), name, "failure")
				continue
			}
			ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(hcOK), name, "success")
			ch <- prometheus.MustNewConstMetric(desc, d.kind, float64(hcFail), name, "failure")
		}
	}
}
