package admin

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"maps"
	"math"
	"net"
	"net/http/httptest"
	"net/netip"
	"runtime"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

func TestMetrics(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Loops: 2})
	s := startAdmin(t, Config{}, e)
	cs := dial(t, e, addr, 3)

	code, body, hdr := get(t, s, "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	if ct := hdr.Get("Content-Type"); !strings.HasPrefix(ct, "text/plain") {
		t.Errorf("content type %q", ct)
	}
	want := map[string]float64{
		"warren_connections_accepted_total":               3,
		"warren_connections_active":                       3,
		`warren_connections{state="idle"}`:                3,
		`warren_connections{state="active"}`:              0,
		`warren_connections{state="new"}`:                 0,
		`warren_connections{state="draining"}`:            0,
		"warren_received_bytes_total":                     24, // "hello N\n" × 3
		"warren_sent_bytes_total":                         24,
		"warren_queued_write_bytes":                       0,
		"warren_write_watermark_hits_total":               0,
		"warren_worker_queue_length":                      0,
		"warren_workers_busy":                             0,
		"warren_idle_timeout_seconds":                     300,
		"warren_overload_state":                           0,
		"warren_draining":                                 0,
		"warren_connection_duration_seconds_count":        0,
		`warren_admission_rejected_total{bound="per_ip"}`: 0,
	}
	for series, v := range want {
		if got, ok := metric(body, series); !ok || got != v {
			t.Errorf("%s = %v (present %v), want %v", series, got, ok, v)
		}
	}
	for _, r := range engine.CloseReasons() {
		if _, ok := metric(body, fmt.Sprintf(`warren_connections_closed_total{reason=%q}`, r)); !ok {
			t.Errorf("no closed_total sample for reason %s", r)
		}
	}
	for _, b := range engine.Bounds() {
		if _, ok := metric(body, fmt.Sprintf(`warren_admission_rejected_total{bound=%q}`, b)); !ok {
			t.Errorf("no rejected sample for bound %s", b)
		}
	}
	if _, ok := metric(body, `warren_connections{state="closed"}`); ok {
		t.Error("state closed exported for open connections")
	}
	l0, _ := metric(body, `warren_loop_connections{loop="0"}`)
	l1, _ := metric(body, `warren_loop_connections{loop="1"}`)
	a0, _ := metric(body, `warren_loop_connections_accepted_total{loop="0"}`)
	a1, _ := metric(body, `warren_loop_connections_accepted_total{loop="1"}`)
	if l0+l1 != 3 || a0+a1 != 3 {
		t.Errorf("per-loop connections %v+%v, accepted %v+%v; want 3 each", l0, l1, a0, a1)
	}
	for _, name := range []string{`warren_loop_busy_ratio{loop="1"}`, `warren_loop_host{loop="1"}`} {
		if v, ok := metric(body, name); !ok || v < 0 || v > 1 {
			t.Errorf("%s = %v (present %v)", name, v, ok)
		}
	}
	if v, _ := metric(body, "warren_memory_per_connection_bytes"); v <= 0 {
		t.Errorf("memory per connection %v", v)
	}
	for _, name := range []string{"go_goroutines", "go_memstats_heap_alloc_bytes", `warren_connection_duration_seconds_bucket{le="+Inf"}`} {
		if _, ok := metric(body, name); !ok {
			t.Errorf("%s missing", name)
		}
	}
	if runtime.GOOS == "linux" {
		if _, ok := metric(body, "process_resident_memory_bytes"); !ok {
			t.Error("process collector missing")
		}
	}

	// One closes itself, one is closed through the admin API.
	cs[0].Close()
	id := e.Conns()[0].ID
	if code, body, _ := do(t, s, "POST", fmt.Sprintf("/debug/conns/%d/close", id), "", nil); code != 200 {
		t.Fatalf("close: %d %s", code, body)
	}
	testutil.Eventually(t, 0, "two closes", func() bool { return e.Stats().Active == 1 })
	_, body, _ = get(t, s, "/metrics", "")
	for series, v := range map[string]float64{
		"warren_connections_active":                              1,
		`warren_connections_closed_total{reason="peer_closed"}`:  1,
		`warren_connections_closed_total{reason="admin"}`:        1,
		`warren_connections_closed_total{reason="idle_timeout"}`: 0,
		"warren_connection_duration_seconds_count":               2,
		`warren_connection_duration_seconds_bucket{le="+Inf"}`:   2,
		`warren_connection_duration_seconds_bucket{le="86400"}`:  2,
		"warren_connections_accepted_total":                      3,
	} {
		if got, ok := metric(body, series); !ok || got != v {
			t.Errorf("after closes: %s = %v (present %v), want %v", series, got, ok, v)
		}
	}
}

