package websocket

import (
	"bufio"
	"bytes"
	"context"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"
	"unsafe"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

// clientEngine starts an engine for dialling, closed when the test ends.
func clientEngine(t testing.TB, portable bool) *engine.Engine {
	t.Helper()
	return testutil.StartEngine(t, engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond,
		Portable: portable, Logger: discardLogger()})
}

// dial dials url with a new recorder and returns both.
func dial(t testing.TB, e *engine.Engine, url string, cfg DialConfig) (*Conn, *recorder) {
	t.Helper()
	rec := newRecorder(false)
	c, err := Dial(e, url, cfg, rec)
	if err != nil {
		t.Fatal(err)
	}
	return c, rec
}

// wsURL returns the ws:// URL of path on addr.
func wsURL(addr, path string) string { return "ws://" + addr + path }

func TestDialEcho(t *testing.T) {
	for _, inline := range []bool{true, false} {
		for _, portable := range []bool{false, true} {
			t.Run(fmt.Sprintf("inline=%t/portable=%t", inline, portable), func(t *testing.T) {
				srec := newRecorder(true)
				srv := startServer(t, Config{Inline: true}, srec)
				e := clientEngine(t, portable)
				cl, err := NewClient(e, DialConfig{Inline: inline}, newRecorder(false))
				if err != nil {
					t.Fatal(err)
				}
				rec := cl.srv.h.(*recorder)
				c, err := cl.Dial(wsURL(srv.addr, "/ws?x=1"))
				if err != nil {
					t.Fatal(err)
				}
				if got := rec.next(t, "open").conn; got != c {
					t.Fatal("OnOpen with another Conn")
				}
				expect := func(op Opcode, data []byte) {
					t.Helper()
					ev := rec.next(t, "message")
					if ev.op != op || ev.data != string(data) {
						t.Fatalf("got %v %d bytes, want %v %d bytes", ev.op, len(ev.data), op, len(data))
					}
				}
				for _, m := range [][]byte{[]byte("hello"), nil, bytes.Repeat([]byte("0123456789"), 30<<10)} {
					if err := c.WriteMessage(OpBinary, m); err != nil {
						t.Fatal(err)
					}
					expect(OpBinary, m)
				}
				c.WriteText("text")
				expect(OpText, []byte("text"))
				for i := range 100 {
					c.WriteText(fmt.Sprint("m", i))
				}
				for i := range 100 {
					expect(OpText, []byte(fmt.Sprint("m", i)))
				}
				if st := cl.Stats(); st.Upgrades != 1 || st.Open != 1 || st.MessagesOut != 104 || st.MessagesIn != 104 {
					t.Fatalf("stats %+v", st)
				}
				if err := c.Close(4001, "bye"); err != nil {
					t.Fatal(err)
				}
				if err := c.WriteText("late"); !errors.Is(err, ErrClosed) {
					t.Fatalf("write after Close: %v", err)
				}
				if ev := rec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != 4001 {
					t.Fatalf("client OnClose(%v, %d)", ev.reason, ev.code)
				}
				if ev := srec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != 4001 {
					t.Fatalf("server OnClose(%v, %d)", ev.reason, ev.code)
				}
				if st := cl.Stats(); st.Open != 0 {
					t.Fatalf("stats %+v", st)
				}
				select {
				case ev := <-rec.events:
					t.Fatalf("unexpected %s event", ev.kind)
				default:
				}
			})
		}
	}
}

// TestDialServerCloses: the server starts the close handshake, by
// Conn.Close and by shutting down; the client echoes the code and waits
// for the server to close TCP.
func TestDialServerCloses(t *testing.T) {
	srec := newRecorder(false)
	srv := startServer(t, Config{Inline: true}, interopHandler(srec))
	e := clientEngine(t, false)
	c, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{Inline: true})
	rec.next(t, "open")
	c.WriteText("close-me")
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != 4000 {
		t.Fatalf("client OnClose(%v, %d)", ev.reason, ev.code)
	}
	if ev := srec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != 4000 {
		t.Fatalf("server OnClose(%v, %d)", ev.reason, ev.code)
	}

	// Shutdown: 1001, going away.
	c, rec = dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{})
	rec.next(t, "open")
	srec.next(t, "open")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := srv.http.Engine().Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != CloseGoingAway {
		t.Fatalf("client OnClose(%v, %d)", ev.reason, ev.code)
	}
	_ = c
}

