package websocket

import (
	"bufio"
	"context"
	"encoding/binary"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

// testServer is an HTTP server on the engine with a WebSocket route.
type testServer struct {
	http *http1.Server
	ws   *Server
	addr string
}

// serverOpts tune startServer.
type serverOpts struct {
	clock    engine.Clock
	portable bool
	linger   time.Duration                     // engine.Config.LingerTimeout; 0 is its default
	router   func(r *http1.Router, ws *Server) // extra routes; nil mounts ws at GET /ws
}

func discardLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startServer starts an http1 server on a free loopback port with ws
// mounted at GET /ws and returns it ready. It shuts down with the test.
func startServer(t testing.TB, cfg Config, h Handler, opts ...serverOpts) *testServer {
	t.Helper()
	var o serverOpts
	if len(opts) > 0 {
		o = opts[0]
	}
	ws := New(cfg, h)
	r := http1.NewRouter()
	if o.router != nil {
		o.router(r, ws)
	} else {
		r.Handle("GET /ws", ws.Handler())
	}
	e := testutil.StartEngine(t, engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond, Clock: o.clock,
		Portable: o.portable, LingerTimeout: o.linger, Logger: discardLogger()})
	srv, err := http1.NewServer(e, http1.Config{Logger: discardLogger()}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	return &testServer{http: srv, ws: ws, addr: ln.Addr().String()}
}

// protocolOf returns the protocol name the engine reports for connection
// id, or "".
func protocolOf(srv *testServer, id uint64) string {
	for _, ci := range srv.http.Engine().Conns() {
		if ci.ID == id {
			return ci.Protocol
		}
	}
	return ""
}

// event is what a recorder saw.
type event struct {
	kind   string // "open", "message", "error", "close"
	op     Opcode
	data   string
	reason engine.CloseReason
	code   uint16
	err    error
	conn   *Conn
}

// recorder is a Handler that records its callbacks and, when echo is set,
// echoes messages.
type recorder struct {
	echo   bool
	events chan event
}

func newRecorder(echo bool) *recorder { return &recorder{echo: echo, events: make(chan event, 1024)} }

func (r *recorder) OnOpen(c *Conn) { r.events <- event{kind: "open", conn: c} }

func (r *recorder) OnMessage(c *Conn, op Opcode, data []byte) {
	if r.echo {
		c.WriteMessage(op, data)
	}
	r.events <- event{kind: "message", op: op, data: string(data), conn: c}
}

func (r *recorder) OnClose(c *Conn, reason engine.CloseReason, code uint16) {
	r.events <- event{kind: "close", reason: reason, code: code, conn: c}
}

func (r *recorder) OnError(c *Conn, err error) { r.events <- event{kind: "error", err: err, conn: c} }

// next returns the next event of kind, skipping others.
func (r *recorder) next(t testing.TB, kind string) event {
	t.Helper()
	deadline := time.After(5 * time.Second)
	for {
		select {
		case ev := <-r.events:
			if ev.kind == kind {
				return ev
			}
		case <-deadline:
			t.Fatalf("no %s event within 5s", kind)
		}
	}
}

// rawClient speaks WebSocket by hand over a net.Conn, for tests that need
// exact bytes.
type rawClient struct {
	t    testing.TB
	nc   net.Conn
	br   *bufio.Reader
	resp *http.Response
	body []byte // the body of a response other than 101
}

// handshakeRequest returns a valid upgrade request for path with extra
// header lines ("Name: value").
func handshakeRequest(addr, path string, extra ...string) string {
	var b strings.Builder
	fmt.Fprintf(&b, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n", path, addr)
	b.WriteString("Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n")
	for _, h := range extra {
		b.WriteString(h + "\r\n")
	}
	b.WriteString("\r\n")
	return b.String()
}

// rawHandshake sends req and reads the response head.
func rawHandshake(t testing.TB, addr, req string) *rawClient {
	t.Helper()
	nc, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	nc.SetDeadline(time.Now().Add(10 * time.Second))
	if _, err := io.WriteString(nc, req); err != nil {
		t.Fatal(err)
	}
	c := &rawClient{t: t, nc: nc, br: bufio.NewReader(nc)}
	resp, err := http.ReadResponse(c.br, nil)
	if err != nil {
		t.Fatalf("handshake response: %v", err)
	}
	c.resp = resp
	if resp.StatusCode != 101 {
		c.body, _ = io.ReadAll(resp.Body)
	}
	return c
}

// dialRaw performs a valid handshake on GET /ws and requires 101.
func dialRaw(t testing.TB, addr string, extra ...string) *rawClient {
	t.Helper()
	c := rawHandshake(t, addr, handshakeRequest(addr, "/ws", extra...))
	if c.resp.StatusCode != 101 {
		t.Fatalf("handshake status %d", c.resp.StatusCode)
	}
	if got := c.resp.Header.Get("Sec-WebSocket-Accept"); got != "s3pPLMBiTxaQ9kYGzzhZRbK+xOo=" {
		t.Fatalf("Sec-WebSocket-Accept %q", got)
	}
	return c
}

// send writes one masked frame.
func (c *rawClient) send(op Opcode, fin bool, payload []byte) {
	c.t.Helper()
	c.sendRaw(AppendMaskedFrame(nil, op, fin, NewMask(), payload))
}

func (c *rawClient) sendRaw(b []byte) {
	c.t.Helper()
	if _, err := c.nc.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// read reads one frame.
func (c *rawClient) read() (FrameHeader, []byte, error) {
	var hb [MaxHeaderLen]byte
	if _, err := io.ReadFull(c.br, hb[:2]); err != nil {
		return FrameHeader{}, nil, err
	}
	n := 2
	switch hb[1] & 0x7f {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	if hb[1]&0x80 != 0 {
		n += 4
	}
	if _, err := io.ReadFull(c.br, hb[2:n]); err != nil {
		return FrameHeader{}, nil, err
	}
	h, _, err := ParseHeader(hb[:n])
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(c.br, p); err != nil {
		return h, nil, err
	}
	return h, p, nil
}

// expect reads one frame and requires its opcode.
func (c *rawClient) expect(op Opcode) []byte {
	c.t.Helper()
	h, p, err := c.read()
	if err != nil {
		c.t.Fatalf("reading a %v frame: %v", op, err)
	}
	if h.Op != op || !h.Fin || h.Masked || h.Rsv != 0 {
		c.t.Fatalf("got frame %+v %q, want a final unmasked %v", h, p, op)
	}
	return p
}

// expectClose reads a Close frame and returns its code (CloseNoStatus when
// empty) and reason.
func (c *rawClient) expectClose() (uint16, string) {
	c.t.Helper()
	p := c.expect(OpClose)
	if len(p) == 0 {
		return CloseNoStatus, ""
	}
	return binary.BigEndian.Uint16(p), string(p[2:])
}

// expectEOF requires the server to close the TCP connection.
func (c *rawClient) expectEOF() {
	c.t.Helper()
	c.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	h, p, err := c.read()
	if err == nil {
		c.t.Fatalf("got frame %+v %q, want end of stream", h, p)
	}
	if ne, ok := err.(net.Error); ok && ne.Timeout() {
		c.t.Fatal("connection still open after 5s")
	}
}
