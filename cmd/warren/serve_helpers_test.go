//go:build !windows

package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"errors"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/gateway"
)

// The serve tests run the real binaries: `warren serve` built once per test
// run, and a standalone nats-server built from the module's dependency.

var (
	buildMu   sync.Mutex
	buildDir  string
	buildBins = map[string]string{}
)

func TestMain(m *testing.M) {
	// A test that runs `warren load -procs N` in-process starts the test
	// binary itself as the worker (os.Executable): serve it as main would,
	// instead of running the tests again in every worker (which forks
	// without end).
	if len(os.Args) > 1 && os.Args[1] == "load" {
		os.Exit(run(os.Args[1:], os.Stdout, os.Stderr))
	}
	code := m.Run()
	if buildDir != "" {
		os.RemoveAll(buildDir)
	}
	os.Exit(code)
}

// sharedBuild builds the main package pkg once per test run and returns
// the binary.
func sharedBuild(t *testing.T, name, pkg string) string {
	t.Helper()
	buildMu.Lock()
	defer buildMu.Unlock()
	if bin, ok := buildBins[pkg]; ok {
		return bin
	}
	if buildDir == "" {
		dir, err := os.MkdirTemp("", "warren-serve-test-")
		if err != nil {
			t.Fatal(err)
		}
		buildDir = dir
	}
	bin := filepath.Join(buildDir, name)
	if out, err := exec.Command("go", "build", "-o", bin, pkg).CombinedOutput(); err != nil {
		t.Fatalf("go build %s: %v\n%s", pkg, err, out)
	}
	buildBins[pkg] = bin
	return bin
}

func warrenBinary(t *testing.T) string { return sharedBuild(t, "warren", ".") }

// syncBuffer is a process's output, safe to read while it is written.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (s *syncBuffer) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.Write(p)
}

func (s *syncBuffer) String() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.b.String()
}

// proc is a process a test started. It is killed by its pid when the test
// ends, and its output is logged if the test failed.
type proc struct {
	name string
	cmd  *exec.Cmd
	out  *syncBuffer
	done chan struct{} // closed once the process has exited
	err  error         // Wait's result, once done is closed
}

func startProc(t *testing.T, name, bin string, args ...string) *proc {
	t.Helper()
	p := &proc{name: name, cmd: exec.Command(bin, args...), out: &syncBuffer{}, done: make(chan struct{})}
	p.cmd.Stdout, p.cmd.Stderr = p.out, p.out
	// Prefork workers inherit the output pipe; never wait on it for long.
	p.cmd.WaitDelay = 5 * time.Second
	if err := p.cmd.Start(); err != nil {
		t.Fatalf("%s: %v", name, err)
	}
	go func() {
		p.err = p.cmd.Wait()
		close(p.done)
	}()
	t.Cleanup(func() {
		p.kill()
		if t.Failed() {
			t.Logf("%s (pid %d) output:\n%s", p.name, p.cmd.Process.Pid, p.out)
		}
	})
	return p
}

func (p *proc) exited() bool {
	select {
	case <-p.done:
		return true
	default:
		return false
	}
}

// kill sends SIGKILL to the process, unless it has exited, and reaps it.
func (p *proc) kill() {
	if !p.exited() {
		syscall.Kill(p.cmd.Process.Pid, syscall.SIGKILL)
	}
	<-p.done
}

// wait waits at most d for the process to exit and returns its error.
func (p *proc) wait(t *testing.T, d time.Duration) error {
	t.Helper()
	select {
	case <-p.done:
		return p.err
	case <-time.After(d):
		t.Fatalf("%s did not exit within %v", p.name, d)
		return nil
	}
}

// waitOutput waits at most d for the process to print s.
func (p *proc) waitOutput(t *testing.T, d time.Duration, s string) {
	t.Helper()
	eventually(t, d, p.name+" printing "+s, func() bool {
		if p.exited() {
			t.Fatalf("%s exited (%v) before printing %q", p.name, p.err, s)
		}
		return strings.Contains(p.out.String(), s)
	})
}

