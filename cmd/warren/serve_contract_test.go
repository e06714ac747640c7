//go:build !windows

package main

import (
	"fmt"
	"strings"
	"syscall"
	"testing"
	"time"
)

// TestServeBroadcastsToAckingDevice: a Python device (websockets) that
// acks every command it gets, as the protocol asks, stays connected
// through a dozen broadcasts and gets no error frame for its acks of
// them. Before, each of its broadcast acks was answered unknown_ack and
// counted towards -max-bad-frames (10): the tenth broadcast closed it
// with 1008.
func TestServeBroadcastsToAckingDevice(t *testing.T) {
	py := pythonWebsockets(t)
	data := t.TempDir()
	n := startServe(t, "bcast", data)
	tok := deviceToken(t, data, "dev-1")
	dev := startProc(t, "device.py", py, "testdata/device.py",
		"ws://"+n.addr+"/v1/connect?token="+tok, `{"type":"telemetry","data":1}`)
	dev.waitOutput(t, 10*time.Second, `"event": "open"`)
	n.waitDevice(t, 5*time.Second, "dev-1", "bcast")
	for i := range 12 {
		code, m := httpJSON(t, "POST", "http://"+n.api+"/v1/broadcast", fmt.Sprintf(`{"name":"cfg-%d","devices":["dev-1"]}`, i))
		if code != 202 || m["sent"] != 1.0 {
			t.Fatalf("broadcast %d: %d %v", i, code, m)
		}
		// One at a time: the device has acked broadcast i when it
		// answers a command sent after it.
		if code, m := n.command(t, "dev-1", `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
			t.Fatalf("command after broadcast %d: %d %v (the device's frames: %s)", i, code, m, dev.out.String())
		}
	}
	if code, m := n.command(t, "dev-1", `{"name":"bye"}`); code != 200 || m["status"] != "ok" {
		t.Fatalf("bye: %d %v", code, m)
	}
	if err := dev.wait(t, 10*time.Second); err != nil {
		t.Errorf("device.py: %v", err)
	}
	var got []string
	for _, ev := range pythonEvents(dev.out.String()) {
		if f, _ := ev["frame"].(map[string]any); f != nil {
			if f["type"] != "command" {
				t.Errorf("device.py got %v", f)
			}
			if name, _ := f["name"].(string); strings.HasPrefix(name, "cfg-") {
				if id, _ := f["id"].(string); !strings.HasPrefix(id, "b-") {
					t.Errorf("broadcast command id %q, want b-…", id)
				}
				got = append(got, name)
			}
		}
		if ev["event"] == "close" && ev["code"] != 1000.0 {
			t.Errorf("device.py closed with %v, want its own 1000", ev)
		}
	}
	if len(got) != 12 {
		t.Errorf("device.py got broadcasts %v, want 12", got)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.wait(t, 10*time.Second); err != nil {
		t.Errorf("serve exit: %v", err)
	}
}
