package gateway

import (
	"encoding/json"
	"fmt"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// machine is a prefork machine in miniature: an embedded NATS server, the
// machine's Directory, and worker gateways that ask it.
type machine struct {
	bus *Bus
	dir *Directory
}

func startMachine(t *testing.T, name string) *machine {
	t.Helper()
	bus, err := StartBus(BusConfig{Listen: "127.0.0.1:0", Node: name, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	dir, err := StartDirectory(bus, DirectoryConfig{Machine: name, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dir.Close)
	return &machine{bus: bus, dir: dir}
}

// worker starts a gateway node that holds no directory and asks the
// machine's.
func (m *machine) worker(t *testing.T, node string) *Gateway {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	g, err := New(e, Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: node, Bus: BusConfig{URLs: []string{m.bus.ClientURL()}}, Directory: m.dir.h.cfg.Node,
		CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

func apiGet(t *testing.T, addr, path string) (int, map[string]any) {
	t.Helper()
	resp, err := http.Get("http://" + addr + path)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// TestDirectory: two workers of one machine hold only their own devices;
// the machine's directory holds them all. Lookups, the paged list,
// commands and broadcasts work from either worker for devices on the
// other; a device that moves between workers is replaced; a worker that
// dies takes its devices offline (announced node_lost by the directory);
// a worker whose directory is gone answers 503, not a wrong 404.
func TestDirectory(t *testing.T) {
	m := startMachine(t, "m1")
	w1, w2 := m.worker(t, "m1-1"), m.worker(t, "m1-2")
	nc, err := nats.Connect(m.bus.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pres, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()

	devs := map[string]*device{}
	for i := 0; i < 6; i++ {
		g, id := w1, fmt.Sprintf("d1-%d", i)
		if i%2 == 1 {
			g, id = w2, fmt.Sprintf("d2-%d", i)
		}
		devs[id] = connect(t, g, id)
	}
	testutil.Eventually(t, 0, "six devices in the machine's directory", func() bool { return m.dir.Len() == 6 })
	if n, ok := w1.Hub().remoteCount(); !ok || n != 6 {
		t.Errorf("w1's devices_known (the machine's directory): %d %v, want 6", n, ok)
	}
	for _, g := range []*Gateway{w1, w2} {
		if n := g.Hub().dirLen(); n != 0 {
			t.Errorf("%s holds %d directory entries, want 0 (the machine's directory holds them)", g.Node(), n)
		}
	}

	// GET from the other worker.
	code, d := apiGet(t, w1.APIAddr(), "/v1/devices/d2-1")
	if code != 200 || d["node"] != "m1-2" || d["protocol"] != "websocket" || d["state"] != "online" {
		t.Fatalf("GET d2-1 on w1: %d %v", code, d)
	}
	if code, d := apiGet(t, w1.APIAddr(), "/v1/devices/nope"); code != 404 {
		t.Fatalf("GET unknown: %d %v", code, d)
	}

	// The paged list, two at a time, from w2: every device once, sorted.
	var got []string
	cursor := ""
	for page := 0; page < 10; page++ {
		code, l := apiGet(t, w2.APIAddr(), "/v1/devices?limit=2&cursor="+cursor)
		if code != 200 {
			t.Fatalf("list: %d %v", code, l)
		}
		for _, x := range l["devices"].([]any) {
			got = append(got, x.(map[string]any)["device"].(string))
		}
		if cursor, _ = l["next_cursor"].(string); cursor == "" {
			break
		}
	}
	if want := "d1-0 d1-2 d1-4 d2-1 d2-3 d2-5"; strings.Join(got, " ") != want {
		t.Fatalf("list pages: %v, want %s", got, want)
	}

	// A command through w1 to a device on w2, and back.
	done := make(chan map[string]any, 1)
	go func() { done <- devs["d2-3"].answer("ok", `"w2"`) }()
	if code, a := apiPost(t, w1.APIAddr(), "/v1/devices/d2-3/commands", `{"name":"blink"}`); code != 200 || a["result"] != "w2" {
		t.Fatalf("command w1 -> d2-3: %d %v", code, a)
	}
	<-done
	if code, a := apiPost(t, w2.APIAddr(), "/v1/devices/nope/commands", `{"name":"blink"}`); code != 404 || a["error"] != "offline" {
		t.Fatalf("command to an unknown device: %d %v", code, a)
	}

	// A broadcast by prefix from w2 reaches the devices of w1.
	if code, r := apiPost(t, w2.APIAddr(), "/v1/broadcast", `{"name":"fw","prefix":"d1-"}`); code != 202 || r["sent"] != 3.0 {
		t.Fatalf("broadcast: %d %v", code, r)
	}
	for _, id := range []string{"d1-0", "d1-2", "d1-4"} {
		if c := devs[id].read(); c["name"] != "fw" {
			t.Fatalf("%s got %v", id, c)
		}
	}

	// d1-0 moves from w1 to w2: w1 closes it with 4000 though it holds
	// no entry of w2's devices.
	old := devs["d1-0"]
	connect(t, w2, "d1-0")
	old.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := old.c.ReadMessage(); err == nil || !strings.Contains(err.Error(), "4000") {
		t.Fatalf("moved device not replaced on w1: %v", err)
	}
	testutil.Eventually(t, 0, "d1-0 on m1-2 in the directory", func() bool {
		d := m.dir.Lookup("d1-0")
		return d != nil && d.Node == "m1-2" && w1.Hub().Local("d1-0") == nil
	})

	// w2 dies without a goodbye: its devices go offline in the directory,
	// which announces them with node_lost.
	w2.Hub().Close()
	w2.Bus().Close()
	testutil.Eventually(t, 10*time.Second, "w2's devices offline", func() bool {
		return m.dir.Lookup("d2-1") == nil && m.dir.Lookup("d1-0") == nil && w1.Hub().Lookup("d2-5") == nil
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		msg, err := pres.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatal("no node_lost presence for d2-1")
		}
		var p presenceMsg
		if json.Unmarshal(msg.Data, &p) == nil && p.Device == "d2-1" && p.Reason == ReasonNodeLost {
			break
		}
	}
	// The node's devices leave the directory one by one; d2-1's presence
	// can come before the last of them has gone.
	testutil.Eventually(t, 10*time.Second, "the directory down to w1's 2 devices (d1-2, d1-4)", func() bool {
		return m.dir.Len() == 2
	})

	// The directory is gone: w1 still answers for its own devices, and
	// 503 for the others rather than a wrong 404.
	m.dir.Close()
	if code, _ := apiGet(t, w1.APIAddr(), "/v1/devices/d1-2"); code != 200 {
		t.Errorf("GET a local device without the directory: %d", code)
	}
	if code, d := apiGet(t, w1.APIAddr(), "/v1/devices/d2-1"); code != 503 {
		t.Errorf("GET a remote device without the directory: %d %v, want 503", code, d)
	}
	if code, a := apiPost(t, w1.APIAddr(), "/v1/devices/d2-1/commands", `{"name":"blink"}`); code != 503 {
		t.Errorf("command to a remote device without the directory: %d %v, want 503", code, a)
	}
	hm := &w1.Hub().m
	hm.mu.Lock()
	ok, failed := hm.dirRequests[[2]string{"command", "ok"}], hm.dirRequests[[2]string{"command", "error"}]
	hm.mu.Unlock()
	if ok != 1 || failed != 1 {
		t.Errorf("w1's directory command requests: %d ok, %d error; want 1 and 1 (forwarded, then no directory)", ok, failed)
	}
}

// TestDirectoryWithNodes: a machine's directory and an ordinary node (one
// that holds its own directory) on one NATS: each sees the other's
// devices, and a device moving from a worker to the node is replaced.
func TestDirectoryWithNodes(t *testing.T) {
	m := startMachine(t, "m1")
	w := m.worker(t, "m1-1")
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	solo, err := New(e, Config{Addr: "127.0.0.1:0", API: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "solo", Bus: BusConfig{URLs: []string{m.bus.ClientURL()}}, CommandTimeout: 2 * time.Second,
		Logger: quietLog(), DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(solo.Close)
	dw := connect(t, w, "on-w")
	connect(t, solo, "on-solo")
	testutil.Eventually(t, 0, "each side knows the other's device", func() bool {
		a, b := w.Hub().Lookup("on-solo"), solo.Hub().Lookup("on-w")
		return a != nil && a.Node == "solo" && b != nil && b.Node == "m1-1"
	})
	connect(t, solo, "on-w")
	dw.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, _, err := dw.c.ReadMessage(); err == nil || !strings.Contains(err.Error(), "4000") {
		t.Fatalf("device moved to solo not replaced on the worker: %v", err)
	}
	testutil.Eventually(t, 0, "on-w on solo in the machine's directory", func() bool {
		d := m.dir.Lookup("on-w")
		return d != nil && d.Node == "solo"
	})
}

// TestDirectoryNodeRestart: a worker killed and restarted under the same
// node name faster than the node timeout (as the prefork parent does)
// heartbeats its new start time at once: the directory drops the devices
// of its previous run and announces them node_lost, and keeps the new
// run's devices.
func TestDirectoryNodeRestart(t *testing.T) {
	bus, err := StartBus(BusConfig{Listen: "127.0.0.1:0", Node: "m1", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	dir, err := StartDirectory(bus, DirectoryConfig{Machine: "m1", NodeTimeout: time.Minute, Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(dir.Close)
	m := &machine{bus: bus, dir: dir}
	nc, err := nats.Connect(bus.ClientURL())
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pres, _ := nc.SubscribeSync("devices.*.presence")
	nc.Flush()

	w := m.worker(t, "m1-1")
	connect(t, w, "old-run")
	testutil.Eventually(t, 0, "old-run in the directory", func() bool { return dir.Lookup("old-run") != nil })
	// Killed: no goodbye, no offline presence.
	w.Hub().Close()
	w.Bus().Close()
	w2 := m.worker(t, "m1-1")
	connect(t, w2, "new-run")
	testutil.Eventually(t, 10*time.Second, "old-run gone, new-run kept (NodeTimeout is a minute)", func() bool {
		d := dir.Lookup("new-run")
		return dir.Lookup("old-run") == nil && d != nil && d.Node == "m1-1"
	})
	for deadline := time.Now().Add(5 * time.Second); ; {
		msg, err := pres.NextMsg(time.Until(deadline))
		if err != nil {
			t.Fatal("no node_lost presence for old-run")
		}
		var p presenceMsg
		if json.Unmarshal(msg.Data, &p) == nil && p.Device == "old-run" && p.Reason == ReasonNodeLost {
			break
		}
	}
	if n := dir.Len(); n != 1 {
		t.Errorf("directory holds %d devices, want 1 (new-run)", n)
	}
}
