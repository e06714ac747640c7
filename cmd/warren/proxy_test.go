//go:build !windows

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"os"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestProxyCommand runs warren echo as the backend and warren proxy in
// front of it (policy from -config), checks a proxied GET and upload, the
// admin's /api/upstream and metrics, a 502 with its reason once the
// backend is gone, and the drain on SIGTERM.
func TestProxyCommand(t *testing.T) {
	bin := warrenBinary(t)
	_, backend, _ := startWarren(t, bin, "echo", "-addr", "127.0.0.1:0", "-admin", "")
	cfg := filepath.Join(t.TempDir(), "proxy.json")
	os.WriteFile(cfg, []byte(`{"upstream": "http://`+backend+`", "timeout": "5s", "retries": 2, "hc-interval": "200ms"}`), 0o644)
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-config", cfg)
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]

	resp, err := http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "hello" || resp.Header.Get("Via") != "1.1 warren" {
		t.Fatalf("GET /: %q via %q", body, resp.Header.Get("Via"))
	}
	resp, err = http.Post("http://"+addr+"/upload", "text/plain", strings.NewReader(strings.Repeat("x", 100000)))
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "100000 ") {
		t.Fatalf("upload: %q", body)
	}

	resp, err = http.Get("http://" + adminAddr + "/api/upstream")
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Clusters []struct {
			Name  string `json:"name"`
			Total int    `json:"rq_total"`
			Hosts []struct {
				Name    string `json:"name"`
				Healthy bool   `json:"healthy"`
			} `json:"hosts"`
		} `json:"clusters"`
	}
	json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if len(api.Clusters) != 1 || api.Clusters[0].Total != 2 || len(api.Clusters[0].Hosts) != 1 || api.Clusters[0].Hosts[0].Name != backend {
		t.Fatalf("/api/upstream: %+v", api)
	}
	// A response's status class is counted once its exchange completes,
	// just after the client has its last bytes: poll for the counters
	// rather than read them once (CI caught the read in between).
	waitMetrics(t, adminAddr, `warren_upstream_rq_xx_total{class="2xx",cluster="default"} 2`, `warren_proxy_requests_total 2`)

	// Draining the only host through the admin API leaves nothing to
	// pick (draining overrides panic mode): 503 no_healthy_upstream.
	resp, err = http.Post("http://"+adminAddr+"/api/upstream/default/hosts/"+backend+"/drain", "", nil)
	if err != nil || resp.StatusCode != 200 {
		t.Fatalf("drain: %v %v", err, resp)
	}
	resp.Body.Close()
	resp, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 503 || resp.Header.Get("X-Warren-Reason") != "no_healthy_upstream" {
		t.Fatalf("drained: %d %q", resp.StatusCode, resp.Header.Get("X-Warren-Reason"))
	}
	http.Post("http://"+adminAddr+"/api/upstream/default/hosts/"+backend+"/undrain", "", nil)
	resp, err = http.Get("http://" + addr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("undrained: %d", resp.StatusCode)
	}

	p.cmd.Process.Signal(syscall.SIGTERM)
	if err := p.wait(t, 15*time.Second); err != nil {
		t.Fatalf("exit after SIGTERM: %v", err)
	}
}

func TestProxyCommandUsage(t *testing.T) {
	var out, errb strings.Builder
	if code := run([]string{"proxy", "-listen", "127.0.0.1:0"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "-upstream is required") {
		t.Fatalf("code %d: %s", code, errb.String())
	}
	if code := run([]string{"proxy", "-upstream", "http://x:1", "-balancer", "nope"}, &out, &errb); code != 2 {
		t.Fatalf("bad balancer: code %d", code)
	}
	errb.Reset()
	if code := run([]string{"proxy", "-upstream", "http://x:1", "-pipeline-batch"}, &out, &errb); code != 2 ||
		!strings.Contains(errb.String(), "-pipeline-batch needs -pipeline") {
		t.Fatalf("-pipeline-batch without -pipeline: code %d: %s", code, errb.String())
	}
}

// waitMetrics polls the admin listener's /metrics at adminAddr until it
// carries every line of want, failing the test after 10 s, and returns the
// last text read. A proxied exchange ends just after the client has the
// response's last bytes (upstream's Exchange.complete: the connection goes
// back to the pool, the status class and the proxy's response are
// counted), so what a test reads of it right after the response must be
// polled for.
func waitMetrics(t *testing.T, adminAddr string, want ...string) string {
	t.Helper()
	var metrics string
	eventually(t, 10*time.Second, "metrics "+strings.Join(want, ", "), func() bool {
		resp, err := http.Get("http://" + adminAddr + "/metrics")
		if err != nil {
			return false
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		metrics = string(b)
		for _, m := range want {
			if !strings.Contains(metrics, m) {
				return false
			}
		}
		return true
	})
	return metrics
}
