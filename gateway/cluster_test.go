package gateway

import (
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

// cluster starts n gateway nodes whose embedded NATS servers form a real
// NATS cluster through routes to the first.
func cluster(t *testing.T, n int) []*Gateway {
	t.Helper()
	a := startGateway(t, "node-a", BusConfig{ClusterListen: "127.0.0.1:0"})
	nodes := []*Gateway{a}
	route := "nats://" + a.Bus().ClusterAddr().String()
	for i := 1; i < n; i++ {
		g := startGateway(t, "node-"+string(rune('a'+i)), BusConfig{ClusterListen: "127.0.0.1:0", Routes: []string{route}})
		nodes = append(nodes, g)
	}
	testutil.Eventually(t, 10*time.Second, "the NATS routes", func() bool {
		for _, g := range nodes {
			if g.Bus().Embedded().NumRoutes() < n-1 {
				return false
			}
		}
		return true
	})
	return nodes
}

// TestCluster: three nodes on a real NATS cluster. A command sent to node
// A reaches a device on node C; presence is the same everywhere; a device
// that moves from A to B is replaced on A; a node that dies takes its
// devices offline on the others.
func TestCluster(t *testing.T) {
	ns := cluster(t, 3)
	a, b, c := ns[0], ns[1], ns[2]

	dc := connect(t, c, "dev-c")
	for _, g := range ns {
		testutil.Eventually(t, 0, "dev-c known on "+g.Node(), func() bool {
			d := g.Hub().Lookup("dev-c")
			return d != nil && d.Node == "node-c"
		})
	}
	done := make(chan struct{})
	go func() { defer close(done); dc.answer("ok", `"done"`) }()
	code, m := apiPost(t, a.APIAddr(), "/v1/devices/dev-c/commands", `{"name":"blink","timeout":"5s"}`)
	<-done
	if code != 200 || m["status"] != "ok" || m["result"] != "done" {
		t.Fatalf("command across nodes: %d %v", code, m)
	}

	// A service's request over NATS gets the device's ack.
	nc, err := nats.Connect("nats://"+"127.0.0.1", nats.InProcessServer(b.Bus().Embedded()))
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	go dc.answer("ok", `{"via":"nats"}`)
	reply, err := nc.Request("devices.dev-c.commands.ping", []byte(`{"n":1}`), 5*time.Second)
	if err != nil || !strings.Contains(string(reply.Data), `"via":"nats"`) {
		t.Fatalf("service request: %v %s", err, reply.Data)
	}

	// A device moves from A to B: A's connection is replaced.
	old := connect(t, a, "dev-m")
	connect(t, b, "dev-m")
	old.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := old.c.ReadMessage(); err == nil || !strings.Contains(err.Error(), "4000") {
		t.Fatalf("moved device not replaced on A: %v", err)
	}
	for _, g := range ns {
		testutil.Eventually(t, 0, "dev-m on node-b everywhere", func() bool {
			d := g.Hub().Lookup("dev-m")
			return d != nil && d.Node == "node-b"
		})
	}
	if a.Hub().Local("dev-m") != nil {
		t.Fatal("A still holds dev-m")
	}

	// Node C dies without a goodbye: its devices go offline elsewhere.
	c.Hub().Close()
	c.Bus().Close()
	for _, g := range []*Gateway{a, b} {
		testutil.Eventually(t, 10*time.Second, "dev-c offline on "+g.Node(), func() bool {
			return g.Hub().Lookup("dev-c") == nil
		})
	}
}