// eventually polls cond until it holds, failing the test with what if it
// does not within d.
func eventually(t *testing.T, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out after %v waiting for %s", d, what)
		}
		time.Sleep(20 * time.Millisecond)
	}
}

// serveNode is a running `warren serve` process and its addresses.
type serveNode struct {
	*proc
	node, addr, api, admin, nats, mqtt string
	// ports are the extra ports startServePorts picked for the node's
	// extra flags, in order.
	ports []string
}

// startServe runs `warren serve` as node on free loopback ports (devices,
// API, admin, embedded NATS) with its data under data and the extra flags
// (which override these), and returns once it listens.
func startServe(t *testing.T, node, data string, extra ...string) *serveNode {
	t.Helper()
	return startServePorts(t, node, data, 0, func([]string) []string { return extra })
}

// startServePorts is startServe for extra flags that name ports of their
// own (-tls-addr, -mqtts, -nats-cluster): k more free ports are picked
// with the node's and handed to extra, which returns the flags; the node
// keeps them in ports.
//
// The ports are free when picked, but closed before the process binds
// them: another process's outgoing connection or a listener can take one
// in between (seen under stress: bind: address already in use). Such a
// start is retried on new ports, twice at most.
func startServePorts(t *testing.T, node, data string, k int, extra func(ports []string) []string) *serveNode {
	t.Helper()
	for attempt := 1; ; attempt++ {
		p := freePorts(t, 5+k) // distinct: held open together while picked
		n := &serveNode{node: node, addr: p[0], api: p[1], admin: p[2], nats: p[3], mqtt: p[4], ports: p[5:]}
		args := []string{"serve", "-node", node, "-addr", n.addr, "-api", n.api, "-admin", n.admin,
			"-nats-listen", n.nats, "-mqtt", n.mqtt, "-data", data, "-drain-timeout", "5s"}
		n.proc = startProc(t, "serve "+node, warrenBinary(t), append(args, extra(n.ports)...)...)
		// The admin listener binds after "warren serve listening" is
		// printed: its line (the parent's, under -procs: the workers'
		// admin listeners are on other ports) says every picked port is
		// bound.
		if attempt < 3 && n.lostPort(20*time.Second, `"admin: listening" addr=`+n.admin, p...) {
			t.Logf("serve %s: a picked port was taken before it bound it; new ports", node)
			continue
		}
		n.waitOutput(t, 20*time.Second, "warren serve listening")
		return n
	}
}

// lostPort waits at most d for the process to print s, and reports
// whether it exited first because a port it was given was in use: it
// says so, or (the embedded NATS server only says it did not start) one
// of ports cannot be bound now that the process is gone.
func (p *proc) lostPort(d time.Duration, s string, ports ...string) bool {
	for deadline := time.Now().Add(d); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
		if strings.Contains(p.out.String(), s) {
			return false
		}
		if p.exited() {
			return strings.Contains(p.out.String(), "address already in use") || anyInUse(ports)
		}
	}
	return false
}

// anyInUse reports whether one of the loopback addresses cannot be
// listened on because something else has its port.
func anyInUse(addrs []string) bool {
	for _, a := range addrs {
		ln, err := net.Listen("tcp", a)
		if err != nil {
			if errors.Is(err, syscall.EADDRINUSE) {
				return true
			}
			continue
		}
		ln.Close()
	}
	return false
}

// startNATSServer starts a standalone nats-server (built from the module's
// nats-server) on a free port and returns its URL once it accepts. A
// start that loses its port to another process before it binds it is
// retried on a new one, twice at most.
func startNATSServer(t *testing.T) string {
	t.Helper()
	natsBin := sharedBuild(t, "nats-server", "github.com/nats-io/nats-server/v2")
	for attempt := 1; ; attempt++ {
		addr := freePort(t)
		host, port, _ := net.SplitHostPort(addr)
		p := startProc(t, "nats-server", natsBin, "-a", host, "-p", port)
		if attempt < 3 && p.lostPort(20*time.Second, "Server is ready", addr) {
			t.Logf("nats-server: port %s was taken before it bound it; a new one", port)
			continue
		}
		url := "nats://" + addr
		eventually(t, 10*time.Second, "nats-server accepting", func() bool {
			nc, err := nats.Connect(url)
			if err == nil {
				nc.Close()
			}
			return err == nil
		})
		return url
	}
}

