//go:build !windows

package main

import (
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProxyCommandRouteLimit runs warren proxy with -route-limit given
// twice on the command line, which replaces the -config file's array (the
// command line wins, as for every flag), so the file's /slow/ limit is not
// applied; over a limit a
// GET gets 429 with Retry-After, by address or by device header, and the
// refusals show in /metrics by route and reason.
func TestProxyCommandRouteLimit(t *testing.T) {
	bin := warrenBinary(t)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer b.Close()
	cfg := filepath.Join(t.TempDir(), "proxy.json")
	if err := os.WriteFile(cfg, []byte(`{"route-limit": ["/dev/=0.2,header=X-Device-Id,keys=1000", "/slow/=0.01,name=slow"],
		"rate-limit-per-ip": 1000}`), 0o600); err != nil {
		t.Fatal(err)
	}
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", b.URL, "-config", cfg, "-route-limit", "/api/=0.5,burst=2", "-route-limit", "/dev/=0.2,header=X-Device-Id,keys=1000")
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	get := func(path, dev string) *http.Response {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if dev != "" {
			req.Header.Set("X-Device-Id", dev)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i, c := range []struct {
		path, dev string
		status    int
		after     string
	}{
		{"/api/1", "", 200, ""}, {"/api/2", "", 200, ""}, {"/api/3", "", 429, "2"},
		{"/dev/1", "a", 200, ""}, {"/dev/2", "a", 429, "5"}, {"/dev/3", "b", 200, ""},
		{"/slow/1", "", 200, ""}, {"/slow/2", "", 200, ""}, {"/free", "", 200, ""},
	} {
		resp := get(c.path, c.dev)
		if resp.StatusCode != c.status || resp.Header.Get("Retry-After") != c.after {
			t.Fatalf("request %d, GET %s: %d Retry-After %q; want %d %q", i, c.path, resp.StatusCode,
				resp.Header.Get("Retry-After"), c.status, c.after)
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`warren_proxy_route_limited_total{reason="rate_limited",route="/api/"} 1`,
		`warren_proxy_route_limited_total{reason="rate_limited",route="/dev/"} 1`,
		`warren_proxy_route_limit_keys{route="/dev/"} 2`,
		`warren_proxy_route_limit_allowed_total{route="/api/"} 2`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}

	if strings.Contains(string(metrics), `route="slow"`) {
		t.Error("the -config file's route limits were applied beside the command line's")
	}

	// From the file alone: its array is every limit.
	p2 := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "",
		"-upstream", b.URL, "-config", cfg)
	p2.waitOutput(t, 20*time.Second, "warren proxy listening")
	addr = regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(p2.out.String())[1]
	for i, c := range []struct {
		path   string
		status int
		after  string
	}{{"/slow/1", 200, ""}, {"/slow/2", 429, "100"}, {"/api/1", 200, ""}, {"/api/2", 200, ""}, {"/api/3", 200, ""}} {
		if resp := get(c.path, ""); resp.StatusCode != c.status || resp.Header.Get("Retry-After") != c.after {
			t.Fatalf("-config only, request %d, GET %s: %d Retry-After %q; want %d %q", i, c.path, resp.StatusCode,
				resp.Header.Get("Retry-After"), c.status, c.after)
		}
	}

	// A bad -route-limit is refused with a usage error.
	var stderr strings.Builder
	if code := runProxy([]string{"-upstream", b.URL, "-route-limit", "api=1"}, io.Discard, &stderr); code != 2 ||
		!strings.Contains(stderr.String(), "route-limit") {
		t.Errorf("bad -route-limit: exit %d, %q", code, stderr.String())
	}
}
