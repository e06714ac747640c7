//go:build !windows

package main

import (
	"encoding/base64"
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/gateway"
)

// TestServeUpstreamWebhook: `warren serve -upstream` passes what it does
// not serve (a GET, a WebSocket upgrade on another path) to a net/http
// backend while devices still connect at /v1/connect; `-webhook` posts the
// devices' telemetry in JSON batches to a net/http sink.
func TestServeUpstreamWebhook(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/legacy":
			w.Header().Set("X-Legacy", "yes")
			io.WriteString(w, "legacy "+r.URL.RawQuery)
		case "/legacy/ws":
			c, err := (&gorilla.Upgrader{}).Upgrade(w, r, nil)
			if err != nil {
				return
			}
			defer c.Close()
			for {
				op, b, err := c.ReadMessage()
				if err != nil {
					return
				}
				c.WriteMessage(op, append([]byte("legacy:"), b...))
			}
		default:
			http.NotFound(w, r)
		}
	}))
	t.Cleanup(backend.Close)

	var mu sync.Mutex
	var got []gateway.WebhookMessage
	var batches int
	var badBatch string
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []gateway.WebhookMessage
		mu.Lock()
		defer mu.Unlock()
		if r.Method != "POST" || r.URL.Path != "/hook" || r.Header.Get("Content-Type") != "application/json" ||
			json.Unmarshal(b, &msgs) != nil {
			badBatch = r.Method + " " + r.URL.String() + " " + string(b)
			w.WriteHeader(400)
			return
		}
		batches++
		got = append(got, msgs...)
	}))
	t.Cleanup(sink.Close)

	data := t.TempDir()
	n := startServe(t, "up", data, "-upstream", backend.URL, "-webhook", sink.URL+"/hook",
		"-webhook-batch-count", "4", "-webhook-batch-delay", "20ms")

	// Plain requests the gateway does not serve go to the backend.
	resp, err := http.Get("http://" + n.addr + "/legacy?a=1")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(body) != "legacy a=1" || resp.Header.Get("X-Legacy") != "yes" {
		t.Errorf("GET /legacy through -upstream: %d %q %v", resp.StatusCode, body, resp.Header)
	}
	// A WebSocket upgrade on another path is spliced to the backend.
	lc, _, err := gorilla.DefaultDialer.Dial("ws://"+n.addr+"/legacy/ws", nil)
	if err != nil {
		t.Fatalf("legacy WebSocket through -upstream: %v", err)
	}
	defer lc.Close()
	lc.SetReadDeadline(time.Now().Add(5 * time.Second))
	for _, m := range []string{"one", "two"} {
		lc.WriteMessage(gorilla.TextMessage, []byte(m))
		if _, b, err := lc.ReadMessage(); err != nil || string(b) != "legacy:"+m {
			t.Fatalf("legacy WebSocket echo: %q %v", b, err)
		}
	}

	// Devices still connect to warren; their telemetry reaches the sink.
	d := dialDevice(t, n.addr, "hook-dev", deviceToken(t, data, "hook-dev"))
	const frames = 9
	for i := range frames {
		d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":{"i": `+string(rune('0'+i))+`}}`))
	}
	bin := []byte{0, 1, 2, 0xff}
	d.c.WriteMessage(gorilla.BinaryMessage, bin)
	eventually(t, 10*time.Second, "10 telemetry messages at the webhook", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) >= frames+1 || badBatch != ""
	})
	mu.Lock()
	defer mu.Unlock()
	if badBatch != "" {
		t.Fatalf("bad webhook request: %s", badBatch)
	}
	if len(got) != frames+1 || batches < 3 {
		t.Errorf("webhook got %d messages in %d batches, want %d in at least 3 (4 per batch)", len(got), batches, frames+1)
	}
	seen := map[string]int{}
	for i, m := range got {
		if m.Device != "hook-dev" || m.Node != "up" {
			t.Errorf("message %d: %+v", i, m)
		}
		if at, err := time.Parse(time.RFC3339Nano, m.Received); err != nil || time.Since(at) > time.Minute {
			t.Errorf("message %d received %q: %v", i, m.Received, err)
		}
		if m.Data != nil {
			seen[string(m.Data)]++
		} else {
			seen["base64:"+m.DataBase64]++
		}
	}
	// Batches in flight at once may arrive in any order; each message
	// comes once, its data as sent (base64 for the binary frame).
	for i := range frames {
		if want := `{"i": ` + string(rune('0'+i)) + `}`; seen[want] != 1 {
			t.Errorf("data %s came %d times, want once as sent (got %v)", want, seen[want], seen)
		}
	}
	if k := "base64:" + base64.StdEncoding.EncodeToString(bin); seen[k] != 1 {
		t.Errorf("binary message came %d times as data_base64 (got %v)", seen[k], seen)
	}
	mu.Unlock()
	metrics := fetchText(t, "http://"+n.admin+"/metrics")
	for _, want := range []string{`warren_gateway_webhook_messages_total{reason="",result="queued"} 10`,
		`warren_gateway_webhook_messages_total{reason="queue_full",result="dropped"} 0`,
		`warren_upstream_rq_total{cluster="upstream"}`, `warren_upstream_rq_total{cluster="webhook"}`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
	// Telemetry just before SIGTERM: the drain still exits 0.
	d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":"last"}`))
	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.wait(t, 15*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
	mu.Lock()
}
