package http1

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"
)

// Collector returns a Prometheus collector of the server's request
// counters, computed on scrape from Stats (nothing is counted per request
// beyond them). Metric names start with namespace; empty means "warren":
//
//	warren_http_requests_total{class="2xx"}       counter    responses by status class, "1xx" … "5xx"
//	warren_http_request_duration_seconds          histogram  request head parsed to response handed to the engine
//	warren_http_refused_total                     counter    malformed or over-limit requests (4xx/5xx, closed)
//	warren_http_timeouts_total                    counter    heads or bodies cut by their timeout (408)
//	warren_http_detached_requests                 gauge      requests detached (Ctx.Detach) and not yet finished
//
// Register it once, with the admin listener (admin.New's extra collectors)
// or any prometheus.Registerer; it is safe for concurrent scrapes.
func (s *Server) Collector(namespace string) prometheus.Collector {
	return newCollector(namespace, s.Stats)
}

// collector turns a Stats snapshot into constant metrics at scrape time.
type collector struct {
	stats                                           func() Stats
	requests, duration, refused, timeouts, detached *prometheus.Desc
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(namespace string, stats func() Stats) *collector {
	if namespace == "" {
		namespace = "warren"
	}
	return &collector{
		stats:    stats,
		requests: prometheus.NewDesc(namespace+"_http_requests_total", "HTTP requests answered, by status class.", []string{"class"}, nil),
		duration: prometheus.NewDesc(namespace+"_http_request_duration_seconds", "Time from request head parsed to response handed to the engine.", nil, nil),
		refused:  prometheus.NewDesc(namespace+"_http_refused_total", "Malformed or over-limit requests answered with an error status and closed.", nil, nil),
		timeouts: prometheus.NewDesc(namespace+"_http_timeouts_total", "Request heads or bodies not received in time (answered 408).", nil, nil),
		detached: prometheus.NewDesc(namespace+"_http_detached_requests", "Requests detached by their handler (answered later, without a worker) and not yet finished.", nil, nil),
	}
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	ch <- c.requests
	ch <- c.duration
	ch <- c.refused
	ch <- c.timeouts
	ch <- c.detached
}

// Collect takes one Stats snapshot and sends it as constant metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	st := c.stats()
	for class := 1; class <= 5; class++ {
		ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(st.Requests[class]), strconv.Itoa(class)+"xx")
	}
	buckets := make(map[float64]uint64, len(DurationBuckets))
	var cum uint64
	for i, le := range DurationBuckets {
		cum += st.DurationCounts[i]
		buckets[le] = cum
	}
	cum += st.DurationCounts[len(DurationBuckets)]
	ch <- prometheus.MustNewConstHistogram(c.duration, cum, st.DurationSum.Seconds(), buckets)
	ch <- prometheus.MustNewConstMetric(c.refused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(c.timeouts, prometheus.CounterValue, float64(st.HeaderTimeouts))
	ch <- prometheus.MustNewConstMetric(c.detached, prometheus.GaugeValue, float64(st.Detached))
}