// TestDialClientShutdown: a client engine that shuts down says going
// away to its servers.
func TestDialClientShutdown(t *testing.T) {
	srec := newRecorder(false)
	srv := startServer(t, Config{Inline: true}, srec)
	e := clientEngine(t, false)
	_, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{})
	rec.next(t, "open")
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Fatal(err)
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonShutdown || ev.code != CloseGoingAway {
		t.Fatalf("client OnClose(%v, %d)", ev.reason, ev.code)
	}
	if ev := srec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != CloseGoingAway {
		t.Fatalf("server OnClose(%v, %d)", ev.reason, ev.code)
	}
}

// TestDialRefused: a refused handshake reaches OnError as a
// HandshakeError with the status, header and body, then OnClose.
func TestDialRefused(t *testing.T) {
	srv := startServer(t, Config{Accept: func(r *http1.Ctx, c *Conn) bool {
		if len(r.Header("Authorization")) == 0 {
			r.SetStatus(401)
			r.SetHeader("WWW-Authenticate", `Bearer realm="devices"`)
			r.WriteString("token required\n")
			return false
		}
		return true
	}}, newRecorder(false))
	e := clientEngine(t, false)
	cases := []struct {
		name   string
		path   string
		cfg    DialConfig
		status int
		text   string // in the error's text
	}{
		{"401", "/ws", DialConfig{}, 401, "401 Unauthorized: token required"},
		{"403 origin", "/ws", DialConfig{Header: [][2]string{{"Authorization", "x"}, {"Origin", "http://evil.example"}}},
			403, "403 Forbidden: websocket: cross-origin request refused"},
		{"404", "/nowhere", DialConfig{}, 404, "404"},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c, rec := dial(t, e, wsURL(srv.addr, tc.path), tc.cfg)
			ev := rec.next(t, "error")
			var he *HandshakeError
			if !errors.As(ev.err, &he) || he.StatusCode != tc.status || !strings.Contains(he.Error(), tc.text) {
				t.Fatalf("OnError(%v), want a HandshakeError %d with %q", ev.err, tc.status, tc.text)
			}
			t.Log(he)
			if tc.status == 401 && he.HeaderValue("www-authenticate") != `Bearer realm="devices"` {
				t.Fatalf("header %q", he.Header)
			}
			if ev := rec.next(t, "close"); ev.reason != engine.ReasonProtocolError || ev.code != CloseAbnormal {
				t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
			}
			if err := c.WriteText("x"); !errors.Is(err, ErrClosed) {
				t.Fatalf("write: %v", err)
			}
		})
	}
	// With the header, the same route opens.
	_, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{Header: [][2]string{{"Authorization", "Bearer t"}}})
	rec.next(t, "open")
}

// rawServer is one accepted connection of a scripted server, for
// responses and frames warren's server would never send.
type rawServer struct {
	t   testing.TB
	nc  net.Conn
	br  *bufio.Reader
	req *http.Request
}

// startRawServer listens on a loopback port and runs script for each
// connection once its upgrade request has been read.
func startRawServer(t testing.TB, script func(s *rawServer)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			nc, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer nc.Close()
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				s := &rawServer{t: t, nc: nc, br: bufio.NewReader(nc)}
				if s.req, err = http.ReadRequest(s.br); err != nil {
					if err != io.EOF { // EOF: a dial given up before its request
						t.Errorf("reading the upgrade request: %v", err)
					}
					return
				}
				script(s)
			}()
		}
	}()
	return ln.Addr().String()
}

// accept answers the request with 101, the right accept key and extra
// header lines.
func (s *rawServer) accept(extra ...string) {
	s.respond("HTTP/1.1 101 Switching Protocols", append([]string{"Upgrade: websocket", "Connection: Upgrade",
		"Sec-WebSocket-Accept: " + AcceptKey(s.req.Header.Get("Sec-WebSocket-Key"))}, extra...)...)
}

func (s *rawServer) respond(status string, lines ...string) {
	s.write([]byte(status + "\r\n" + strings.Join(append(lines, "", ""), "\r\n")))
}