// natsURL is the node's embedded NATS server for other programs.
func (n *serveNode) natsURL() string { return "nats://" + n.nats }

// device returns what node n's API answers for GET /v1/devices/{id}.
func (n *serveNode) device(t *testing.T, id string) (int, map[string]any) {
	return httpJSON(t, "GET", "http://"+n.api+"/v1/devices/"+id, "")
}

// command posts a command to node n's API and returns the answer.
func (n *serveNode) command(t *testing.T, id, body string) (int, map[string]any) {
	return httpJSON(t, "POST", "http://"+n.api+"/v1/devices/"+id+"/commands", body)
}

// waitDevice waits until node n's API places device id on node (or, with
// node "", knows nothing of it).
func (n *serveNode) waitDevice(t *testing.T, d time.Duration, id, node string) {
	t.Helper()
	what := id + " on " + node
	if node == "" {
		what = id + " unknown"
	}
	eventually(t, d, what+" at node "+n.node, func() bool {
		code, m := n.device(t, id)
		if node == "" {
			return code == 404
		}
		return code == 200 && m["node"] == node && m["state"] == "online"
	})
}

// apiClient opens a new connection per request (prefork workers share the
// API port; the kernel spreads connections, not requests) and never waits
// long.
var apiClient = &http.Client{Timeout: 15 * time.Second, Transport: &http.Transport{DisableKeepAlives: true}}

