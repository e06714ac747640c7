package gateway

import (
	"net/http"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/websocket"
)

// TestLingerReconnectNotReplaced: a device over the message limit gets
// 1009 and, like a gorilla client whose Close waits for its reader,
// leaves its old TCP connection open while it reconnects at once. The old
// connection lingers, but the device must be gone from the hub when its
// close began: it went offline with the limit's reason, and the reconnect
// is a new session, not one replacing a session still registered.
func TestLingerReconnectNotReplaced(t *testing.T) {
	g := startGatewayWith(t, "n1", BusConfig{}, func(c *Config) { c.WebSocket = websocket.Config{MaxMessageSize: 1 << 10} })
	old := connect(t, g, "dev-9")
	old.send(strings.Repeat("x", 4<<10))
	old.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := old.c.ReadMessage(); !gorilla.IsCloseError(err, websocket.CloseMessageTooBig) {
		t.Fatalf("old connection read %v, want close 1009", err)
	}
	h := g.Hub()
	gone := func() uint64 {
		h.m.mu.Lock()
		defer h.m.mu.Unlock()
		return h.m.disconnects[engine.ReasonLimitReached.String()]
	}
	// OnClose runs on the loop just after the Close frame is written: allow
	// it a moment, well short of the 2 s LingerTimeout the old one holds.
	for deadline := time.Now().Add(time.Second); gone() == 0 && time.Now().Before(deadline); {
		time.Sleep(5 * time.Millisecond)
	}
	if gone := gone(); gone != 1 || h.Local("dev-9") != nil {
		t.Fatalf("after the 1009: %d disconnects for %v, session %v: want the device gone when the close began",
			gone, engine.ReasonLimitReached, h.Local("dev-9"))
	}
	nc, _, err := gorilla.DefaultDialer.Dial("ws://"+g.DeviceAddr()+"/v1/connect",
		http.Header{"Authorization": {"Bearer " + token(t, "dev-9")}})
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	deadline := time.Now().Add(5 * time.Second)
	for h.m.connects.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	if n := h.m.connects.Load(); n != 2 {
		t.Fatalf("connects %d, want 2", n)
	}
	if n := h.m.replaced.Load(); n != 0 {
		t.Fatalf("replaced %d: the reconnect replaced a session whose close had begun", n)
	}
}
