package gateway

import (
	"testing"
	"time"
	"unsafe"
)

// TestDirEntry: a directory entry is 40 bytes and gives back what it was
// made of.
func TestDirEntry(t *testing.T) {
	if n := unsafe.Sizeof(dirEntry{}); n != 40 {
		t.Errorf("dirEntry is %d bytes, want 40", n)
	}
	if n := unsafe.Sizeof(Session{}); n > 64 {
		t.Errorf("Session is %d bytes, want at most 64 (a size class)", n)
	}
	if n := unsafe.Sizeof(wsDevice{}); n > 80 {
		t.Errorf("wsDevice (the WebSocket transport with its session) is %d bytes, want at most 80 (a size class)", n)
	}
	for _, remote := range []string{"127.0.0.1:5000", "[2001:db8::1]:443", "[::ffff:10.0.0.1]:80", ""} {
		at := time.Date(2026, 12, 4, 23, 0, 0, 123456789, time.UTC)
		p := presenceMsg{Device: "d1", State: "online", Node: "n/1", Protocol: "websocket", Remote: remote,
			ConnectedAt: at, Session: "n/1/42"}
		e, ok := entryOf(&p)
		if !ok {
			t.Fatalf("%s: entryOf refused %+v", remote, p)
		}
		d := e.info("d1")
		if d.Node != "n/1" || d.Protocol != "websocket" || d.Remote != remote || !d.ConnectedAt.Equal(at) ||
			d.session != "n/1/42" {
			t.Errorf("%s: info %+v", remote, d)
		}
	}
	if _, ok := entryOf(&presenceMsg{Node: "a", Session: "b/1"}); ok {
		t.Error("entryOf took a session of another node")
	}
}

// TestTelemetryAllocs: publishing a telemetry message allocates its
// subject and timestamp strings and what nats.go's header encoding needs,
// not a message, a header map and its values each time.
func TestTelemetryAllocs(t *testing.T) {
	if raceEnabled {
		t.Skip("the race detector makes sync.Pool drop items")
	}
	g := startGateway(t, "n1", BusConfig{})
	connect(t, g, "dev-a")
	s := g.Hub().Local("dev-a")
	data := []byte(`{"t":1,"temp":21.5}`)
	now := time.Now()
	allocs := testing.AllocsPerRun(1000, func() { g.Hub().Telemetry(s, data, now) })
	t.Logf("%.1f allocations per telemetry message", allocs)
	if allocs > 6 {
		t.Errorf("%.1f allocations per telemetry message, want at most 6 (10 before the message was reused)", allocs)
	}
	if n := g.Hub().m.telemetryOut.Load(); n < 1000 {
		t.Errorf("%d published", n)
	}
}
