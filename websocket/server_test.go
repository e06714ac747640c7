package websocket

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"math/rand/v2"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"
	"unsafe"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

func TestHandshakeRefusals(t *testing.T) {
	srv := startServer(t, Config{}, newRecorder(true), serverOpts{router: func(r *http1.Router, ws *Server) {
		r.Handle("/ws", ws.Handler()) // any method, so that the server sees POST
		r.Handle("GET /blocking", ws) // not Inline
	}})
	base := func(path string) string { return handshakeRequest(srv.addr, path) }
	cases := []struct {
		name   string
		req    string
		status int
		header string // "Name: value" expected in the response
	}{
		{"post", strings.Replace(base("/ws"), "GET", "POST", 1) + "", 405, "Allow: GET"},
		{"no upgrade", strings.Replace(base("/ws"), "Upgrade: websocket\r\n", "", 1), 400, ""},
		{"no connection upgrade", strings.Replace(base("/ws"), "Connection: Upgrade", "Connection: keep-alive", 1), 400, ""},
		{"upgrade h2c", strings.Replace(base("/ws"), "Upgrade: websocket", "Upgrade: h2c", 1), 400, ""},
		{"http/1.0", strings.Replace(base("/ws"), "HTTP/1.1", "HTTP/1.0", 1), 400, ""},
		{"no key", strings.Replace(base("/ws"), "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n", "", 1), 400, ""},
		{"short key", strings.Replace(base("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", "dGhlIHNhbXBsZQ==", 1), 400, ""},
		{"bad key", strings.Replace(base("/ws"), "dGhlIHNhbXBsZSBub25jZQ==", "!GhlIHNhbXBsZSBub25jZQ==", 1), 400, ""},
		{"two keys", strings.Replace(base("/ws"), "Sec-WebSocket-Version", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version", 1), 400, ""},
		{"version 8", strings.Replace(base("/ws"), "Version: 13", "Version: 8", 1), 426, "Sec-WebSocket-Version: 13"},
		{"no version", strings.Replace(base("/ws"), "Sec-WebSocket-Version: 13\r\n", "", 1), 426, "Sec-WebSocket-Version: 13"},
		{"cross origin", handshakeRequest(srv.addr, "/ws", "Origin: http://evil.example"), 403, ""},
		{"null origin", handshakeRequest(srv.addr, "/ws", "Origin: null"), 403, ""},
		{"not inline", base("/blocking"), 500, ""},
		{"same origin", handshakeRequest(srv.addr, "/ws", "Origin: http://"+strings.ToUpper(srv.addr)), 101, ""},
		{"no origin", base("/ws"), 101, ""},
		{"firefox connection", strings.Replace(base("/ws"), "Connection: Upgrade", "Connection: keep-alive, Upgrade", 1), 101, ""},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			c := rawHandshake(t, srv.addr, tc.req)
			if c.resp.StatusCode != tc.status {
				t.Fatalf("status %d, want %d", c.resp.StatusCode, tc.status)
			}
			if tc.header != "" {
				name, value, _ := strings.Cut(tc.header, ": ")
				if got := c.resp.Header.Get(name); got != value {
					t.Fatalf("%s: %q, want %q", name, got, value)
				}
			}
		})
	}
	if s := srv.ws.Stats(); s.Refused != uint64(len(cases)-3) || s.Upgrades != 3 {
		t.Fatalf("stats %+v", s)
	}
}

func TestSubprotocolAcceptAndOrigin(t *testing.T) {
	rec := newRecorder(false)
	cfg := Config{
		Subprotocols: []string{"v2.warren", "v1.warren"},
		CheckOrigin:  func(origin []byte, r *http1.Ctx) bool { return string(origin) == "https://app.example" },
		Accept: func(r *http1.Ctx, c *Conn) bool {
			if string(r.Query("token")) != "secret" {
				r.SetStatus(401)
				r.WriteString("bad token\n")
				return false
			}
			c.SetContext("device-" + r.Param("id"))
			return true
		},
	}
	srv := startServer(t, cfg, rec, serverOpts{router: func(r *http1.Router, ws *Server) {
		r.Handle("GET /devices/{id}/ws", ws.Handler())
	}})
	origin := "Origin: https://app.example"
	c := rawHandshake(t, srv.addr, handshakeRequest(srv.addr, "/devices/7/ws?token=secret", origin,
		"Sec-WebSocket-Protocol: chat, v1.warren", "Sec-WebSocket-Protocol: v2.warren"))
	if c.resp.StatusCode != 101 || c.resp.Header.Get("Sec-WebSocket-Protocol") != "v2.warren" {
		t.Fatalf("status %d protocol %q", c.resp.StatusCode, c.resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	ev := rec.next(t, "open")
	if ev.conn.Subprotocol() != "v2.warren" || ev.conn.Context() != "device-7" {
		t.Fatalf("subprotocol %q context %v", ev.conn.Subprotocol(), ev.conn.Context())
	}
	if _, ok := ev.conn.Deflate(); ok {
		t.Fatal("deflate negotiated while disabled")
	}
	c = rawHandshake(t, srv.addr, handshakeRequest(srv.addr, "/devices/7/ws?token=secret", origin, "Sec-WebSocket-Protocol: chat"))
	if c.resp.StatusCode != 101 || c.resp.Header.Get("Sec-WebSocket-Protocol") != "" {
		t.Fatalf("no common subprotocol: status %d protocol %q", c.resp.StatusCode, c.resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	if c := rawHandshake(t, srv.addr, handshakeRequest(srv.addr, "/devices/7/ws?token=nope", origin)); c.resp.StatusCode != 401 {
		t.Fatalf("Accept refusal: status %d", c.resp.StatusCode)
	}
	if c := rawHandshake(t, srv.addr, handshakeRequest(srv.addr, "/devices/7/ws?token=secret")); c.resp.StatusCode != 403 {
		t.Fatalf("no Origin, refused by CheckOrigin: status %d", c.resp.StatusCode)
	}
	if c := rawHandshake(t, srv.addr, handshakeRequest(srv.addr, "/devices/7/ws?token=secret", "Origin: http://"+srv.addr)); c.resp.StatusCode != 403 {
		t.Fatalf("CheckOrigin refusal: status %d", c.resp.StatusCode)
	}
}

// TestEcho runs the echo handler inline and on the worker pool, on the
// event loops and on the portable engine.
func TestEcho(t *testing.T) {
	for _, inline := range []bool{true, false} {
		for _, portable := range []bool{false, true} {
			t.Run(fmt.Sprintf("inline=%t/portable=%t", inline, portable), func(t *testing.T) {
				rec := newRecorder(true)
				srv := startServer(t, Config{Inline: inline}, rec, serverOpts{portable: portable})
				c := dialRaw(t, srv.addr)
				conn := rec.next(t, "open").conn
				c.send(OpText, true, []byte("hello"))
				if p := c.expect(OpText); string(p) != "hello" {
					t.Fatalf("echo %q", p)
				}
				// The WebSocket is the engine connection's handler. Read its
				// protocol from a snapshot: Conn.Protocol belongs to the loop.
				if p := protocolOf(srv, conn.ID()); p != ProtocolName {
					t.Fatalf("protocol %q", p)
				}
				c.send(OpBinary, true, nil)
				if p := c.expect(OpBinary); len(p) != 0 {
					t.Fatalf("empty echo %q", p)
				}
				// Fragmented, with a ping in the middle: the pong comes first
				// and carries the ping's payload.
				c.send(OpText, false, []byte("frag"))
				c.send(OpPing, true, []byte("are you there"))
				c.send(OpContinuation, false, []byte("men"))
				c.send(OpContinuation, true, []byte("ted"))
				if p := c.expect(OpPong); string(p) != "are you there" {
					t.Fatalf("pong %q", p)
				}
				if p := c.expect(OpText); string(p) != "fragmented" {
					t.Fatalf("echo %q", p)
				}
				// A large binary message, written in pieces.
				big := make([]byte, 300<<10)
				for i := range big {
					big[i] = byte(i * 7)
				}
				frame := AppendMaskedFrame(nil, OpBinary, true, NewMask(), big)
				for len(frame) > 0 {
					n := min(len(frame), 1+rand.IntN(40000))
					c.sendRaw(frame[:n])
					frame = frame[n:]
				}
				if p := c.expect(OpBinary); !bytes.Equal(p, big) {
					t.Fatalf("large echo differs (%d bytes)", len(p))
				}
				// Many small messages in one write.
				var burst []byte
				for i := range 100 {
					burst = AppendMaskedFrame(burst, OpText, true, NewMask(), []byte(fmt.Sprintf("m%d", i)))
				}
				c.sendRaw(burst)
				for i := range 100 {
					if p := c.expect(OpText); string(p) != fmt.Sprintf("m%d", i) {
						t.Fatalf("burst message %d: %q", i, p)
					}
				}
				if n := conn.Engine().Served(); n != 1+104 { // handshake + messages
					t.Fatalf("served %d", n)
				}
				c.send(OpClose, true, AppendClosePayload(nil, CloseNormal, "bye"))
				if code, _ := c.expectClose(); code != CloseNormal {
					t.Fatalf("close code %d", code)
				}
				c.expectEOF()
				ev := rec.next(t, "close")
				if ev.reason != engine.ReasonPeerClosed || ev.code != CloseNormal {
					t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
				}
			})
		}
	}
}

// TestFramesWithHandshake: frames that arrive in the same read as the
// upgrade request are handled at once.
func TestFramesWithHandshake(t *testing.T) {
	rec := newRecorder(true)
	srv := startServer(t, Config{Inline: true}, rec)
	req := handshakeRequest(srv.addr, "/ws") + string(AppendMaskedFrame(nil, OpText, true, NewMask(), []byte("early")))
	c := rawHandshake(t, srv.addr, req)
	if c.resp.StatusCode != 101 {
		t.Fatalf("status %d", c.resp.StatusCode)
	}
	if p := c.expect(OpText); string(p) != "early" {
		t.Fatalf("echo %q", p)
	}
}

// TestProtocolViolations sends raw frames that break RFC 6455 and checks
// the server's Close code and the engine close reason.
func TestProtocolViolations(t *testing.T) {
	mask := [4]byte{1, 2, 3, 4}
	masked := func(op Opcode, fin bool, p []byte) []byte { return AppendMaskedFrame(nil, op, fin, mask, p) }
	withRsv := func(b []byte, rsv byte) []byte { b[0] |= rsv; return b }
	cases := []struct {
		name    string
		frames  []byte
		code    uint16
		deflate bool // run only against a server with permessage-deflate
		plain   bool // run only against a server without it
	}{
		{"unmasked", AppendFrame(nil, OpText, true, []byte("hi")), CloseProtocolError, false, false},
		{"rsv1 without extension", withRsv(masked(OpText, true, []byte("hi")), Rsv1), CloseProtocolError, false, true},
		{"rsv2", withRsv(masked(OpBinary, true, []byte("hi")), Rsv2), CloseProtocolError, true, false},
		{"rsv3", withRsv(masked(OpBinary, true, []byte("hi")), Rsv3), CloseProtocolError, false, false},
		{"reserved data opcode", masked(0x3, true, nil), CloseProtocolError, false, false},
		{"reserved control opcode", masked(0xB, true, nil), CloseProtocolError, false, false},
		{"fragmented ping", masked(OpPing, false, nil), CloseProtocolError, false, false},
		{"ping over 125 bytes", masked(OpPing, true, make([]byte, 126)), CloseProtocolError, false, false},
		{"continuation first", masked(OpContinuation, true, []byte("x")), CloseProtocolError, false, false},
		{"interleaved message", append(masked(OpText, false, []byte("a")), masked(OpText, true, []byte("b"))...), CloseProtocolError, false, false},
		{"close of 1 byte", masked(OpClose, true, []byte{3}), CloseProtocolError, false, false},
		{"close code 1005", masked(OpClose, true, []byte{0x03, 0xed}), CloseProtocolError, false, false},
		{"close code 999", masked(OpClose, true, []byte{0x03, 0xe7}), CloseProtocolError, false, false},
		{"close code 1006", masked(OpClose, true, []byte{0x03, 0xee}), CloseProtocolError, false, false},
		{"close code 5000", masked(OpClose, true, []byte{0x13, 0x88}), CloseProtocolError, false, false},
		{"64-bit length msb", append([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 0}, mask[:]...), CloseProtocolError, false, false},
		{"invalid utf-8 text", masked(OpText, true, []byte{'a', 0xff, 'b'}), CloseInvalidPayload, false, false},
		{"invalid utf-8 across fragments", append(masked(OpText, false, []byte{0xe2, 0x82}), masked(OpContinuation, true, []byte{'x'})...), CloseInvalidPayload, false, false},
		{"invalid utf-8 close reason", masked(OpClose, true, []byte{0x03, 0xe8, 0xc0, 0xaf}), CloseInvalidPayload, false, false},
		{"too big single frame", masked(OpBinary, true, make([]byte, 2000)), CloseMessageTooBig, false, false},
		{"too big declared length", append([]byte{0x82, 0xff, 0, 0, 0, 1, 0, 0, 0, 0}, mask[:]...), CloseMessageTooBig, false, false},
		{"too big over fragments", append(masked(OpBinary, false, make([]byte, 600)), masked(OpContinuation, true, make([]byte, 600))...), CloseMessageTooBig, false, false},
		{"corrupt deflate data", withRsv(masked(OpText, true, []byte{0xff, 0xff, 0xff, 0xff}), Rsv1), CloseInvalidPayload, true, false},
		{"deflate bomb", withRsv(masked(OpBinary, true, (&Deflater{noContext: true}).Compress(nil, make([]byte, 64<<10))), Rsv1), CloseMessageTooBig, true, false},
		{"rsv1 on continuation", append(masked(OpText, false, nil), withRsv(masked(OpContinuation, true, nil), Rsv1)...), CloseProtocolError, true, false},
	}
	for _, deflate := range []bool{false, true} {
		rec := newRecorder(false)
		srv := startServer(t, Config{MaxMessageSize: 1024, Deflate: DeflateConfig{Enabled: deflate}}, rec)
		for _, tc := range cases {
			if tc.deflate && !deflate || tc.plain && deflate {
				continue
			}
			t.Run(fmt.Sprintf("deflate=%t/%s", deflate, tc.name), func(t *testing.T) {
				var extra []string
				if deflate {
					extra = append(extra, "Sec-WebSocket-Extensions: permessage-deflate")
				}
				c := dialRaw(t, srv.addr, extra...)
				if deflate && c.resp.Header.Get("Sec-WebSocket-Extensions") == "" {
					t.Fatal("deflate not negotiated")
				}
				rec.next(t, "open")
				c.sendRaw(bytes.Clone(tc.frames))
				code, reason := c.expectClose()
				if code != tc.code {
					t.Fatalf("close code %d (%q), want %d", code, reason, tc.code)
				}
				c.expectEOF()
				// OnError gets the violation, then OnClose.
				var ce *CloseError
				if ev := rec.next(t, "error"); !errors.As(ev.err, &ce) || ce.Code != tc.code {
					t.Fatalf("OnError(%v), want a CloseError %d", ev.err, tc.code)
				}
				ev := rec.next(t, "close")
				want := engine.ReasonProtocolError
				if tc.code == CloseMessageTooBig {
					want = engine.ReasonLimitReached
				}
				if ev.reason != want || ev.code != tc.code {
					t.Fatalf("OnClose(%v, %d), want (%v, %d)", ev.reason, ev.code, want, tc.code)
				}
			})
		}
	}
}

func TestCloseHandshake(t *testing.T) {
	rec := newRecorder(false)
	srv := startServer(t, Config{CloseTimeout: 300 * time.Millisecond}, rec)

	t.Run("peer closes without status", func(t *testing.T) {
		c := dialRaw(t, srv.addr)
		rec.next(t, "open")
		c.send(OpClose, true, nil)
		if code, _ := c.expectClose(); code != CloseNoStatus {
			t.Fatalf("echoed code %d, want an empty Close", code)
		}
		c.expectEOF()
		if ev := rec.next(t, "close"); ev.reason != engine.ReasonPeerClosed || ev.code != CloseNoStatus {
			t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
		}
	})
	t.Run("server closes, peer answers", func(t *testing.T) {
		c := dialRaw(t, srv.addr)
		conn := rec.next(t, "open").conn
		if err := conn.Close(4001, "go away"); err != nil {
			t.Fatal(err)
		}
		if err := conn.WriteText("late"); err != ErrClosed {
			t.Fatalf("write after Close: %v", err)
		}
		if err := conn.Close(CloseNormal, ""); err != nil {
			t.Fatalf("second Close: %v", err)
		}
		code, reason := c.expectClose()
		if code != 4001 || reason != "go away" {
			t.Fatalf("close %d %q", code, reason)
		}
		// A message sent before the peer saw the Close is still delivered.
		c.send(OpText, true, []byte("in flight"))
		if ev := rec.next(t, "message"); ev.data != "in flight" {
			t.Fatalf("message %q", ev.data)
		}
		c.send(OpClose, true, AppendClosePayload(nil, 4001, ""))
		c.expectEOF()
		if ev := rec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != 4001 {
			t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
		}
	})
	t.Run("server closes, peer silent", func(t *testing.T) {
		c := dialRaw(t, srv.addr)
		conn := rec.next(t, "open").conn
		start := time.Now()
		conn.Close(CloseNormal, "")
		c.expectClose()
		c.expectEOF()
		if d := time.Since(start); d < 250*time.Millisecond {
			t.Fatalf("closed after %v, before the close timeout", d)
		}
		if ev := rec.next(t, "close"); ev.reason != engine.ReasonLocal || ev.code != CloseNormal {
			t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
		}
	})
	t.Run("invalid code", func(t *testing.T) {
		dialRaw(t, srv.addr)
		conn := rec.next(t, "open").conn
		if err := conn.Close(1005, ""); err != ErrInvalidCloseCode {
			t.Fatalf("Close(1005) = %v", err)
		}
		if err := conn.WriteMessage(OpPing, nil); err != ErrDataOpcode {
			t.Fatalf("WriteMessage(ping) = %v", err)
		}
	})
	t.Run("peer drops", func(t *testing.T) {
		c := dialRaw(t, srv.addr)
		rec.next(t, "open")
		c.nc.Close()
		if ev := rec.next(t, "close"); ev.code != CloseAbnormal ||
			(ev.reason != engine.ReasonPeerClosed && ev.reason != engine.ReasonPeerReset) {
			t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
		}
	})
}

// TestPingAndDeadPeer drives the liveness timer with the engine's clock:
// a quiet connection gets a ping each interval while it answers, and is
// closed as a dead peer once it stops. (Inline: with handlers on the
// worker pool the engine drops a timer re-evaluated while OnOpen is in
// flight, so the first ping would wait for http1's idle timeout.)
func TestPingAndDeadPeer(t *testing.T) {
	clock := testutil.NewFakeClock()
	rec := newRecorder(false)
	srv := startServer(t, Config{Inline: true}, rec, serverOpts{clock: clock})
	c := dialRaw(t, srv.addr)
	conn := rec.next(t, "open").conn
	stats := func() Stats { return srv.ws.Stats() }

	for i := 1; i <= 2; i++ {
		clock.Advance(DefaultPingInterval + time.Second)
		testutil.Eventually(t, 0, "a ping", func() bool { return stats().PingsSent == uint64(i) })
		c.expect(OpPing)
		c.send(OpPong, true, nil)
		testutil.Eventually(t, 0, "the pong", func() bool { return !conn.pingSent.Load() })
	}
	// A ping from the client is answered with its payload, and counts as
	// liveness too.
	c.send(OpPing, true, []byte("x"))
	if p := c.expect(OpPong); string(p) != "x" {
		t.Fatalf("pong %q", p)
	}
	clock.Advance(DefaultPingInterval + time.Second)
	testutil.Eventually(t, 0, "a third ping", func() bool { return stats().PingsSent == 3 })
	c.expect(OpPing) // and never answer it
	clock.Advance(DefaultPingInterval + time.Second)
	testutil.Eventually(t, 0, "dead peer", func() bool { return stats().DeadPeers == 1 })
	c.expectEOF()
	if ev := rec.next(t, "close"); ev.reason != engine.ReasonDeadPeer || ev.code != CloseAbnormal {
		t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
	}
	if s := stats(); s.Open != 0 {
		t.Fatalf("open %d", s.Open)
	}
}

func TestPingsOff(t *testing.T) {
	clock := testutil.NewFakeClock()
	rec := newRecorder(true)
	srv := startServer(t, Config{PingInterval: -1}, rec, serverOpts{clock: clock})
	c := dialRaw(t, srv.addr)
	rec.next(t, "open")
	clock.Advance(24 * time.Hour)
	time.Sleep(50 * time.Millisecond)
	c.send(OpText, true, []byte("still here"))
	if p := c.expect(OpText); string(p) != "still here" {
		t.Fatalf("echo %q", p)
	}
	if n := srv.ws.Stats().PingsSent; n != 0 {
		t.Fatalf("%d pings sent", n)
	}
}

// TestShutdownSendsGoingAway: the engine's drain sends Close 1001 to every
// socket, and Shutdown returns once the peers have answered.
func TestShutdownSendsGoingAway(t *testing.T) {
	rec := newRecorder(true)
	srv := startServer(t, Config{CloseTimeout: 300 * time.Millisecond}, rec)
	const n = 50
	clients := make([]*rawClient, n)
	for i := range clients {
		clients[i] = dialRaw(t, srv.addr)
		rec.next(t, "open")
	}
	// One client that never answers the Close: the close timeout ends it.
	silent := dialRaw(t, srv.addr)
	rec.next(t, "open")
	var wg sync.WaitGroup
	errs := make(chan error, n)
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			h, p, err := c.read()
			if err != nil || h.Op != OpClose || len(p) < 2 || p[0] != 0x03 || p[1] != 0xe9 {
				errs <- fmt.Errorf("got %+v %q %v, want Close 1001", h, p, err)
				return
			}
			c.nc.Write(AppendMaskedFrame(nil, OpClose, true, NewMask(), p[:2]))
			if _, _, err := c.read(); err != io.EOF {
				errs <- fmt.Errorf("after the close handshake: %v", err)
			}
		}()
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	// Within the deadline: Shutdown returns its context's error if it had
	// to force connections closed.
	if err := srv.http.Engine().Shutdown(ctx); err != nil {
		t.Fatalf("Shutdown: %v", err)
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Error(err)
	}
	if code, _ := silent.expectClose(); code != CloseGoingAway {
		t.Fatalf("silent client got %d", code)
	}
	for range n + 1 {
		if ev := rec.next(t, "close"); ev.reason != engine.ReasonShutdown || ev.code != CloseGoingAway {
			t.Fatalf("OnClose(%v, %d)", ev.reason, ev.code)
		}
	}
}

func TestGroupAndHub(t *testing.T) {
	rec := newRecorder(false)
	srv := startServer(t, Config{}, rec)
	var g Group
	var hub Hub
	const n = 6
	clients := make([]*rawClient, n)
	conns := make([]*Conn, n)
	for i := range clients {
		clients[i] = dialRaw(t, srv.addr)
		conns[i] = rec.next(t, "open").conn
		if !g.Join(conns[i]) || !g.Join(conns[i]) {
			t.Fatal("Join failed")
		}
		if !hub.Subscribe([]string{"even", "odd"}[i%2], conns[i]) {
			t.Fatal("Subscribe failed")
		}
	}
	if g.Len() != n || hub.Topics() != 2 || hub.Subscribers("odd") != n/2 {
		t.Fatalf("len %d topics %d odd %d", g.Len(), hub.Topics(), hub.Subscribers("odd"))
	}
	if sent := g.Broadcast(OpText, []byte("to all")); sent != n {
		t.Fatalf("broadcast reached %d", sent)
	}
	if sent := hub.Publish("odd", OpBinary, []byte{1, 2, 3}); sent != n/2 {
		t.Fatalf("publish reached %d", sent)
	}
	for i, c := range clients {
		if p := c.expect(OpText); string(p) != "to all" {
			t.Fatalf("client %d got %q", i, p)
		}
		if i%2 == 1 {
			if p := c.expect(OpBinary); !bytes.Equal(p, []byte{1, 2, 3}) {
				t.Fatalf("client %d got %q", i, p)
			}
		}
	}
	// Closing connections leave their groups and empty topics vanish.
	g.Leave(conns[0])
	clients[1].nc.Close()
	rec.next(t, "close")
	testutil.Eventually(t, 0, "auto-leave", func() bool { return g.Len() == n-2 })
	for _, i := range []int{3, 5} {
		hub.Unsubscribe("odd", conns[i])
	}
	if hub.Topics() != 1 || hub.Subscribers("odd") != 0 || hub.Publish("odd", OpText, nil) != 0 {
		t.Fatalf("topics %d odd %d", hub.Topics(), hub.Subscribers("odd"))
	}
	if !hub.Subscribe("odd", conns[3]) || hub.Subscribers("odd") != 1 {
		t.Fatal("resubscribe")
	}
	conns[2].Close(CloseNormal, "")
	if g.Join(conns[2]) || hub.Subscribe("new", conns[2]) || hub.Topics() != 2 {
		t.Fatalf("a closing connection joined (topics %d)", hub.Topics())
	}
	if sent := g.Broadcast(OpText, []byte("again")); sent != n-3 {
		t.Fatalf("broadcast reached %d, want %d", sent, n-3)
	}
}

// TestHubConcurrency churns subscriptions while publishing, for the race
// detector and the lock order.
func TestHubConcurrency(t *testing.T) {
	rec := newRecorder(false)
	srv := startServer(t, Config{}, rec)
	const n = 8
	conns := make([]*Conn, n)
	clients := make([]*rawClient, n)
	for i := range conns {
		clients[i] = dialRaw(t, srv.addr)
		conns[i] = rec.next(t, "open").conn
	}
	var hub Hub
	var wg sync.WaitGroup
	for i := range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for k := range 300 {
				topic := fmt.Sprint("t", k%3)
				hub.Subscribe(topic, conns[i])
				hub.Publish(topic, OpText, []byte("x"))
				hub.Unsubscribe(topic, conns[i])
			}
		}()
	}
	// Drain what the clients receive so that no queue grows.
	for _, c := range clients {
		go io.Copy(io.Discard, c.nc)
	}
	wg.Wait()
	if hub.Topics() != 0 {
		t.Fatalf("%d topics left", hub.Topics())
	}
}

// TestConcurrentWrites writes from many goroutines at once: frames must
// arrive whole.
func TestConcurrentWrites(t *testing.T) {
	rec := newRecorder(false)
	// Inline, so that the loop gathers frames (corks) while it handles the
	// client's pings, concurrently with the writers.
	srv := startServer(t, Config{Inline: true, Deflate: DeflateConfig{Enabled: true}}, rec)
	for _, deflate := range []bool{false, true} {
		var extra []string
		if deflate {
			extra = []string{"Sec-WebSocket-Extensions: permessage-deflate; client_max_window_bits"}
		}
		c := dialRaw(t, srv.addr, extra...)
		conn := rec.next(t, "open").conn
		var inf *Inflater
		if p, ok := conn.Deflate(); ok != deflate {
			t.Fatalf("deflate %t", ok)
		} else if ok {
			inf = p.NewInflater(RoleClient)
		}
		const writers, each = 8, 200
		stopPings := make(chan struct{})
		go func() {
			for {
				select {
				case <-stopPings:
					return
				case <-time.After(100 * time.Microsecond):
					c.nc.Write(AppendMaskedFrame(nil, OpPing, true, NewMask(), []byte("p")))
				}
			}
		}()
		var wg sync.WaitGroup
		for w := range writers {
			wg.Add(1)
			go func() {
				defer wg.Done()
				for i := range each {
					msg := strings.Repeat(fmt.Sprintf("w%d-%d;", w, i), 1+i%60)
					if err := conn.WriteText(msg); err != nil {
						t.Error(err)
						return
					}
				}
			}()
		}
		next := make([]int, writers)
		for got := 0; got < writers*each; {
			h, p, err := c.read()
			if err != nil {
				t.Fatal(err)
			}
			if h.Op == OpPong {
				continue
			}
			got++
			if h.Rsv&Rsv1 != 0 {
				if p, err = inf.Decompress(nil, p, -1); err != nil {
					t.Fatal(err)
				}
			}
			var w, i int
			fmt.Sscanf(string(p), "w%d-%d;", &w, &i)
			if i != next[w] || string(p) != strings.Repeat(fmt.Sprintf("w%d-%d;", w, i), 1+i%60) {
				t.Fatalf("message %q out of order or torn (want w%d-%d)", p, w, next[w])
			}
			next[w]++
		}
		close(stopPings)
		wg.Wait()
	}
}

// TestCorkedWrites: replies gathered while the loop handles one read keep
// their order with large frames and the Close that ends the read.
func TestCorkedWrites(t *testing.T) {
	big := strings.Repeat("B", 100<<10)
	h := HandlerFuncs{Message: func(c *Conn, op Opcode, data []byte) {
		c.WriteMessage(op, data)
		if string(data) == "big" {
			c.WriteText(big) // past the gathering size: sent at once, after the batch
			c.WriteText("after big")
		}
	}}
	srv := startServer(t, Config{Inline: true}, h)
	c := dialRaw(t, srv.addr)
	var in []byte
	var want []string
	for i := range 2000 { // more than one batch
		m := fmt.Sprint("m", i)
		if i == 1000 {
			m = "big"
		}
		in = AppendMaskedFrame(in, OpText, true, NewMask(), []byte(m))
		want = append(want, m)
		if i == 1000 {
			want = append(want, big, "after big")
		}
	}
	in = AppendMaskedFrame(in, OpClose, true, NewMask(), AppendClosePayload(nil, CloseNormal, ""))
	c.sendRaw(in)
	for i, w := range want {
		if p := c.expect(OpText); string(p) != w {
			t.Fatalf("reply %d: %.20q, want %.20q", i, p, w)
		}
	}
	if code, _ := c.expectClose(); code != CloseNormal {
		t.Fatalf("close %d", code)
	}
	c.expectEOF()
}

// TestDispatchOrder: blocking handlers on the worker pool see each
// connection's messages in order, after OnOpen and before OnClose.
func TestDispatchOrder(t *testing.T) {
	var mu sync.Mutex
	seen := map[*Conn][]string{}
	done := make(chan *Conn, 4)
	h := HandlerFuncs{
		Open: func(c *Conn) {
			time.Sleep(time.Millisecond)
			mu.Lock()
			seen[c] = append(seen[c], "open")
			mu.Unlock()
		},
		Message: func(c *Conn, op Opcode, data []byte) {
			time.Sleep(time.Duration(rand.IntN(200)) * time.Microsecond)
			mu.Lock()
			seen[c] = append(seen[c], string(data))
			mu.Unlock()
		},
		Close: func(c *Conn, reason engine.CloseReason, code uint16) {
			mu.Lock()
			seen[c] = append(seen[c], "close")
			mu.Unlock()
			done <- c
		},
	}
	srv := startServer(t, Config{}, h)
	const conns, msgs = 4, 100
	var want []string
	want = append(want, "open")
	for i := range msgs {
		want = append(want, fmt.Sprint(i))
	}
	want = append(want, "close")
	for range conns {
		c := dialRaw(t, srv.addr)
		var all []byte
		for i := range msgs {
			all = AppendMaskedFrame(all, OpText, true, NewMask(), []byte(fmt.Sprint(i)))
		}
		all = AppendMaskedFrame(all, OpClose, true, NewMask(), AppendClosePayload(nil, CloseNormal, ""))
		c.sendRaw(all)
	}
	for range conns {
		select {
		case c := <-done:
			mu.Lock()
			got := strings.Join(seen[c], ",")
			mu.Unlock()
			if got != strings.Join(want, ",") {
				t.Fatalf("order: %s", got)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("handlers did not finish")
		}
	}
}

// TestDeflateEcho negotiates permessage-deflate with and without context
// takeover and echoes compressible and tiny messages both ways.
func TestDeflateEcho(t *testing.T) {
	for _, noCtx := range []bool{false, true} {
		t.Run(fmt.Sprintf("no_context_takeover=%t", noCtx), func(t *testing.T) {
			rec := newRecorder(true)
			cfg := Config{Inline: true, Deflate: DeflateConfig{Enabled: true, ServerNoContextTakeover: noCtx, ClientNoContextTakeover: noCtx}}
			srv := startServer(t, cfg, rec)
			c := dialRaw(t, srv.addr, "Sec-WebSocket-Extensions: x-unknown, permessage-deflate; client_max_window_bits")
			ext := c.resp.Header.Get("Sec-WebSocket-Extensions")
			params, ok, err := ParseDeflateResponse([]byte(ext))
			if !ok || err != nil || params.ServerNoContextTakeover != noCtx {
				t.Fatalf("extension response %q: %+v %t %v", ext, params, ok, err)
			}
			def := params.NewDeflater(RoleClient, 1)
			inf := params.NewInflater(RoleClient)
			for i, msg := range []string{strings.Repeat("compress me please ", 200), "tiny", strings.Repeat("again and again ", 100)} {
				c.sendRaw(def.AppendMaskedFrame(nil, OpText, NewMask(), []byte(msg)))
				h, p, err := c.read()
				if err != nil {
					t.Fatal(err)
				}
				compressed := h.Rsv&Rsv1 != 0
				if compressed != (len(msg) >= DefaultDeflateThreshold) {
					t.Fatalf("message %d: compressed %t", i, compressed)
				}
				if compressed {
					if p, err = inf.Decompress(nil, p, -1); err != nil {
						t.Fatal(err)
					}
					if len(msg) > 1000 && h.Length > int64(len(msg)/4) {
						t.Fatalf("message %d: %d bytes compressed to %d", i, len(msg), h.Length)
					}
				}
				if string(p) != msg {
					t.Fatalf("message %d: echo differs", i)
				}
			}
		})
	}
}

// TestMountBesideNetHTTP serves the upgrade route in the same router as an
// adapted net/http mux.
func TestMountBesideNetHTTP(t *testing.T) {
	rec := newRecorder(true)
	srv := startServer(t, Config{Inline: true}, rec, serverOpts{router: func(r *http1.Router, ws *Server) {
		r.Handle("GET /ws", ws.Handler())
		r.Handle("/{path...}", http1.Adapt(netHTTPMux()))
	}})
	c := rawHandshake(t, srv.addr, "GET /hello HTTP/1.1\r\nHost: x\r\n\r\n")
	if c.resp.StatusCode != 200 || string(c.body) != "hello from net/http" {
		t.Fatalf("net/http route: %d %q", c.resp.StatusCode, c.body)
	}
	ws := dialRaw(t, srv.addr)
	ws.send(OpText, true, []byte("ok"))
	if p := ws.expect(OpText); string(p) != "ok" {
		t.Fatalf("echo %q", p)
	}
}

// TestConnSize logs the memory an idle upgraded connection holds, for the
// per-connection RSS target.
func TestConnSize(t *testing.T) {
	ws := unsafe.Sizeof(Conn{})
	ec := unsafe.Sizeof(engine.Conn{})
	t.Logf("websocket.Conn %d B, engine.Conn %d B (plus a 16-byte context cell, a slot in the loop's table and the kernel socket)", ws, ec)
	// Both sit at the top of a malloc size class (96 and 240 bytes): one
	// more field costs a whole class step for every idle connection.
	if ws > 96 {
		t.Errorf("websocket.Conn grew to %d bytes; an idle connection should stay small", ws)
	}
	if ec > 240 {
		t.Errorf("engine.Conn grew to %d bytes; an idle connection should stay small", ec)
	}
	// An idle connection holds no Reader and no buffer.
	rec := newRecorder(true)
	srv := startServer(t, Config{Inline: true}, rec)
	c := dialRaw(t, srv.addr)
	conn := rec.next(t, "open").conn
	c.send(OpText, true, []byte("hi"))
	c.expect(OpText)
	big := make([]byte, 100<<10)
	c.send(OpBinary, true, big)
	c.expect(OpBinary)
	c.send(OpText, false, []byte("a"))
	c.send(OpContinuation, true, []byte("b"))
	c.expect(OpText)
	// The loop owns rd: Conns runs a function on every loop, which orders
	// the read below after the loop's handling of the last frame.
	srv.http.Engine().Conns()
	if conn.rd != nil || conn.cmp != nil {
		t.Fatal("an idle connection holds a Reader or compression state")
	}
}

func netHTTPMux() http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from net/http") })
	return mux
}

// TestDispatchBackpressure: a connection whose handler falls behind stops
// being read, and resumes once the handler catches up.
func TestDispatchBackpressure(t *testing.T) {
	gate := make(chan struct{})
	var mu sync.Mutex
	var got []int
	opened := make(chan *Conn, 1)
	h := HandlerFuncs{
		Open: func(c *Conn) { opened <- c },
		Message: func(c *Conn, op Opcode, data []byte) {
			<-gate
			var i int
			fmt.Sscanf(string(data), "%d", &i)
			mu.Lock()
			got = append(got, i)
			mu.Unlock()
		},
	}
	const backlog = 256 << 10
	srv := startServer(t, Config{MaxHandlerBacklog: backlog}, h)
	c := dialRaw(t, srv.addr)
	conn := <-opened
	const n = 3000
	go func() {
		pad := strings.Repeat(".", 1000)
		for i := range n {
			if _, err := c.nc.Write(AppendMaskedFrame(nil, OpText, true, NewMask(), []byte(fmt.Sprint(i, pad)))); err != nil {
				return
			}
		}
	}()
	paused := func() bool {
		conn.mu.Lock()
		defer conn.mu.Unlock()
		return conn.paused
	}
	testutil.Eventually(t, 0, "reading to pause", paused)
	if q := conn.queued.Load(); q > backlog+256<<10 {
		t.Fatalf("%d bytes queued for the handler while paused", q)
	}
	if p := srv.ws.Stats().ReadPauses; p == 0 {
		t.Fatal("the pause was not counted")
	}
	close(gate)
	testutil.Eventually(t, 0, "every message", func() bool {
		mu.Lock()
		defer mu.Unlock()
		return len(got) == n
	})
	for i, v := range got {
		if v != i {
			t.Fatalf("message %d is %d", i, v)
		}
	}
	if paused() || conn.queued.Load() != 0 {
		t.Fatalf("paused %t queued %d after catching up", paused(), conn.queued.Load())
	}
}
