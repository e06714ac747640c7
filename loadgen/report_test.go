package loadgen

import (
	"bytes"
	"encoding/json"
	"encoding/xml"
	"errors"
	"io"
	"os"
	"path/filepath"
	"reflect"
	"strings"
	"testing"
	"time"
)

// sampleReport is a fully populated report, finalized.
func sampleReport(seed int) *Report {
	r := &Report{
		URL: "http://127.0.0.1:8080/", Protocol: "http", Mode: "open-loop", Procs: 1,
		Start:      time.Date(2026, 1, 2, 3, 4, 5, 6, time.UTC),
		ConnsAsked: 100, Rate: 1000, RPS: 5000, Inflight: 2, TimeoutS: 10,
		ConnectAttempts: 101, Connects: 99, ConnsFailed: 2, ConnsPeak: 99, RampConnects: 99, RampSeconds: 0.1,
		HoldSeconds: 1, TrafficSeconds: 2, Sent: 10000, Requests: 9990, Unanswered: 10,
		BytesIn: 1 << 20, BytesOut: 1 << 19,
		Errors: map[string]int64{"connect_refused": 2, "timeout": 1},
		Server: &ServerUsage{PID: 42, Source: "proc", RSSStart: 10 << 20, RSSHeld: 11 << 20, RSSEnd: 12 << 20,
			RSSPerConn: 10591.7, CPURamp: 0.01, CPUHold: 0.02, CPUTraffic: 1.5, ConnsActive: -1,
			Errors: []string{"note"}},
		Phases: []PhaseSpan{{"ramp", 0, 0.1}, {"hold", 0.1, 1.1}, {"traffic", 1.1, 3.1}},
		Timeline: []Sample{
			{T: 1, Phase: "hold", Conns: 99, Connects: 99},
			{T: 2, Phase: "traffic", Conns: 99, Requests: 5000, Rate: 5000, P50: 0.2, P90: 0.5, P99: 1, P999: 3, Max: 4},
			{T: 3, Phase: "traffic", Conns: 98, Requests: 4990, Rate: 4990, Errors: 1, P50: 0.3, P90: 0.6, P99: 2, P999: 5, Max: 9},
		},
		LatencyHist: &Histogram{}, ConnectHist: &Histogram{},
	}
	for i := range 9990 {
		r.LatencyHist.Record(time.Duration((i*7+seed)%5000+100) * time.Microsecond)
	}
	for i := range 99 {
		r.ConnectHist.Record(time.Duration(i+seed) * 10 * time.Microsecond)
	}
	r.finalize()
	return r
}

func TestReportJSONRoundTrip(t *testing.T) {
	for name, rep := range map[string]*Report{"synthetic": sampleReport(0), "run": runOnce(t)} {
		b, err := json.Marshal(rep)
		if err != nil {
			t.Fatal(err)
		}
		var back Report
		if err := json.Unmarshal(b, &back); err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		if !reflect.DeepEqual(rep, &back) {
			t.Fatalf("%s: round trip differs:\n%s\n%s", name, b, mustJSON(&back))
		}
		for _, key := range []string{`"p99_9_ms"`, `"latency_histogram"`, `"errors"`, `"timeline"`, `"connect_rate"`} {
			if !bytes.Contains(b, []byte(key)) {
				t.Errorf("%s: JSON lacks %s", name, key)
			}
		}
	}
}

func runOnce(t *testing.T) *Report {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.Duration = 1100 * time.Millisecond
	return run(t, cfg)
}

func mustJSON(v any) []byte {
	b, _ := json.Marshal(v)
	return b
}

