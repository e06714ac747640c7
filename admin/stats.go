package admin

import (
	"math"
	"net/http"
	"runtime"
	"slices"
	"strconv"
	"strings"
	"time"

	dto "github.com/prometheus/client_model/go"

	"github.com/warrenhq/warren/engine"
)

// stats is the compact JSON /api/stats answers with, once a second per
// open dashboard. Counters are totals; the dashboard derives rates.
type stats struct {
	Time          float64           `json:"time"` // Unix seconds, from Config.Clock
	Accepted      uint64            `json:"accepted"`
	ClosedTotal   uint64            `json:"closed_total"`
	Active        int64             `json:"active"`
	States        map[string]int64  `json:"states"`
	Closed        map[string]uint64 `json:"closed"`
	Rejected      map[string]uint64 `json:"rejected"`
	BytesIn       uint64            `json:"bytes_in"`
	BytesOut      uint64            `json:"bytes_out"`
	QueuedBytes   int64             `json:"queued_bytes"`
	WatermarkHits uint64            `json:"watermark_hits"`
	WorkersBusy   int64             `json:"workers_busy"`
	WorkerQueue   int               `json:"worker_queue"`
	IdleTimeout   float64           `json:"idle_timeout_seconds"`
	Overload      float64           `json:"overload"`
	Draining      bool              `json:"draining"`
	Loops         []loopJSON        `json:"loops"`
	DurationCount uint64            `json:"duration_count"`
	DurationSum   float64           `json:"duration_sum_seconds"`
	RSS           uint64            `json:"rss_bytes"`
	MemPerConn    float64           `json:"memory_per_connection_bytes"`
	GoHeap        uint64            `json:"go_heap_bytes"`
	Goroutines    int               `json:"goroutines"`
	HTTP          *httpJSON         `json:"http,omitempty"`
	WebSocket     *wsJSON           `json:"websocket,omitempty"`
	Gateway       *gatewayJSON      `json:"gateway,omitempty"`
	MQTT          *mqttJSON         `json:"mqtt,omitempty"` // see dashboard.go
	Extra         []seriesJSON      `json:"extra"`
	Top           []Conn            `json:"top,omitempty"`
}

type loopJSON struct {
	Conns    int64   `json:"conns"`
	Accepted uint64  `json:"accepted"`
	Busy     float64 `json:"busy"` // share of its last ~250 ms awake; 0 while folded
	Host     int     `json:"host"` // the loop running this one (folding)
}

// httpJSON sums <ns>_http_requests_total and
// <ns>_http_request_duration_seconds over their label sets.
type httpJSON struct {
	Requests uint64            `json:"requests"`
	ByClass  map[string]uint64 `json:"by_class"`
	Latency  *histJSON         `json:"latency,omitempty"`
}

type histJSON struct {
	Count uint64  `json:"count"`
	Sum   float64 `json:"sum"`
	// Buckets are [upper bound, cumulative count] pairs, +Inf left out.
	Buckets [][2]float64 `json:"buckets"`
}

// gatewayJSON is the device gateway's figures (<ns>_gateway_*), for the
// dashboard's devices panel.
type gatewayJSON struct {
	Online       float64 `json:"online"`
	Known        float64 `json:"known"`
	TelemetryIn  float64 `json:"telemetry_in"`
	TelemetryOut float64 `json:"telemetry_out"`
	Dropped      float64 `json:"telemetry_dropped"`
	Commands     float64 `json:"commands"`
	NATS         float64 `json:"nats_connected"`
}

// wsJSON sums <ns>_websocket_messages_total by direction.
type wsJSON struct {
	In  uint64 `json:"in"`
	Out uint64 `json:"out"`
}

// seriesJSON is any other sample of the extra collectors.
type seriesJSON struct {
	Name    string  `json:"name"` // with labels, as Prometheus writes them
	Counter bool    `json:"counter,omitempty"`
	Value   float64 `json:"value"`
}

const (
	topEvery  = 2 * time.Second // the busiest table walks every connection: not more often
	topBudget = 20              // and not more than 1/20 of the time
	maxTop    = 100
	maxExtra  = 64
)

func (s *Server) serveStats(w http.ResponseWriter, r *http.Request) {
	out := s.snapshot()
	if v := r.URL.Query().Get("top"); v != "" {
		n, err := strconv.Atoi(v)
		if err != nil || n < 0 {
			writeError(w, http.StatusBadRequest, "admin: top: %q is not a whole number", v)
			return
		}
		out.Top = s.busiest(min(n, maxTop))
	}
	writeJSON(w, http.StatusOK, out)
}

