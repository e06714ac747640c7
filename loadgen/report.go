package loadgen

import (
	"fmt"
	"io"
	"math"
	"sort"
	"strings"
	"text/tabwriter"
	"time"
)

// ErrorKind classifies what went wrong. The same names key Report.Errors.
type ErrorKind uint8

const (
	// KindConnectRefused is a connect refused by the server (ECONNREFUSED).
	KindConnectRefused ErrorKind = iota
	// KindConnectTimeout is a connect that did not complete within Timeout.
	KindConnectTimeout
	// KindConnect is a connect that failed otherwise: no local port or
	// descriptor left, unreachable address.
	KindConnect
	// KindTimeout is a request, message or WebSocket handshake not
	// answered within Timeout; its connection is closed.
	KindTimeout
	// KindClosed is a connection closed by the peer (end of file or reset)
	// without saying so first (Connection: close, a WebSocket Close frame).
	KindClosed
	// KindBadStatus is an HTTP response with status 400 or above, or a
	// WebSocket handshake answered with a status other than 101.
	KindBadStatus
	// KindProtocol is a malformed response, frame or handshake, or a
	// response nobody asked for; its connection is closed.
	KindProtocol
	// KindIO is a read or write that failed for another reason.
	KindIO
	// KindUnsent is an open-loop request never sent because no
	// connection could take it within Timeout of when it was due: the
	// connections were all full (Inflight outstanding) or closed.
	KindUnsent
	numKinds
)

var kindNames = [numKinds]string{"connect_refused", "connect_timeout", "connect_error", "timeout", "closed",
	"bad_status", "protocol", "io", "unsent"}

// String returns the snake_case name used in reports.
func (k ErrorKind) String() string {
	if k < numKinds {
		return kindNames[k]
	}
	return "unknown"
}

// ErrorKinds lists every ErrorKind in order.
func ErrorKinds() []ErrorKind {
	ks := make([]ErrorKind, numKinds)
	for i := range ks {
		ks[i] = ErrorKind(i)
	}
	return ks
}

// Summary is a latency distribution's digest, in milliseconds.
type Summary struct {
	Count uint64  `json:"count"`
	Mean  float64 `json:"mean_ms"`
	Min   float64 `json:"min_ms"`
	P50   float64 `json:"p50_ms"`
	P90   float64 `json:"p90_ms"`
	P99   float64 `json:"p99_ms"`
	P999  float64 `json:"p99_9_ms"`
	Max   float64 `json:"max_ms"`
}

func ms(d time.Duration) float64 { return float64(d) / 1e6 }

// summarize digests h.
func summarize(h *Histogram) Summary {
	if h == nil || h.Count() == 0 {
		return Summary{}
	}
	return Summary{
		Count: h.Count(), Mean: ms(h.Mean()), Min: ms(h.Min()),
		P50: ms(h.Quantile(0.5)), P90: ms(h.Quantile(0.9)), P99: ms(h.Quantile(0.99)),
		P999: ms(h.Quantile(0.999)), Max: ms(h.Max()),
	}
}

// Sample is one interval (normally a second) of a run, for progress and
// charts.
type Sample struct {
	// T is the end of the interval in seconds since the run started.
	T float64 `json:"t"`
	// Phase is "ramp", "hold" or "traffic".
	Phase string `json:"phase"`
	// Conns is the number of open connections at the end of the interval.
	Conns int64 `json:"conns"`
	// Connects counts connections established in the interval.
	Connects int64 `json:"connects"`
	// Requests counts responses (or echoed messages) received in the
	// interval; Rate is that per second.
	Requests int64   `json:"requests"`
	Rate     float64 `json:"rate"`
	// Errors counts errors of every kind in the interval.
	Errors int64 `json:"errors"`
	// Latency percentiles of the responses received in the interval, in
	// milliseconds; zero when there were none.
	P50  float64 `json:"p50_ms"`
	P90  float64 `json:"p90_ms"`
	P99  float64 `json:"p99_ms"`
	P999 float64 `json:"p99_9_ms"`
	Max  float64 `json:"max_ms"`
}

// PhaseSpan is when a phase ("ramp", "hold" or "traffic") ran, in seconds
// since the run started.
type PhaseSpan struct {
	Name  string  `json:"name"`
	Start float64 `json:"start"`
	End   float64 `json:"end"`
}

