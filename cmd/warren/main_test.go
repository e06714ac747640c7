//go:build !windows

package main

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"syscall"
	"testing"
	"time"
)

// buildWarren compiles the command once per test binary run.
func buildWarren(t *testing.T) string {
	t.Helper()
	bin := filepath.Join(t.TempDir(), "warren")
	out, err := exec.Command("go", "build", "-o", bin, ".").CombinedOutput()
	if err != nil {
		t.Fatalf("build: %v\n%s", err, out)
	}
	return bin
}

var listenRE = regexp.MustCompile(`addr=(\S+)`)

// startWarren runs the binary and returns it with the address it reports.
func startWarren(t *testing.T, bin string, args ...string) (*exec.Cmd, string, *bytes.Buffer) {
	t.Helper()
	cmd, addr, _, logs := runWarren(t, bin, false, args...)
	return cmd, addr, logs
}

// startWarrenAdmin runs the binary with its admin listener on a port of
// its own choosing (-admin 127.0.0.1:0) and returns it with the addresses
// it reports, its listener's and its admin listener's. A port picked here
// and handed over could be taken by another process before the binary
// binds it.
func startWarrenAdmin(t *testing.T, bin string, args ...string) (cmd *exec.Cmd, addr, admin string) {
	t.Helper()
	cmd, addr, admin, _ = runWarren(t, bin, true, append(args, "-admin", "127.0.0.1:0")...)
	return cmd, addr, admin
}

// adminLineRE matches the admin listener's line: the prefork parent's
// (stack.RunSupervisor: no token attribute), or a single process's
// (admin.Server.Start); a prefork worker's admin listener, which has the
// token attribute too, is on a port the parent picked.
var adminLineRE = regexp.MustCompile(`msg="admin: listening" addr=(\S+)(.*)$`)

// runWarren runs the binary and waits for the address it reports, and
// with admin for its admin listener's address (that of the first line
// without a token attribute when args ask for prefork workers).
func runWarren(t *testing.T, bin string, admin bool, args ...string) (*exec.Cmd, string, string, *bytes.Buffer) {
	t.Helper()
	prefork := false
	for i, a := range args {
		if a == "-procs" && i+1 < len(args) && args[i+1] != "1" {
			prefork = true
		}
	}
	cmd := exec.Command(bin, args...)
	stderr, _ := cmd.StderrPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cmd.Process.Kill(); cmd.Wait() })
	logs := &bytes.Buffer{}
	sc := bufio.NewScanner(stderr)
	addrCh, adminCh := make(chan string, 1), make(chan string, 1)
	go func() {
		sentAddr, sentAdmin := false, false
		for sc.Scan() {
			line := sc.Text()
			logs.WriteString(line + "\n")
			if m := adminLineRE.FindStringSubmatch(line); m != nil {
				if !sentAdmin && (!prefork || !strings.Contains(m[2], "token=")) {
					adminCh <- m[1]
					sentAdmin = true
				}
				continue
			}
			if !sentAddr && strings.Contains(line, "listening") {
				if m := listenRE.FindStringSubmatch(line); m != nil {
					addrCh <- m[1]
					sentAddr = true
				}
			}
		}
	}()
	deadline := time.After(20 * time.Second)
	var addr, adminAddr string
	select {
	case addr = <-addrCh:
	case <-deadline:
		t.Fatal("warren did not report its address")
	}
	if admin {
		select {
		case adminAddr = <-adminCh:
		case <-deadline:
			t.Fatal("warren did not report its admin address")
		}
	}
	return cmd, addr, adminAddr, logs
}

