package prefork

import (
	"bytes"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/admin"
)

// fakeWorkerAdmin serves a worker admin's /metrics behind admin.Guard with
// token, reporting warren_connections_active n, and returns its address.
func fakeWorkerAdmin(t *testing.T, token string, n int) string {
	t.Helper()
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "# HELP warren_connections_active Open connections.\n# TYPE warren_connections_active gauge\n"+
			"warren_connections_active "+strconv.Itoa(n)+"\n")
	})
	srv := httptest.NewServer(admin.Guard(mux, admin.GuardConfig{Token: token}))
	t.Cleanup(srv.Close)
	return srv.Listener.Addr().String()
}

// hungWorkerAdmin accepts a scrape and never answers it until the test
// ends. It returns its address.
func hungWorkerAdmin(t *testing.T) string {
	t.Helper()
	release := make(chan struct{})
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { <-release }))
	t.Cleanup(srv.Close)
	t.Cleanup(func() { close(release) }) // runs first: Close waits for the handler
	return srv.Listener.Addr().String()
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

// fakeSupervisor returns a supervisor whose workers are up at the given
// admin addresses with no process behind them, and the base URL of its
// AdminHandler served as cmd/warren serves it.
func fakeSupervisor(t *testing.T, cfg Config, admins ...string) (*Supervisor, string) {
	t.Helper()
	if cfg.ScrapeTimeout == 0 {
		cfg.ScrapeTimeout = 2 * time.Second
	}
	if cfg.ScrapeStale == 0 {
		cfg.ScrapeStale = time.Minute
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, addr: "127.0.0.1:8080"}
	for i, a := range admins {
		s.workers = append(s.workers, &worker{info: WorkerInfo{Index: i, PID: 1000 + i, Admin: a, Up: true}})
	}
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = admin.NewHTTPServer(s.AdminHandler(), cfg.Logger)
	srv.Start()
	t.Cleanup(srv.Close)
	return s, srv.URL
}

func fetch(t *testing.T, method, url, token string, hdr map[string]string) (int, string) {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return resp.StatusCode, string(b)
}

// TestAdminHandlerToken checks that the parent requires the token and
// sends it to the workers, whose series then appear in the merged scrape.
func TestAdminHandlerToken(t *testing.T) {
	_, base := fakeSupervisor(t, Config{AdminToken: "s3cret"},
		fakeWorkerAdmin(t, "s3cret", 3), fakeWorkerAdmin(t, "s3cret", 5))
	for _, path := range []string{"/metrics", "/workers", "/"} {
		if code, body := fetch(t, "GET", base+path, "", nil); code != 401 {
			t.Errorf("GET %s without a token: %d %.200s", path, code, body)
		}
		if code, _ := fetch(t, "GET", base+path, "wrong", nil); code != 401 {
			t.Errorf("GET %s with a wrong token: %d", path, code)
		}
		if code, _ := fetch(t, "GET", base+path, "s3cret", nil); code != 200 {
			t.Errorf("GET %s with the token: %d", path, code)
		}
	}
	for _, path := range []string{"/healthz", "/readyz"} {
		if code, _ := fetch(t, "GET", base+path, "", nil); code != 200 {
			t.Errorf("probe %s without a token: %d", path, code)
		}
	}
	code, body := fetch(t, "GET", base+"/metrics", "s3cret", nil)
	for _, want := range []string{
		`warren_connections_active{worker="0"} 3`,
		`warren_connections_active{worker="1"} 5`,
		`warren_prefork_scrape_errors_total{worker="0"} 0`,
		`warren_prefork_scrape_errors_total{worker="1"} 0`,
		"warren_prefork_workers_up 2",
	} {
		if !strings.Contains(body, want+"\n") {
			t.Errorf("merged metrics (%d) lack %q:\n%s", code, want, body)
		}
	}
}

