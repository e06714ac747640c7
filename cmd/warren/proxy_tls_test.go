//go:build !windows

package main

import (
	"encoding/pem"
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

// TestProxyCommandHTTPS runs warren proxy in front of an https backend
// (Go's httptest TLS server) verified with -upstream-ca, then checks the
// handshake metrics; a second proxy without the CA answers 502.
func TestProxyCommandHTTPS(t *testing.T) {
	bin := warrenBinary(t)
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "tls "+r.URL.Path)
	}))
	defer backend.Close()
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: backend.Certificate().Raw}), 0o644)

	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", backend.URL, "-upstream-ca", ca)
	p.waitOutput(t, 20*time.Second, "admin: listening") // not printed before the proxy's line on every run
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	for range 3 {
		// The connection goes back to the pool just after the client has
		// the last bytes: the next GET must find it there, not dial a
		// second one (and make a second handshake), so wait for the
		// exchange to end.
		waitMetrics(t, adminAddr, `warren_upstream_rq_active{cluster="default"} 0`)
		resp, err := http.Get("http://" + addr + "/a")
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(body) != "tls /a" {
			t.Fatalf("GET /a: %d %q", resp.StatusCode, body)
		}
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, m := range []string{`warren_upstream_tls_handshake_total{cluster="default",result="success"} 1`,
		`warren_upstream_tls_handshake_kind_total{kind="full"} 1`} {
		if !strings.Contains(string(metrics), m) {
			t.Errorf("metrics lack %s", m)
		}
	}

	// Without -upstream-ca the backend is not verified: 502.
	q := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "", "-upstream", backend.URL)
	q.waitOutput(t, 20*time.Second, "warren proxy listening")
	addr = regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(q.out.String())[1]
	resp, err = http.Get("http://" + addr + "/a")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get("X-Warren-Reason") != "connect_failure" {
		t.Fatalf("unverified backend: %d %q", resp.StatusCode, resp.Header.Get("X-Warren-Reason"))
	}

	// -upstream-insecure: served, with a warning.
	r := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "", "-upstream", backend.URL, "-upstream-insecure")
	r.waitOutput(t, 20*time.Second, "warren proxy listening")
	if !strings.Contains(r.out.String(), "NOT verified") {
		t.Errorf("no warning for -upstream-insecure: %s", r.out.String())
	}
	addr = regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(r.out.String())[1]
	resp, err = http.Get("http://" + addr + "/b")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 200 {
		t.Fatalf("insecure: %d", resp.StatusCode)
	}
}
