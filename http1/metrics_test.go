package http1

import (
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	promtest "github.com/prometheus/client_golang/prometheus/testutil"
)

func TestCollector(t *testing.T) {
	var st Stats
	st.Requests[2], st.Requests[4], st.Refused, st.HeaderTimeouts = 7, 2, 1, 3
	st.DurationCounts[0], st.DurationCounts[len(DurationBuckets)] = 5, 1
	st.DurationSum = 2 * time.Second
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector("", func() Stats { return st }))
	want := `
# HELP warren_http_requests_total HTTP requests answered, by status class.
# TYPE warren_http_requests_total counter
warren_http_requests_total{class="1xx"} 0
warren_http_requests_total{class="2xx"} 7
warren_http_requests_total{class="3xx"} 0
warren_http_requests_total{class="4xx"} 2
warren_http_requests_total{class="5xx"} 0
# HELP warren_http_refused_total Malformed or over-limit requests answered with an error status and closed.
# TYPE warren_http_refused_total counter
warren_http_refused_total 1
# HELP warren_http_timeouts_total Request heads or bodies not received in time (answered 408).
# TYPE warren_http_timeouts_total counter
warren_http_timeouts_total 3
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), "warren_http_requests_total",
		"warren_http_refused_total", "warren_http_timeouts_total"); err != nil {
		t.Fatal(err)
	}
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "warren_http_request_duration_seconds" {
			continue
		}
		h := mf.GetMetric()[0].GetHistogram()
		if h.GetSampleCount() != 6 || h.GetSampleSum() != 2 || h.GetBucket()[0].GetCumulativeCount() != 5 {
			t.Fatalf("duration histogram: %v", h)
		}
		return
	}
	t.Fatal("no warren_http_request_duration_seconds")
}

// TestServerCollector scrapes a live server's collector under a namespace
// of its own.
func TestServerCollector(t *testing.T) {
	s, addr := startServer(t, Config{Logger: discardLogger()}, testRouter())
	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector("edge"))
	want := `
# HELP edge_http_requests_total HTTP requests answered, by status class.
# TYPE edge_http_requests_total counter
edge_http_requests_total{class="1xx"} 0
edge_http_requests_total{class="2xx"} 1
edge_http_requests_total{class="3xx"} 0
edge_http_requests_total{class="4xx"} 0
edge_http_requests_total{class="5xx"} 0
`
	if err := promtest.GatherAndCompare(reg, strings.NewReader(want), "edge_http_requests_total"); err != nil {
		t.Fatal(err)
	}
	if n, err := promtest.GatherAndCount(reg); err != nil || n != 9 {
		t.Fatalf("%d series, %v; want 9", n, err)
	}
	if err := promtest.GatherAndCompare(reg, strings.NewReader(`
# HELP edge_http_detached_requests Requests detached by their handler (answered later, without a worker) and not yet finished.
# TYPE edge_http_detached_requests gauge
edge_http_detached_requests 0
`), "edge_http_detached_requests"); err != nil {
		t.Fatal(err)
	}
}