// TestCloseDetails counts closes that carried a close detail by protocol,
// reason and detail.
func TestCloseDetails(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Loops: 2})
	s := startAdmin(t, Config{}, e)
	cs := dial(t, e, addr, 3)
	_, body, _ := get(t, s, "/metrics", "")
	if strings.Contains(body, "warren_connection_close_details_total{") {
		t.Errorf("a details sample before any close:\n%s", body)
	}
	cs[0].Write([]byte("gone\n"))
	cs[1].Write([]byte("gone\n"))
	cs[2].Write([]byte("bye\n"))
	testutil.Eventually(t, 0, "three closes", func() bool { return e.Stats().Closed[engine.ReasonLocal] == 3 })
	_, body, _ = get(t, s, "/metrics", "")
	series := `warren_connection_close_details_total{detail="1001",proto="tcp",reason="local"}`
	if v, ok := metric(body, series); !ok || v != 2 {
		t.Errorf("%s = %v (present %v), want 2", series, v, ok)
	}
	if n := strings.Count(body, "warren_connection_close_details_total{"); n != 1 {
		t.Errorf("%d details samples, want 1", n)
	}
}

// TestShortStats scrapes a Source whose Stats leaves the per-state,
// per-reason and per-bound slices empty: they read as zeros.
func TestShortStats(t *testing.T) {
	src := &stubSource{stats: engine.Stats{Details: []engine.DetailCount{
		{Protocol: "websocket", Reason: engine.ReasonPeerClosed, Detail: "1001", Count: 4}}}}
	s := startAdmin(t, Config{}, src)
	code, body, _ := get(t, s, "/metrics", "")
	if code != 200 {
		t.Fatalf("/metrics: %d %s", code, body)
	}
	for series, want := range map[string]float64{
		`warren_connections{state="idle"}`:                                                            0,
		`warren_connections_closed_total{reason="admin"}`:                                             0,
		`warren_admission_rejected_total{bound="max_conns"}`:                                          0,
		`warren_connection_close_details_total{detail="1001",proto="websocket",reason="peer_closed"}`: 4,
	} {
		if v, ok := metric(body, series); !ok || v != want {
			t.Errorf("%s = %v (present %v), want %v", series, v, ok, want)
		}
	}
	var st stats
	if code := getJSON(t, s, "/api/stats", &st); code != 200 || st.ClosedTotal != 0 || st.States["idle"] != 0 {
		t.Errorf("/api/stats: %d %+v", code, st)
	}
}

// TestScrapeSize checks the figures the package doc gives: 25 families,
// 44 samples plus four per loop and one per close detail seen.
func TestScrapeSize(t *testing.T) {
	var st engine.Stats
	st.ByState = make([]int64, len(engine.States()))
	st.Closed = make([]uint64, len(engine.CloseReasons())+1)
	st.Rejected = make([]uint64, len(engine.Bounds()))
	st.Loops = make([]engine.LoopStats, 3)
	st.Details = []engine.DetailCount{{Protocol: "websocket", Reason: engine.ReasonPeerClosed, Detail: "1001", Count: 1}}
	reg := prometheus.NewRegistry()
	reg.MustRegister(newCollector("warren", &stubSource{stats: st}, nil, func() uint64 { return 0 }))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	samples := 0
	for _, mf := range mfs {
		samples += len(mf.GetMetric())
	}
	if len(mfs) != 25 || samples != 44+4*3+1 {
		t.Errorf("%d families, %d samples; want 25 and %d", len(mfs), samples, 44+4*3+1)
	}
}

func TestDurationHistogramIsCumulative(t *testing.T) {
	var st engine.Stats
	st.DurationCounts[0] = 2                           // ≤ 10 ms
	st.DurationCounts[3] = 1                           // ≤ 10 s
	st.DurationCounts[len(engine.DurationBuckets)] = 4 // > 1 day
	st.DurationSum = 5*24*time.Hour + 5*time.Second
	count, sum, buckets := durationHistogram(&st)
	if count != 7 || sum != st.DurationSum.Seconds() {
		t.Errorf("count %d sum %v", count, sum)
	}
	for le, want := range map[float64]uint64{0.01: 2, 0.1: 2, 1: 2, 10: 3, 86400: 3} {
		if buckets[le] != want {
			t.Errorf("bucket le=%v: %d, want %d", le, buckets[le], want)
		}
	}
}

func TestOverloadAndNamespace(t *testing.T) {
	src := &stubSource{}
	src.stats.IdleTimeout = -1
	s := startAdmin(t, Config{Namespace: "gw", Overload: func() float64 { return 2 }}, src)
	_, body, _ := get(t, s, "/metrics", "")
	if v, ok := metric(body, "gw_overload_state"); !ok || v != 2 {
		t.Errorf("gw_overload_state = %v, %v", v, ok)
	}
	if v, ok := metric(body, "gw_idle_timeout_seconds"); !ok || v != 0 {
		t.Errorf("disabled idle timeout exported as %v, %v; want 0", v, ok)
	}
	if v, ok := metric(body, "gw_memory_per_connection_bytes"); !ok || v != 0 {
		t.Errorf("memory per connection with none open: %v, %v", v, ok)
	}
	if strings.Contains(body, "warren_") {
		t.Error("namespace not applied")
	}
}