// TestAdminHandlerHostOrigin checks the Host and Origin checks of the
// parent's endpoint, served on loopback.
func TestAdminHandlerHostOrigin(t *testing.T) {
	_, base := fakeSupervisor(t, Config{}, fakeWorkerAdmin(t, "", 1))
	rebind := map[string]string{"Host": "rebind.example.com:9901"}
	if code, _ := fetch(t, "GET", base+"/metrics", "", rebind); code != 403 {
		t.Errorf("GET /metrics with a rebound Host and no token: %d, want 403", code)
	}
	if code, _ := fetch(t, "GET", base+"/healthz", "", rebind); code != 200 {
		t.Errorf("probe with a rebound Host: %d, want 200", code)
	}
	if code, _ := fetch(t, "GET", base+"/metrics", "", map[string]string{"Host": "localhost:9901"}); code != 200 {
		t.Errorf("GET /metrics via localhost: %d, want 200", code)
	}
	if code, _ := fetch(t, "POST", base+"/metrics", "", map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}

	// With a token the Host may be any name (a proxy's), but a cross-origin
	// POST is still refused.
	_, base = fakeSupervisor(t, Config{AdminToken: "s3cret"}, fakeWorkerAdmin(t, "s3cret", 1))
	if code, _ := fetch(t, "GET", base+"/metrics", "s3cret", map[string]string{"Host": "admin.example.com"}); code != 200 {
		t.Errorf("named Host with the token: %d, want 200", code)
	}
	if code, _ := fetch(t, "POST", base+"/metrics", "s3cret", map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST with the token: %d, want 403", code)
	}
}

// TestGatherDeadline scrapes 64 workers, one of which never answers: the
// merged scrape ends at the deadline with the other 63 in it, and the hung
// worker counted, while its handler is still blocked.
//
// The other 63 must answer within the deadline, which a loaded machine
// running the race detector can stretch past a second: when a scrape
// counts a healthy worker's error, the machine was too slow for the
// deadline, and the round is run again on a fresh supervisor with twice
// the deadline (1, 2, 4 s). The last round's findings stand, whatever
// they are.
func TestGatherDeadline(t *testing.T) {
	const n, hung = 64, 17
	admins := make([]string, n)
	for i := range admins {
		if i == hung {
			admins[i] = hungWorkerAdmin(t)
		} else {
			admins[i] = fakeWorkerAdmin(t, "s3cret", i)
		}
	}
	for deadline := time.Second; ; deadline *= 2 {
		problems, slow := gatherDeadlineRound(t, deadline, admins, hung)
		if slow && deadline < 4*time.Second {
			t.Logf("a healthy worker missed the %v deadline (a slow machine); again with %v:\n%s",
				deadline, 2*deadline, strings.Join(problems, "\n"))
			continue
		}
		for _, p := range problems {
			t.Error(p)
		}
		return
	}
}

// healthyErrors matches a scrape error counted for a worker: the count is
// not 0.
var healthyErrors = regexp.MustCompile(`warren_prefork_scrape_errors_total\{worker="(\d+)"\} [1-9]`)