func (s *rawServer) write(b []byte) {
	if _, err := s.nc.Write(b); err != nil {
		s.t.Errorf("raw server write: %v", err)
	}
}

// read reads a client frame, requires it masked and returns it unmasked.
func (s *rawServer) read() (FrameHeader, []byte, error) {
	var hb [MaxHeaderLen]byte
	if _, err := io.ReadFull(s.br, hb[:2]); err != nil {
		return FrameHeader{}, nil, err
	}
	n := 2
	switch hb[1] & 0x7f {
	case 126:
		n = 4
	case 127:
		n = 10
	}
	if hb[1]&0x80 == 0 {
		return FrameHeader{}, nil, errors.New("client frame not masked")
	}
	n += 4
	if _, err := io.ReadFull(s.br, hb[2:n]); err != nil {
		return FrameHeader{}, nil, err
	}
	h, _, err := ParseHeader(hb[:n])
	if err != nil {
		return h, nil, err
	}
	p := make([]byte, h.Length)
	if _, err := io.ReadFull(s.br, p); err != nil {
		return h, nil, err
	}
	MaskBytes(h.Mask, 0, p)
	return h, p, nil
}

// expect reads a frame and requires its opcode; it returns the payload.
func (s *rawServer) expect(op Opcode) []byte {
	h, p, err := s.read()
	if err != nil || h.Op != op || !h.Fin {
		s.t.Errorf("raw server: got %+v %q %v, want a final %v", h, p, err, op)
	}
	return p
}

// expectEOF waits for the client to close TCP.
func (s *rawServer) expectEOF() {
	if _, err := s.br.ReadByte(); err != io.EOF {
		s.t.Errorf("raw server: %v, want EOF", err)
	}
}