func TestToken(t *testing.T) {
	src := &stubSource{}
	s := startAdmin(t, Config{Token: "s3cret"}, src)
	for _, tc := range []struct {
		path, auth string
		want       int
	}{
		{"/metrics", "", 401},
		{"/metrics", "Bearer wrong", 401},
		{"/metrics", "Bearer s3cret0", 401},
		{"/metrics", "Basic s3cret", 401},
		{"/metrics", "Bearer s3cret", 200},
		{"/metrics", "bearer s3cret", 200},
		{"/api/stats", "", 401},
		{"/debug/conns", "", 401},
		{"/debug/conns/1", "", 401},
		{"/debug/pprof/", "", 401},
		{"/debug/pprof/", "Bearer s3cret", 200},
		{"/healthz", "", 200},
		{"/readyz", "", 200},
		{"/", "", 200},
		{"/ui/app.js", "", 200},
	} {
		code, _, hdr := do(t, s, "GET", tc.path, "", map[string]string{"Authorization": tc.auth})
		if code != tc.want {
			t.Errorf("GET %s with %q: %d, want %d", tc.path, tc.auth, code, tc.want)
		}
		if code == 401 && !strings.HasPrefix(hdr.Get("WWW-Authenticate"), "Bearer") {
			t.Errorf("401 without a Bearer challenge")
		}
	}
	if code, _, _ := do(t, s, "POST", "/debug/conns/1/close", "", nil); code != 401 {
		t.Errorf("POST close without token: %d", code)
	}
	// With a token the host check is off: a proxy may name the admin host.
	if code, _, _ := do(t, s, "GET", "/metrics", "s3cret", map[string]string{"Host": "admin.example.com"}); code != 200 {
		t.Errorf("named host with token: %d", code)
	}
}

func TestHostAndOrigin(t *testing.T) {
	src := &stubSource{conns: []engine.ConnInfo{{ID: 7}}}
	s := startAdmin(t, Config{}, src)
	for _, tc := range []struct {
		host string
		path string
		want int
	}{
		{"rebind.example.com:9901", "/metrics", 403},
		{"rebind.example.com", "/", 403},
		{"rebind.example.com", "/healthz", 200},
		{"rebind.example.com", "/readyz", 200},
		{"localhost:9901", "/metrics", 200},
		{"LOCALHOST", "/metrics", 200},
		{"127.0.0.1:1", "/metrics", 200},
		{"[::1]:9901", "/metrics", 200},
	} {
		if code, _, _ := do(t, s, "GET", tc.path, "", map[string]string{"Host": tc.host}); code != tc.want {
			t.Errorf("GET %s Host %s: %d, want %d", tc.path, tc.host, code, tc.want)
		}
	}
	hostport := s.Addr().String()
	if code, _, _ := do(t, s, "POST", "/debug/conns/7/close", "", map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
	if len(src.closed) != 0 {
		t.Fatal("cross-origin POST closed a connection")
	}
	if code, body, _ := do(t, s, "POST", "/debug/conns/7/close", "", map[string]string{"Origin": "http://" + hostport}); code != 200 {
		t.Errorf("same-origin POST: %d %s", code, body)
	}

	// A public bind is the operator's explicit choice: no host check.
	if !loopbackHost("127.0.0.1:9901") || !loopbackHost("localhost:1") || !loopbackHost("[::1]:1") ||
		loopbackHost(":9901") || loopbackHost("0.0.0.0:9901") || loopbackHost("10.1.2.3:9901") {
		t.Error("loopbackHost")
	}
}

func TestReadyzStub(t *testing.T) {
	src := &stubSource{}
	s := startAdmin(t, Config{}, src)
	if code, body, _ := get(t, s, "/readyz", ""); code != 200 || body != "ready\n" {
		t.Errorf("readyz: %d %q", code, body)
	}
	src.setDraining(true)
	if code, body, _ := get(t, s, "/readyz", ""); code != 503 || body != "draining\n" {
		t.Errorf("readyz draining: %d %q", code, body)
	}
	if code, _, _ := get(t, s, "/healthz", ""); code != 200 {
		t.Errorf("healthz while draining: %d", code)
	}
	_, body, _ := get(t, s, "/metrics", "")
	if v, _ := metric(body, "warren_draining"); v != 1 {
		t.Errorf("warren_draining %v", v)
	}
}

// TestReadyzEngineDrain drains a real engine: a connection with a partial
// message in progress is not quiet, so the drain lasts until the context
// ends, and /readyz answers 503 meanwhile.
func TestReadyzEngineDrain(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Loops: 1})
	s := startAdmin(t, Config{}, e)
	cs := dial(t, e, addr, 1)
	if _, err := cs[0].Write([]byte("partial")); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 0, "an active connection", func() bool { return e.Stats().ByState[engine.StateActive] == 1 })
	if code, _, _ := get(t, s, "/readyz", ""); code != 200 {
		t.Fatalf("readyz before shutdown: %d", code)
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan error, 1)
	go func() { done <- e.Shutdown(ctx) }()
	testutil.Eventually(t, 0, "readyz 503", func() bool { code, _, _ := get(t, s, "/readyz", ""); return code == 503 })
	testutil.Eventually(t, 0, "a draining connection", func() bool {
		_, body, _ := get(t, s, "/metrics", "")
		v, _ := metric(body, `warren_connections{state="draining"}`)
		return v == 1
	})
	cancel()
	if err := <-done; !errors.Is(err, context.Canceled) {
		t.Errorf("shutdown: %v", err)
	}
}

