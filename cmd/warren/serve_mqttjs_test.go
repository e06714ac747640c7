//go:build !windows

package main

import (
	"bufio"
	"context"
	"encoding/json"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// nodeMQTTJS returns the directory of testdata/mqttjs with MQTT.js (npm
// "mqtt", version 5) installed, installing it on first use, or skips.
func nodeMQTTJS(t *testing.T) string {
	t.Helper()
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed (scripts/test installs it)")
	}
	dir, _ := filepath.Abs(filepath.Join("testdata", "mqttjs"))
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "mqtt", "package.json")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 3*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-save", "--no-package-lock",
		"--no-audit", "--no-fund", "mqtt@5")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install mqtt@5 failed (offline?): %v\n%s", err, out)
	}
	return dir
}

// TestServeMQTTJS: MQTT.js devices — the client of most JavaScript MQTT
// code, in browsers and Node.js — over TCP and over WebSocket at /mqtt,
// in MQTT 3.1.1 and 5.0, each with its JWT as the CONNECT password:
// their telemetry reaches NATS as the device's, and a command from the
// API reaches them, their ack (on the 5.0 Response Topic with its
// Correlation Data, or on devices/<id>/acks/<cmd id>) comes back as the
// API's 200.
func TestServeMQTTJS(t *testing.T) {
	dir := nodeMQTTJS(t)
	data := t.TempDir()
	n := startServe(t, "mqttjs", data)
	w := watchNATS(t, n.natsURL(), "devices.>")
	for _, tc := range []struct {
		name, url string
		version   int
	}{
		{"tcp-311", "mqtt://" + n.mqtt, 4},
		{"tcp-5", "mqtt://" + n.mqtt, 5},
		{"ws-311", "ws://" + n.addr + "/mqtt", 4},
		{"ws-5", "ws://" + n.addr + "/mqtt", 5},
	} {
		t.Run(tc.name, func(t *testing.T) {
			id := "js-" + tc.name
			ctx, cancel := context.WithTimeout(context.Background(), 40*time.Second)
			defer cancel()
			cmd := exec.CommandContext(ctx, "node", filepath.Join(dir, "device.js"), tc.url, id,
				deviceToken(t, data, id), fmt.Sprint(tc.version))
			cmd.Dir = dir
			var stderr syncBuffer
			cmd.Stderr = &stderr
			stdout, err := cmd.StdoutPipe()
			if err != nil {
				t.Fatal(err)
			}
			if err := cmd.Start(); err != nil {
				t.Fatal(err)
			}
			defer cmd.Wait()
			lines := make(chan string, 16)
			go func() {
				defer close(lines)
				sc := bufio.NewScanner(stdout)
				for sc.Scan() {
					lines <- sc.Text()
				}
			}()
			var got []string
			next := func(want string) string {
				t.Helper()
				for {
					select {
					case l, ok := <-lines:
						if !ok {
							t.Fatalf("MQTT.js exited before %q; it said %q, stderr:\n%s", want, got, stderr.String())
						}
						got = append(got, l)
						if strings.HasPrefix(l, want) {
							return l
						}
					case <-ctx.Done():
						t.Fatalf("no %q from MQTT.js; it said %q, stderr:\n%s", want, got, stderr.String())
					}
				}
			}
			if l := next("connected"); l != "connected reason=0" && l != "connected rc=0" {
				t.Fatalf("CONNACK: %s", l)
			}
			if l := next("subscribed"); l != "subscribed qos=1" {
				t.Fatalf("SUBACK: %s", l)
			}
			next("ready")
			want := fmt.Sprintf(`{"js":%d,"via":"%s"}`, tc.version, strings.Split(tc.url, ":")[0])
			w.wait(t, 5*time.Second, "devices."+id+".telemetry", func(m *nats.Msg) bool {
				return string(m.Data) == want && m.Header.Get("Warren-Device") == id
			})
			code, m := n.command(t, id, `{"name":"blink","payload":{"times":3},"timeout":"10s"}`)
			if code != 200 || m["status"] != "ok" {
				t.Fatalf("command: %d %v; MQTT.js said %q, stderr:\n%s", code, m, got, stderr.String())
			}
			res, _ := json.Marshal(m["result"])
			if string(res) != `{"by":"mqtt.js","seen":{"times":3}}` {
				t.Fatalf("command result %s", res)
			}
			if l := next("command"); l != "command blink {\"times\":3} on devices/"+id+"/commands/blink" {
				t.Fatalf("command as MQTT.js got it: %s", l)
			}
			next("ack sent")
			if err := cmd.Wait(); err != nil {
				t.Fatalf("MQTT.js: %v\n%s", err, stderr.String())
			}
		})
	}
}
