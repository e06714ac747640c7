//go:build !windows

package main

import (
	"encoding/pem"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"sync/atomic"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// TestServeUpstreamHTTPS: `warren serve -upstream https://… -webhook
// https://… -upstream-ca FILE` reaches both over TLS.
func TestServeUpstreamHTTPS(t *testing.T) {
	var hooked atomic.Int64
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/legacy":
			io.WriteString(w, "legacy over tls")
		case "/hook":
			if r.TLS != nil {
				hooked.Add(1)
			}
		}
	}))
	t.Cleanup(backend.Close)
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: backend.Certificate().Raw}), 0o644)

	data := t.TempDir()
	n := startServe(t, "up", data, "-upstream", backend.URL, "-webhook", backend.URL+"/hook",
		"-webhook-batch-delay", "10ms", "-upstream-ca", ca)
	resp, err := http.Get("http://" + n.addr + "/legacy")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "legacy over tls" {
		t.Fatalf("GET /legacy through https -upstream: %d %q", resp.StatusCode, body)
	}
	d := dialDevice(t, n.addr, "tls-hook-dev", deviceToken(t, data, "tls-hook-dev"))
	d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":{"i":1}}`))
	eventually(t, 10*time.Second, "a webhook batch over TLS", func() bool { return hooked.Load() > 0 })
}