// snapshot gathers the dashboard's figures.
func (s *Server) snapshot() stats {
	st := s.src.Stats()
	out := stats{
		Time:     float64(s.clock.Now().UnixNano()) / 1e9,
		Accepted: st.Accepted, Active: st.Active,
		States: make(map[string]int64), Closed: make(map[string]uint64), Rejected: make(map[string]uint64),
		BytesIn: st.BytesIn, BytesOut: st.BytesOut, QueuedBytes: st.QueuedBytes,
		WatermarkHits: st.WatermarkHits, WorkersBusy: st.WorkersBusy, WorkerQueue: st.WorkerQueue,
		IdleTimeout: idleSeconds(st.IdleTimeout), Draining: s.src.Draining(),
		DurationSum: st.DurationSum.Seconds(), Goroutines: runtime.NumGoroutine(),
		Extra: []seriesJSON{},
	}
	if s.cfg.Overload != nil {
		out.Overload = finite(s.cfg.Overload())
	}
	for _, x := range engine.States() {
		if x != engine.StateClosed {
			out.States[x.String()] = at(st.ByState, x)
		}
	}
	for _, r := range engine.CloseReasons() {
		n := at(st.Closed, r)
		out.Closed[r.String()] = n
		out.ClosedTotal += n
	}
	for _, b := range engine.Bounds() {
		out.Rejected[b.String()] = at(st.Rejected, b)
	}
	for _, l := range st.Loops {
		out.Loops = append(out.Loops, loopJSON{Conns: l.Conns, Accepted: l.Accepted, Busy: l.Busy, Host: l.Host})
	}
	for _, n := range st.DurationCounts {
		out.DurationCount += n
	}
	out.RSS = residentBytes()
	out.MemPerConn = perConn(out.RSS, st.Active)
	out.GoHeap = goHeapBytes()
	s.readExtra(&out)
	if out.MQTT != nil {
		readMQTTCloses(out.MQTT, st.Details)
	}
	return out
}

// readExtra gathers the extra collectors alone (never the Go or process
// collectors) and sorts their samples into out.
func (s *Server) readExtra(out *stats) {
	mfs, err := s.extra.Gather()
	if err != nil && len(mfs) == 0 {
		return
	}
	reqs, dur, msgs := s.ns+"_http_requests_total", s.ns+"_http_request_duration_seconds", s.ns+"_websocket_messages_total"
	for _, mf := range mfs {
		name := mf.GetName()
		switch {
		case name == reqs:
			if out.HTTP == nil {
				out.HTTP = &httpJSON{ByClass: map[string]uint64{}}
			}
			for _, m := range mf.GetMetric() {
				v := uint64(sampleValue(m))
				out.HTTP.Requests += v
				if c := label(m, "class"); c != "" {
					out.HTTP.ByClass[c] += v
				}
			}
			continue
		case name == dur && mf.GetType() == dto.MetricType_HISTOGRAM:
			if out.HTTP == nil {
				out.HTTP = &httpJSON{ByClass: map[string]uint64{}}
			}
			out.HTTP.Latency = mergeHistograms(mf.GetMetric())
			continue
		case strings.HasPrefix(name, s.ns+"_mqtt_"):
			readMQTT(out, strings.TrimPrefix(name, s.ns+"_mqtt_"), mf) // the MQTT panel has them all
			continue
		case name == s.ns+"_gateway_mqtt_refused_total":
			readMQTTRefusals(out, mf) // and listed with the other series below
		case strings.HasPrefix(name, s.ns+"_gateway_"):
			if out.Gateway == nil {
				out.Gateway = &gatewayJSON{}
			}
			g := out.Gateway
			for _, m := range mf.GetMetric() {
				v := sampleValue(m)
				switch strings.TrimPrefix(name, s.ns+"_gateway_") {
				case "devices_online":
					g.Online += v
				case "devices_known":
					g.Known = max(g.Known, v) // every node's view of the same cluster
				case "telemetry_received_total":
					g.TelemetryIn += v
				case "telemetry_published_total":
					g.TelemetryOut += v
				case "telemetry_dropped_total":
					g.Dropped += v
				case "commands_total":
					g.Commands += v
				case "nats_connected":
					g.NATS += v
				}
			}
			// Also listed with the other series below.
		case name == msgs:
			if out.WebSocket == nil {
				out.WebSocket = &wsJSON{}
			}
			for _, m := range mf.GetMetric() {
				switch label(m, "direction") {
				case "in":
					out.WebSocket.In += uint64(sampleValue(m))
				case "out":
					out.WebSocket.Out += uint64(sampleValue(m))
				}
			}
			continue
		}
		for _, m := range mf.GetMetric() {
			if len(out.Extra) >= maxExtra {
				return
			}
			id := seriesName(name, m)
			switch mf.GetType() {
			case dto.MetricType_HISTOGRAM:
				h := m.GetHistogram()
				out.Extra = append(out.Extra,
					seriesJSON{Name: id + "_count", Counter: true, Value: float64(h.GetSampleCount())},
					seriesJSON{Name: id + "_sum", Counter: true, Value: finite(h.GetSampleSum())})
			case dto.MetricType_SUMMARY:
				sm := m.GetSummary()
				out.Extra = append(out.Extra,
					seriesJSON{Name: id + "_count", Counter: true, Value: float64(sm.GetSampleCount())},
					seriesJSON{Name: id + "_sum", Counter: true, Value: finite(sm.GetSampleSum())})
			default:
				out.Extra = append(out.Extra, seriesJSON{Name: id, Counter: mf.GetType() == dto.MetricType_COUNTER,
					Value: sampleValue(m)})
			}
		}
	}
}

