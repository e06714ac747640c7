package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	coder "github.com/coder/websocket"
	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

// interopHandler echoes every message, except that the text "close-me"
// makes the server start the close handshake with 4000 "requested".
func interopHandler(rec *recorder) Handler {
	return HandlerFuncs{
		Open: rec.OnOpen,
		Message: func(c *Conn, op Opcode, data []byte) {
			if op == OpText && string(data) == "close-me" {
				c.Close(4000, "requested")
				return
			}
			c.WriteMessage(op, data)
		},
		Close: rec.OnClose,
	}
}

// startInterop starts the interop server: echo at GET /ws with the
// subprotocol v1.warren, permessage-deflate when deflate is set, and the
// browser page at GET /page with its helpers: GET /wait, a script the
// server holds until the page POSTs its result to /report.
func startInterop(t *testing.T, deflate bool) (*testServer, *recorder) {
	srv, rec, _ := startInteropReport(t, deflate)
	return srv, rec
}

func startInteropReport(t *testing.T, deflate bool) (*testServer, *recorder, <-chan string) {
	rec := newRecorder(false)
	report, reported := make(chan string, 1), make(chan struct{})
	var once sync.Once
	cfg := Config{Inline: true, Subprotocols: []string{"v1.warren"}, Deflate: DeflateConfig{Enabled: deflate}}
	page, err := os.ReadFile(filepath.Join("interop", "browser.html"))
	if err != nil {
		t.Fatal(err)
	}
	srv := startServer(t, cfg, interopHandler(rec), serverOpts{router: func(r *http1.Router, ws *Server) {
		r.Handle("GET /ws", ws.Handler())
		r.HandleFunc("GET /page", func(c *http1.Ctx) {
			c.SetHeader("Content-Type", "text/html; charset=utf-8")
			c.Write(page)
		})
		r.HandleFunc("POST /report", func(c *http1.Ctx) {
			once.Do(func() {
				report <- string(c.Body())
				close(reported)
			})
		})
		r.HandleFunc("GET /wait", func(c *http1.Ctx) { // on a worker: it may block
			select {
			case <-reported:
			case <-time.After(15 * time.Second):
			}
			c.SetHeader("Content-Type", "text/javascript")
		})
	}})
	return srv, rec, report
}

// wantLines compares a peer's output with the lines expected, ignoring
// trailing spaces.
func wantLines(t *testing.T, peer string, out []byte, want ...string) {
	t.Helper()
	got := strings.Split(strings.TrimSpace(string(out)), "\n")
	for i := range got {
		got[i] = strings.TrimRight(got[i], " \r")
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Fatalf("%s said:\n%s\nwant:\n%s", peer, strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}

// checkServerCloses requires the server to have seen the close handshakes
// the peer scripts run: one it started (4000) and one the peer started
// (1000).
func checkServerCloses(t *testing.T, rec *recorder) {
	t.Helper()
	seen := map[string]bool{}
	for range 2 {
		ev := rec.next(t, "close")
		seen[fmt.Sprint(ev.reason, " ", ev.code)] = true
	}
	if !seen["local 4000"] || !seen["peer_closed 1000"] {
		t.Fatalf("server saw closes %v", seen)
	}
}

func TestInteropGorilla(t *testing.T) {
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%t", deflate), func(t *testing.T) {
			srv, rec := startInterop(t, deflate)
			d := gorilla.Dialer{Subprotocols: []string{"v1.warren"}, EnableCompression: true, HandshakeTimeout: 5 * time.Second}
			ws, resp, err := d.Dial("ws://"+srv.addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			if ws.Subprotocol() != "v1.warren" {
				t.Fatalf("subprotocol %q", ws.Subprotocol())
			}
			if got := strings.Contains(resp.Header.Get("Sec-WebSocket-Extensions"), "permessage-deflate"); got != deflate {
				t.Fatalf("deflate negotiated: %t", got)
			}
			rec.next(t, "open")
			big := bytes.Repeat([]byte("warren "), 60000)
			for _, m := range []struct {
				typ  int
				data []byte
			}{{gorilla.TextMessage, []byte("hello")}, {gorilla.BinaryMessage, []byte{0, 1, 2, 255}},
				{gorilla.TextMessage, big}, {gorilla.BinaryMessage, nil}} {
				if err := ws.WriteMessage(m.typ, m.data); err != nil {
					t.Fatal(err)
				}
				typ, p, err := ws.ReadMessage()
				if err != nil || typ != m.typ || !bytes.Equal(p, m.data) {
					t.Fatalf("echo: type %d, %d bytes, %v", typ, len(p), err)
				}
			}
			// A fragmented message through gorilla's NextWriter.
			w, _ := ws.NextWriter(gorilla.TextMessage)
			for range 3 {
				w.Write(bytes.Repeat([]byte("x"), 5000))
				// gorilla flushes a frame when its buffer fills.
			}
			w.Close()
			if _, p, err := ws.ReadMessage(); err != nil || len(p) != 15000 {
				t.Fatalf("fragmented echo: %d bytes, %v", len(p), err)
			}
			pongs := make(chan string, 1)
			ws.SetPongHandler(func(s string) error { pongs <- s; return nil })
			ws.WriteControl(gorilla.PingMessage, []byte("are you there"), time.Now().Add(time.Second))
			ws.WriteMessage(gorilla.TextMessage, []byte("after ping"))
			if _, p, err := ws.ReadMessage(); err != nil || string(p) != "after ping" {
				t.Fatalf("echo after ping: %q %v", p, err)
			}
			if p := <-pongs; p != "are you there" {
				t.Fatalf("pong %q", p)
			}
			ws.WriteMessage(gorilla.TextMessage, []byte("close-me"))
			_, _, err = ws.ReadMessage()
			var ce *gorilla.CloseError
			if !errors.As(err, &ce) || ce.Code != 4000 || ce.Text != "requested" {
				t.Fatalf("server close: %v", err)
			}
			// gorilla answers the Close; now the other direction.
			ws2, _, err := d.Dial("ws://"+srv.addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws2.Close()
			ws2.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, "bye"))
			ws2.SetReadDeadline(time.Now().Add(5 * time.Second))
			_, _, err = ws2.ReadMessage()
			if !errors.As(err, &ce) || ce.Code != 1000 {
				t.Fatalf("client close: %v", err)
			}
			checkServerCloses(t, rec)
		})
	}
}

