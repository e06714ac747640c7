package gateway

import (
	"encoding/json"
	"maps"
	"slices"
	"testing"
	"time"
)

// Tests of what an outside check of issue 11 found: each one drives the
// gateway as a platform team would, with a real WebSocket client and a
// real NATS subscriber.

// TestPresenceFields: every presence event, online as well as offline,
// carries each field the contract names — a consumer that reads "reason"
// from an online event (where it is empty) finds it.
func TestPresenceFields(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-p.presence")
	nc.Flush()
	d := connect(t, g, "dev-p")
	d.c.Close()
	for _, want := range []struct{ state, reason string }{{"online", ""}, {"offline", ReasonDisconnected}} {
		m, err := pres.NextMsg(5 * time.Second)
		if err != nil {
			t.Fatalf("%s: %v", want.state, err)
		}
		var p map[string]any
		if err := json.Unmarshal(m.Data, &p); err != nil {
			t.Fatalf("%s: %q: %v", want.state, m.Data, err)
		}
		for _, f := range []string{"device", "state", "node", "protocol", "remote", "reason", "at"} {
			if _, ok := p[f]; !ok {
				t.Errorf("%s presence %s has no %q (fields %v)", want.state, m.Data, f, slices.Sorted(maps.Keys(p)))
			}
		}
		if p["state"] != want.state || p["reason"] != want.reason || p["device"] != "dev-p" || p["node"] != "n1" {
			t.Errorf("presence %s, want state %q reason %q", m.Data, want.state, want.reason)
		}
	}
}

// TestServiceCommandRawPayload: a backend service's command over NATS
// whose payload is not JSON reaches the device as a JSON string of those
// bytes (as docs/gateway.md says), not as null, and the reply is the ack.
func TestServiceCommandRawPayload(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	nc := natsConn(t, g)
	d := connect(t, g, "dev-s")
	for _, c := range []struct{ sent, want string }{
		{`plain text, not JSON`, `"plain text, not JSON"`},
		{`{"level":3}`, `{"level":3}`},
		{``, `null`},
	} {
		got := make(chan string, 1)
		go func() {
			d.c.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, b, err := d.c.ReadMessage()
			if err != nil {
				got <- "read: " + err.Error()
				return
			}
			var cmd struct {
				ID      string
				Payload json.RawMessage
			}
			json.Unmarshal(b, &cmd)
			d.send(`{"type":"ack","id":"` + cmd.ID + `","status":"ok","result":{"seen":true}}`)
			got <- string(cmd.Payload)
		}()
		m, err := nc.Request("devices.dev-s.commands.set", []byte(c.sent), 5*time.Second)
		if p := <-got; p != c.want {
			t.Errorf("sent %q: the device got payload %s, want %s", c.sent, p, c.want)
		}
		if err != nil {
			t.Fatalf("sent %q: request: %v", c.sent, err)
		}
		var a Ack
		if err := json.Unmarshal(m.Data, &a); err != nil || a.Status != "ok" || string(a.Result) != `{"seen":true}` {
			t.Errorf("sent %q: reply %s (%v), want the device's ack", c.sent, m.Data, err)
		}
	}
}