// sampleValue returns a counter, gauge or untyped sample's value; NaN and
// infinities, which JSON cannot carry, read as 0.
func sampleValue(m *dto.Metric) float64 {
	switch {
	case m.Counter != nil:
		return finite(m.Counter.GetValue())
	case m.Gauge != nil:
		return finite(m.Gauge.GetValue())
	case m.Untyped != nil:
		return finite(m.Untyped.GetValue())
	}
	return 0
}

func finite(v float64) float64 {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return 0
	}
	return v
}

func label(m *dto.Metric, name string) string {
	for _, lp := range m.GetLabel() {
		if lp.GetName() == name {
			return lp.GetValue()
		}
	}
	return ""
}

// seriesName writes name{k="v",...} the way the text exposition does.
func seriesName(name string, m *dto.Metric) string {
	if len(m.GetLabel()) == 0 {
		return name
	}
	var b strings.Builder
	b.WriteString(name)
	b.WriteByte('{')
	for i, lp := range m.GetLabel() {
		if i > 0 {
			b.WriteByte(',')
		}
		b.WriteString(lp.GetName())
		b.WriteString(`="`)
		b.WriteString(lp.GetValue())
		b.WriteByte('"')
	}
	b.WriteByte('}')
	return b.String()
}

// mergeHistograms adds histograms of several label sets bucket by bucket.
func mergeHistograms(ms []*dto.Metric) *histJSON {
	h := &histJSON{Buckets: [][2]float64{}}
	cum := map[float64]float64{}
	for _, m := range ms {
		mh := m.GetHistogram()
		if mh == nil {
			continue
		}
		h.Count += mh.GetSampleCount()
		h.Sum += finite(mh.GetSampleSum())
		for _, b := range mh.GetBucket() {
			if !math.IsInf(b.GetUpperBound(), +1) {
				cum[b.GetUpperBound()] += float64(b.GetCumulativeCount())
			}
		}
	}
	for le, n := range cum {
		h.Buckets = append(h.Buckets, [2]float64{le, n})
	}
	slices.SortFunc(h.Buckets, func(a, b [2]float64) int {
		switch {
		case a[0] < b[0]:
			return -1
		case a[0] > b[0]:
			return 1
		}
		return 0
	})
	return h
}

// busiest returns the n connections that moved the most bytes. The walk
// over every connection is shared: however many dashboards are open, it
// runs at most once per topEvery, and less often when it is slow, so that
// it takes at most 1/topBudget of the time (on the engine's loops too).
func (s *Server) busiest(n int) []Conn {
	if n == 0 {
		return nil
	}
	s.topMu.Lock()
	defer s.topMu.Unlock()
	if s.top == nil || n > s.topN || !time.Now().Before(s.topNext) {
		start := time.Now()
		l := s.listConns(connQuery{sort: "bytes", limit: n})
		took := time.Since(start)
		s.top, s.topN, s.topNext = l.Conns, n, start.Add(max(topEvery, topBudget*took))
	}
	return s.top[:min(n, len(s.top))]
}

// goHeapBytes returns the bytes of live and unswept heap objects, read
// without stopping the world.
func goHeapBytes() uint64 {
	return readUint64Metric("/memory/classes/heap/objects:bytes")
}
