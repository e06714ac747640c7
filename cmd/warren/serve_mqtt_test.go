//go:build !windows

package main

import (
	"bytes"
	"context"
	"encoding/json"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"
)

// TestServeMQTT: mosquitto_pub and mosquitto_sub as an MQTT device of
// `warren serve`, with a token from `warren token`: telemetry lands on
// devices.<id>.telemetry, presence says mqtt, and a command from the
// management API reaches the device as a PUBLISH.
func TestServeMQTT(t *testing.T) {
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto-clients not installed (scripts/test installs it)")
	}
	sub, _ := exec.LookPath("mosquitto_sub")
	data := t.TempDir()
	n := startServe(t, "mqtt", data)
	out, err := exec.Command(warrenBinary(t), "token", "-device", "dev-9", "-data", data).Output()
	if err != nil {
		t.Fatalf("warren token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	host, port, _ := net.SplitHostPort(n.mqtt)
	w := watchNATS(t, n.natsURL(), "devices.>")

	for _, v := range []string{"mqttv311", "mqttv5"} {
		if o, err := exec.Command(pub, "-h", host, "-p", port, "-V", v, "-i", "dev-9", "-u", "dev", "-P", tok, "-q", "1",
			"-t", "devices/dev-9/telemetry", "-m", `{"v":"`+v+`"}`).CombinedOutput(); err != nil {
			t.Fatalf("mosquitto_pub: %v %s", err, o)
		}
		w.wait(t, 5*time.Second, "devices.dev-9.telemetry", func(m *nats.Msg) bool {
			return string(m.Data) == `{"v":"`+v+`"}` && m.Header.Get("Warren-Device") == "dev-9"
		})
	}
	w.wait(t, 5*time.Second, "devices.dev-9.presence", func(m *nats.Msg) bool {
		return isPresence("online", "")(m) && bytes.Contains(m.Data, []byte(`"protocol":"mqtt"`))
	})

	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	var got bytes.Buffer
	s := exec.CommandContext(ctx, sub, "-h", host, "-p", port, "-V", "mqttv5", "-i", "dev-9", "-u", "dev", "-P", tok,
		"-q", "1", "-t", "devices/dev-9/commands/#", "-C", "1", "-v")
	s.Stdout, s.Stderr = &got, &got
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	n.waitDevice(t, 10*time.Second, "dev-9", "mqtt")
	// Online comes with the CONNECT; the SUBSCRIBE follows it, and a
	// command sent before it is taken reaches no subscription.
	waitMetrics(t, n.admin, "warren_mqtt_subscriptions 1")
	// The device does not ack (mosquitto_sub can't): 504, but the command
	// reached it.
	code, _ := n.command(t, "dev-9", `{"name":"reboot","payload":{"in":5},"timeout":"1s"}`)
	if code != 504 {
		t.Fatalf("command answer %d", code)
	}
	if err := s.Wait(); err != nil {
		t.Fatalf("mosquitto_sub: %v %s", err, got.String())
	}
	topic, payload, _ := strings.Cut(strings.TrimSpace(got.String()), " ")
	var cmd struct{ ID, Name string }
	if topic != "devices/dev-9/commands/reboot" || json.Unmarshal([]byte(payload), &cmd) != nil || cmd.Name != "reboot" || cmd.ID == "" {
		t.Fatalf("command as received: %q", got.String())
	}
}

// freePorts returns n distinct free loopback addresses: the listeners are
// held open together while the ports are picked, so two of them can't be
// the same port (freePort, called n times, can return one port twice).
func freePorts(t *testing.T, n int) []string {
	t.Helper()
	var out []string
	for range n {
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		out = append(out, ln.Addr().String())
	}
	return out
}
