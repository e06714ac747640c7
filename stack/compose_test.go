package stack_test

import (
	"io"
	"net"
	"net/http"
	"net/netip"
	"slices"
	"sync/atomic"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/websocket"
)

// echo is a raw TCP protocol: it writes back what it reads.
type echo struct{}

func (echo) OnData(c *engine.Conn, in []byte) int { c.Write(in); return len(in) }
func (echo) Inline() bool                         { return true }

// dialled is the handler of an outbound connection: it says hello on open
// and keeps what comes back.
type dialled struct {
	opened atomic.Bool
	got    chan string
}

func (d *dialled) OnOpen(c *engine.Conn) {
	d.opened.Store(true)
	c.Write([]byte("from the dialler"))
}

func (d *dialled) OnData(c *engine.Conn, in []byte) int {
	d.got <- string(in)
	return len(in)
}

func (d *dialled) Protocol() string { return "upstream" }

// TestOneEngineManyProtocols: HTTP (with WebSocket upgraded from it) on one
// listener and raw TCP on another share one engine; the upgrade hands the
// connection to the WebSocket handler with no forwarding; a dialled
// connection on the same loops carries its own handler.
func TestOneEngineManyProtocols(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "loops", true: "portable"}[portable], func(t *testing.T) {
			testOneEngine(t, portable)
		})
	}
}

func testOneEngine(t *testing.T, portable bool) {
	e := testutil.StartEngine(t, engine.Config{Portable: portable})
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("hello") }))
	r.Handle("GET /ws", ws.Handler())
	srv, err := http1.NewServer(e, http1.Config{}, r)
	if err != nil {
		t.Fatal(err)
	}
	httpLn, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	tcpLn, err := e.Listen("127.0.0.1:0", echo{})
	if err != nil {
		t.Fatal(err)
	}
	httpAddr, tcpAddr := httpLn.Addr().String(), tcpLn.Addr().String()

	// HTTP, kept alive.
	client := &http.Client{Timeout: 5 * time.Second}
	resp, err := client.Get("http://" + httpAddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	if b, _ := io.ReadAll(resp.Body); string(b) != "hello" {
		t.Fatalf("http: %q", b)
	}
	resp.Body.Close()

	// WebSocket, upgraded from the HTTP listener.
	wc, _, err := gorilla.DefaultDialer.Dial("ws://"+httpAddr+"/ws", nil)
	if err != nil {
		t.Fatal(err)
	}
	defer wc.Close()
	wc.SetReadDeadline(time.Now().Add(5 * time.Second))
	wc.WriteMessage(gorilla.TextMessage, []byte("over websocket"))
	if _, m, err := wc.ReadMessage(); err != nil || string(m) != "over websocket" {
		t.Fatalf("websocket: %q %v", m, err)
	}

	// Raw TCP on the second listener.
	tc, err := net.DialTimeout("tcp", tcpAddr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer tc.Close()
	tc.SetDeadline(time.Now().Add(5 * time.Second))
	tc.Write([]byte("over tcp"))
	buf := make([]byte, 64)
	if n, err := io.ReadAtLeast(tc, buf, len("over tcp")); err != nil || string(buf[:n]) != "over tcp" {
		t.Fatalf("tcp: %q %v", buf[:n], err)
	}

	// An outbound connection on the same engine, with its own handler,
	// to the raw TCP listener.
	d := &dialled{got: make(chan string, 4)}
	dc, err := e.DialHandler(netip.MustParseAddrPort(tcpAddr), netip.Addr{}, d)
	if err != nil {
		t.Fatal(err)
	}
	select {
	case s := <-d.got:
		if s != "from the dialler" {
			t.Fatalf("dialled: %q", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("dialled connection got no echo")
	}
	if !d.opened.Load() {
		t.Fatal("OnOpen not run on the dialled connection")
	}

	// Every connection shows its own protocol and listener.
	type seen struct {
		proto    string
		listener int
		outbound bool
	}
	var all []seen
	testutil.Eventually(t, 0, "every protocol in Conns", func() bool {
		all = all[:0]
		for _, ci := range e.Conns() {
			all = append(all, seen{ci.Protocol, ci.Listener, ci.Outbound})
		}
		return slices.Contains(all, seen{"http1", 1, false}) &&
			slices.Contains(all, seen{"websocket", 1, false}) &&
			slices.Contains(all, seen{"tcp", 2, false}) &&
			slices.Contains(all, seen{"upstream", 0, true})
	})
	_ = dc

	// The WebSocket's close code is the close detail the engine counts.
	wc.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(1000, "bye"))
	testutil.Eventually(t, 0, "the websocket close detail", func() bool {
		for _, d := range e.Stats().Details {
			if d.Protocol == "websocket" && d.Detail == "1000" && d.Count == 1 {
				return true
			}
		}
		return false
	})
}