// gatherDeadlineRound scrapes admins twice through a supervisor whose
// scrape deadline is deadline. It returns what the scrapes got wrong, and
// whether a worker other than hung was counted as not answering.
func gatherDeadlineRound(t *testing.T, deadline time.Duration, admins []string, hung int) (problems []string, slow bool) {
	logs := &syncBuffer{}
	_, base := fakeSupervisor(t, Config{AdminToken: "s3cret", ScrapeTimeout: deadline,
		Logger: slog.New(slog.NewTextHandler(logs, nil))}, admins...)
	for scrape := 1; scrape <= 2; scrape++ {
		code, body := fetch(t, "GET", base+"/metrics", "s3cret", nil)
		if code != 200 {
			return append(problems, fmt.Sprintf("scrape %d: %d %s", scrape, code, body)), false
		}
		for _, m := range healthyErrors.FindAllStringSubmatch(body, -1) {
			if m[1] != strconv.Itoa(hung) {
				slow = true
			}
		}
		for i := range admins {
			series := `warren_connections_active{worker="` + strconv.Itoa(i) + `"} ` + strconv.Itoa(i) + "\n"
			if strings.Contains(body, series) == (i == hung) {
				problems = append(problems, fmt.Sprintf("scrape %d: worker %d series present %v", scrape, i, i != hung))
			}
		}
		want := `warren_prefork_scrape_errors_total{worker="` + strconv.Itoa(hung) + `"} ` + strconv.Itoa(scrape) + "\n"
		if !strings.Contains(body, want) || !strings.Contains(body, `warren_prefork_scrape_errors_total{worker="0"} 0`+"\n") {
			problems = append(problems, fmt.Sprintf("scrape %d: want %q in\n%s", scrape, want, body))
		}
	}
	// A worker that keeps failing is logged once.
	if got := strings.Count(logs.String(), "left out of the merged metrics"); got != 1 {
		problems = append(problems, fmt.Sprintf("%d warnings for the hung worker, want 1:\n%s", got, logs))
	}
	return problems, slow
}

// TestGatherTokenMismatch checks that a worker refusing the parent's token
// (401) is left out and counted, and does not fail the scrape.
func TestGatherTokenMismatch(t *testing.T) {
	_, base := fakeSupervisor(t, Config{AdminToken: "s3cret"},
		fakeWorkerAdmin(t, "s3cret", 3), fakeWorkerAdmin(t, "other", 5))
	code, body := fetch(t, "GET", base+"/metrics", "s3cret", nil)
	if code != 200 || !strings.Contains(body, `warren_connections_active{worker="0"} 3`) ||
		strings.Contains(body, `worker="1"} 5`) || !strings.Contains(body, `warren_prefork_scrape_errors_total{worker="1"} 1`) {
		t.Errorf("merged metrics (%d):\n%s", code, body)
	}
}

// TestScrapeUncompressed: the parent asks its workers for plain text, not
// gzip (a worker's gzip writer would stay pooled between scrapes).
func TestScrapeUncompressed(t *testing.T) {
	var mu sync.Mutex
	var enc []string
	mux := http.NewServeMux()
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		enc = append(enc, r.Header.Get("Accept-Encoding"))
		mu.Unlock()
		io.WriteString(w, "warren_connections_active 1\n")
	})
	srv := httptest.NewServer(mux)
	t.Cleanup(srv.Close)
	_, base := fakeSupervisor(t, Config{}, srv.Listener.Addr().String())
	if code, body := fetch(t, "GET", base+"/metrics", "", map[string]string{"Accept-Encoding": "gzip"}); code != 200 ||
		!strings.Contains(body, `warren_connections_active{worker="0"} 1`) {
		t.Fatalf("merged scrape: %d %s", code, body)
	}
	mu.Lock()
	defer mu.Unlock()
	if len(enc) != 1 || strings.Contains(enc[0], "gzip") {
		t.Fatalf("the worker was asked with Accept-Encoding %q", enc)
	}
}

