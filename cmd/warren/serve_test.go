//go:build !windows

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// Process-level tests of `warren serve`: the real binary, real clients
// (Python's websockets, gorilla/websocket, nats.go, net/http), real NATS
// servers. The helpers are in serve_helpers_test.go.

// pythonWebsockets returns a python3 that can import websockets, or skips.
func pythonWebsockets(t *testing.T) string {
	t.Helper()
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(py)
		if err == nil && exec.Command(path, "-c", "import websockets").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with the websockets package (Debian: apt-get install python3-websockets)")
	return ""
}

// TestServeInterop: a Python device (websockets) on `warren serve`, a token
// from `warren token`, a nats.go subscriber on the embedded NATS server and
// commands from the management API and from a NATS service request.
func TestServeInterop(t *testing.T) {
	py := pythonWebsockets(t)
	data := t.TempDir()
	start := time.Now()
	n := startServe(t, "interop", data)
	out, err := exec.Command(warrenBinary(t), "token", "-device", "dev-1", "-data", data).Output()
	if err != nil {
		t.Fatalf("warren token: %v", err)
	}
	tok := strings.TrimSpace(string(out))
	w := watchNATS(t, n.natsURL(), "devices.>")

	// The data field's bytes, spacing and all, are what NATS must carry.
	const data1 = `{"t": 21.5,  "unit":"C" , "tags":["a" ,"b"]}`
	dev := startProc(t, "device.py", py, "testdata/device.py",
		"ws://"+n.addr+"/v1/connect?token="+tok, `{"type":"telemetry","data":`+data1+`}`)
	dev.waitOutput(t, 10*time.Second, `"event": "open"`)

	online := w.wait(t, 5*time.Second, "devices.dev-1.presence", isPresence("online", ""))
	var p presence
	json.Unmarshal(online.Data, &p)
	if p.Device != "dev-1" || p.Node != "interop" || p.Protocol != "websocket" || p.Session == "" {
		t.Errorf("online presence: %s", online.Data)
	}
	tm := w.wait(t, 5*time.Second, "devices.dev-1.telemetry", nil)
	if string(tm.Data) != data1 {
		t.Errorf("telemetry %q, want the bytes sent %q", tm.Data, data1)
	}
	if tm.Header.Get("Warren-Device") != "dev-1" || tm.Header.Get("Warren-Node") != "interop" {
		t.Errorf("telemetry headers %v", tm.Header)
	}
	if at, err := time.Parse(time.RFC3339Nano, tm.Header.Get("Warren-Received")); err != nil ||
		at.Before(start) || at.After(time.Now()) {
		t.Errorf("Warren-Received %q: %v", tm.Header.Get("Warren-Received"), err)
	}

	code, m := n.command(t, "dev-1", `{"name":"reboot","payload":{"delay":1},"timeout":"5s"}`)
	if code != 200 || m["status"] != "ok" || m["id"] == "" ||
		fmt.Sprint(m["result"]) != "map[done:reboot payload:map[delay:1]]" {
		t.Errorf("POST command: %d %v", code, m)
	}
	if code, m := n.device(t, "dev-1"); code != 200 || m["node"] != "interop" || m["protocol"] != "websocket" {
		t.Errorf("GET device: %d %v", code, m)
	}

	// A backend service's NATS request gets the device's ack.
	reply, err := w.nc.Request("devices.dev-1.commands.x", []byte(`{"k":1}`), 5*time.Second)
	if err != nil {
		t.Fatalf("NATS command: %v", err)
	}
	var ack struct {
		ID, Status string
		Result     map[string]any
	}
	if json.Unmarshal(reply.Data, &ack) != nil || ack.Status != "ok" || ack.ID == "" ||
		fmt.Sprint(ack.Result) != "map[done:x payload:map[k:1]]" {
		t.Errorf("NATS command reply: %s", reply.Data)
	}

	// "bye" is acked, then the device closes: offline everywhere.
	if code, m := n.command(t, "dev-1", `{"name":"bye"}`); code != 200 || m["status"] != "ok" {
		t.Errorf("POST bye: %d %v", code, m)
	}
	if err := dev.wait(t, 10*time.Second); err != nil {
		t.Errorf("device.py: %v", err)
	}
	w.wait(t, 5*time.Second, "devices.dev-1.presence", isPresence("offline", "disconnected"))
	if code, m := n.command(t, "dev-1", `{"name":"reboot"}`); code != 404 || m["error"] != "offline" {
		t.Errorf("command to an offline device: %d %v", code, m)
	}
	if code, _ := n.device(t, "dev-1"); code != 404 {
		t.Errorf("GET offline device: %d", code)
	}

	// What the device got: the three commands, in order, and a clean close.
	var names []string
	var closeEv map[string]any
	for _, ev := range pythonEvents(dev.out.String()) {
		if f, _ := ev["frame"].(map[string]any); f != nil {
			names = append(names, fmt.Sprint(f["type"], ":", f["name"]))
		}
		if ev["event"] == "close" {
			closeEv = ev
		}
	}
	if strings.Join(names, " ") != "command:reboot command:x command:bye" || closeEv == nil || closeEv["code"] != 1000.0 {
		t.Errorf("device.py saw %v, closed with %v", names, closeEv)
	}

	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.wait(t, 10*time.Second); err != nil {
		t.Errorf("serve exit: %v", err)
	}
}