func getJSON(t *testing.T, s *Server, path string, v any) int {
	t.Helper()
	code, body, _ := get(t, s, path, "")
	if code == 200 {
		if err := json.Unmarshal([]byte(body), v); err != nil {
			t.Fatalf("%s: %v in %s", path, err, body)
		}
	}
	return code
}

func TestDebugConns(t *testing.T) {
	// The engine and the admin share a clock, moved an hour on once the
	// connections are set up, so every connection is an hour old and idle:
	// the age filters need no sleeping. The engine's timeouts are off, so
	// the jump closes nothing.
	clk := testutil.NewFakeClock()
	e, addr := startEngine(t, engine.Config{Loops: 2, Clock: clk, IdleTimeout: -1, ReadTimeout: -1, WriteTimeout: -1})
	s := startAdmin(t, Config{Clock: clk}, e)
	cs := dial(t, e, addr, 4)
	// Connection 2 sends more; connection 3 leaves a partial line pending.
	if _, err := cs[2].Write([]byte(strings.Repeat("x", 100) + "\n")); err != nil {
		t.Fatal(err)
	}
	io.ReadFull(cs[2], make([]byte, 101))
	cs[3].Write([]byte("partial"))
	testutil.Eventually(t, 0, "one active connection", func() bool { return e.Stats().ByState[engine.StateActive] == 1 })
	clk.Advance(time.Hour)

	var all ConnList
	if code := getJSON(t, s, "/debug/conns", &all); code != 200 || all.Total != 4 || len(all.Conns) != 4 || all.Limit != 100 {
		t.Fatalf("list: %d %+v", code, all)
	}
	for i, c := range all.Conns {
		if i > 0 && c.ID <= all.Conns[i-1].ID {
			t.Errorf("default sort is not by id: %v", all.Conns)
		}
		if !strings.HasPrefix(c.Remote, "127.0.0.1:") || c.Local != addr || c.Protocol != "tcp" ||
			c.Listener != 1 || c.Outbound {
			t.Errorf("conn %+v", c)
		}
		if c.Age < 3500 || c.Idle < 3500 || c.Created.IsZero() {
			t.Errorf("age %v idle %v created %v", c.Age, c.Idle, c.Created)
		}
		if c.BytesIn < 8 || c.Served < 1 {
			t.Errorf("counters %+v", c)
		}
	}

	var l ConnList
	getJSON(t, s, "/debug/conns?state=active", &l)
	if l.Total != 1 || l.Conns[0].ReadBuffer != len("partial") || l.Conns[0].State != "active" {
		t.Errorf("state=active: %+v", l)
	}
	getJSON(t, s, "/debug/conns?state=idle,new", &l)
	if l.Total != 3 {
		t.Errorf("state=idle,new: %d", l.Total)
	}
	getJSON(t, s, "/debug/conns?remote=127.0.0.1", &l)
	if l.Total != 4 {
		t.Errorf("remote ip: %d", l.Total)
	}
	getJSON(t, s, "/debug/conns?remote=127.0.0.0/8", &l)
	if l.Total != 4 {
		t.Errorf("remote prefix: %d", l.Total)
	}
	getJSON(t, s, "/debug/conns?remote=10.0.0.0/8", &l)
	if l.Total != 0 || l.Conns == nil {
		t.Errorf("remote other prefix: %+v", l)
	}
	getJSON(t, s, "/debug/conns?remote="+cs[1].LocalAddr().String(), &l)
	if l.Total != 1 || l.Conns[0].Remote != cs[1].LocalAddr().String() {
		t.Errorf("remote ip:port: %+v", l)
	}
	getJSON(t, s, "/debug/conns?min_age=30m&proto=tcp", &l)
	if l.Total != 4 {
		t.Errorf("min_age=30m: %d", l.Total)
	}
	getJSON(t, s, "/debug/conns?max_age=1800", &l)
	if l.Total != 0 {
		t.Errorf("max_age=1800: %d", l.Total)
	}
	getJSON(t, s, "/debug/conns?min_idle=2h", &l)
	if l.Total != 0 {
		t.Errorf("min_idle=2h: %d", l.Total)
	}
	// Protocols name themselves: an unknown name is a valid filter that
	// matches nothing.
	for _, q := range []string{"proto=websocket", "proto=ftp"} {
		if code := getJSON(t, s, "/debug/conns?"+q, &l); code != 200 || l.Total != 0 {
			t.Errorf("%s: %d %d", q, code, l.Total)
		}
	}
	getJSON(t, s, "/debug/conns?offset=1&limit=2", &l)
	if l.Total != 4 || len(l.Conns) != 2 || l.Conns[0].ID != all.Conns[1].ID || l.Conns[1].ID != all.Conns[2].ID {
		t.Errorf("paging: %+v", l)
	}
	getJSON(t, s, "/debug/conns?offset=10", &l)
	if l.Total != 4 || l.Conns == nil || len(l.Conns) != 0 {
		t.Errorf("past the end: %+v", l)
	}
	// A cursor pages by id: each page's next_cursor is its last id, and
	// the last page has none.
	var walked []uint64
	for cursor, pages := "", 0; pages < 10; pages++ {
		l = ConnList{} // (next_cursor is left out on the last page)
		getJSON(t, s, "/debug/conns?limit=1&cursor="+cursor, &l)
		if len(l.Conns) != 1 {
			t.Fatalf("cursor %q: %+v", cursor, l)
		}
		walked = append(walked, l.Conns[0].ID)
		if l.Total != 4-pages {
			t.Errorf("cursor %q: total %d, want the %d after it", cursor, l.Total, 4-pages)
		}
		if cursor = l.NextCursor; cursor == "" {
			break
		}
	}
	if len(walked) != 4 || walked[0] != all.Conns[0].ID || walked[3] != all.Conns[3].ID {
		t.Errorf("cursor walk %v, want the 4 ids of %+v", walked, all.Conns)
	}
	getJSON(t, s, "/debug/conns?sort=bytes&limit=1", &l)
	if len(l.Conns) != 1 || !strings.HasSuffix(cs[2].LocalAddr().String(), l.Conns[0].Remote[strings.LastIndex(l.Conns[0].Remote, ":"):]) {
		t.Errorf("sort=bytes: %+v, want the conn from %s", l.Conns, cs[2].LocalAddr())
	}
	getJSON(t, s, "/debug/conns?sort=served&limit=1", &l)
	if l.Conns[0].Served != 2 {
		t.Errorf("sort=served: %+v", l.Conns)
	}
	for _, q := range []string{"state=bogus", "remote=nowhere", "min_age=soon", "max_age=-5",
		"sort=size", "limit=0", "limit=x", "offset=-1", "offset=19999&limit=2", "cursor=x", "sort=bytes&cursor=1"} {
		code, body, _ := get(t, s, "/debug/conns?"+q, "")
		if code != 400 || !strings.Contains(body, `"error"`) {
			t.Errorf("%s: %d %s", q, code, body)
		}
	}

	// One connection.
	var one Conn
	id := all.Conns[0].ID
	if code := getJSON(t, s, fmt.Sprintf("/debug/conns/%d", id), &one); code != 200 || one.ID != id || one != all.Conns[0] {
		t.Errorf("one: %d %+v want %+v", code, one, all.Conns[0])
	}
	if code, _, _ := get(t, s, "/debug/conns/999999", ""); code != 404 {
		t.Errorf("missing: %d", code)
	}
	if code, _, _ := get(t, s, "/debug/conns/abc", ""); code != 400 {
		t.Errorf("bad id: %d", code)
	}

	// Close one through the API.
	target := cs[1].LocalAddr().String()
	var victim uint64
	for _, c := range all.Conns {
		if c.Remote == target {
			victim = c.ID
		}
	}
	code, body, _ := do(t, s, "POST", fmt.Sprintf("/debug/conns/%d/close", victim), "", nil)
	if code != 200 || !strings.Contains(body, `"reason":"admin"`) {
		t.Fatalf("close: %d %s", code, body)
	}
	cs[1].SetReadDeadline(time.Now().Add(5 * time.Second))
	if n, err := cs[1].Read(make([]byte, 1)); err != io.EOF {
		t.Errorf("closed connection read %d, %v; want EOF", n, err)
	}
	testutil.Eventually(t, 0, "admin close counted", func() bool { return e.Stats().Closed[engine.ReasonAdmin] == 1 })
	testutil.Eventually(t, 0, "closed connection gone", func() bool {
		code, _, _ := get(t, s, fmt.Sprintf("/debug/conns/%d", victim), "")
		return code == 404
	})
	if code, _, _ := do(t, s, "POST", fmt.Sprintf("/debug/conns/%d/close", victim), "", nil); code != 404 {
		t.Errorf("second close: %d", code)
	}
	if code, _, _ := do(t, s, "GET", fmt.Sprintf("/debug/conns/%d/close", id), "", nil); code != 405 {
		t.Errorf("GET close: %d, want 405", code)
	}
}