// ServerUsage is what the run cost the server, read from /proc (ServerPID)
// or its admin /metrics (AdminURL) at the start of the run, after the
// ramp, after the hold and after the traffic.
type ServerUsage struct {
	PID      int    `json:"pid,omitempty"`
	AdminURL string `json:"admin_url,omitempty"`
	// Source is "proc" or "admin": where RSS and CPU were read.
	Source string `json:"source"`
	// RSS in bytes at the start; with the connections open and idle (at
	// the end of the hold, or after the ramp without one); and at the end.
	RSSStart int64 `json:"rss_start_bytes"`
	RSSHeld  int64 `json:"rss_held_bytes"`
	RSSEnd   int64 `json:"rss_end_bytes"`
	// RSSPerConn is (RSSHeld - RSSStart) / connections open after the
	// ramp, in bytes.
	RSSPerConn float64 `json:"rss_per_conn_bytes"`
	// RSSAnonPerConn is the same figure for the anonymous memory alone
	// (RssAnon: heap, stacks, runtime metadata), without the file-backed
	// pages, such as the server binary's, paged in meanwhile: a one-off
	// (the runtime's first GC cycle reads the binary's .gopclntab) that
	// RSSPerConn spreads over the connections. Zero when unknown (read
	// from the admin endpoint, or a kernel without RssAnon).
	RSSAnonPerConn float64 `json:"rss_anon_per_conn_bytes,omitempty"`
	// CPU seconds (user + system) spent by the server in the ramp, the
	// hold and the traffic phase.
	CPURamp    float64 `json:"cpu_ramp_seconds"`
	CPUHold    float64 `json:"cpu_hold_seconds"`
	CPUTraffic float64 `json:"cpu_traffic_seconds"`
	// CPUPerRequest is CPUTraffic / Requests, in microseconds.
	CPUPerRequest float64 `json:"cpu_per_request_us"`
	// ConnsActive is warren_connections_active when RSSHeld was read,
	// when the admin endpoint was given and has it; -1 otherwise.
	ConnsActive int64 `json:"conns_active"`
	// Errors lists samples that could not be taken.
	Errors []string `json:"errors,omitempty"`
}

// Report is the outcome of a run. It marshals to JSON as written by
// warren load -json; Merge combines the reports of several processes.
type Report struct {
	URL      string    `json:"url"`
	Protocol string    `json:"protocol"` // "http" or "websocket"
	Mode     string    `json:"mode"`     // "closed-loop", "open-loop", "idle" or "devices"
	Procs    int       `json:"procs"`
	Start    time.Time `json:"start"`

	// The run's settings (after defaults).
	ConnsAsked int     `json:"conns_asked"`
	Rate       float64 `json:"rate"`
	RPS        float64 `json:"rps"`
	Inflight   int     `json:"inflight"`
	MsgSize    int     `json:"msg_size,omitempty"`
	TimeoutS   float64 `json:"timeout_seconds"`

	// Connections. ConnectAttempts counts every connect started
	// (reconnects included), Connects those established (for WebSocket:
	// upgraded), ConnsFailed those that failed to connect or ended with an
	// error. ConnsPeak is the most open at once (summed over processes).
	ConnectAttempts int64 `json:"connect_attempts"`
	Connects        int64 `json:"connects"`
	ConnsFailed     int64 `json:"conns_failed"`
	ConnsPeak       int64 `json:"conns_peak"`
	// RampConnects were established during the ramp, which took
	// RampSeconds; ConnectRate is their ratio.
	RampConnects   int64   `json:"ramp_connects"`
	RampSeconds    float64 `json:"ramp_seconds"`
	ConnectRate    float64 `json:"connect_rate"`
	ConnectLatency Summary `json:"connect_latency"`

	HoldSeconds    float64 `json:"hold_seconds"`
	TrafficSeconds float64 `json:"traffic_seconds"`

	// Requests (HTTP) or messages (WebSocket): sent, answered, and sent
	// but never answered (their connection closed, or the run ended).
	// Throughput is Requests per traffic second.
	Sent       int64   `json:"sent"`
	Requests   int64   `json:"requests"`
	Unanswered int64   `json:"unanswered"`
	Throughput float64 `json:"throughput"`
	BytesIn    int64   `json:"bytes_in"`
	BytesOut   int64   `json:"bytes_out"`

	// Latency of every answered request: open-loop from when it was due,
	// closed-loop from when it was sent.
	Latency Summary `json:"latency"`
	// Errors counts errors by ErrorKind name.
	Errors map[string]int64 `json:"errors"`

	Server *ServerUsage `json:"server,omitempty"`
	// Phases says when each phase ran; Timeline has a sample a second.
	Phases   []PhaseSpan `json:"phases"`
	Timeline []Sample    `json:"timeline"`

	// The full histograms, so reports merge exactly.
	LatencyHist *Histogram `json:"latency_histogram"`
	ConnectHist *Histogram `json:"connect_histogram"`

	// Devices is what a devices run (ScenarioDevices) measured; nil for
	// the other loads.
	Devices *DeviceReport `json:"devices,omitempty"`
}