// TestInteropGorillaPing: gorilla answers the server's liveness pings.
func TestInteropGorillaPing(t *testing.T) {
	clock := testutil.NewFakeClock()
	rec := newRecorder(true)
	srv := startServer(t, Config{Inline: true}, rec, serverOpts{clock: clock})
	ws, _, err := gorilla.DefaultDialer.Dial("ws://"+srv.addr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer ws.Close()
	conn := rec.next(t, "open").conn
	pings := make(chan struct{}, 4)
	ws.SetPingHandler(func(s string) error {
		pings <- struct{}{}
		return ws.WriteControl(gorilla.PongMessage, []byte(s), time.Now().Add(time.Second))
	})
	go func() {
		for {
			if _, _, err := ws.ReadMessage(); err != nil {
				return
			}
		}
	}()
	for range 3 {
		clock.Advance(DefaultPingInterval + time.Second)
		select {
		case <-pings:
		case <-time.After(5 * time.Second):
			t.Fatal("no ping")
		}
		testutil.Eventually(t, 0, "the pong", func() bool { return !conn.pingSent.Load() })
	}
	if s := srv.ws.Stats(); s.DeadPeers != 0 || s.Open != 1 {
		t.Fatalf("stats %+v", s)
	}
}

// TestInteropGorillaShutdown: Shutdown with open gorilla sockets; every
// client reads 1001 and Shutdown returns nil well within its deadline.
func TestInteropGorillaShutdown(t *testing.T) {
	rec := newRecorder(true)
	srv := startServer(t, Config{Inline: true}, rec)
	const n = 100
	var wg sync.WaitGroup
	codes := make(chan int, n)
	for range n {
		ws, _, err := gorilla.DefaultDialer.Dial("ws://"+srv.addr+"/ws", nil)
		if err != nil {
			t.Fatal(err)
		}
		defer ws.Close()
		rec.next(t, "open")
		wg.Add(1)
		go func() {
			defer wg.Done()
			ws.SetReadDeadline(time.Now().Add(10 * time.Second))
			_, _, err := ws.ReadMessage() // gorilla answers the Close itself
			var ce *gorilla.CloseError
			if errors.As(err, &ce) {
				codes <- ce.Code
			} else {
				codes <- -1
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	start := time.Now()
	if err := srv.http.Engine().Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	elapsed := time.Since(start)
	wg.Wait()
	close(codes)
	for code := range codes {
		if code != CloseGoingAway {
			t.Fatalf("a client got %d, want 1001", code)
		}
	}
	t.Logf("Shutdown with %d sockets took %v", n, elapsed)
}

func TestInteropCoder(t *testing.T) {
	for _, mode := range []coder.CompressionMode{coder.CompressionDisabled, coder.CompressionNoContextTakeover, coder.CompressionContextTakeover} {
		t.Run(fmt.Sprint("compression=", mode), func(t *testing.T) {
			srv, rec := startInterop(t, true)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			ws, resp, err := coder.Dial(ctx, "ws://"+srv.addr+"/ws", &coder.DialOptions{
				Subprotocols: []string{"v1.warren"}, CompressionMode: mode, CompressionThreshold: 1})
			if err != nil {
				t.Fatal(err)
			}
			defer ws.CloseNow()
			ws.SetReadLimit(4 << 20)
			if ws.Subprotocol() != "v1.warren" {
				t.Fatalf("subprotocol %q", ws.Subprotocol())
			}
			if got := resp.Header.Get("Sec-WebSocket-Extensions") != ""; got != (mode != coder.CompressionDisabled) {
				t.Fatalf("extensions %q", resp.Header.Get("Sec-WebSocket-Extensions"))
			}
			rec.next(t, "open")
			big := bytes.Repeat([]byte("warren "), 60000)
			for i, m := range []struct {
				typ  coder.MessageType
				data []byte
			}{{coder.MessageText, []byte("hello")}, {coder.MessageBinary, []byte{0, 1, 2, 255}},
				{coder.MessageText, big}, {coder.MessageText, []byte("hello again")}, {coder.MessageBinary, big[:70000]}} {
				if err := ws.Write(ctx, m.typ, m.data); err != nil {
					t.Fatal(err)
				}
				typ, p, err := ws.Read(ctx)
				if err != nil || typ != m.typ || !bytes.Equal(p, m.data) {
					t.Fatalf("echo %d: type %v, %d bytes, %v", i, typ, len(p), err)
				}
			}
			// Ping needs a concurrent reader for the pong.
			readErr := make(chan error, 1)
			go func() {
				_, _, err := ws.Read(ctx)
				readErr <- err
			}()
			if err := ws.Ping(ctx); err != nil {
				t.Fatalf("ping: %v", err)
			}
			ws.Write(ctx, coder.MessageText, []byte("close-me"))
			err = <-readErr
			if coder.CloseStatus(err) != 4000 {
				t.Fatalf("server close: %v", err)
			}
			ws2, _, err := coder.Dial(ctx, "ws://"+srv.addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			if err := ws2.Close(coder.StatusNormalClosure, "bye"); err != nil {
				t.Fatalf("client close: %v", err)
			}
			checkServerCloses(t, rec)
		})
	}
}

// nodeWS returns the path of the interop directory with the ws package
// installed, installing it with npm on first use, or skips.
func nodeWS(t *testing.T) string {
	if _, err := exec.LookPath("node"); err != nil {
		t.Skip("node not installed")
	}
	dir, _ := filepath.Abs("interop")
	if _, err := os.Stat(filepath.Join(dir, "node_modules", "ws", "package.json")); err == nil {
		return dir
	}
	npm, err := exec.LookPath("npm")
	if err != nil {
		t.Skip("npm not installed")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 2*time.Minute)
	defer cancel()
	cmd := exec.CommandContext(ctx, npm, "install", "--prefix", dir, "--no-save", "--no-package-lock",
		"--no-audit", "--no-fund", "ws@8")
	if out, err := cmd.CombinedOutput(); err != nil {
		t.Skipf("npm install ws@8 failed (offline?): %v\n%s", err, out)
	}
	return dir
}

func TestInteropNode(t *testing.T) {
	dir := nodeWS(t)
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%t", deflate), func(t *testing.T) {
			srv, rec := startInterop(t, deflate)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, "node", filepath.Join(dir, "node_client.js"), "ws://"+srv.addr+"/ws").CombinedOutput()
			if err != nil {
				t.Fatalf("node: %v\n%s", err, out)
			}
			wantLines(t, "node ws", out, fmt.Sprintf("open protocol=v1.warren deflate=%t", deflate), "text true",
				"binary true", "large true", "pong are you there", "server close 4000 requested", "client close 1000")
			checkServerCloses(t, rec)
		})
	}
}

// python returns a python3 that can import websockets, or skips.
func python(t *testing.T) string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(py)
		if err != nil {
			continue
		}
		if exec.Command(path, "-c", "import websockets").Run() == nil {
			return path
		}
	}
	t.Skip("no python3 with the websockets package (Debian: python3-websockets)")
	return ""
}