// TestServeDrain: SIGTERM with a connected device. The device gets close
// 1001 with a retry hint while /readyz answers 503, presence goes offline
// with reason shutdown, and the process exits 0.
func TestServeDrain(t *testing.T) {
	data := t.TempDir()
	n := startServe(t, "drain", data)
	w := watchNATS(t, n.natsURL(), "devices.*.presence")
	readyz := func() int {
		resp, err := apiClient.Get("http://" + n.admin + "/readyz")
		if err != nil {
			return 0
		}
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := readyz(); code != 200 {
		t.Fatalf("/readyz before the drain: %d", code)
	}
	d := dialDevice(t, n.addr, "dev-d", deviceToken(t, data, "dev-d"))
	// The drain waits for this device's close reply (the WebSocket close
	// handshake), so /readyz asked before replying is asked mid-drain.
	drainReady := make(chan int, 1)
	d.c.SetCloseHandler(func(code int, _ string) error {
		drainReady <- readyz()
		return d.c.WriteControl(gorilla.CloseMessage, gorilla.FormatCloseMessage(code, ""), time.Now().Add(time.Second))
	})
	d.answer()
	w.wait(t, 5*time.Second, "devices.dev-d.presence", isPresence("online", ""))

	n.cmd.Process.Signal(syscall.SIGTERM)
	ce := d.waitClosed(t)
	if ce.Code != 1001 || !strings.Contains(ce.Text, "retry-after=") {
		t.Errorf("drain close: %d %q, want 1001 with retry-after=", ce.Code, ce.Text)
	}
	if code := <-drainReady; code != 503 {
		t.Errorf("/readyz during the drain: %d, want 503", code)
	}
	w.wait(t, 5*time.Second, "devices.dev-d.presence", isPresence("offline", "shutdown"))
	if err := n.wait(t, 10*time.Second); err != nil {
		t.Errorf("serve exit after SIGTERM: %v", err)
	}
}

// TestServeDrainFinishesCommands: SIGTERM while the API waits for two
// devices' acks (Python websockets devices). The one that acks a second
// later keeps its connection until then: the API answers 200 with its
// ack, and only then it gets close 1001 with the retry hint. The one that
// never acks is answered 504 at the drain's end (-drain-timeout 4s: its
// hold ends at 3 s) and closed with 1001 too. Both go offline with reason
// shutdown, and the process exits 0. The same with -procs 2: the API in
// the prefork parent, the devices on its workers.
func TestServeDrainFinishesCommands(t *testing.T) {
	t.Run("single", func(t *testing.T) { drainFinishesCommands(t) })
	t.Run("procs", func(t *testing.T) { drainFinishesCommands(t, "-procs", "2") })
}

func drainFinishesCommands(t *testing.T, extra ...string) {
	py := pythonWebsockets(t)
	data := t.TempDir()
	// dev-late acks 2 s after its command, well inside the hold (6 s less
	// a quarter), and well after the SIGTERM that follows the command's
	// arrival, however loaded the machine.
	n := startServe(t, "drainack", data, append([]string{"-drain-timeout", "6s"}, extra...)...)
	w := watchNATS(t, n.natsURL(), "devices.*.presence")
	devs := map[string]*proc{}
	for _, id := range []string{"dev-late", "dev-never"} {
		devs[id] = startProc(t, id, py, "testdata/device.py",
			"ws://"+n.addr+"/v1/connect?token="+deviceToken(t, data, id), `{"type":"telemetry","data":1}`, "2")
		w.wait(t, 10*time.Second, "devices."+id+".presence", isPresence("online", ""))
	}
	type answer struct {
		code int
		body map[string]any
	}
	late, never := make(chan answer, 1), make(chan answer, 1)
	go func() {
		code, m := n.command(t, "dev-late", `{"name":"slow","timeout":"20s"}`)
		late <- answer{code, m}
	}()
	go func() {
		code, m := n.command(t, "dev-never", `{"name":"never","timeout":"60s"}`)
		never <- answer{code, m}
	}()
	devs["dev-late"].waitOutput(t, 10*time.Second, `"name": "slow"`)
	devs["dev-never"].waitOutput(t, 10*time.Second, `"name": "never"`)

	n.cmd.Process.Signal(syscall.SIGTERM)
	for _, c := range []struct {
		id     string
		ch     chan answer
		status int
	}{{"dev-late", late, 200}, {"dev-never", never, 504}} {
		select {
		case a := <-c.ch:
			if a.code != c.status || (c.status == 200 && fmt.Sprint(a.body["result"]) != "map[done:slow payload:<nil>]") {
				t.Errorf("%s: command during the drain: %d %v, want %d", c.id, a.code, a.body, c.status)
			}
		case <-time.After(15 * time.Second):
			t.Fatalf("%s: command unanswered", c.id)
		}
		if err := devs[c.id].wait(t, 10*time.Second); err != nil {
			t.Errorf("%s: device.py: %v", c.id, err)
		}
		var closeEv map[string]any
		for _, ev := range pythonEvents(devs[c.id].out.String()) {
			if ev["event"] == "close" {
				closeEv = ev
			}
		}
		if closeEv == nil || closeEv["code"] != 1001.0 || !strings.Contains(fmt.Sprint(closeEv["reason"]), "retry-after=") {
			t.Errorf("%s: closed with %v, want 1001 with retry-after=", c.id, closeEv)
		}
		w.wait(t, 5*time.Second, "devices."+c.id+".presence", isPresence("offline", "shutdown"))
	}
	if err := n.wait(t, 10*time.Second); err != nil {
		t.Errorf("serve exit after SIGTERM: %v", err)
	}
}

// TestServeCluster: three `warren serve` processes whose embedded NATS
// servers form a cluster through routes to the first. Commands cross
// nodes, a device that moves is replaced on its old node, presence is the
// same on every node, and a node killed with SIGKILL takes its devices off
// the others' directories.
func TestServeCluster(t *testing.T) {
	data := t.TempDir()
	a := startServePorts(t, "a", data, 1, func(p []string) []string { return []string{"-nats-cluster", p[0]} })
	routeA := func(p []string) []string {
		return []string{"-nats-cluster", p[0], "-nats-routes", "nats://" + a.ports[0]}
	}
	b := startServePorts(t, "b", data, 1, routeA)
	c := startServePorts(t, "c", data, 1, routeA)
	waitMesh(t, []string{a.natsURL(), b.natsURL(), c.natsURL()}, "a", "b", "c")
	clusterScenario(t, a, b, c, a.natsURL(), func(id string) string { return deviceToken(t, data, id) })
}

// startNATSCluster starts n nats-server processes clustered through
// routes, each on free client and route ports, and returns their client
// URLs once each accepts. A start in which a server lost a picked port to
// another process before binding it is retried on new ports (all of
// them), twice at most.
func startNATSCluster(t *testing.T, n int) []string {
	t.Helper()
	natsBin := sharedBuild(t, "nats-server", "github.com/nats-io/nats-server/v2")
	for attempt := 1; ; attempt++ {
		p := freePorts(t, 2*n) // distinct: held open together while picked
		clients, routes := p[:n], make([]string, n)
		for i, a := range p[n:] {
			routes[i] = "nats://" + a
		}
		procs := make([]*proc, n)
		for i := range n {
			host, port, _ := net.SplitHostPort(clients[i])
			var others []string
			for j, r := range routes {
				if j != i {
					others = append(others, r)
				}
			}
			procs[i] = startProc(t, fmt.Sprintf("nats-server %d", i), natsBin, "-a", host, "-p", port, "-n", fmt.Sprintf("ext-%d", i),
				"--cluster_name", "ext", "--cluster", routes[i], "--routes", strings.Join(others, ","))
		}
		lost := false
		for i, pr := range procs {
			// A server listens for routes before it is ready for clients.
			if pr.lostPort(20*time.Second, "Server is ready", clients[i], p[n+i]) {
				lost = true
			}
		}
		if lost && attempt < 3 {
			t.Logf("nats cluster: a picked port was taken before a server bound it; new ports")
			for _, pr := range procs {
				pr.kill()
			}
			continue
		}
		urls := make([]string, n)
		for i, c := range clients {
			urls[i] = "nats://" + c
			eventually(t, 10*time.Second, "nats-server "+c+" accepting", func() bool {
				nc, err := nats.Connect(urls[i])
				if err == nil {
					nc.Close()
				}
				return err == nil
			})
		}
		return urls
	}
}

// TestServeExternalNATSCluster: three `warren serve` nodes on an external
// NATS cluster — three nats-server processes clustered through routes —
// each node connected to a different server of it. The same scenario as
// TestServeCluster.
func TestServeExternalNATSCluster(t *testing.T) {
	urls := startNATSCluster(t, 3)
	secret := []byte("external-nats-cluster-secret-0123456789")
	var nodes []*serveNode
	for i, name := range []string{"xa", "xb", "xc"} {
		n := startServe(t, name, t.TempDir(), "-nats", urls[i], "-jwt-secret", string(secret))
		if !strings.Contains(n.out.String(), "nats=external") {
			t.Errorf("%s does not report external NATS", name)
		}
		nodes = append(nodes, n)
	}
	// The heartbeats of every node reach every server: the routes are up.
	waitMesh(t, urls, "xa", "xb", "xc")
	clusterScenario(t, nodes[0], nodes[1], nodes[2], urls[0], func(id string) string { return secretToken(t, secret, id) })
}

// clusterScenario runs the cluster checks on three nodes: a
// command sent to A reaches a device on C; a device that moves from A to
// B is replaced on A; presence is the same on every node; C killed with
// SIGKILL: its devices are announced offline (node_lost) and unknown on A
// and B, and reconnect to A. natsURL is a NATS server A's cluster shares.
func clusterScenario(t *testing.T, a, b, c *serveNode, natsURL string, token func(id string) string) {
	t.Helper()
	nodes := []*serveNode{a, b, c}
	// A device on C gets a command sent to A's API.
	dc := dialDevice(t, c.addr, "dev-c", token("dev-c"))
	dc.answer()
	for _, n := range nodes {
		n.waitDevice(t, 10*time.Second, "dev-c", c.node)
	}
	if code, m := a.command(t, "dev-c", `{"name":"blink","timeout":"5s"}`); code != 200 || m["status"] != "ok" ||
		fmt.Sprint(m["result"]) != "map[device:dev-c name:blink]" {
		t.Errorf("command on A to a device on C: %d %v", code, m)
	}

	// A device moves from A to B: A's connection is replaced.
	tokM := token("dev-m")
	old := dialDevice(t, a.addr, "dev-m", tokM)
	old.answer()
	for _, n := range nodes {
		n.waitDevice(t, 10*time.Second, "dev-m", a.node)
	}
	dialDevice(t, b.addr, "dev-m", tokM).answer()
	if ce := old.waitClosed(t); ce.Code != 4000 {
		t.Errorf("moved device's old connection: close %d %q, want 4000", ce.Code, ce.Text)
	}
	for _, n := range nodes {
		n.waitDevice(t, 10*time.Second, "dev-m", b.node)
	}
	if code, m := c.command(t, "dev-m", `{"name":"where"}`); code != 200 ||
		fmt.Sprint(m["result"]) != "map[device:dev-m name:where]" {
		t.Errorf("command on C to the moved device: %d %v", code, m)
	}
	// Presence is the same on every node: the listing agrees.
	for _, n := range nodes {
		code, m := httpJSON(t, "GET", "http://"+n.api+"/v1/devices?prefix=dev-", "")
		if code != 200 || fmt.Sprint(listed(m)) != "[dev-c@"+c.node+" dev-m@"+b.node+"]" {
			t.Errorf("devices listed on %s: %d %v", n.node, code, m)
		}
	}

	// C dies without a goodbye: its devices are announced offline with
	// reason node_lost, and are unknown on A and B (the node timeout is
	// 3 s; the bound here is looser for loaded machines), while the
	// others' devices stay.
	lost := watchNATS(t, natsURL, "devices.dev-c.presence")
	killed := time.Now()
	if err := syscall.Kill(c.cmd.Process.Pid, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	c.wait(t, 5*time.Second)
	eventually(t, 10*time.Second, "dev-c unknown on A and B", func() bool {
		ca, _ := a.device(t, "dev-c")
		cb, _ := b.device(t, "dev-c")
		return ca == 404 && cb == 404
	})
	lost.wait(t, 5*time.Second, "devices.dev-c.presence", isPresence("offline", "node_lost"))
	t.Logf("C's device offline on A and B %v after the SIGKILL", time.Since(killed).Round(time.Millisecond))
	for _, n := range []*serveNode{a, b} {
		if code, m := n.device(t, "dev-m"); code != 200 || m["node"] != b.node {
			t.Errorf("dev-m on %s after C died: %d %v", n.node, code, m)
		}
	}
	if code, m := a.command(t, "dev-c", `{"name":"blink"}`); code != 404 || m["error"] != "offline" {
		t.Errorf("command to a lost node's device: %d %v", code, m)
	}
	// The lost node's device reconnects to another node.
	dialDevice(t, a.addr, "dev-c", token("dev-c")).answer()
	for _, n := range []*serveNode{a, b} {
		n.waitDevice(t, 10*time.Second, "dev-c", a.node)
	}
	if code, m := b.command(t, "dev-c", `{"name":"back"}`); code != 200 ||
		fmt.Sprint(m["result"]) != "map[device:dev-c name:back]" {
		t.Errorf("command on B to the reconnected device: %d %v", code, m)
	}
}

// listed returns the devices of a GET /v1/devices answer as id@node.
func listed(m map[string]any) []string {
	var out []string
	devs, _ := m["devices"].([]any)
	for _, d := range devs {
		if d, ok := d.(map[string]any); ok {
			out = append(out, fmt.Sprint(d["device"], "@", d["node"]))
		}
	}
	return out
}

// TestServeExternalNATS: two `warren serve` processes on a standalone
// nats-server (-nats); a command to node 1's API reaches a device on
// node 2.
func TestServeExternalNATS(t *testing.T) {
	url := startNATSServer(t)

	secret := []byte("external-nats-test-secret-0123456789")
	n1 := startServe(t, "ext1", t.TempDir(), "-nats", url, "-jwt-secret", string(secret))
	n2 := startServe(t, "ext2", t.TempDir(), "-nats", url, "-jwt-secret", string(secret))
	for _, n := range []*serveNode{n1, n2} {
		if !strings.Contains(n.out.String(), "nats=external") {
			t.Errorf("%s does not report external NATS", n.node)
		}
	}
	waitMesh(t, []string{url}, "ext1", "ext2")

	d := dialDevice(t, n2.addr, "dev-x", secretToken(t, secret, "dev-x"))
	d.answer()
	n1.waitDevice(t, 10*time.Second, "dev-x", "ext2")
	if code, m := n1.command(t, "dev-x", `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" ||
		fmt.Sprint(m["result"]) != "map[device:dev-x name:ping]" {
		t.Errorf("command on node 1 to a device on node 2: %d %v", code, m)
	}
}

// TestServePrefork: `warren serve -procs 2`. Devices connect to the shared
// port until both workers hold some; commands through the API (served by
// the parent, from the machine's directory: TestServePreforkAPI) reach
// devices on either worker over the workers' node subjects.
func TestServePrefork(t *testing.T) {
	data := t.TempDir()
	n := startServe(t, "pf", data, "-procs", "2", "-drain-timeout", "3s")
	workers := waitWorkers(t, n)

	// Connect devices until each worker holds at least two.
	perNode := map[string][]string{}
	conns := map[string]*wsDevice{}
	for i := 0; i < 32 && (len(perNode) < 2 || minLen(perNode) < 2); i++ {
		id := fmt.Sprintf("pf-%02d", i)
		conns[id] = dialDevice(t, n.addr, id, deviceToken(t, data, id))
		conns[id].answer()
		var node string
		eventually(t, 10*time.Second, id+" in the directory", func() bool {
			code, m := n.device(t, id)
			node, _ = m["node"].(string)
			return code == 200 && node != ""
		})
		perNode[node] = append(perNode[node], id)
	}
	if len(perNode) != 2 || minLen(perNode) < 2 {
		t.Fatalf("devices per worker: %v", perNode)
	}
	if len(perNode["pf-0"]) == 0 || len(perNode["pf-1"]) == 0 {
		t.Errorf("worker nodes %v: want pf-0 and pf-1 (-node pf, one node per worker)", perNode)
	}
	// The parent's embedded NATS server carries what the workers' default
	// device limits allow: no worker had to lower them.
	if out := n.out.String(); strings.Contains(out, "NATS carries smaller messages") {
		t.Errorf("a worker lowered its device limits to the parent's NATS:\n%s", out)
	}

	// Every device gets commands until each worker has been sent one on
	// its node subject (the parent's API sends each straight to the
	// worker holding the device).
	fw := watchNATS(t, n.natsURL(), "warren.node.*.command")
	var ids []string
	for _, v := range perNode {
		ids = append(ids, v...)
	}
	forwarded := func(node string) bool { return fw.find("warren.node."+node+".command", nil) != nil }
	for i := 0; i < 64 && (i < len(ids) || !forwarded("pf-0") || !forwarded("pf-1")); i++ {
		id := ids[i%len(ids)]
		if code, m := n.command(t, id, `{"name":"blink"}`); code != 200 ||
			fmt.Sprint(m["result"]) != "map[device:"+id+" name:blink]" {
			t.Fatalf("command to %s through the API: %d %v", id, code, m)
		}
		fw.nc.Flush()
	}
	eventually(t, 10*time.Second, "commands sent to both workers", func() bool {
		return forwarded("pf-0") && forwarded("pf-1")
	})

	// Presence counts: the workers' devices online add up to the devices
	// connected, and each worker's devices_known (the machine's one
	// directory, asked over NATS) counts them all.
	total := len(ids)
	eventually(t, 10*time.Second, fmt.Sprintf("devices_online summed and devices_known per worker = %d", total), func() bool {
		online, known := metricValues(t, n.admin, "warren_gateway_devices_online"), metricValues(t, n.admin, "warren_gateway_devices_known")
		sum := 0.0
		for _, v := range online {
			sum += v
		}
		return len(online) == 2 && sum == float64(total) && len(known) == 2 && known[0] == float64(total) && known[1] == float64(total)
	})

	// A device that moves to the other worker is replaced on the first
	// (the directory's replaced notice: workers do not follow presence).
	// The kernel spreads connections over the workers, so dial again until
	// one lands on the other; every earlier connection closes with 4000.
	moved := perNode["pf-0"][0]
	for i, node := 0, "pf-0"; node == "pf-0"; i++ {
		if i == 40 {
			t.Fatalf("40 connections of %s all landed on pf-0", moved)
		}
		prev := conns[moved]
		conns[moved] = dialDevice(t, n.addr, moved, deviceToken(t, data, moved))
		conns[moved].answer()
		if ce := prev.waitClosed(t); ce.Code != 4000 {
			t.Fatalf("%s replaced (connection %d) closed with %d %q, want 4000", moved, i, ce.Code, ce.Text)
		}
		eventually(t, 10*time.Second, moved+" online again", func() bool {
			code, m := n.device(t, moved)
			node, _ = m["node"].(string)
			return code == 200 && node != ""
		})
	}
	perNode["pf-0"] = perNode["pf-0"][1:]
	perNode["pf-1"] = append(perNode["pf-1"], moved)

	// kill -9 the worker pf-1 (worker index 1): the machine's directory
	// forgets its devices within the node timeout and announces them
	// offline with node_lost; the devices of pf-0 still take commands
	// through the shared API port, and the parent starts a new pf-1.
	pres := watchNATS(t, n.natsURL(), "devices.*.presence")
	if err := syscall.Kill(workers[1].PID, syscall.SIGKILL); err != nil {
		t.Fatal(err)
	}
	for _, id := range perNode["pf-1"] {
		// (Not n.waitDevice: a connection to the shared API port that the
		// killed worker had accepted is reset, which is no failure here.)
		eventually(t, 10*time.Second, id+" unknown after pf-1 was killed", func() bool {
			resp, err := apiClient.Get("http://" + n.api + "/v1/devices/" + id)
			if err != nil {
				return false
			}
			resp.Body.Close()
			return resp.StatusCode == 404
		})
		pres.wait(t, 5*time.Second, "devices."+id+".presence", isPresence("offline", "node_lost"))
	}
	for _, id := range perNode["pf-0"] {
		if code, m := n.command(t, id, `{"name":"after-kill"}`); code != 200 {
			t.Fatalf("command to %s on the live worker after pf-1 was killed: %d %v", id, code, m)
		}
	}
	eventually(t, 15*time.Second, "pf-1 restarted", func() bool {
		resp, err := apiClient.Get("http://" + n.admin + "/workers")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		var ws []struct {
			PID   int    `json:"pid"`
			Admin string `json:"admin"`
			Up    bool   `json:"up"`
		}
		if json.NewDecoder(resp.Body).Decode(&ws) != nil || len(ws) != 2 || !ws[1].Up || ws[1].PID == workers[1].PID {
			return false
		}
		workers[1].PID = ws[1].PID
		return true
	})
	eventually(t, 10*time.Second, "devices_known back to the devices of pf-0", func() bool {
		known := metricValues(t, n.admin, "warren_gateway_devices_known")
		return len(known) == 2 && known[0] == float64(len(perNode["pf-0"])) && known[1] == float64(len(perNode["pf-0"]))
	})

	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.wait(t, 15*time.Second); err != nil {
		t.Errorf("serve -procs 2 exit: %v", err)
	}
	for _, w := range workers {
		if workerRunning(t, w.PID) {
			t.Errorf("worker %d still running after the parent exited", w.PID)
		}
	}
}

// workerRunning reports whether pid is alive and runs the warren binary
// (where /proc tells; elsewhere whether it is alive).
// preforkWorker is a worker as its prefork parent's /workers lists it.
type preforkWorker struct {
	PID   int    `json:"pid"`
	Admin string `json:"admin"`
	Up    bool   `json:"up"`
}

// waitWorkers waits until the prefork parent n lists two workers serving
// (a worker reports its admin address once its listeners are open) and
// returns them. The test's cleanup kills those still running: they die
// with the parent (PR_SET_PDEATHSIG on Linux), but a test that restarted
// one updates its pid in the slice returned.
func waitWorkers(t *testing.T, n *serveNode) []preforkWorker {
	t.Helper()
	var workers []preforkWorker
	eventually(t, 15*time.Second, "two workers serving", func() bool {
		resp, err := apiClient.Get("http://" + n.admin + "/workers")
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return json.NewDecoder(resp.Body).Decode(&workers) == nil && len(workers) == 2 &&
			workers[0].Up && workers[0].Admin != "" && workers[1].Up && workers[1].Admin != ""
	})
	t.Cleanup(func() {
		for _, w := range workers {
			if workerRunning(t, w.PID) {
				syscall.Kill(w.PID, syscall.SIGKILL)
			}
		}
	})
	return workers
}

func workerRunning(t *testing.T, pid int) bool {
	if syscall.Kill(pid, 0) != nil {
		return false
	}
	exe, err := os.Readlink(fmt.Sprintf("/proc/%d/exe", pid))
	if err != nil {
		_, statErr := os.Stat("/proc/self/exe")
		return statErr != nil // no /proc: alive is all we know
	}
	return exe == warrenBinary(t)
}

func minLen(m map[string][]string) int {
	least := -1
	for _, v := range m {
		if least < 0 || len(v) < least {
			least = len(v)
		}
	}
	return least
}

// metricValues returns the values of an unlabelled-by-us metric in the
// merged metrics of a prefork parent's admin at addr (one per worker; the
// parent's own sample, worker="parent", is left out).
func metricValues(t *testing.T, addr, name string) []float64 {
	t.Helper()
	resp, err := apiClient.Get("http://" + addr + "/metrics")
	if err != nil {
		return nil
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	var out []float64
	for _, line := range strings.Split(string(b), "\n") {
		if strings.Contains(line, `worker="parent"`) {
			continue
		}
		if rest, ok := strings.CutPrefix(line, name); ok && (strings.HasPrefix(rest, "{") || strings.HasPrefix(rest, " ")) {
			f := strings.Fields(rest[strings.LastIndexByte(rest, '}')+1:])
			if len(f) > 0 {
				if v, err := strconv.ParseFloat(f[0], 64); err == nil {
					out = append(out, v)
				}
			}
		}
	}
	return out
}