func TestEchoTCPAndGracefulSIGTERM(t *testing.T) {
	bin := buildWarren(t)
	cmd, addr, _ := startWarren(t, bin, "echo", "-proto", "tcp", "-addr", "127.0.0.1:0", "-admin", "127.0.0.1:0")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != "ping" {
		t.Fatalf("echo %q %v", buf, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	done := make(chan error, 1)
	go func() { done <- cmd.Wait() }()
	select {
	case err := <-done:
		if err != nil {
			t.Fatalf("exit: %v", err)
		}
	case <-time.After(15 * time.Second):
		t.Fatal("did not exit after SIGTERM")
	}
	if _, err := c.Read(buf); err == nil {
		t.Fatal("connection still open after drain")
	}
}

func TestUsage(t *testing.T) {
	var out, errb bytes.Buffer
	if code := run([]string{"bogus"}, &out, &errb); code != 2 || !strings.Contains(errb.String(), "unknown command") {
		t.Fatalf("code %d stderr %q", code, errb.String())
	}
	if code := run([]string{"echo", "-h"}, &out, &errb); code != 0 || !strings.Contains(errb.String(), "-max-conns") {
		t.Fatalf("echo -h: code %d", code)
	}
	_ = os.Stderr
}

func freePort(t *testing.T) string {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return ln.Addr().String()
}

func TestEchoHTTP(t *testing.T) {
	bin := buildWarren(t)
	cmd, addr, adminAddr := startWarrenAdmin(t, bin, "echo", "-addr", "127.0.0.1:0", "-header-timeout", "2s")
	for _, tc := range []struct{ path, want string }{{"/", "hello"}, {"/delay?ms=20", "hello"}} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		c.Write([]byte("GET " + tc.path + " HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
		b, _ := io.ReadAll(c)
		c.Close()
		if !strings.HasPrefix(string(b), "HTTP/1.1 200 OK\r\n") || !strings.HasSuffix(string(b), tc.want) ||
			!strings.Contains(string(b), "Content-Type: text/plain") {
			t.Fatalf("GET %s: %q", tc.path, b)
		}
	}
	// POST /upload streams a body of any size through a hash.
	body := bytes.Repeat([]byte("0123456789abcdef"), 1<<20) // 16 MiB: over the 10 MiB buffered limit
	up, err := http.Post("http://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	got, _ := io.ReadAll(up.Body)
	up.Body.Close()
	if want := fmt.Sprintf("%d %x\n", len(body), sha256.Sum256(body)); up.StatusCode != 200 || string(got) != want {
		t.Fatalf("POST /upload: %d %q, want %q", up.StatusCode, got, want)
	}
	// The admin listener reports the requests just served.
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{`warren_http_requests_total{class="2xx"} 3`, "warren_connections_accepted_total 3", "process_resident_memory_bytes"} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("metrics lack %q", want)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func TestPreforkSupervisesWorkers(t *testing.T) {
	bin := buildWarren(t)
	cmd, addr, adminAddr := startWarrenAdmin(t, bin, "echo", "-addr", "127.0.0.1:0", "-procs", "2", "-drain-timeout", "3s")
	getBody := func(url string) (int, string) {
		resp, err := http.Get(url)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	var workers []struct {
		PID      int    `json:"pid"`
		Admin    string `json:"admin"`
		Restarts int    `json:"restarts"`
		Up       bool   `json:"up"`
	}
	ready := func() bool {
		code, body := getBody("http://" + adminAddr + "/workers")
		if code != 200 || json.Unmarshal([]byte(body), &workers) != nil || len(workers) != 2 {
			return false
		}
		for _, w := range workers {
			if !w.Up || w.Admin == "" {
				return false
			}
		}
		return true
	}
	waitFor(t, "two workers up", ready)
	for i := 0; i < 20; i++ {
		if code, body := getBody("http://" + addr + "/"); code != 200 || body != "hello" {
			t.Fatalf("GET /: %d %q", code, body)
		}
	}
	_, metrics := getBody("http://" + adminAddr + "/metrics")
	if !strings.Contains(metrics, `warren_connections_accepted_total{worker="0"}`) || !strings.Contains(metrics, "warren_prefork_workers_up 2") {
		t.Fatalf("merged metrics: %.2000s", metrics)
	}
	// A crashed worker is restarted.
	syscall.Kill(workers[0].PID, syscall.SIGKILL)
	waitFor(t, "worker restarted", func() bool { return ready() && workers[0].Restarts == 1 })
	if code, _ := getBody("http://" + addr + "/"); code != 200 {
		t.Fatal("not serving after a restart")
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
	for _, w := range workers {
		if syscall.Kill(w.PID, 0) == nil {
			t.Errorf("worker %d still running after the parent exited", w.PID)
		}
	}
}

// TestPreforkAdminToken runs the parent with -admin-token: its admin
// endpoint refuses requests without the token, and with it merges the
// series of the real workers, which it scrapes with the same token.
func TestPreforkAdminToken(t *testing.T) {
	bin := buildWarren(t)
	cmd, _, adminAddr := startWarrenAdmin(t, bin, "echo", "-addr", "127.0.0.1:0", "-procs", "2",
		"-admin-token", "s3cret", "-drain-timeout", "3s")
	fetch := func(method, path, token string, hdr map[string]string) (int, string) {
		req, err := http.NewRequest(method, "http://"+adminAddr+path, nil)
		if err != nil {
			t.Fatal(err)
		}
		if token != "" {
			req.Header.Set("Authorization", "Bearer "+token)
		}
		for k, v := range hdr {
			req.Header.Set(k, v)
		}
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			return 0, err.Error()
		}
		defer resp.Body.Close()
		b, _ := io.ReadAll(resp.Body)
		return resp.StatusCode, string(b)
	}
	waitFor(t, "two workers ready", func() bool { code, _ := fetch("GET", "/readyz", "", nil); return code == 200 })
	for _, path := range []string{"/metrics", "/workers", "/"} {
		if code, body := fetch("GET", path, "", nil); code != 401 {
			t.Errorf("GET %s without the token: %d %.300s", path, code, body)
		}
		if code, _ := fetch("GET", path, "wrong", nil); code != 401 {
			t.Errorf("GET %s with a wrong token: %d", path, code)
		}
	}
	if code, _ := fetch("POST", "/metrics", "s3cret", map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
	code, metrics := fetch("GET", "/metrics", "s3cret", nil)
	for _, want := range []string{
		`warren_connections_accepted_total{worker="0"}`,
		`warren_connections_accepted_total{worker="1"}`,
		`warren_prefork_scrape_errors_total{worker="0"} 0`,
		`warren_prefork_scrape_errors_total{worker="1"} 0`,
		"warren_prefork_workers_up 2",
	} {
		if code != 200 || !strings.Contains(metrics, want) {
			t.Errorf("merged metrics (%d) lack %q: %.2000s", code, want, metrics)
		}
	}
	cmd.Process.Signal(syscall.SIGTERM)
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}

func waitFor(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestEchoWebSocket(t *testing.T) {
	bin := buildWarren(t)
	cmd, addr, _ := startWarren(t, bin, "echo", "-addr", "127.0.0.1:0", "-admin", "")
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	c.Write([]byte("GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
		"Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n"))
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 || resp.Header.Get("Sec-WebSocket-Accept") != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("handshake: %v %v", resp, err)
	}
	// A masked text frame "hi" comes back unmasked.
	c.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
	got := make([]byte, 4)
	if _, err := io.ReadFull(br, got); err != nil || string(got) != "\x81\x02hi" {
		t.Fatalf("echo frame %q %v", got, err)
	}
	cmd.Process.Signal(syscall.SIGTERM)
	// Draining sends close 1001 (going away).
	frame := make([]byte, 4)
	if _, err := io.ReadFull(br, frame); err != nil || frame[0] != 0x88 || frame[2] != 0x03 || frame[3] != 0xe9 {
		t.Fatalf("close frame %x %v", frame, err)
	}
	c.Write([]byte{0x88, 0x82, 0, 0, 0, 0, 0x03, 0xe9})
	if err := cmd.Wait(); err != nil {
		t.Fatalf("exit: %v", err)
	}
}
