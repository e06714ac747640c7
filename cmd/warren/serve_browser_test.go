//go:build !windows

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestServeBrowser: headless Chromium opens a page whose script is two
// devices of `warren serve` — one on the gateway's WebSocket protocol with
// its token in ?token= (a browser cannot set headers on a WebSocket), one
// on MQTT 5.0 over WebSocket with MQTT.js's browser bundle. Both devices'
// telemetry reaches NATS as theirs (the WebSocket device's binary frame as
// its bytes), and a command from the API to each comes back as a 200 with
// the page's ack.
func TestServeBrowser(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (scripts/test installs it)")
	}
	page, err := os.ReadFile(filepath.Join("testdata", "browser", "devices.html"))
	if err != nil {
		t.Fatal(err)
	}
	bundle, err := os.ReadFile(filepath.Join(nodeMQTTJS(t), "node_modules", "mqtt", "dist", "mqtt.min.js"))
	if err != nil {
		t.Fatal(err)
	}
	data := t.TempDir()
	n := startServe(t, "browser", data)
	w := watchNATS(t, n.natsURL(), "devices.>")
	const wsID, mqttID = "browser-ws", "browser-mqtt"
	cfg, _ := json.Marshal(map[string]string{
		"ws": "ws://" + n.addr + "/v1/connect", "wsToken": deviceToken(t, data, wsID),
		"mqtt": "ws://" + n.addr + "/mqtt", "mqttId": mqttID, "mqttToken": deviceToken(t, data, mqttID),
	})

	logs, release := make(chan string, 64), make(chan struct{})
	mux := http.NewServeMux()
	mux.HandleFunc("GET /page", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		w.Write(page)
	})
	mux.HandleFunc("GET /config.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		fmt.Fprintf(w, "const CFG = %s;\n", cfg)
	})
	mux.HandleFunc("GET /mqtt.min.js", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/javascript")
		w.Write(bundle)
	})
	mux.HandleFunc("POST /log", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		select {
		case logs <- string(b):
		default:
		}
	})
	mux.HandleFunc("GET /wait", func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-release:
		case <-time.After(45 * time.Second):
		}
		w.Header().Set("Content-Type", "text/javascript")
	})
	srv := httptest.NewServer(mux)
	defer srv.Close()
	defer func() {
		select {
		case <-release:
		default:
			close(release)
		}
	}()

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", srv.URL+"/page")
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	exited := make(chan error, 1)
	go func() { exited <- cmd.Wait() }()
	var said []string
	waitLog := func(want string) { // in any order: what came earlier counts
		t.Helper()
		for _, l := range said {
			if l == want {
				return
			}
		}
		for {
			select {
			case l := <-logs:
				said = append(said, l)
				if l == want {
					return
				}
			case err := <-exited:
				t.Fatalf("chromium exited (%v) before the page said %q; it said %q\n%s", err, want, said, stderr.String())
			case <-ctx.Done():
				t.Fatalf("the page did not say %q; it said %q\n%s", want, said, stderr.String())
			}
		}
	}
	waitLog("ws open")
	waitLog("mqtt ready")
	w.wait(t, 10*time.Second, "devices."+wsID+".telemetry", func(m *nats.Msg) bool {
		return string(m.Data) == `{"browser":"ws"}` && m.Header.Get("Warren-Device") == wsID
	})
	w.wait(t, 10*time.Second, "devices."+wsID+".telemetry", func(m *nats.Msg) bool {
		return bytes.Equal(m.Data, []byte{1, 2, 3})
	})
	w.wait(t, 10*time.Second, "devices."+mqttID+".telemetry", func(m *nats.Msg) bool {
		return string(m.Data) == `{"browser":"mqtt"}` && m.Header.Get("Warren-Device") == mqttID
	})
	for id, by := range map[string]string{wsID: "browser", mqttID: "browser-mqtt"} {
		n.waitDevice(t, 10*time.Second, id, "browser")
		code, m := n.command(t, id, `{"name":"blink","payload":{"times":2},"timeout":"10s"}`)
		res, _ := json.Marshal(m["result"])
		if code != 200 || m["status"] != "ok" || string(res) != `{"by":"`+by+`","seen":{"times":2}}` {
			t.Fatalf("command to %s: %d %v; the page said %q", id, code, m, said)
		}
	}
	waitLog("ws command blink {\"times\":2}")
	waitLog("mqtt command blink {\"times\":2} on devices/" + mqttID + "/commands/blink")
	close(release)
	if err := <-exited; err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.String())
	}
	if !strings.Contains(stdout.String(), "mqtt command blink") {
		t.Fatalf("the page's DOM lacks its log:\n%s", stdout.String())
	}
}