// TestDebugConnsListeners tells connections apart by the listener that
// accepted them, and dialled ones by Outbound.
func TestDebugConnsListeners(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Loops: 2})
	addr2 := testutil.Listen(t, e, lineHandler{})
	s := startAdmin(t, Config{}, e)
	dial(t, e, addr, 1)
	if _, err := e.DialHandler(netip.MustParseAddrPort(addr2), netip.Addr{}, lineHandler{}); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 0, "three connections", func() bool { return e.Stats().Active == 3 })
	var l ConnList
	if code := getJSON(t, s, "/debug/conns", &l); code != 200 || l.Total != 3 {
		t.Fatalf("list: %d %+v", code, l)
	}
	got := map[string]int{}
	for _, c := range l.Conns {
		got[fmt.Sprintf("listener=%d outbound=%v", c.Listener, c.Outbound)]++
		switch {
		case c.Outbound && c.Remote != addr2:
			t.Errorf("dialled conn %+v, want remote %s", c, addr2)
		case c.Listener == 2 && c.Local != addr2:
			t.Errorf("conn %+v on listener 2, want local %s", c, addr2)
		}
	}
	want := map[string]int{"listener=1 outbound=false": 1, "listener=2 outbound=false": 1, "listener=0 outbound=true": 1}
	if !maps.Equal(got, want) {
		t.Errorf("conns by listener %v, want %v", got, want)
	}
	_, body, _ := get(t, s, "/debug/conns", "")
	if !strings.Contains(body, `"listener":0,"outbound":true`) {
		t.Errorf("no dialled conn in %s", body)
	}
}