// TotalErrors returns the sum of Errors.
func (r *Report) TotalErrors() int64 {
	var n int64
	for _, v := range r.Errors {
		n += v
	}
	return n
}

// FailedFraction returns ConnsFailed / ConnectAttempts, counting
// connections never attempted (the ramp cut short) as failed too.
func (r *Report) FailedFraction() float64 {
	attempts := max(r.ConnectAttempts, int64(r.ConnsAsked))
	if attempts == 0 {
		return 0
	}
	failed := r.ConnsFailed + max(int64(r.ConnsAsked)-r.ConnectAttempts, 0)
	return float64(failed) / float64(attempts)
}

// finalize recomputes the derived fields from the counters and histograms.
func (r *Report) finalize() {
	if r.LatencyHist == nil {
		r.LatencyHist = &Histogram{}
	}
	if r.ConnectHist == nil {
		r.ConnectHist = &Histogram{}
	}
	if r.Errors == nil {
		r.Errors = map[string]int64{}
	}
	r.Latency = summarize(r.LatencyHist)
	r.ConnectLatency = summarize(r.ConnectHist)
	r.ConnectRate, r.Throughput = 0, 0
	if r.RampSeconds > 0 {
		r.ConnectRate = float64(r.RampConnects) / r.RampSeconds
	}
	if r.TrafficSeconds > 0 {
		r.Throughput = float64(r.Requests) / r.TrafficSeconds
	}
	if r.Server != nil && r.Requests > 0 {
		r.Server.CPUPerRequest = r.Server.CPUTraffic / float64(r.Requests) * 1e6
	}
	if r.Devices != nil {
		r.Devices.finalize(r)
	}
}

// Merge combines the reports of processes that ran the same load side by
// side into one: counters and histograms add up exactly, durations take
// the longest, and the timelines are combined interval by interval (sums
// for counts; for percentiles, which cannot be combined, the largest of
// the processes' values, an upper bound). The server usage of the first
// report that has one is kept. Nil reports are skipped; Merge of nothing
// is an empty report.
func Merge(reports ...*Report) *Report {
	out := &Report{Errors: map[string]int64{}, LatencyHist: &Histogram{}, ConnectHist: &Histogram{}}
	first := true
	for _, r := range reports {
		if r == nil {
			continue
		}
		if first {
			out.URL, out.Protocol, out.Mode, out.Start = r.URL, r.Protocol, r.Mode, r.Start
			out.Rate, out.RPS, out.Inflight, out.MsgSize, out.TimeoutS = 0, 0, r.Inflight, r.MsgSize, r.TimeoutS
			first = false
		} else if r.Start.Before(out.Start) {
			out.Start = r.Start
		}
		out.Procs += max(r.Procs, 1)
		out.ConnsAsked += r.ConnsAsked
		out.Rate += r.Rate
		out.RPS += r.RPS
		out.ConnectAttempts += r.ConnectAttempts
		out.Connects += r.Connects
		out.ConnsFailed += r.ConnsFailed
		out.ConnsPeak += r.ConnsPeak
		out.RampConnects += r.RampConnects
		out.RampSeconds = max(out.RampSeconds, r.RampSeconds)
		out.HoldSeconds = max(out.HoldSeconds, r.HoldSeconds)
		out.TrafficSeconds = max(out.TrafficSeconds, r.TrafficSeconds)
		out.Sent += r.Sent
		out.Requests += r.Requests
		out.Unanswered += r.Unanswered
		out.BytesIn += r.BytesIn
		out.BytesOut += r.BytesOut
		for k, v := range r.Errors {
			out.Errors[k] += v
		}
		out.LatencyHist.Merge(r.LatencyHist)
		out.ConnectHist.Merge(r.ConnectHist)
		if r.Devices != nil {
			if out.Devices == nil {
				out.Devices = &DeviceReport{}
			}
			out.Devices.merge(r.Devices)
		}
		if out.Server == nil && r.Server != nil {
			s := *r.Server
			out.Server = &s
		}
		out.Timeline = mergeTimelines(out.Timeline, r.Timeline)
		if out.Phases == nil {
			out.Phases = r.Phases
		}
	}
	out.finalize()
	return out
}