func TestInteropPython(t *testing.T) {
	py := python(t)
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprintf("deflate=%t", deflate), func(t *testing.T) {
			srv, rec := startInterop(t, deflate)
			ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, filepath.Join("interop", "python_client.py"), "ws://"+srv.addr+"/ws").CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			pyBool := map[bool]string{false: "False", true: "True"}
			wantLines(t, "python websockets", out, "open protocol=v1.warren deflate="+pyBool[deflate], "text True",
				"binary True", "large True", "pong ok", "server close 4000 requested", "client close 1000")
			checkServerCloses(t, rec)
		})
	}
}

// TestInteropChromium loads a page from the test server in headless
// Chromium; its script talks to the WebSocket route and writes what
// happened into the DOM, which the test reads back.
func TestInteropChromium(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed")
	}
	if testing.Short() {
		t.Skip("browser test skipped in -short mode")
	}
	srv, rec, report := startInteropReport(t, true)
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	cmd := exec.CommandContext(ctx, chromium, "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
		"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
		"--user-data-dir="+t.TempDir(), "--virtual-time-budget=5000", "--dump-dom", "http://"+srv.addr+"/page")
	var stderr bytes.Buffer
	cmd.Stderr = &stderr
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("chromium: %v\n%s", err, stderr.Bytes())
	}
	start := bytes.Index(out, []byte(`<pre id="out">`))
	end := bytes.Index(out, []byte("</pre>"))
	if start < 0 || end < start {
		t.Fatalf("no result in the DOM:\n%s", out)
	}
	want := []string{"open protocol=v1.warren deflate=true", "text true", "binary true", "large true",
		"server close 4000 requested"}
	wantLines(t, "chromium", out[start+len(`<pre id="out">`):end], want...)
	select {
	case r := <-report:
		wantLines(t, "chromium's report", []byte(r), want...)
	default:
		t.Fatal("the page did not report")
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != 4000 {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
}