func TestConnJSONNames(t *testing.T) {
	b, _ := json.Marshal(Conn{})
	for _, k := range []string{"id", "loop", "remote", "local", "state", "protocol", "listener", "outbound",
		"created", "age_seconds",
		"idle_seconds", "bytes_in", "bytes_out", "served", "read_buffer_bytes", "write_buffer_bytes"} {
		if !bytes.Contains(b, []byte(`"`+k+`":`)) {
			t.Errorf("field %s missing from %s", k, b)
		}
	}
}

func TestPprof(t *testing.T) {
	s := startAdmin(t, Config{}, &stubSource{})
	code, body, _ := get(t, s, "/debug/pprof/", "")
	if code != 200 || !strings.Contains(body, "goroutine") || !strings.Contains(body, "heap") {
		t.Errorf("index: %d %.200s", code, body)
	}
	code, body, hdr := get(t, s, "/debug/pprof/goroutine?debug=1", "")
	if code != 200 || !strings.Contains(body, "goroutine profile:") || !strings.HasPrefix(hdr.Get("Content-Type"), "text/plain") {
		t.Errorf("goroutine: %d %.100s", code, body)
	}
	for _, p := range []string{"/debug/pprof/heap?gc=1", "/debug/pprof/allocs", "/debug/pprof/profile?seconds=0.05",
		"/debug/pprof/trace?seconds=0.05"} {
		code, body, hdr := get(t, s, p, "")
		if code != 200 || len(body) == 0 || hdr.Get("Content-Type") != "application/octet-stream" {
			t.Errorf("%s: %d, %d bytes, %s", p, code, len(body), hdr.Get("Content-Type"))
		}
	}
	if code, body, _ := get(t, s, "/debug/pprof/cmdline", ""); code != 200 || !strings.Contains(body, "admin.test") {
		t.Errorf("cmdline: %d %q", code, body)
	}
	if code, _, _ := get(t, s, "/debug/pprof/nope", ""); code != 404 {
		t.Errorf("unknown profile: %d", code)
	}
	if code, _, _ := get(t, s, "/debug/pprof/profile?seconds=-1", ""); code != 400 {
		t.Errorf("bad seconds: %d", code)
	}
}

func TestAPIStats(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Loops: 2})
	s := startAdmin(t, Config{}, e)
	cs := dial(t, e, addr, 3)
	cs[0].Write([]byte(strings.Repeat("y", 50) + "\n"))
	io.ReadFull(cs[0], make([]byte, 51))
	cs[1].Write([]byte("bad\n"))
	testutil.Eventually(t, 0, "protocol error close", func() bool { return e.Stats().Closed[engine.ReasonProtocolError] == 1 })

	var st stats
	if code := getJSON(t, s, "/api/stats?top=5", &st); code != 200 {
		t.Fatalf("stats: %d", code)
	}
	if st.Active != 2 || st.Accepted != 3 || st.ClosedTotal != 1 || st.Closed["protocol_error"] != 1 ||
		st.States["idle"] != 2 || len(st.Loops) != 2 || st.Loops[0].Conns+st.Loops[1].Conns != 2 ||
		st.IdleTimeout != 300 || st.RSS == 0 || st.MemPerConn == 0 || st.Time == 0 || st.DurationCount != 1 {
		t.Errorf("stats %+v", st)
	}
	if len(st.Top) != 2 || st.Top[0].BytesIn < 50 {
		t.Errorf("top: %+v", st.Top)
	}
	if h := st.Loops[1].Host; (h != 0 && h != 1) || st.Loops[1].Busy < 0 || st.Loops[1].Busy > 1 {
		t.Errorf("loop 1: %+v", st.Loops[1])
	}
	if st.HTTP != nil || st.WebSocket != nil || st.Extra == nil || len(st.Extra) != 0 {
		t.Errorf("extra without collectors: %+v %+v %+v", st.HTTP, st.WebSocket, st.Extra)
	}
	if code, _, _ := get(t, s, "/api/stats?top=x", ""); code != 400 {
		t.Errorf("top=x: %d", code)
	}
	// Without top, no connection walk.
	var bare stats
	getJSON(t, s, "/api/stats", &bare)
	if bare.Top != nil {
		t.Error("top without ?top")
	}
}

func TestBusiestIsCached(t *testing.T) {
	src := &stubSource{conns: []engine.ConnInfo{{ID: 1, BytesIn: 10}, {ID: 2, BytesIn: 20}}}
	s := startAdmin(t, Config{}, src)
	if top := s.busiest(2); len(top) != 2 || top[0].ID != 2 {
		t.Fatalf("top %+v", top)
	}
	src.mu.Lock()
	src.conns = append(src.conns, engine.ConnInfo{ID: 3, BytesIn: 30})
	src.mu.Unlock()
	if top := s.busiest(2); top[0].ID != 2 {
		t.Errorf("not cached: %+v", top)
	}
	if top := s.busiest(3); len(top) != 3 || top[0].ID != 3 {
		t.Errorf("asking for more must refresh: %+v", top)
	}
	if top := s.busiest(1); len(top) != 1 || top[0].ID != 3 {
		t.Errorf("fewer from cache: %+v", top)
	}
}

