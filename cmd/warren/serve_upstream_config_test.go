//go:build !windows

package main

import (
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"testing"
)

// TestServeUpstreamConfig: warren serve -upstream-config sets the legacy
// cluster's policies under warren proxy's flag names: Maglev by the
// X-Device-Id header (one client's device ids spread over the backends,
// each id always on the same one) and a breaker that counts every 5xx
// and opens after two (two 500s, then the next request is 503
// breaker_open). Without the file a 500 does not count and the cluster
// balances by least request.
func TestServeUpstreamConfig(t *testing.T) {
	var urls []string
	for i := range 3 {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if r.URL.Path == "/500" {
				w.WriteHeader(500)
				return
			}
			fmt.Fprintf(w, "backend-%d", i)
		}))
		defer b.Close()
		urls = append(urls, b.URL)
	}
	file := filepath.Join(t.TempDir(), "upstream.json")
	os.WriteFile(file, []byte(`{"balancer": "maglev", "hash-header": "X-Device-Id", "breaker-5xx": true,
		"breaker-failures": 2, "breaker-ratio": -1, "outlier-off": true}`), 0o600)
	get := func(addr, path, device string) (int, string) {
		t.Helper()
		req, _ := http.NewRequest("GET", "http://"+addr+path, nil)
		if device != "" {
			req.Header.Set("X-Device-Id", device)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, resp.Header.Get("X-Warren-Reason") + string(b)
	}

	n := startServe(t, "upcfg", t.TempDir(), "-upstream", strings.Join(urls, ","), "-upstream-config", file)
	seen := map[string]bool{}
	for i := range 30 {
		dev := fmt.Sprintf("dev-%d", i)
		_, first := get(n.addr, "/who", dev)
		seen[first] = true
		if _, again := get(n.addr, "/who", dev); again != first {
			t.Fatalf("%s went to %s, then %s", dev, first, again)
		}
	}
	if len(seen) < 2 {
		t.Fatalf("30 device ids went to %v only: -upstream-config's hash-header not applied", seen)
	}
	for range 2 {
		if code, _ := get(n.addr, "/500", "dev-1"); code != 500 {
			t.Fatalf("/500: %d", code)
		}
	}
	if code, body := get(n.addr, "/who", "dev-1"); code != 503 || !strings.HasPrefix(body, "breaker_open") {
		t.Fatalf("after two 500s with breaker-5xx and breaker-failures 2: %d %q, want 503 breaker_open", code, body)
	}

	d := startServe(t, "updef2", t.TempDir(), "-upstream", strings.Join(urls, ","))
	for range 8 {
		if code, _ := get(d.addr, "/500", ""); code != 500 {
			t.Fatalf("/500 without the file: %d", code)
		}
	}
	if code, body := get(d.addr, "/who", ""); code != 200 {
		t.Fatalf("after eight 500s with the default breaker: %d %q, want 200 (a 500 does not count)", code, body)
	}
}

// TestServeUpstreamConfigRefused: a bad -upstream-config is a usage
// error (exit 2) with the reason: without -upstream, an unknown setting,
// a bad value, -hash-header without a hashing balancer.
func TestServeUpstreamConfigRefused(t *testing.T) {
	dir := t.TempDir()
	write := func(name, body string) string {
		p := filepath.Join(dir, name)
		os.WriteFile(p, []byte(body), 0o600)
		return p
	}
	ok := write("ok.json", `{"retries": 2}`)
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-upstream-config", ok}, "-upstream-config needs -upstream"},
		{[]string{"-upstream", "http://127.0.0.1:1", "-upstream-config", write("unknown.json", `{"listen": ":80"}`)}, `unknown setting "listen"`},
		{[]string{"-upstream", "http://127.0.0.1:1", "-upstream-config", write("bad.json", `{"retries": "many"}`)}, "retries"},
		{[]string{"-upstream", "http://127.0.0.1:1", "-upstream-config", write("hash.json", `{"hash-header": "X-Device-Id"}`)}, "-hash-header needs -balancer ring_hash or maglev"},
		{[]string{"-upstream", "http://127.0.0.1:1", "-upstream-config", filepath.Join(dir, "missing.json")}, "missing.json"},
	} {
		var out, errb strings.Builder
		if code := run(append([]string{"serve"}, tc.args...), &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("%v: exit %d, %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}
