package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestCommandNames: a command's name is one NATS token and one MQTT
// level; anything else is a 400, on commands and broadcasts alike.
func TestCommandNames(t *testing.T) {
	for name, ok := range map[string]bool{
		"reboot": true, "set_config-2": true, "fw:update@v1": true, strings.Repeat("n", 128): true,
		"": false, "a/b": false, "a.b": false, "+": false, "#": false, "a*": false, ">": false,
		"a b": false, "a\x00": false, "é": false, strings.Repeat("n", 129): false,
	} {
		if ValidCommandName(name) != ok {
			t.Errorf("ValidCommandName(%q) = %t, want %t", name, !ok, ok)
		}
	}
	g := startGateway(t, "n1", BusConfig{})
	for _, name := range []string{"a/b", "a.b", "+", "#", "a b"} {
		body, _ := json.Marshal(map[string]string{"name": name})
		if code, m := apiPost(t, g.APIAddr(), "/v1/devices/dev-1/commands", string(body)); code != 400 {
			t.Errorf("command %q: %d %v, want 400", name, code, m)
		}
		body, _ = json.Marshal(map[string]any{"name": name, "devices": []string{"dev-1"}})
		if code, m := apiPost(t, g.APIAddr(), "/v1/broadcast", string(body)); code != 400 {
			t.Errorf("broadcast %q: %d %v, want 400", name, code, m)
		}
	}
	if code, m := apiPost(t, g.APIAddr(), "/v1/devices/dev-1/commands", `{"name":"fw:update@v1"}`); code != 404 {
		t.Errorf("a good name for an offline device: %d %v, want 404", code, m)
	}
	if _, err := g.Hub().Command(context.Background(), "dev-1", "a/b", nil, time.Second); !errors.Is(err, ErrBadCommandName) {
		t.Errorf("Hub.Command with a bad name: %v", err)
	}
}

// TestForgedPresenceIgnored: a presence event counts only on the device's
// own subject and from a node, not from an MQTT client's publish the
// bridge carried: one naming another device takes nothing over.
func TestForgedPresenceIgnored(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	connect(t, g, "victim")
	nc := natsConn(t, g)
	event := func(device, subject string, hdr nats.Header) {
		b, _ := json.Marshal(map[string]any{"device": device, "state": "online", "node": "ghost",
			"protocol": "mqtt", "at": time.Now().Add(time.Minute).Format(time.RFC3339Nano),
			"connected_at": time.Now().Add(time.Minute).Format(time.RFC3339Nano), "session": "ghost/7"})
		nc.PublishMsg(&nats.Msg{Subject: subject, Data: b, Header: hdr})
	}
	event("victim", "devices.attacker.presence", nil)
	event("victim", "devices.victim.presence", nats.Header{headerQoS: {"0"}})
	// The control: a node's event on its device's own subject is taken;
	// once it is, the two before it (same subscription, in order) were
	// handled too.
	event("other", "devices.other.presence", nil)
	testutil.Eventually(t, 0, "the control event taken", func() bool { return g.Hub().Lookup("other") != nil })
	if d := g.Hub().Lookup("victim"); d == nil || d.Node != "n1" {
		t.Fatalf("the victim's entry after forged presence: %+v", d)
	}
	if g.Hub().Local("victim") == nil {
		t.Fatal("the victim's session was closed by a forged presence event")
	}
	if !presenceOf("devices.a.presence", "a") || presenceOf("devices.ab.presence", "a") || presenceOf("devices.a.presence.x", "a") {
		t.Fatal("presenceOf")
	}
}

// TestCommandAfterCallerGone: a command whose context has ended before it
// is sent (an API request that waited for a worker while its client left)
// is answered with the context's error and never reaches the device.
func TestCommandAfterCallerGone(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	d := connect(t, g, "dev-gone")
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	got := make(chan error, 1)
	g.Hub().CommandAsync(ctx, "dev-gone", "reboot", nil, time.Second, func(_ Ack, err error) { got <- err })
	select {
	case err := <-got:
		if !errors.Is(err, context.Canceled) {
			t.Fatalf("done with %v, want context.Canceled", err)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("done was not called")
	}
	// The device gets the next command, and only that one.
	go g.Hub().Command(context.Background(), "dev-gone", "after", nil, time.Second)
	if m := d.read(); m["name"] != "after" {
		t.Fatalf("the device was sent %v first, want the command \"after\"", m)
	}
}
