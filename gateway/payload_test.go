package gateway

import (
	"bytes"
	"net/http"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats-server/v2/server"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// TestEmbeddedNATSCarriesDeviceLimits: the embedded server's max_payload
// follows the device limits, so a message as large as -ws-max-message
// allows (1 MiB) reaches NATS with its headers (it was refused at NATS's
// 1 MiB, counted as a bus error).
func TestEmbeddedNATSCarriesDeviceLimits(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	if mp := g.Bus().Conn().MaxPayload(); mp < 1<<20+natsHeadroom {
		t.Fatalf("embedded max_payload %d, want at least 1 MiB + %d", mp, natsHeadroom)
	}
	nc := natsConn(t, g)
	sub, _ := nc.SubscribeSync("devices.big.telemetry")
	nc.Flush()
	d := connect(t, g, "big")
	payload := bytes.Repeat([]byte{7}, 1<<20)
	if err := d.c.WriteMessage(gorilla.BinaryMessage, payload); err != nil {
		t.Fatal(err)
	}
	m, err := sub.NextMsg(10 * time.Second)
	if err != nil || !bytes.Equal(m.Data, payload) {
		t.Fatalf("a 1 MiB telemetry message: %v (%d bytes)", err, len(m.Data))
	}
}

// TestDeviceLimitsFitExternalNATS: against a cluster with a smaller
// max_payload the device limits shrink to what it carries (a message over
// them gets 1009, not a silent drop), and the MQTT broker announces the
// same.
func TestDeviceLimitsFitExternalNATS(t *testing.T) {
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true, MaxPayload: 256 << 10})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	cfg := Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", MQTT: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "n1", Bus: BusConfig{URLs: []string{s.ClientURL()}}, Logger: quietLog(), DataDir: t.TempDir()}
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	want := 256<<10 - natsHeadroom
	if ws, mq := g.cfg.WebSocket.MaxMessageSize, g.cfg.MQTTConfig.Limits.MaxPacketSize; ws != want || mq != want {
		t.Fatalf("limits: ws %d, mqtt %d, want %d", ws, mq, want)
	}
	h := http.Header{"Authorization": {"Bearer " + token(t, "dev-s")}}
	c, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect", h)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.WriteMessage(gorilla.BinaryMessage, make([]byte, want+1))
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	for {
		if _, _, err := c.ReadMessage(); err != nil {
			if ce, ok := err.(*gorilla.CloseError); !ok || ce.Code != gorilla.CloseMessageTooBig {
				t.Fatalf("over the fitted limit: %v, want close 1009", err)
			}
			break
		}
	}
}