func mergeTimelines(a, b []Sample) []Sample {
	for i, s := range b {
		if i >= len(a) {
			a = append(a, s)
			continue
		}
		m := &a[i]
		m.T = max(m.T, s.T)
		m.Conns += s.Conns
		m.Connects += s.Connects
		m.Requests += s.Requests
		m.Rate += s.Rate
		m.Errors += s.Errors
		m.P50, m.P90, m.P99 = max(m.P50, s.P50), max(m.P90, s.P90), max(m.P99, s.P99)
		m.P999, m.Max = max(m.P999, s.P999), max(m.Max, s.Max)
	}
	return a
}

// WriteSummary writes the report as a human-readable table.
func (r *Report) WriteSummary(w io.Writer) error {
	tw := tabwriter.NewWriter(w, 0, 0, 2, ' ', 0)
	p := func(format string, args ...any) { fmt.Fprintf(tw, format+"\n", args...) }
	mode := r.Mode
	if r.Mode == "open-loop" {
		mode += fmt.Sprintf(" at %s/s", count(r.RPS))
	}
	if r.Mode != "idle" {
		mode += fmt.Sprintf(", inflight %d", r.Inflight)
	}
	if r.Protocol == "websocket" {
		mode += fmt.Sprintf(", %d-byte messages", r.MsgSize)
	}
	if r.Devices != nil {
		mode = r.Devices.mode(r)
	}
	p("target\t%s (%s, %s)", r.URL, r.Protocol, mode)
	p("processes\t%d", max(r.Procs, 1))
	p("connections\t%s asked, %s established, %s failed (%.2f%%), peak %s open",
		count(float64(r.ConnsAsked)), count(float64(r.Connects)), count(float64(r.ConnsFailed)),
		100*r.FailedFraction(), count(float64(r.ConnsPeak)))
	p("ramp\t%s connects in %s = %s conn/s; connect latency %s",
		count(float64(r.RampConnects)), secs(r.RampSeconds), count(r.ConnectRate), percentiles(r.ConnectLatency))
	if r.HoldSeconds > 0 {
		p("hold\t%s idle", secs(r.HoldSeconds))
	}
	unit := "req"
	if r.Protocol == "websocket" {
		unit = "msg"
	}
	if r.Devices != nil {
		r.Devices.writeSummary(p, r)
	} else if r.TrafficSeconds > 0 {
		p("traffic\t%s: %s %s answered of %s sent (%s unanswered) = %s %s/s",
			secs(r.TrafficSeconds), count(float64(r.Requests)), unit, count(float64(r.Sent)),
			count(float64(r.Unanswered)), count(r.Throughput), unit)
		p("bytes\tin %s (%s/s), out %s (%s/s)", bytesIEC(float64(r.BytesIn)),
			bytesIEC(float64(r.BytesIn)/r.TrafficSeconds), bytesIEC(float64(r.BytesOut)),
			bytesIEC(float64(r.BytesOut)/r.TrafficSeconds))
		p("latency\t%s", percentiles(r.Latency))
	}
	p("errors\t%s", r.errorList())
	if s := r.Server; s != nil && s.RSSStart == 0 && s.RSSEnd == 0 && len(s.Errors) > 0 {
		for _, e := range s.Errors {
			p("server note\t%s", e)
		}
	} else if s != nil {
		who := fmt.Sprintf("pid %d", s.PID)
		if s.PID == 0 {
			who = s.AdminURL
		}
		held := "after ramp"
		if r.HoldSeconds > 0 {
			held = "after hold"
		}
		p("server\t%s (%s): RSS %s at start -> %s %s -> %s at end", who, s.Source,
			bytesIEC(float64(s.RSSStart)), bytesIEC(float64(s.RSSHeld)), held, bytesIEC(float64(s.RSSEnd)))
		if s.RSSAnonPerConn != 0 {
			p("server memory\t%s per connection (anonymous %s)", bytesIEC(s.RSSPerConn), bytesIEC(s.RSSAnonPerConn))
		} else {
			p("server memory\t%s per connection", bytesIEC(s.RSSPerConn))
		}
		cpu := fmt.Sprintf("ramp %.2fs, hold %.2fs, traffic %.2fs", s.CPURamp, s.CPUHold, s.CPUTraffic)
		if r.Requests > 0 {
			cpu += fmt.Sprintf(" = %.1f µs per %s", s.CPUPerRequest, unit)
		}
		p("server cpu\t%s", cpu)
		if s.ConnsActive >= 0 {
			p("server conns\t%s active %s (warren_connections_active)", count(float64(s.ConnsActive)), held)
		}
		for _, e := range s.Errors {
			p("server note\t%s", e)
		}
	}
	return tw.Flush()
}