// TestDialFramesFromServer: fragmented messages with pings between the
// fragments, frames in the same read as the 101, and a masked server
// frame, which fails the connection with 1002.
func TestDialFramesFromServer(t *testing.T) {
	done := make(chan struct{})
	addr := startRawServer(t, func(s *rawServer) {
		defer close(done)
		// The 101 and the first message in one write.
		s.write(append([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: upgrade\r\n"+
			"Sec-WebSocket-Accept: "+AcceptKey(s.req.Header.Get("Sec-WebSocket-Key"))+"\r\n\r\n"),
			sf(OpText, true, "early")...))
		s.write(cat(sf(OpText, false, "frag"), sf(OpPing, true, "ping 1"), sf(OpContinuation, false, "men"),
			sf(OpContinuation, true, "ted")))
		if p := s.expect(OpPong); string(p) != "ping 1" {
			s.t.Errorf("pong %q", p)
		}
		big := bytes.Repeat([]byte{0xab}, 70000)
		s.write(cat(AppendFrame(nil, OpBinary, false, big[:30000]), AppendFrame(nil, OpContinuation, false, big[30000:60000]),
			AppendFrame(nil, OpContinuation, true, big[60000:])))
		if p := s.expect(OpBinary); string(p) != "thanks" {
			s.t.Errorf("message %q", p)
		}
		s.write(AppendMaskedFrame(nil, OpText, true, testMask, []byte("masked")))
		p := s.expect(OpClose)
		if code := binary.BigEndian.Uint16(p); code != CloseProtocolError {
			s.t.Errorf("close %d %q", code, p[2:])
		}
		s.expectEOF()
	})
	e := clientEngine(t, false)
	c, rec := dial(t, e, wsURL(addr, "/"), DialConfig{Inline: true})
	rec.next(t, "open")
	for _, want := range []string{"early", "fragmented"} {
		if ev := rec.next(t, "message"); ev.data != want {
			t.Fatalf("message %q, want %q", ev.data, want)
		}
	}
	if ev := rec.next(t, "message"); ev.op != OpBinary || len(ev.data) != 70000 {
		t.Fatalf("message %v of %d bytes", ev.op, len(ev.data))
	}
	c.WriteMessage(OpBinary, []byte("thanks"))
	var ce *CloseError
	if ev := rec.next(t, "error"); !errors.As(ev.err, &ce) || ce.Code != CloseProtocolError {
		t.Fatalf("OnError(%v)", ev.err)
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonProtocolError || ev.code != CloseProtocolError {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
	<-done
}

// TestDialBadResponses: a 101 that fails a check, a malformed response and
// a server that closes before answering.
func TestDialBadResponses(t *testing.T) {
	accept := func(s *rawServer) string {
		return "Sec-WebSocket-Accept: " + AcceptKey(s.req.Header.Get("Sec-WebSocket-Key"))
	}
	cases := []struct {
		name   string
		cfg    DialConfig
		answer func(s *rawServer)
		status int
		text   string
	}{
		{"wrong accept", DialConfig{}, func(s *rawServer) {
			s.respond("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade",
				"Sec-WebSocket-Accept: "+AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
		}, 101, "wrong Sec-WebSocket-Accept"},
		{"no accept", DialConfig{}, func(s *rawServer) {
			s.respond("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade")
		}, 101, "wrong Sec-WebSocket-Accept"},
		{"no upgrade", DialConfig{}, func(s *rawServer) {
			s.respond("HTTP/1.1 101 Switching Protocols", "Connection: Upgrade", accept(s))
		}, 101, "Upgrade: websocket"},
		{"no connection", DialConfig{}, func(s *rawServer) {
			s.respond("HTTP/1.1 101 Switching Protocols", "Upgrade: websocket", accept(s))
		}, 101, "Connection: Upgrade"},
		{"HTTP/1.0", DialConfig{}, func(s *rawServer) {
			s.respond("HTTP/1.0 101 Switching Protocols", "Upgrade: websocket", "Connection: Upgrade", accept(s))
		}, 101, "HTTP/1.0"},
		{"subprotocol not offered", DialConfig{Subprotocols: []string{"a"}}, func(s *rawServer) {
			s.accept("Sec-WebSocket-Protocol: b")
		}, 101, `"b", which was not offered`},
		{"subprotocol without offer", DialConfig{}, func(s *rawServer) {
			s.accept("Sec-WebSocket-Protocol: b")
		}, 101, "not offered"},
		{"deflate not offered", DialConfig{}, func(s *rawServer) {
			s.accept("Sec-WebSocket-Extensions: permessage-deflate")
		}, 101, "permessage-deflate, which was not offered"},
		{"unknown extension", DialConfig{Deflate: DeflateConfig{Enabled: true}}, func(s *rawServer) {
			s.accept("Sec-WebSocket-Extensions: x-foo")
		}, 101, "bad Sec-WebSocket-Extensions"},
		{"malformed", DialConfig{}, func(s *rawServer) {
			s.write([]byte("HTTP/1.1 1O1 Nope\r\n\r\n"))
		}, 0, "malformed response"},
		{"503 with a body by the close", DialConfig{}, func(s *rawServer) {
			s.write([]byte("HTTP/1.1 503 Service Unavailable\r\nRetry-After: 7\r\n\r\ndraining\nmore"))
		}, 503, "503 Service Unavailable: draining"},
	}
	e := clientEngine(t, false)
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			addr := startRawServer(t, tc.answer)
			cl, err := NewClient(e, tc.cfg, newRecorder(false))
			if err != nil {
				t.Fatal(err)
			}
			rec := cl.srv.h.(*recorder)
			if _, err := cl.Dial(wsURL(addr, "/")); err != nil {
				t.Fatal(err)
			}
			ev := rec.next(t, "error")
			var he *HandshakeError
			if !errors.As(ev.err, &he) || he.StatusCode != tc.status || !strings.Contains(he.Error(), tc.text) {
				t.Fatalf("OnError(%v), want a HandshakeError %d with %q", ev.err, tc.status, tc.text)
			}
			t.Log(he)
			if tc.status == 503 && he.HeaderValue("Retry-After") != "7" {
				t.Fatalf("header %q", he.Header)
			}
			ev = rec.next(t, "close")
			if ev.code != CloseAbnormal {
				t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
			}
			if st := cl.Stats(); st.Refused != 1 || st.Upgrades != 0 || st.Open != 0 {
				t.Fatalf("stats %+v", st)
			}
		})
	}
}

