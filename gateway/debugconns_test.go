package gateway

import (
	"context"
	"encoding/json"
	"net/http"
	"testing"

	"github.com/warrenhq/warren/admin"
)

// TestDebugConnsByDevice: /debug/conns finds a device's connection by
// device= (its id) and a fleet's by prefix=, the gateway labelling each
// WebSocket device connection with its id.
func TestDebugConnsByDevice(t *testing.T) {
	g := startGateway(t, "n1", BusConfig{})
	adm, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Logger: quietLog()}, g.eng)
	if err != nil {
		t.Fatal(err)
	}
	if err := adm.Start(); err != nil {
		t.Fatal(err)
	}
	defer adm.Shutdown(context.Background())
	for _, id := range []string{"dev-a1", "dev-a2", "dev-b1"} {
		connect(t, g, id)
	}
	list := func(q string) admin.ConnList {
		t.Helper()
		resp, err := http.Get("http://" + adm.Addr().String() + "/debug/conns?" + q)
		if err != nil {
			t.Fatal(err)
		}
		defer resp.Body.Close()
		var l admin.ConnList
		if resp.StatusCode != 200 || json.NewDecoder(resp.Body).Decode(&l) != nil {
			t.Fatalf("%s: %d", q, resp.StatusCode)
		}
		return l
	}
	if l := list("device=dev-a2"); l.Total != 1 || l.Conns[0].Label != "dev-a2" || l.Conns[0].Protocol != "websocket" {
		t.Fatalf("device=dev-a2: %+v", l)
	}
	if l := list("prefix=dev-a"); l.Total != 2 || l.Conns[0].Label == "dev-b1" || l.Conns[1].Label == "dev-b1" {
		t.Fatalf("prefix=dev-a: %+v", l)
	}
	if l := list("prefix=dev-&limit=1"); l.Total != 3 || len(l.Conns) != 1 || l.NextCursor == "" {
		t.Fatalf("prefix=dev- limit=1: %+v", l)
	}
}
