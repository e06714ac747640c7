//go:build !windows

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"regexp"
	"sync"
	"testing"
	"time"
)

// TestProxyCommandPipeline runs warren proxy with -pipeline 4 and
// -max-conns-per-host 1: concurrent GETs share the one backend connection,
// each gets its own answer, and the pipelined ones show in /metrics.
func TestProxyCommandPipeline(t *testing.T) {
	bin := warrenBinary(t)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(5 * time.Millisecond)
		io.WriteString(w, r.URL.Path)
	}))
	defer b.Close()
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", b.URL, "-pipeline", "4", "-max-conns-per-host", "1")
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	var wg sync.WaitGroup
	for i := range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			path := fmt.Sprintf("/g%d", i)
			resp, err := http.Get("http://" + addr + path)
			if err != nil {
				t.Error(err)
				return
			}
			body, _ := io.ReadAll(resp.Body)
			resp.Body.Close()
			if resp.StatusCode != 200 || string(body) != path {
				t.Errorf("GET %s: %d %q", path, resp.StatusCode, body)
			}
		}()
	}
	wg.Wait()
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	m := regexp.MustCompile(`warren_upstream_rq_pipelined_total\{cluster="default"\} (\d+)`).FindStringSubmatch(string(metrics))
	if m == nil || m[1] == "0" {
		t.Errorf("warren_upstream_rq_pipelined_total: %v; want some", m)
	}
}
