package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/http1"
)

// HTTPSource is what HTTPCollector reads; *http1.Server satisfies it.
type HTTPSource interface {
	Stats() http1.Stats
}

// HTTPCollector exports an HTTP server's request counters, computed on
// scrape from its per-server counters (nothing is counted per request
// beyond them):
//
//	warren_http_requests_total{class="2xx"}       responses by status class
//	warren_http_request_duration_seconds          head parsed to response handed to the engine
//	warren_http_refused_total                     malformed or over-limit requests (4xx/5xx, closed)
//	warren_http_timeouts_total                    heads or bodies cut by their timeout (408)
func HTTPCollector(namespace string, src HTTPSource) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	return &httpCollector{
		src:      src,
		requests: prometheus.NewDesc(namespace+"_http_requests_total", "HTTP requests answered, by status class.", []string{"class"}, nil),
		duration: prometheus.NewDesc(namespace+"_http_request_duration_seconds", "Time from request head parsed to response handed to the engine.", nil, nil),
		refused:  prometheus.NewDesc(namespace+"_http_refused_total", "Malformed or over-limit requests answered with an error status and closed.", nil, nil),
		timeouts: prometheus.NewDesc(namespace+"_http_timeouts_total", "Request heads or bodies not received in time (answered 408).", nil, nil),
	}
}

type httpCollector struct {
	src                                   HTTPSource
	requests, duration, refused, timeouts *prometheus.Desc
}

func (h *httpCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- h.requests
	ch <- h.duration
	ch <- h.refused
	ch <- h.timeouts
}

func (h *httpCollector) Collect(ch chan<- prometheus.Metric) {
	st := h.src.Stats()
	for class := 1; class <= 5; class++ {
		ch <- prometheus.MustNewConstMetric(h.requests, prometheus.CounterValue, float64(st.Requests[class]), strconv.Itoa(class)+"xx")
	}
	buckets := make(map[float64]uint64, len(http1.DurationBuckets))
	var cum uint64
	for i, le := range http1.DurationBuckets {
		cum += st.DurationCounts[i]
		buckets[le] = cum
	}
	cum += st.DurationCounts[len(http1.DurationBuckets)]
	ch <- prometheus.MustNewConstHistogram(h.duration, cum, st.DurationSum.Seconds(), buckets)
	ch <- prometheus.MustNewConstMetric(h.refused, prometheus.CounterValue, float64(st.Refused))
	ch <- prometheus.MustNewConstMetric(h.timeouts, prometheus.CounterValue, float64(st.HeaderTimeouts))
}