func (r *Report) errorList() string {
	if r.TotalErrors() == 0 {
		return "none"
	}
	names := make([]string, 0, len(r.Errors))
	for k, v := range r.Errors {
		if v != 0 {
			names = append(names, k)
		}
	}
	sort.Slice(names, func(i, j int) bool { return kindOrder(names[i]) < kindOrder(names[j]) })
	parts := make([]string, len(names))
	for i, k := range names {
		parts[i] = fmt.Sprintf("%s %s", k, count(float64(r.Errors[k])))
	}
	return strings.Join(parts, ", ")
}

func kindOrder(name string) int {
	for i, n := range kindNames {
		if n == name {
			return i
		}
	}
	return len(kindNames)
}

func percentiles(s Summary) string {
	if s.Count == 0 {
		return "-"
	}
	return fmt.Sprintf("p50 %s  p90 %s  p99 %s  p99.9 %s  max %s  (mean %s, n=%s)",
		msStr(s.P50), msStr(s.P90), msStr(s.P99), msStr(s.P999), msStr(s.Max), msStr(s.Mean),
		count(float64(s.Count)))
}

// msStr formats milliseconds with three significant digits.
func msStr(v float64) string {
	switch {
	case v == 0:
		return "0"
	case v < 1:
		return fmt.Sprintf("%.0fµs", v*1000)
	case v < 10:
		return fmt.Sprintf("%.2fms", v)
	case v < 100:
		return fmt.Sprintf("%.1fms", v)
	case v < 10000:
		return fmt.Sprintf("%.0fms", v)
	}
	return fmt.Sprintf("%.1fs", v/1000)
}

func secs(v float64) string { return fmt.Sprintf("%.2fs", v) }

// count formats v with thousands separators, keeping one decimal below 100.
func count(v float64) string {
	if math.IsNaN(v) || math.IsInf(v, 0) {
		return "-"
	}
	if v != math.Trunc(v) && math.Abs(v) < 100 {
		return fmt.Sprintf("%.1f", v)
	}
	s := fmt.Sprintf("%.0f", math.Abs(v))
	var b strings.Builder
	if v < 0 {
		b.WriteByte('-')
	}
	for i, c := range s {
		if i > 0 && (len(s)-i)%3 == 0 {
			b.WriteByte(',')
		}
		b.WriteRune(c)
	}
	return b.String()
}

func bytesIEC(v float64) string {
	neg := v < 0
	v = math.Abs(v)
	units := []string{"B", "KiB", "MiB", "GiB", "TiB"}
	i := 0
	for v >= 1024 && i < len(units)-1 {
		v /= 1024
		i++
	}
	s := fmt.Sprintf("%.1f %s", v, units[i])
	if i == 0 {
		s = fmt.Sprintf("%.0f B", v)
	}
	if neg {
		s = "-" + s
	}
	return s
}
