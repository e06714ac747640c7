package gateway

import (
	"context"
	"net/http"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// shutdownSoon drains g's engine in the background.
func shutdownSoon(g *Gateway) {
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		g.eng.Shutdown(ctx)
	}()
}

// TestDrainHeldMQTTGoodbye: an MQTT device the drain held for its command
// gets, once the command is done, the goodbye an unheld one gets — a 5.0
// client DISCONNECT use_another_server with the server reference, MQTT
// over WebSocket a close 1001 — not an administrative DISCONNECT, nor the
// WebSocket 1008 its code maps to.
func TestDrainHeldMQTTGoodbye(t *testing.T) {
	t.Run("tcp-v5-reference", func(t *testing.T) {
		g := startMQTTGatewayWith(t, "n1", BusConfig{}, func(c *Config) {
			c.DrainTimeout = 4 * time.Second
			c.MQTTConfig.ServerReference = "other.example:1883"
		})
		c := rawMQTT(t, g.MQTTAddr(), "dev-5", token(t, "dev-5"))
		testutil.Eventually(t, 0, "online", func() bool { return g.Hub().Lookup("dev-5") != nil })
		answer := postCommand(g.APIAddr(), "dev-5", `{"name":"slow","timeout":"1s"}`)
		testutil.Eventually(t, 0, "pending", func() bool { return g.Hub().Pending() == 1 })
		shutdownSoon(g)
		testutil.Eventually(t, 0, "held", func() bool { return g.Hub().m.drainHeld.Load() == 1 })
		for {
			p := readMQTT(t, c)
			if p == nil {
				t.Fatal("closed without a DISCONNECT")
			}
			if d, ok := p.(*mqtt.Disconnect); ok {
				if d.ReasonCode != mqtt.UseAnotherServer || string(d.Props.ServerReference) != "other.example:1883" {
					t.Fatalf("held device's DISCONNECT %#x %q, want use_another_server with the reference", byte(d.ReasonCode), d.Props.ServerReference)
				}
				break
			}
		}
		if r := <-answer; r.code != 504 {
			t.Fatalf("command: %d", r.code)
		}
	})
	t.Run("websocket", func(t *testing.T) {
		g := startMQTTGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.DrainTimeout = 4 * time.Second })
		d := gorilla.Dialer{Subprotocols: []string{"mqtt"}}
		ws, _, err := d.Dial("ws://"+g.DeviceAddr()+"/mqtt", http.Header{})
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		ws.WriteMessage(gorilla.BinaryMessage, mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311,
			ClientID: []byte("dev-w"), CleanStart: true, KeepAlive: 60, Username: []byte("u"), Password: []byte(token(t, "dev-w"))}))
		ws.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, ack, err := ws.ReadMessage(); err != nil || len(ack) < 4 || ack[0] != 0x20 || ack[3] != 0 {
			t.Fatalf("CONNACK %x %v", ack, err)
		}
		testutil.Eventually(t, 0, "online", func() bool { return g.Hub().Lookup("dev-w") != nil })
		answer := postCommand(g.APIAddr(), "dev-w", `{"name":"slow","timeout":"1s"}`)
		testutil.Eventually(t, 0, "pending", func() bool { return g.Hub().Pending() == 1 })
		shutdownSoon(g)
		testutil.Eventually(t, 0, "held", func() bool { return g.Hub().m.drainHeld.Load() == 1 })
		for {
			_, _, err := ws.ReadMessage()
			if err == nil {
				continue // the command's PUBLISH
			}
			ce, ok := err.(*gorilla.CloseError)
			if !ok || ce.Code != gorilla.CloseGoingAway {
				t.Fatalf("held MQTT-over-WebSocket device closed with %v, want 1001", err)
			}
			break
		}
		if r := <-answer; r.code != 504 {
			t.Fatalf("command: %d", r.code)
		}
	})
}
