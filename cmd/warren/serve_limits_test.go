//go:build !windows

package main

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"os/exec"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// TestServeRouteAndDeviceLimits: `warren serve -upstream … -route-limit`
// answers 429 with Retry-After on a proxied route over its limit, and
// -device-rate drops a device's telemetry over its rate, telling the
// device with a rate_limited error frame and counting the drops.
func TestServeRouteAndDeviceLimits(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "legacy") }))
	t.Cleanup(backend.Close)
	data := t.TempDir()
	n := startServe(t, "lim", data, "-upstream", backend.URL, "-route-limit", "/legacy/=0.5,burst=2",
		"-device-rate", "0.1", "-device-burst", "1")

	for i, want := range []struct {
		status int
		after  string
	}{{200, ""}, {200, ""}, {429, "2"}} {
		resp, err := http.Get("http://" + n.addr + "/legacy/x")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.StatusCode != want.status || resp.Header.Get("Retry-After") != want.after {
			t.Fatalf("request %d: %d Retry-After %q, want %d %q", i, resp.StatusCode, resp.Header.Get("Retry-After"),
				want.status, want.after)
		}
	}
	// Routes without a limit are not limited.
	for range 3 {
		resp, err := http.Get("http://" + n.addr + "/other")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("unlimited route: %d", resp.StatusCode)
		}
	}

	d := dialDevice(t, n.addr, "dev-1", deviceToken(t, data, "dev-1"))
	for range 3 {
		if err := d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	d.c.SetReadDeadline(time.Now().Add(10 * time.Second))
	_, b, err := d.c.ReadMessage()
	if err != nil {
		t.Fatal(err)
	}
	var f map[string]any
	if json.Unmarshal(b, &f) != nil || f["code"] != "rate_limited" || f["retry_after_ms"].(float64) < 1 {
		t.Fatalf("want a rate_limited error frame, got %s", b)
	}
	eventually(t, 10*time.Second, "the drops in /metrics", func() bool {
		resp, err := http.Get("http://" + n.admin + "/metrics")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		m, _ := io.ReadAll(resp.Body)
		return strings.Contains(string(m), `warren_gateway_telemetry_dropped_total{reason="rate_limited"} 2`) &&
			strings.Contains(string(m), `warren_gateway_device_limit_keys 1`)
	})
}

// TestServeRouteLimitFlags: a bad -route-limit, one without -upstream, or
// -device-bytes-rate without -device-rate is a usage error (exit 2).
func TestServeRouteLimitFlags(t *testing.T) {
	bin := warrenBinary(t)
	for _, args := range [][]string{
		{"-route-limit", "/a/=1"},
		{"-upstream", "http://127.0.0.1:1", "-route-limit", "nonsense"},
		{"-device-rate", "0", "-device-bytes-rate", "1000"},
	} {
		cmd := exec.Command(bin, append([]string{"serve", "-api", "", "-nats-listen", "127.0.0.1:0", "-data", t.TempDir()}, args...)...)
		out, err := cmd.CombinedOutput()
		if ee, ok := err.(*exec.ExitError); !ok || ee.ExitCode() != 2 || !strings.Contains(string(out), args[len(args)-2]) {
			t.Fatalf("%v: %v %s", args, err, out)
		}
	}
}

// TestServeDefaultDeviceRate: without -device-rate a WebSocket device is
// limited as an MQTT one is, at 1,000 messages a second (burst 2,000): a
// device sending 10,000 at once — in less than the 8 s the bucket would
// need to take them all — has the excess dropped and is told so.
func TestServeDefaultDeviceRate(t *testing.T) {
	data := t.TempDir()
	n := startServe(t, "rate", data)
	d := dialDevice(t, n.addr, "dev-1", deviceToken(t, data, "dev-1"))
	told := make(chan map[string]any, 1)
	go func() {
		for {
			_, b, err := d.c.ReadMessage()
			if err != nil {
				return
			}
			var m map[string]any
			if json.Unmarshal(b, &m) == nil && m["code"] == "rate_limited" {
				told <- m
				return
			}
		}
	}()
	for range 10_000 {
		if err := d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":1}`)); err != nil {
			t.Fatal(err)
		}
	}
	select {
	case m := <-told:
		if ms, _ := m["retry_after_ms"].(float64); ms < 1 {
			t.Fatalf("rate_limited frame %v, want retry_after_ms", m)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no rate_limited frame: the default -device-rate does not apply")
	}
}