// protoCollectors stands in for the HTTP and WebSocket layers' collectors,
// under the names the package documents.
func protoCollectors() (*prometheus.CounterVec, prometheus.Histogram, *prometheus.CounterVec, prometheus.Gauge) {
	reqs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warren_http_requests_total", Help: "HTTP requests by status class."}, []string{"class"})
	lat := prometheus.NewHistogram(prometheus.HistogramOpts{Name: "warren_http_request_duration_seconds", Help: "HTTP request latency.",
		Buckets: []float64{0.001, 0.005, 0.01, 0.05, 0.1, 0.5, 1}})
	msgs := prometheus.NewCounterVec(prometheus.CounterOpts{Name: "warren_websocket_messages_total", Help: "WebSocket messages."}, []string{"direction"})
	devices := prometheus.NewGauge(prometheus.GaugeOpts{Name: "warren_gateway_devices_online", Help: "Devices online."})
	return reqs, lat, msgs, devices
}

func TestExtraCollectors(t *testing.T) {
	reqs, lat, msgs, devices := protoCollectors()
	reqs.WithLabelValues("2xx").Add(90)
	reqs.WithLabelValues("5xx").Add(10)
	for i := 0; i < 10; i++ {
		lat.Observe(0.003)
	}
	msgs.WithLabelValues("in").Add(7)
	msgs.WithLabelValues("out").Add(9)
	devices.Set(42)
	nan := prometheus.NewGaugeFunc(prometheus.GaugeOpts{Name: "warren_test_nan", Help: "Not a number."},
		func() float64 { return math.NaN() })
	s := startAdmin(t, Config{}, &stubSource{}, reqs, lat, msgs, devices, nan)

	_, body, _ := get(t, s, "/metrics", "")
	for series, v := range map[string]float64{
		`warren_http_requests_total{class="2xx"}`:         90,
		"warren_http_request_duration_seconds_count":      10,
		`warren_websocket_messages_total{direction="in"}`: 7,
		"warren_gateway_devices_online":                   42,
	} {
		if got, ok := metric(body, series); !ok || got != v {
			t.Errorf("%s = %v, %v", series, got, ok)
		}
	}
	var st stats
	getJSON(t, s, "/api/stats", &st)
	if st.HTTP == nil || st.HTTP.Requests != 100 || st.HTTP.ByClass["5xx"] != 10 || st.HTTP.Latency == nil ||
		st.HTTP.Latency.Count != 10 || len(st.HTTP.Latency.Buckets) != 7 || st.HTTP.Latency.Buckets[1] != [2]float64{0.005, 10} {
		t.Errorf("http %+v", st.HTTP)
	}
	if st.WebSocket == nil || st.WebSocket.In != 7 || st.WebSocket.Out != 9 {
		t.Errorf("ws %+v", st.WebSocket)
	}
	if len(st.Extra) != 2 || st.Extra[0].Name != "warren_gateway_devices_online" || st.Extra[0].Value != 42 || st.Extra[0].Counter ||
		st.Extra[1].Name != "warren_test_nan" || st.Extra[1].Value != 0 {
		t.Errorf("extra %+v", st.Extra)
	}
}