// TestDialClosedBeforeResponse: a server that closes instead of
// answering.
func TestDialClosedBeforeResponse(t *testing.T) {
	addr := startRawServer(t, func(s *rawServer) {})
	e := clientEngine(t, false)
	_, rec := dial(t, e, wsURL(addr, "/"), DialConfig{})
	if ev := rec.next(t, "error"); !errors.Is(ev.err, ErrHandshakeClosed) {
		t.Fatalf("OnError(%v)", ev.err)
	} else {
		t.Log(ev.err)
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != CloseAbnormal {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
}

// TestDialTimeoutAndCancel: a server that never answers; the handshake
// times out, or Close gives the dial up first.
func TestDialTimeoutAndCancel(t *testing.T) {
	// The server holds every connection until the test ends (its raw
	// server's 10 s deadline at most), so only the handshake timeout can
	// end the first dial within rec.next's 5 s: no timed assertion needed.
	release := make(chan struct{})
	addr := startRawServer(t, func(s *rawServer) { <-release })
	defer close(release)
	e := clientEngine(t, false)
	_, rec := dial(t, e, wsURL(addr, "/"), DialConfig{HandshakeTimeout: 100 * time.Millisecond})
	if ev := rec.next(t, "error"); !errors.Is(ev.err, ErrHandshakeTimeout) {
		t.Fatalf("OnError(%v)", ev.err)
	}
	if ev := rec.next(t, "close"); ev.code != CloseAbnormal || ev.reason != engine.ReasonIdleTimeout {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}

	c, rec := dial(t, e, wsURL(addr, "/"), DialConfig{})
	if err := c.WriteText("too soon"); !errors.Is(err, ErrNotOpen) {
		t.Fatalf("write before open: %v", err)
	}
	if err := c.Close(CloseNormal, ""); err != nil {
		t.Fatal(err)
	}
	ev := rec.next(t, "close")
	if ev.reason != engine.ReasonLocal || ev.code != CloseAbnormal {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
	select {
	case ev := <-rec.events:
		t.Fatalf("unexpected %s event", ev.kind)
	default:
	}
}

// TestDialConnectRefused: a failed connect reaches OnError with the
// engine's error.
func TestDialConnectRefused(t *testing.T) {
	addr := testutil.RefusedAddr(t)
	e := clientEngine(t, false)
	_, rec := dial(t, e, wsURL(addr, "/"), DialConfig{})
	if ev := rec.next(t, "error"); !errors.Is(ev.err, syscall.ECONNREFUSED) {
		t.Fatalf("OnError(%v)", ev.err)
	}
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonIOError || ev.code != CloseAbnormal {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
}

// TestDialErrors: what Dial and NewClient refuse at once.
func TestDialErrors(t *testing.T) {
	e := clientEngine(t, false)
	for _, u := range []string{"http://127.0.0.1/", "wss://127.0.0.1/", "ws:///path", "ws://127.0.0.1:0/",
		"ws://127.0.0.1:99999/", "ws://127.0.0.1/#frag", "ws://host.invalid/", "::"} {
		if _, err := Dial(e, u, DialConfig{}, newRecorder(false)); !errors.Is(err, ErrBadURL) {
			t.Errorf("%s: %v", u, err)
		}
	}
	for _, cfg := range []DialConfig{
		{Header: [][2]string{{"Bad Name", "x"}}},
		{Header: [][2]string{{"X-Split", "a\r\nInjected: 1"}}},
		{Header: [][2]string{{"Sec-WebSocket-Key", "x"}}},
		{Header: [][2]string{{"connection", "close"}}},
		{Subprotocols: []string{"has space"}},
		{Subprotocols: []string{""}},
	} {
		if _, err := NewClient(e, cfg, newRecorder(false)); !errors.Is(err, ErrBadDialConfig) {
			t.Errorf("%+v: %v", cfg, err)
		}
	}
	stopped, err := engine.New(engine.Config{Logger: discardLogger()}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := Dial(stopped, "ws://127.0.0.1:1/", DialConfig{}, newRecorder(false)); err == nil {
		t.Error("Dial on an engine that was not started")
	}
}

// TestDialRequest: the request carries the URL's path and query, the Host,
// the offers and the extra header fields.
func TestDialRequest(t *testing.T) {
	reqs := make(chan *http.Request, 1)
	addr := startRawServer(t, func(s *rawServer) {
		reqs <- s.req
		s.accept("Sec-WebSocket-Protocol: v2")
		s.expect(OpClose)
		s.write(sf(OpClose, true, ""))
	})
	e := clientEngine(t, false)
	c, rec := dial(t, e, wsURL(addr, "/devices/7?token=a%20b"), DialConfig{
		Subprotocols: []string{"v3", "v2"},
		Deflate:      DeflateConfig{Enabled: true, ClientNoContextTakeover: true},
		Header:       [][2]string{{"Host", "gateway.example"}, {"Authorization", "Bearer t"}, {"X-Multi", "1"}, {"X-Multi", "2"}},
	})
	r := <-reqs
	if r.Method != "GET" || r.RequestURI != "/devices/7?token=a%20b" || r.Host != "gateway.example" ||
		r.Header.Get("Authorization") != "Bearer t" || len(r.Header["X-Multi"]) != 2 ||
		r.Header.Get("Sec-WebSocket-Protocol") != "v3, v2" || r.Header.Get("Sec-WebSocket-Version") != "13" ||
		r.Header.Get("Sec-WebSocket-Extensions") != "permessage-deflate; client_no_context_takeover; client_max_window_bits" ||
		!ValidKey([]byte(r.Header.Get("Sec-WebSocket-Key"))) {
		t.Fatalf("request %s %s host %q header %v", r.Method, r.RequestURI, r.Host, r.Header)
	}
	rec.next(t, "open")
	if p := c.Subprotocol(); p != "v2" {
		t.Fatalf("subprotocol %q", p)
	}
	if _, ok := c.Deflate(); ok {
		t.Fatal("deflate without the server's agreement")
	}
	c.Close(0, "")
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != CloseNoStatus {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
}

// TestDialSubprotocolAndDeflate: against warren's server, with
// compression both ways.
func TestDialSubprotocolAndDeflate(t *testing.T) {
	for _, noContext := range []bool{false, true} {
		t.Run(fmt.Sprint("no_context_takeover=", noContext), func(t *testing.T) {
			srv := startServer(t, Config{Inline: true, Subprotocols: []string{"v1.warren"},
				Deflate: DeflateConfig{Enabled: true}}, Echo)
			e := clientEngine(t, false)
			c, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{Subprotocols: []string{"v2.warren", "v1.warren"},
				Deflate: DeflateConfig{Enabled: true, ServerNoContextTakeover: noContext, ClientNoContextTakeover: noContext}})
			rec.next(t, "open")
			params, ok := c.Deflate()
			if !ok || params.ClientNoContextTakeover != noContext || c.Subprotocol() != "v1.warren" {
				t.Fatalf("deflate %v %+v, subprotocol %q", ok, params, c.Subprotocol())
			}
			for i := range 3 {
				msg := bytes.Repeat([]byte(fmt.Sprint("compressible ", i, " ")), 1000)
				c.WriteMessage(OpText, msg)
				if ev := rec.next(t, "message"); ev.data != string(msg) {
					t.Fatalf("echo of %d bytes: %d bytes", len(msg), len(ev.data))
				}
			}
			if out := c.Engine().BytesOut(); out > 10000 {
				t.Fatalf("%d bytes sent for 3 compressible 15 KB messages", out)
			}
		})
	}
}

// TestDialPings: a client with PingInterval pings a quiet server, and
// closes one that stops answering.
func TestDialPings(t *testing.T) {
	srv := startServer(t, Config{Inline: true, PingInterval: -1}, Echo)
	e := clientEngine(t, false)
	cl, err := NewClient(e, DialConfig{PingInterval: 30 * time.Millisecond}, newRecorder(false))
	if err != nil {
		t.Fatal(err)
	}
	rec := cl.srv.h.(*recorder)
	if _, err := cl.Dial(wsURL(srv.addr, "/ws")); err != nil {
		t.Fatal(err)
	}
	rec.next(t, "open")
	testutil.Eventually(t, 0, "three pings", func() bool { return cl.Stats().PingsSent >= 3 })
	if st := cl.Stats(); st.Open != 1 || st.DeadPeers != 0 {
		t.Fatalf("stats %+v", st)
	}

	silent := startRawServer(t, func(s *rawServer) {
		s.accept()
		io.Copy(io.Discard, s.br) // reads the pings, never answers
	})
	_, rec = dial(t, e, wsURL(silent, "/"), DialConfig{PingInterval: 30 * time.Millisecond})
	rec.next(t, "open")
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonDeadPeer || ev.code != CloseAbnormal {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
}

// TestDialGroup: a Group broadcasts to dialled connections too, masking
// each copy.
func TestDialGroup(t *testing.T) {
	srec := newRecorder(false)
	srv := startServer(t, Config{Inline: true}, srec)
	e := clientEngine(t, false)
	var g Group
	for range 2 {
		c, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{})
		rec.next(t, "open")
		if !g.Join(c) {
			t.Fatal("Join")
		}
	}
	if n := g.Broadcast(OpText, []byte("to the server")); n != 2 {
		t.Fatalf("broadcast to %d", n)
	}
	for range 2 {
		if ev := srec.next(t, "message"); ev.data != "to the server" {
			t.Fatalf("server got %q", ev.data)
		}
	}
}

// TestDialGorilla: interoperability with gorilla/websocket's server:
// echo of fragmented messages, compression, pings, and its close.
func TestDialGorilla(t *testing.T) {
	pongs := make(chan string, 4)
	up := gorilla.Upgrader{Subprotocols: []string{"chat"}, EnableCompression: true, WriteBufferSize: 1024}
	hs := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		gc, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer gc.Close()
		gc.SetPongHandler(func(p string) error { pongs <- p; return nil })
		gc.WriteControl(gorilla.PingMessage, []byte("gorilla ping"), time.Now().Add(time.Second))
		for {
			op, msg, err := gc.ReadMessage()
			if err != nil {
				return
			}
			if string(msg) == "close-me" {
				gc.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(4001, "as asked"))
				gc.ReadMessage() // the client's answering Close
				return
			}
			gc.EnableWriteCompression(len(msg) > 1000)
			gc.WriteMessage(op, msg) // more than 1 KiB leaves in fragments
		}
	}))
	defer hs.Close()
	addr := strings.TrimPrefix(hs.URL, "http://")
	for _, deflate := range []bool{false, true} {
		t.Run(fmt.Sprint("deflate=", deflate), func(t *testing.T) {
			e := clientEngine(t, false)
			c, rec := dial(t, e, wsURL(addr, "/"), DialConfig{Subprotocols: []string{"chat"},
				Deflate: DeflateConfig{Enabled: deflate, ClientNoContextTakeover: true, ServerNoContextTakeover: true}})
			rec.next(t, "open")
			if c.Subprotocol() != "chat" {
				t.Fatalf("subprotocol %q", c.Subprotocol())
			}
			if _, ok := c.Deflate(); ok != deflate {
				t.Fatalf("deflate %v", ok)
			}
			select {
			case p := <-pongs:
				if p != "gorilla ping" {
					t.Fatalf("pong %q", p)
				}
			case <-time.After(5 * time.Second):
				t.Fatal("no pong")
			}
			big := bytes.Repeat([]byte("gorilla interop "), 10000)
			for _, m := range []string{"hi", string(big), ""} {
				c.WriteText(m)
				if ev := rec.next(t, "message"); ev.op != OpText || ev.data != m {
					t.Fatalf("echo of %d bytes: %v %d bytes", len(m), ev.op, len(ev.data))
				}
			}
			c.WriteMessage(OpBinary, big)
			if ev := rec.next(t, "message"); ev.op != OpBinary || ev.data != string(big) {
				t.Fatal("binary echo differs")
			}
			c.WriteText("close-me")
			if ev := rec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != 4001 {
				t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
			}
		})
	}
}

// TestDialIdleConn: an open dialled connection holds no Reader and no
// compression state between messages, and no handshake state at all.
func TestDialIdleConn(t *testing.T) {
	srv := startServer(t, Config{Inline: true}, Echo)
	e := clientEngine(t, false)
	c, rec := dial(t, e, wsURL(srv.addr, "/ws"), DialConfig{Inline: true})
	rec.next(t, "open")
	c.WriteMessage(OpBinary, make([]byte, 100<<10))
	rec.next(t, "message")
	e.Conns() // runs on every loop: orders the reads below after the loop's work
	if c.rd != nil || c.cmp != nil || c.batch != nil {
		t.Fatal("an idle dialled connection holds a Reader, a batch or compression state")
	}
	t.Logf("websocket.Conn %d B per dialled connection (handshake state %d B, dropped once open)",
		unsafe.Sizeof(Conn{}), unsafe.Sizeof(handshake{}))
}