func httpJSON(t *testing.T, method, url, body string) (int, map[string]any) {
	t.Helper()
	req, err := http.NewRequest(method, url, strings.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	req.Header.Set("Content-Type", "application/json")
	resp, err := apiClient.Do(req)
	if err != nil {
		t.Errorf("%s %s: %v", method, url, err)
		return 0, nil
	}
	defer resp.Body.Close()
	var m map[string]any
	json.NewDecoder(resp.Body).Decode(&m)
	return resp.StatusCode, m
}

// deviceToken signs a device token with the secret serve keeps under data.
func deviceToken(t *testing.T, data, id string) string {
	t.Helper()
	secret, _, err := gateway.LoadOrCreateSecret(data)
	if err != nil {
		t.Fatal(err)
	}
	return secretToken(t, secret, id)
}

func secretToken(t *testing.T, secret []byte, id string) string {
	t.Helper()
	tok, err := gateway.IssueToken(secret, id, gateway.RoleDevice, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	return tok
}

// wsDevice is a device on gorilla/websocket. Once answering, it acks every
// command with {"device":<id>,"name":<name>}.
type wsDevice struct {
	t      *testing.T
	id     string
	c      *gorilla.Conn
	closed chan error // the error that ended reading, once answering
}

// dialDevice connects device id to the gateway at addr with its token in
// Authorization: Bearer.
func dialDevice(t *testing.T, addr, id, token string) *wsDevice {
	t.Helper()
	d, err := tryDialDevice(addr, id, token)
	if err != nil {
		t.Fatalf("device %s: %v", id, err)
	}
	t.Cleanup(func() { d.c.Close() })
	return d
}

func tryDialDevice(addr, id, token string) (*wsDevice, error) {
	dialer := gorilla.Dialer{HandshakeTimeout: 5 * time.Second}
	c, resp, err := dialer.Dial("ws://"+addr+"/v1/connect", http.Header{"Authorization": {"Bearer " + token}})
	if err != nil {
		if resp != nil {
			return nil, errors.New(resp.Status + ": " + err.Error())
		}
		return nil, err
	}
	return &wsDevice{id: id, c: c, closed: make(chan error, 1)}, nil
}

// answer acks every command until the connection ends; closed then holds
// why. Acks are written from the reading goroutine only.
func (d *wsDevice) answer() {
	go func() {
		for {
			_, b, err := d.c.ReadMessage()
			if err != nil {
				d.closed <- err
				return
			}
			var f struct{ Type, ID, Name string }
			if json.Unmarshal(b, &f) != nil || f.Type != "command" {
				continue
			}
			ack, _ := json.Marshal(map[string]any{"type": "ack", "id": f.ID, "status": "ok",
				"result": map[string]string{"device": d.id, "name": f.Name}})
			if err := d.c.WriteMessage(gorilla.TextMessage, ack); err != nil {
				d.closed <- err
				return
			}
		}
	}()
}

// waitClosed waits at most 10 s for the device's connection to end and
// returns its close frame.
func (d *wsDevice) waitClosed(t *testing.T) *gorilla.CloseError {
	t.Helper()
	select {
	case err := <-d.closed:
		var ce *gorilla.CloseError
		if !errors.As(err, &ce) {
			t.Fatalf("%s: connection ended without a close frame: %v", d.id, err)
		}
		return ce
	case <-time.After(10 * time.Second):
		t.Fatalf("%s: not closed within 10s", d.id)
		return nil
	}
}

// natsWatch collects what a NATS subscription receives.
type natsWatch struct {
	nc   *nats.Conn
	mu   sync.Mutex
	msgs []*nats.Msg
}

// watchNATS subscribes to subject on the NATS server at url.
func watchNATS(t *testing.T, url, subject string) *natsWatch {
	t.Helper()
	w := &natsWatch{}
	nc, err := nats.Connect(url, nats.Timeout(5*time.Second))
	if err != nil {
		t.Fatalf("NATS %s: %v", url, err)
	}
	t.Cleanup(nc.Close)
	w.nc = nc
	if _, err := nc.Subscribe(subject, func(m *nats.Msg) {
		w.mu.Lock()
		w.msgs = append(w.msgs, m)
		w.mu.Unlock()
	}); err != nil {
		t.Fatal(err)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	return w
}

// find returns the first message received on subject for which match
// holds, or nil.
func (w *natsWatch) find(subject string, match func(*nats.Msg) bool) *nats.Msg {
	w.mu.Lock()
	defer w.mu.Unlock()
	for _, m := range w.msgs {
		if m.Subject == subject && (match == nil || match(m)) {
			return m
		}
	}
	return nil
}

// wait waits at most d for a message on subject for which match holds.
func (w *natsWatch) wait(t *testing.T, d time.Duration, subject string, match func(*nats.Msg) bool) *nats.Msg {
	t.Helper()
	var m *nats.Msg
	eventually(t, d, "a message on "+subject, func() bool { m = w.find(subject, match); return m != nil })
	return m
}

// presence is a devices.<id>.presence event.
type presence struct {
	Device, State, Node, Protocol, Reason, Session string
}

// isPresence matches a presence event of state (and reason, if not "").
func isPresence(state, reason string) func(*nats.Msg) bool {
	return func(m *nats.Msg) bool {
		var p presence
		return json.Unmarshal(m.Data, &p) == nil && p.State == state && (reason == "" || p.Reason == reason)
	}
}

// waitMesh waits until every node's NATS server carries the heartbeats of
// every node: the routes are up and every hub is subscribed.
func waitMesh(t *testing.T, natsURLs []string, nodes ...string) {
	t.Helper()
	var ws []*natsWatch
	for _, u := range natsURLs {
		ws = append(ws, watchNATS(t, u, "warren.nodes.heartbeat"))
	}
	eventually(t, 15*time.Second, "heartbeats of "+strings.Join(nodes, ",")+" everywhere", func() bool {
		for _, w := range ws {
			for _, n := range nodes {
				if w.find("warren.nodes.heartbeat", func(m *nats.Msg) bool { return string(m.Data) == n }) == nil {
					return false
				}
			}
		}
		return true
	})
	for _, w := range ws {
		w.nc.Close()
	}
}

// pythonEvents parses the JSON lines testdata/device.py printed.
func pythonEvents(out string) []map[string]any {
	var evs []map[string]any
	sc := bufio.NewScanner(strings.NewReader(out))
	for sc.Scan() {
		var m map[string]any
		if json.Unmarshal(sc.Bytes(), &m) == nil {
			evs = append(evs, m)
		}
	}
	return evs
}