// TestGatherStale checks that a worker late for a scrape keeps its last
// good series in the merged scrape, with their age, so that its counters
// do not drop out and come back; that a restarted worker's old series are
// not served; and that ScrapeStale bounds how long they are.
func TestGatherStale(t *testing.T) {
	var mu sync.Mutex
	n, hang := 0, false
	release := make(chan struct{})
	t.Cleanup(func() { close(release) })
	srv := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		mu.Lock()
		n++
		v, h := n, hang
		mu.Unlock()
		if h {
			select {
			case <-release:
			case <-r.Context().Done():
			}
			return
		}
		io.WriteString(w, "# TYPE warren_requests_total counter\nwarren_requests_total "+strconv.Itoa(100*v)+"\n")
	}))
	t.Cleanup(srv.Close)
	s, base := fakeSupervisor(t, Config{ScrapeTimeout: 200 * time.Millisecond},
		srv.Listener.Addr().String(), fakeWorkerAdmin(t, "", 7))
	code, body := fetch(t, "GET", base+"/metrics", "", nil)
	if code != 200 || !strings.Contains(body, `warren_requests_total{worker="0"} 100`+"\n") ||
		!strings.Contains(body, `warren_prefork_scrape_age_seconds{worker="0"} 0`+"\n") {
		t.Fatalf("first scrape (%d):\n%s", code, body)
	}
	mu.Lock()
	hang = true
	mu.Unlock()
	code, body = fetch(t, "GET", base+"/metrics", "", nil)
	if code != 200 || !strings.Contains(body, `warren_requests_total{worker="0"} 100`+"\n") ||
		!strings.Contains(body, `warren_prefork_scrape_errors_total{worker="0"} 1`+"\n") ||
		!strings.Contains(body, `warren_connections_active{worker="1"} 7`+"\n") ||
		strings.Contains(body, `warren_prefork_scrape_age_seconds{worker="0"} 0`+"\n") ||
		!strings.Contains(body, `warren_prefork_scrape_age_seconds{worker="0"} 0.`) {
		t.Fatalf("late worker's last series not served with their age (%d):\n%s", code, body)
	}
	// The worker restarted (a new pid): its old series go.
	s.mu.Lock()
	s.workers[0].info.PID++
	s.mu.Unlock()
	code, body = fetch(t, "GET", base+"/metrics", "", nil)
	if code != 200 || strings.Contains(body, `warren_requests_total{worker="0"}`) ||
		strings.Contains(body, `warren_prefork_scrape_age_seconds{worker="0"}`) {
		t.Fatalf("a restarted worker's old series were served (%d):\n%s", code, body)
	}
	// Too old: with ScrapeStale shorter than the wait, nothing is served.
	mu.Lock()
	hang = false
	mu.Unlock()
	if code, body = fetch(t, "GET", base+"/metrics", "", nil); !strings.Contains(body, `warren_requests_total{worker="0"} `) {
		t.Fatalf("worker back (%d):\n%s", code, body)
	}
	mu.Lock()
	hang = true
	mu.Unlock()
	s.mu.Lock()
	s.cfg.ScrapeStale = time.Nanosecond
	s.mu.Unlock()
	if code, body = fetch(t, "GET", base+"/metrics", "", nil); strings.Contains(body, `warren_requests_total{worker="0"}`) {
		t.Fatalf("series older than ScrapeStale were served (%d):\n%s", code, body)
	}
}

// TestGatherParentCollectors checks that the parent's own collectors are
// merged with the workers' series, labelled worker="parent", in the same
// family when a worker has it too.
func TestGatherParentCollectors(t *testing.T) {
	own := prometheus.NewGauge(prometheus.GaugeOpts{Name: "warren_connections_active", Help: "Open connections."})
	own.Set(7)
	cmds := prometheus.NewCounter(prometheus.CounterOpts{Name: "warren_gateway_commands_total", Help: "Commands."})
	cmds.Add(3)
	_, base := fakeSupervisor(t, Config{Collectors: []prometheus.Collector{own, cmds}}, fakeWorkerAdmin(t, "", 2))
	for range 2 { // the registry is made once, by the first scrape
		code, body := fetch(t, "GET", base+"/metrics", "", nil)
		if code != 200 {
			t.Fatalf("scrape: %d %s", code, body)
		}
		for _, want := range []string{`warren_connections_active{worker="0"} 2` + "\n", `warren_connections_active{worker="parent"} 7` + "\n",
			`warren_gateway_commands_total{worker="parent"} 3` + "\n"} {
			if !strings.Contains(body, want) {
				t.Errorf("want %q in\n%s", want, body)
			}
		}
		if n := strings.Count(body, "# TYPE warren_connections_active"); n != 1 {
			t.Errorf("warren_connections_active described %d times, want once:\n%s", n, body)
		}
	}
}
