package gateway

import (
	"fmt"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

func runNATS(t *testing.T, port int) *server.Server {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	return s
}

// restartNATS starts a new, empty server on port whose client nc, in
// process, has already subscribed to subject when the port opens: the
// bus reconnects within about a second of it (and then publishes at
// once), sooner than a client dialled after the server started may be
// subscribed on a loaded machine.
func restartNATS(t *testing.T, port int, subject string) (*server.Server, *nats.Subscription) {
	t.Helper()
	s, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: port, NoLog: true, NoSigs: true, DontListen: true})
	if err != nil {
		t.Fatal(err)
	}
	go s.Start()
	t.Cleanup(s.Shutdown)
	if !s.ReadyForConnections(10 * time.Second) {
		t.Fatal("nats-server did not start")
	}
	nc, err := nats.Connect("", nats.InProcessServer(s))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(nc.Close)
	sub, err := nc.SubscribeSync(subject)
	if err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go s.AcceptLoop(listening) // what Start does without DontListen
	<-listening
	if s.Addr() == nil {
		t.Fatalf("nats-server did not listen on port %d", port)
	}
	return s, sub
}

// TestBackpressure: with NATS gone and the reconnect buffer full, a device
// is paused with its message held instead of losing it; when NATS is back
// the held message is published and the device resumes.
func TestBackpressure(t *testing.T) {
	ns := runNATS(t, server.RANDOM_PORT)
	port := ns.Addr().(interface{ String() string }).String()
	url := "nats://" + port
	g := startGateway(t, "n1", BusConfig{URLs: []string{url}, ReconnectBuffer: 600})
	d := connect(t, g, "dev-bp")

	ns.Shutdown()
	ns.WaitForShutdown()
	testutil.Eventually(t, 0, "the bus to see NATS gone", func() bool { return !g.Bus().Connected() })
	for i := 0; i < 5; i++ {
		d.send(fmt.Sprintf(`{"type":"telemetry","data":{"n":%d,"pad":%q}}`, i, strings.Repeat("x", 200)))
	}
	testutil.Eventually(t, 0, "the device to be paused", func() bool { return g.Hub().m.pauses.Load() >= 1 })
	for _, r := range []string{"bus_error", "held_overflow"} {
		if n := g.Hub().m.droppedCount(r); n != 0 {
			t.Fatalf("%d messages dropped (%s)", n, r)
		}
	}

	_, p, _ := strings.Cut(port, ":")
	var portN int
	fmt.Sscan(p, &portN)
	_, sub := restartNATS(t, portN, "devices.dev-bp.telemetry")
	testutil.Eventually(t, 10*time.Second, "the bus back", func() bool { return g.Bus().Connected() })
	// What was held while NATS was away arrives, in order.
	got := 0
	for {
		m, err := sub.NextMsg(10 * time.Second)
		if err != nil {
			break
		}
		if strings.Contains(string(m.Data), `"n":4`) {
			got++
			break
		}
	}
	if got == 0 {
		t.Fatal("the last held message never arrived")
	}
	// The device resumes: a new message gets through.
	testutil.Eventually(t, 10*time.Second, "telemetry flowing again", func() bool {
		d.send(`{"type":"telemetry","data":"after"}`)
		m, err := sub.NextMsg(200 * time.Millisecond)
		for err == nil {
			if string(m.Data) == `"after"` {
				return true
			}
			m, err = sub.NextMsg(50 * time.Millisecond)
		}
		return false
	})
}

// TestDeviceHeldBytes: a paused device holds at most DeviceHeldBytes of
// telemetry (here 300: one 200-byte message); the next is dropped and
// counted held_overflow. Unset, the bound is DefaultDeviceHeldBytes.
func TestDeviceHeldBytes(t *testing.T) {
	if g := startGateway(t, "n0", BusConfig{}); g.Hub().cfg.MaxHeldBytes != DefaultDeviceHeldBytes {
		t.Fatalf("default held bound %d, want %d", g.Hub().cfg.MaxHeldBytes, DefaultDeviceHeldBytes)
	}
	g := startGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.DeviceHeldBytes = 300 })
	d := connect(t, g, "dev-h")
	s := g.Hub().Local("dev-h")
	s.setPaused() // as if NATS had pushed back: what arrives now is held
	pad := strings.Repeat("x", 200)
	d.send(`{"type":"telemetry","data":"` + pad + `"}`)
	d.send(`{"type":"telemetry","data":"` + pad + `"}`)
	testutil.Eventually(t, 0, "the second message dropped", func() bool { return g.Hub().m.droppedCount("held_overflow") == 1 })
	q := s.held.Load()
	if q == nil {
		t.Fatal("nothing held")
	}
	q.mu.Lock()
	n, bytes := len(q.msgs), q.bytes
	q.mu.Unlock()
	if n != 1 || bytes != 202 {
		t.Fatalf("held %d messages, %d bytes; want the first, 202 bytes", n, bytes)
	}
}