func TestRegistries(t *testing.T) {
	reg := prometheus.NewRegistry()
	src := &stubSource{}
	s, err := New(Config{Registerer: reg, Logger: quietLogger()}, src)
	if err != nil {
		t.Fatal(err)
	}
	rec := httptest.NewRecorder()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Host = "127.0.0.1"
	s.Handler().ServeHTTP(rec, req)
	if _, ok := metric(rec.Body.String(), "warren_connections_active"); !ok {
		t.Error("metrics not in the given registry")
	}
	if _, ok := metric(rec.Body.String(), "go_goroutines"); ok {
		t.Error("Go collector added to a caller's registry")
	}
	// The same registry cannot take a second server until the first is shut down.
	if _, err := New(Config{Registerer: reg}, src); err == nil {
		t.Error("second registration succeeded")
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if _, err := New(Config{Registerer: reg}, src); err != nil {
		t.Errorf("after Shutdown: %v", err)
	}
	// A Registerer that cannot gather needs a Gatherer.
	type onlyReg struct{ prometheus.Registerer }
	if _, err := New(Config{Registerer: onlyReg{prometheus.NewRegistry()}}, src); err == nil {
		t.Error("no Gatherer accepted")
	}
	reg2 := prometheus.NewRegistry()
	if _, err := New(Config{Registerer: onlyReg{reg2}, Gatherer: reg2}, src); err != nil {
		t.Errorf("explicit Gatherer: %v", err)
	}
	// Own registry plus the caller's Gatherer: both exposed.
	other := prometheus.NewRegistry()
	other.MustRegister(prometheus.NewGauge(prometheus.GaugeOpts{Name: "app_thing", Help: "A thing."}))
	s3, err := New(Config{Gatherer: other, Logger: quietLogger()}, src)
	if err != nil {
		t.Fatal(err)
	}
	rec = httptest.NewRecorder()
	s3.Handler().ServeHTTP(rec, req)
	for _, name := range []string{"app_thing", "warren_connections_active", "go_goroutines"} {
		if _, ok := metric(rec.Body.String(), name); !ok {
			t.Errorf("%s missing with own registry + Gatherer", name)
		}
	}
	if _, err := New(Config{}, nil); err == nil {
		t.Error("nil source accepted")
	}
}

func TestLifecycle(t *testing.T) {
	var logs bytes.Buffer
	var mu = make(chan struct{}, 1)
	mu <- struct{}{}
	log := slog.New(slog.NewTextHandler(lockedWriter{&logs, mu}, nil))
	s, err := New(Config{Addr: "127.0.0.1:0", Logger: log}, &stubSource{})
	if err != nil {
		t.Fatal(err)
	}
	if s.Addr() != nil {
		t.Error("Addr before Start")
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); !errors.Is(err, ErrStarted) {
		t.Errorf("second Start: %v", err)
	}
	addr := s.Addr().String()
	<-mu
	out := logs.String()
	mu <- struct{}{}
	if !strings.Contains(out, "admin: listening") || !strings.Contains(out, addr) {
		t.Errorf("log %q lacks the address %s", out, addr)
	}
	if strings.HasSuffix(addr, ":0") {
		t.Errorf("port not chosen: %s", addr)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Fatal(err)
	}
	if err := s.Shutdown(context.Background()); err != nil {
		t.Errorf("second Shutdown: %v", err)
	}
	if err := s.Start(); !errors.Is(err, ErrServerClosed) {
		t.Errorf("Start after Shutdown: %v", err)
	}
	if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
		t.Error("still listening after Shutdown")
	}

	// A listener beyond loopback without a token is logged as a warning.
	logs.Reset()
	s2, err := New(Config{Addr: "0.0.0.0:0", Logger: log}, &stubSource{})
	if err != nil {
		t.Fatal(err)
	}
	if err := s2.Start(); err != nil {
		t.Skipf("cannot bind 0.0.0.0: %v", err)
	}
	defer s2.Shutdown(context.Background())
	<-mu
	out = logs.String()
	mu <- struct{}{}
	if !strings.Contains(out, "level=WARN") {
		t.Errorf("no warning for a public bind without a token: %q", out)
	}
}

// lockedWriter serialises writes to a buffer (the channel is its lock).
type lockedWriter struct {
	b  *bytes.Buffer
	mu chan struct{}
}

func (w lockedWriter) Write(p []byte) (int, error) {
	<-w.mu
	defer func() { w.mu <- struct{}{} }()
	return w.b.Write(p)
}

func TestDashboardAssets(t *testing.T) {
	s := startAdmin(t, Config{}, &stubSource{})
	code, body, hdr := get(t, s, "/", "")
	if code != 200 || !strings.Contains(body, `<canvas id="c-active"`) || !strings.HasPrefix(hdr.Get("Content-Type"), "text/html") {
		t.Fatalf("/: %d %s", code, hdr.Get("Content-Type"))
	}
	if csp := hdr.Get("Content-Security-Policy"); !strings.Contains(csp, "default-src 'self'") {
		t.Errorf("CSP %q", csp)
	}
	for _, p := range []string{"/ui/app.js", "/ui/style.css"} {
		code, body, _ := get(t, s, p, "")
		if code != 200 || len(body) < 500 {
			t.Errorf("%s: %d", p, code)
		}
		// Offline: nothing is fetched from another origin.
		for _, bad := range []string{"http://", "https://", "//cdn"} {
			if strings.Contains(body, bad) {
				t.Errorf("%s references %q", p, bad)
			}
		}
	}
	if code, _, _ := get(t, s, "/nothing-here", ""); code != 404 {
		t.Errorf("unknown path: %d", code)
	}
}

// TestPortableEngine checks the admin against the portable engine, which
// Windows always runs.
func TestPortableEngine(t *testing.T) {
	e, addr := startEngine(t, engine.Config{Portable: true})
	s := startAdmin(t, Config{}, e)
	dial(t, e, addr, 2)
	_, body, _ := get(t, s, "/metrics", "")
	if v, _ := metric(body, "warren_connections_active"); v != 2 {
		t.Errorf("active %v", v)
	}
	if v, _ := metric(body, `warren_loop_connections{loop="0"}`); v != 2 {
		t.Errorf("loop 0 connections %v", v)
	}
	var l ConnList
	getJSON(t, s, "/debug/conns?state=idle", &l)
	if l.Total != 2 || l.Conns[0].Local != addr {
		t.Fatalf("conns %+v", l)
	}
	code, _, _ := do(t, s, "POST", fmt.Sprintf("/debug/conns/%d/close", l.Conns[0].ID), "", nil)
	if code != 200 {
		t.Fatalf("close: %d", code)
	}
	testutil.Eventually(t, 0, "admin close", func() bool { return e.Stats().Closed[engine.ReasonAdmin] == 1 })
}