// wellFormed decodes an SVG file fully and returns its element names.
func wellFormed(t *testing.T, path string) map[string]int {
	t.Helper()
	f, err := os.Open(path)
	if err != nil {
		t.Fatal(err)
	}
	defer f.Close()
	d := xml.NewDecoder(f)
	d.Strict = true
	elems := map[string]int{}
	root := ""
	for {
		tok, err := d.Token()
		if errors.Is(err, io.EOF) {
			break
		}
		if err != nil {
			t.Fatalf("%s: %v", path, err)
		}
		if se, ok := tok.(xml.StartElement); ok {
			if root == "" {
				root = se.Name.Local
				if se.Name.Space != "http://www.w3.org/2000/svg" {
					t.Fatalf("%s: namespace %q", path, se.Name.Space)
				}
			}
			elems[se.Name.Local]++
		}
	}
	if root != "svg" {
		t.Fatalf("%s: root %q", path, root)
	}
	return elems
}

func TestWriteSVG(t *testing.T) {
	rep := sampleReport(0)
	rep.URL = `http://127.0.0.1:8080/?a=<b>&c="d"` // must be escaped
	dir := filepath.Join(t.TempDir(), "charts")
	if err := rep.WriteSVG(dir); err != nil {
		t.Fatal(err)
	}
	lat := wellFormed(t, filepath.Join(dir, "latency.svg"))
	conns := wellFormed(t, filepath.Join(dir, "conns.svg"))
	// Five percentile lines over the two traffic samples; connections and
	// throughput.
	if lat["polyline"] != 5 || conns["polyline"] != 2 {
		t.Fatalf("latency %v conns %v", lat, conns)
	}
	// A hold-only run, and an empty one, still draw well-formed charts.
	for _, r := range []*Report{{Timeline: []Sample{{T: 1, Phase: "hold", Conns: 10}}}, {}} {
		r.finalize()
		if err := r.WriteSVG(dir); err != nil {
			t.Fatal(err)
		}
		wellFormed(t, filepath.Join(dir, "latency.svg"))
		wellFormed(t, filepath.Join(dir, "conns.svg"))
	}
}

func TestMerge(t *testing.T) {
	a, b := sampleReport(1), sampleReport(2)
	b.Errors = map[string]int64{"timeout": 2, "closed": 5}
	b.Server = nil
	b.TrafficSeconds = 2.5
	m := Merge(a, nil, b)
	var union Histogram
	union.Merge(a.LatencyHist)
	union.Merge(b.LatencyHist)
	if m.LatencyHist.Count() != 2*9990 || !reflect.DeepEqual(m.LatencyHist, &union) {
		t.Fatalf("merged histogram: %d", m.LatencyHist.Count())
	}
	if m.Latency != summarize(&union) || m.Latency.P99 == 0 {
		t.Fatalf("merged latency %+v", m.Latency)
	}
	if m.Procs != 2 || m.ConnsAsked != 200 || m.Connects != 198 || m.Requests != 19980 || m.RPS != 10000 {
		t.Fatalf("merged counters %+v", m)
	}
	if m.Errors["timeout"] != 3 || m.Errors["closed"] != 5 || m.Errors["connect_refused"] != 2 {
		t.Fatalf("merged errors %v", m.Errors)
	}
	if m.TrafficSeconds != 2.5 || m.Throughput != float64(19980)/2.5 || m.Server == nil || m.Server.PID != 42 {
		t.Fatalf("merged durations/server %+v", m)
	}
	if len(m.Timeline) != 3 || m.Timeline[1].Requests != 10000 || m.Timeline[2].Max != 9 || m.Timeline[0].Conns != 198 {
		t.Fatalf("merged timeline %+v", m.Timeline)
	}
	if e := Merge(); e.Requests != 0 || e.LatencyHist == nil {
		t.Fatal("empty merge")
	}
}

func TestWriteSummary(t *testing.T) {
	var buf bytes.Buffer
	if err := sampleReport(0).WriteSummary(&buf); err != nil {
		t.Fatal(err)
	}
	out := buf.String()
	for _, want := range []string{"open-loop at 5,000/s", "9,990 req answered", "p99.9", "connect_refused 2, timeout 1",
		"server memory", "µs per req", "1.98%"} {
		if !strings.Contains(out, want) {
			t.Errorf("summary lacks %q:\n%s", want, out)
		}
	}
}
