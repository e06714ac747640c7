//go:build !windows

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProxyCommandHedge runs warren proxy with -hedge-delay and
// -max-requests-per-host in front of a slow and a fast backend: every GET
// is answered by the fast one well before the slow one would answer, the
// hedges show in /metrics, and the per-host limit in /api/upstream.
func TestProxyCommandHedge(t *testing.T) {
	bin := warrenBinary(t)
	slow := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(10 * time.Second): // far above a loaded machine's round trip
			io.WriteString(w, "slow")
		case <-r.Context().Done():
		}
	}))
	defer slow.Close()
	fast := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "fast") }))
	defer fast.Close()
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", slow.URL+","+fast.URL, "-balancer", "round_robin", "-hedge-delay", "40ms", "-max-requests-per-host", "8")
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	for i := range 4 {
		start := time.Now()
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "fast" || time.Since(start) > 5*time.Second {
			t.Fatalf("GET %d: %q after %v", i, body, time.Since(start))
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`warren_upstream_rq_hedged_total\{cluster="default"\} (\d+)`).FindStringSubmatch(string(metrics))
	if m == nil || m[1] == "0" {
		t.Errorf("no hedges in /metrics: %v", m)
	}
	if !strings.Contains(string(metrics), `warren_upstream_host_overflow_total{cluster="default",resource="requests"} 0`) {
		t.Error("no per-host overflow series in /metrics")
	}
	resp, err = http.Get("http://" + adminAddr + "/api/upstream")
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Clusters []struct {
			HostLimits map[string]int `json:"host_limits"`
			Hedged     int            `json:"rq_hedged"`
			Won        int            `json:"rq_hedge_won"`
		} `json:"clusters"`
	}
	json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if len(api.Clusters) != 1 || api.Clusters[0].HostLimits["requests"] != 8 || api.Clusters[0].Hedged == 0 ||
		api.Clusters[0].Won != api.Clusters[0].Hedged {
		t.Errorf("/api/upstream: %+v", api)
	}
}

// TestProxyCommandRateLimit runs warren proxy with -rate-limit 0.1 (one
// request per ten seconds) and -rate-limit-queue 1: the first GET goes
// through, the next is refused at once with 503 overflow, counted in
// /metrics and /api/upstream.
func TestProxyCommandRateLimit(t *testing.T) {
	bin := warrenBinary(t)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer b.Close()
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", b.URL, "-rate-limit", "0.1", "-rate-limit-queue", "1")
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	for i, want := range []int{200, 503} {
		resp, err := http.Get("http://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want || want == 503 && resp.Header.Get("X-Warren-Reason") != "overflow" {
			t.Fatalf("GET %d: %d %q; want %d", i, resp.StatusCode, resp.Header.Get("X-Warren-Reason"), want)
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.Contains(string(metrics), `warren_upstream_rq_rate_limited_total{cluster="default"} 1`) {
		t.Error("the refusal is not in /metrics as warren_upstream_rq_rate_limited_total 1")
	}
	resp, err = http.Get("http://" + adminAddr + "/api/upstream")
	if err != nil {
		t.Fatal(err)
	}
	var api struct {
		Clusters []struct {
			RateLimited int `json:"rq_rate_limited"`
		} `json:"clusters"`
	}
	json.NewDecoder(resp.Body).Decode(&api)
	resp.Body.Close()
	if len(api.Clusters) != 1 || api.Clusters[0].RateLimited != 1 {
		t.Errorf("/api/upstream: %+v", api)
	}
}
