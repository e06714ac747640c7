//go:build !windows

package main

import (
	"encoding/json"
	"net"
	"os"
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenhq/warren/loadgen"
)

// TestLoadDevicesMQTTServe runs `warren load -scenario devices -url
// mqtt://…` in two worker processes (MQTT 5.0, QoS 1) against a real
// `warren serve -procs 2` with its embedded NATS server: every device
// connects to one of the gateway's workers, its telemetry arrives on NATS,
// and the commands sent through the API are acknowledged, whichever worker
// holds the device.
func TestLoadDevicesMQTTServe(t *testing.T) {
	data := t.TempDir()
	n := startServe(t, "mq", data, "-procs", "2", "-api-token", "api-secret")
	// The parent listens before its workers do: wait for the MQTT port.
	eventually(t, 20*time.Second, "the workers' MQTT listener", func() bool {
		c, err := net.Dial("tcp", n.mqtt)
		if err == nil {
			c.Close()
		}
		return err == nil
	})
	jsonPath := filepath.Join(t.TempDir(), "report.json")
	out, err := exec.Command(warrenBinary(t), "load", "-scenario", "devices", "-url", "mqtt://"+n.mqtt,
		"-mqtt-version", "5", "-qos", "1", "-data", data, "-conns", "60", "-rps", "200", "-duration", "1s",
		"-nats", n.natsURL(), "-grace", "5s", "-commands", "20", "-api", "http://"+n.api, "-api-token", "api-secret",
		"-procs", "2", "-json", jsonPath, "-quiet").CombinedOutput()
	if err != nil {
		t.Fatalf("warren load: %v\n%s", err, out)
	}
	b, err := os.ReadFile(jsonPath)
	if err != nil {
		t.Fatal(err)
	}
	var rep loadgen.Report
	if err := json.Unmarshal(b, &rep); err != nil {
		t.Fatal(err)
	}
	d := rep.Devices
	if rep.Protocol != "mqtt" || rep.Procs != 2 || rep.Connects != 60 || rep.ConnsFailed != 0 || len(rep.Errors) != 0 ||
		d == nil || d.TelemetrySent < 180 || d.TelemetryReceived != d.TelemetrySent || d.CommandsSent < 15 ||
		d.CommandOutcomes["200"] != d.CommandsSent || d.AcksSent != d.CommandsSent {
		t.Fatalf("report %s\n%s", b, out)
	}
	t.Logf("%s", out)
}
