package engine

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testaddr"
)

// echoHandler echoes input and records closes.
type echoHandler struct {
	mu      sync.Mutex
	reasons map[CloseReason]int
	closed  chan CloseReason
	// sleeping gets a value as a "sleep" message's handler starts.
	sleeping chan struct{}
}

func newEcho() *echoHandler {
	return &echoHandler{reasons: map[CloseReason]int{}, closed: make(chan CloseReason, 100000),
		sleeping: make(chan struct{}, 16)}
}

func (h *echoHandler) OnData(c *Conn, in []byte) int {
	switch {
	case bytes.HasPrefix(in, []byte("panic")):
		panic("test panic")
	case bytes.HasPrefix(in, []byte("sleep")):
		select {
		case h.sleeping <- struct{}{}:
		default:
		}
		time.Sleep(time.Second)
	}
	c.Write(in)
	return len(in)
}

func (h *echoHandler) OnClose(c *Conn, r CloseReason, err error) {
	h.mu.Lock()
	h.reasons[r]++
	h.mu.Unlock()
	h.closed <- r
}

// awaitClose returns the reason of the next close, failing the test with
// what when none comes within d.
func (h *echoHandler) awaitClose(t testing.TB, d time.Duration, what string) CloseReason {
	t.Helper()
	return awaitReason(t, h.closed, d, what)
}

// awaitReason returns the next close reason from closed, failing the
// test with what when none comes within d.
func awaitReason(t testing.TB, closed <-chan CloseReason, d time.Duration, what string) CloseReason {
	t.Helper()
	select {
	case r := <-closed:
		return r
	case <-time.After(d):
		t.Fatal(what)
		return 0
	}
}

func (h *echoHandler) count(r CloseReason) int {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.reasons[r]
}

// fakeClock is a Clock tests move by hand.
type fakeClock struct {
	mu  sync.Mutex
	now time.Time
}

func newFakeClock() *fakeClock { return &fakeClock{now: time.Unix(1_700_000_000, 0)} }

func (f *fakeClock) Now() time.Time {
	f.mu.Lock()
	defer f.mu.Unlock()
	return f.now
}

func (f *fakeClock) Advance(d time.Duration) {
	f.mu.Lock()
	f.now = f.now.Add(d)
	f.mu.Unlock()
}

type engineKind struct {
	name string
	cfg  func(*Config)
}

// kinds lists the engines and handler modes every behavioural test runs on.
var kinds = []engineKind{
	{"loops-inline", func(c *Config) { c.Inline = true }},
	{"loops-worker", func(c *Config) {}},
	{"portable", func(c *Config) { c.Portable = true }},
	{"loops-blocking", func(c *Config) { c.Inline, c.BlockingPoll = true, true }},                      // Config.BlockingPoll
	{"loops-locked", func(c *Config) { c.Inline, c.BlockingPoll, c.LockOSThread = true, true, true }},  // Config.LockOSThread
	{"loops-uring", func(c *Config) { c.Inline, c.IOUring = true, true }},                              // Config.IOUring: startEngine skips it where the kernel refuses (skipWithoutRing)
	{"loops-uring-worker", func(c *Config) { c.IOUring = true }},                                       // handlers on the worker pool, writing from its goroutines
	{"loops-uring-locked", func(c *Config) { c.Inline, c.IOUring, c.LockOSThread = true, true, true }}, // the proxy's configuration: a single-issuer DEFER_TASKRUN ring
}

func forEachKind(t *testing.T, fn func(t *testing.T, k engineKind)) {
	for _, k := range kinds {
		t.Run(k.name, func(t *testing.T) { fn(t, k) })
	}
}

// startEngine starts an engine on a free loopback port and stops it when the
// test ends.
func startEngine(t testing.TB, cfg Config, h Handler) (*Engine, string) {
	t.Helper()
	if cfg.Loops == 0 {
		cfg.Loops = 2
	}
	if cfg.IOUring && !cfg.Portable {
		skipWithoutRing(t)
	}
	e, err := New(cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	if cfg.IOUring && !cfg.Portable {
		// The loops set their rings up on their own goroutines.
		eventually(t, 5*time.Second, "loops on io_uring", func() bool { return e.Stats().IOUringLoops == cfg.Loops })
	}
	return e, e.Addr().String()
}

// eventually polls cond until it holds or the deadline passes.
func eventually(t testing.TB, d time.Duration, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(d)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func roundTrip(t testing.TB, c net.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil {
		t.Fatalf("read echo: %v", err)
	}
	if string(buf) != msg {
		t.Fatalf("echo %q, want %q", buf, msg)
	}
}

func TestEcho(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		e, addr := startEngine(t, cfg, newEcho())
		var wg sync.WaitGroup
		for i := 0; i < 20; i++ {
			wg.Add(1)
			go func(i int) {
				defer wg.Done()
				c, err := net.Dial("tcp", addr)
				if err != nil {
					t.Error(err)
					return
				}
				defer c.Close()
				for j := 0; j < 50; j++ {
					msg := fmt.Sprintf("hello %d %d", i, j)
					c.SetDeadline(time.Now().Add(5 * time.Second))
					c.Write([]byte(msg))
					buf := make([]byte, len(msg))
					if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
						t.Errorf("echo %q %v", buf, err)
						return
					}
				}
			}(i)
		}
		wg.Wait()
		eventually(t, 10*time.Second, "all closed", func() bool { return e.NumConns() == 0 })
		st := e.Stats()
		if st.Accepted != 20 || st.Closed[ReasonPeerClosed] != 20 {
			t.Fatalf("accepted %d, peer-closed %d", st.Accepted, st.Closed[ReasonPeerClosed])
		}
		if st.BytesIn != st.BytesOut || st.BytesIn == 0 {
			t.Fatalf("bytes in %d out %d", st.BytesIn, st.BytesOut)
		}
	})
}

// TestLargeEcho moves more than the socket buffers hold, so writes queue and
// flush on writability.
func TestLargeEcho(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		_, addr := startEngine(t, cfg, newEcho())
		c := dial(t, addr)
		payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16) // 1 MiB
		go c.Write(payload)
		got := make([]byte, len(payload))
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		if !bytes.Equal(got, payload) {
			t.Fatal("large echo corrupted")
		}
	})
}

func fdCount(t testing.TB) int {
	ents, err := os.ReadDir("/proc/self/fd")
	if err != nil {
		t.Skip("no /proc/self/fd")
	}
	return len(ents)
}

// TestManyConnsNoLeak opens and closes 5,000 connections and checks that no
// descriptor or goroutine is left behind.
func TestManyConnsNoLeak(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			fds0, g0 := fdCount(t), runtime.NumGoroutine()
			var cfg Config
			k.cfg(&cfg)
			e, err := New(Config{Loops: 2, Inline: cfg.Inline}, newEcho())
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			addr := e.Addr().String()
			const total = 5000
			conns := make([]net.Conn, 0, total)
			for i := 0; i < total; i++ {
				// Spread over source addresses to spare ephemeral ports.
				d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, byte(1+i/1000), 1)}, Timeout: 5 * time.Second}
				c, err := d.Dial("tcp", addr)
				if err != nil {
					t.Fatalf("dial %d: %v", i, err)
				}
				conns = append(conns, c)
			}
			eventually(t, 10*time.Second, "5000 open", func() bool { return e.NumConns() == total })
			for i, c := range conns {
				if i%2 == 0 {
					c.(*net.TCPConn).SetLinger(0) // half of them reset
				}
				c.Close()
			}
			eventually(t, 10*time.Second, "all closed", func() bool { return e.NumConns() == 0 })
			st := e.Stats()
			if st.Closed[ReasonPeerClosed]+st.Closed[ReasonPeerReset] != total {
				t.Fatalf("closed: peer %d reset %d", st.Closed[ReasonPeerClosed], st.Closed[ReasonPeerReset])
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "descriptors released", func() bool { return fdCount(t) <= fds0 })
			eventually(t, 10*time.Second, "goroutines released", func() bool { return runtime.NumGoroutine() <= g0+1 })
		})
	}
}

// floodHandler answers "flood" with a stream of writes.
type floodHandler struct {
	echoHandler
}

func (h *floodHandler) OnData(c *Conn, in []byte) int {
	if bytes.HasPrefix(in, []byte("flood")) {
		chunk := bytes.Repeat([]byte("x"), 64<<10)
		go func() {
			for i := 0; i < 4096; i++ { // up to 256 MiB
				if _, err := c.Write(chunk); err != nil {
					return
				}
			}
		}()
		return len(in)
	}
	return h.echoHandler.OnData(c, in)
}

func TestSlowConsumer(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{WriteHighWater: 1 << 20}
			k.cfg(&cfg)
			h := &floodHandler{echoHandler: *newEcho()}
			e, addr := startEngine(t, cfg, h)
			slow := dial(t, addr)
			slow.(*net.TCPConn).SetReadBuffer(4096)
			slow.Write([]byte("flood"))
			other := dial(t, addr)
			// The non-reading peer is cut as a slow consumer...
			if r := h.awaitClose(t, 10*time.Second, "slow consumer not closed"); r != ReasonSlowConsumer {
				t.Fatalf("closed with %v, want slow_consumer", r)
			}
			// ...while the other connection keeps being served.
			for i := 0; i < 100; i++ {
				roundTrip(t, other, fmt.Sprintf("ping %d", i))
			}
			if e.Stats().WatermarkHits == 0 {
				t.Fatal("no watermark hit counted")
			}
			// Eventually: on the ring (WARREN_IO_URING=on) the last
			// echo's bytes leave QueuedBytes at its send's completion,
			// reaped in the loop's next wait.
			eventually(t, 5*time.Second, "no queued bytes after close", func() bool { return e.Stats().QueuedBytes == 0 })
		})
	}
}

func TestSlowPausePolicy(t *testing.T) {
	cfg := Config{WriteHighWater: 256 << 10, SlowPolicy: SlowPause, Inline: true}
	var wrote atomic.Int64
	h := HandlerFunc(func(c *Conn, in []byte) int {
		// Every input byte asks for 64 KiB of output.
		out := bytes.Repeat([]byte("y"), 64<<10)
		for range in {
			if _, err := c.Write(out); err == nil {
				wrote.Add(int64(len(out)))
			}
		}
		return len(in)
	})
	_, addr := startEngine(t, cfg, h)
	c := dial(t, addr)
	c.Write(bytes.Repeat([]byte("a"), 64))
	// Reading everything must deliver all 4 MiB: the engine paused reading
	// instead of closing.
	want := int64(64 * 64 << 10)
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	n, err := io.CopyN(io.Discard, c, want)
	if err != nil || n != want {
		t.Fatalf("read %d of %d: %v", n, want, err)
	}
}

func TestIdleTimeoutFakeClock(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			clk := newFakeClock()
			cfg := Config{IdleTimeout: 10 * time.Second, TickInterval: 10 * time.Millisecond, Clock: clk}
			k.cfg(&cfg)
			h := newEcho()
			e, addr := startEngine(t, cfg, h)
			c := dial(t, addr)
			roundTrip(t, c, "hi")
			clk.Advance(9 * time.Second)
			time.Sleep(50 * time.Millisecond) // several real ticks: nothing may fire
			if e.NumConns() != 1 {
				t.Fatal("closed before the idle timeout")
			}
			roundTrip(t, c, "activity") // activity pushes the deadline
			clk.Advance(9 * time.Second)
			time.Sleep(50 * time.Millisecond)
			if e.NumConns() != 1 {
				t.Fatal("activity did not extend the idle deadline")
			}
			// Past the deadline by one tick: closed within a tick.
			clk.Advance(time.Second + 20*time.Millisecond)
			if r := h.awaitClose(t, 5*time.Second, "idle connection not closed"); r != ReasonIdleTimeout {
				t.Fatalf("reason %v", r)
			}
		})
	}
}

func TestIdleTimeoutRealClock(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		cfg := Config{IdleTimeout: 200 * time.Millisecond, TickInterval: 20 * time.Millisecond}
		k.cfg(&cfg)
		h := newEcho()
		_, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		start := time.Now()
		roundTrip(t, c, "x")
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		_, err := c.Read(make([]byte, 1))
		if err != io.EOF {
			t.Fatalf("read after idle: %v", err)
		}
		if el := time.Since(start); el < 200*time.Millisecond {
			t.Fatalf("closed after %v, before the timeout", el)
		}
		if r := <-h.closed; r != ReasonIdleTimeout {
			t.Fatalf("reason %v", r)
		}
	})
}

// lineHandler consumes only whole lines, so a partial line is a message in
// progress subject to the read timeout.
type lineHandler struct{ echoHandler }

func (h *lineHandler) OnData(c *Conn, in []byte) int {
	i := bytes.LastIndexByte(in, '\n')
	if i < 0 {
		return 0
	}
	c.Write(in[:i+1])
	return i + 1
}

func TestReadTimeout(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		cfg := Config{ReadTimeout: 150 * time.Millisecond, IdleTimeout: time.Hour, TickInterval: 10 * time.Millisecond}
		k.cfg(&cfg)
		h := &lineHandler{*newEcho()}
		_, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		roundTrip(t, c, "whole line\n")
		c.Write([]byte("partial"))
		if r := h.awaitClose(t, 5*time.Second, "partial message not timed out"); r != ReasonReadTimeout {
			t.Fatalf("reason %v", r)
		}
	})
}

func TestMaxInputBytes(t *testing.T) {
	cfg := Config{MaxInputBytes: 1024, Inline: true}
	h := &lineHandler{*newEcho()}
	_, addr := startEngine(t, cfg, h)
	c := dial(t, addr)
	c.Write(bytes.Repeat([]byte("z"), 4096))
	if r := <-h.closed; r != ReasonLimitReached {
		t.Fatalf("reason %v", r)
	}
}

// gateHandler blocks every "block" message until gate is closed.
type gateHandler struct {
	echoHandler
	gate chan struct{}
}

func (h *gateHandler) OnData(c *Conn, in []byte) int {
	if bytes.HasPrefix(in, []byte("block")) {
		<-h.gate
	}
	c.Write(in)
	return len(in)
}

func TestBlockingHandlerIsolation(t *testing.T) {
	for _, k := range []engineKind{kinds[1], kinds[2]} {
		t.Run(k.name, func(t *testing.T) {
			var cfg Config
			k.cfg(&cfg)
			h := &gateHandler{echoHandler: *newEcho(), gate: make(chan struct{})}
			_, addr := startEngine(t, cfg, h)
			blocked := make([]net.Conn, 8)
			for i := range blocked {
				blocked[i] = dial(t, addr)
				blocked[i].Write([]byte("block"))
			}
			// While eight handlers are blocked, another connection is
			// served: if blocking stalled the loop this would time out.
			fast := dial(t, addr)
			for i := 0; i < 20; i++ {
				roundTrip(t, fast, "quick")
			}
			close(h.gate)
			for _, s := range blocked {
				buf := make([]byte, 5)
				s.SetReadDeadline(time.Now().Add(5 * time.Second))
				if _, err := io.ReadFull(s, buf); err != nil {
					t.Fatal(err)
				}
			}
		})
	}
}

func TestPanicIsolation(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newEcho()
		var logs bytes.Buffer
		var lmu sync.Mutex
		cfg.Logger = newTestLogger(&logs, &lmu)
		_, addr := startEngine(t, cfg, h)
		good := dial(t, addr)
		bad := dial(t, addr)
		roundTrip(t, good, "before")
		bad.Write([]byte("panic!"))
		if r := <-h.closed; r != ReasonPanic {
			t.Fatalf("reason %v", r)
		}
		roundTrip(t, good, "after")
		lmu.Lock()
		defer lmu.Unlock()
		if !strings.Contains(logs.String(), "handler panic") || !strings.Contains(logs.String(), "goroutine") {
			t.Fatalf("panic not logged with stack: %s", logs.String())
		}
	})
}

func TestAdmission(t *testing.T) {
	t.Run("max-conns", func(t *testing.T) {
		h := newEcho()
		e, addr := startEngine(t, Config{MaxConns: 3, Inline: true}, h)
		var cs []net.Conn
		for i := 0; i < 3; i++ {
			c := dial(t, addr)
			roundTrip(t, c, "ok")
			cs = append(cs, c)
		}
		extra := dial(t, addr)
		extra.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := extra.Read(make([]byte, 1)); err == nil {
			t.Fatal("connection over MaxConns was served")
		}
		st := e.Stats()
		if st.Rejected[BoundMaxConns] != 1 || st.Closed[ReasonLimitReached] != 1 {
			t.Fatalf("rejected %v closed %v", st.Rejected, st.Closed)
		}
		cs[0].Close()
		eventually(t, 10*time.Second, "slot freed", func() bool { return e.NumConns() == 2 })
		roundTrip(t, dial(t, addr), "again")
	})
	t.Run("per-ip", func(t *testing.T) {
		e, addr := startEngine(t, Config{MaxConnsPerIP: 2, Inline: true}, newEcho())
		roundTrip(t, dial(t, addr), "a")
		roundTrip(t, dial(t, addr), "b")
		third := dial(t, addr)
		third.SetReadDeadline(time.Now().Add(5 * time.Second))
		if _, err := third.Read(make([]byte, 1)); err == nil {
			t.Fatal("third connection from one IP served")
		}
		// Another source address is a different IP.
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 0, 2)}}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		roundTrip(t, c, "other ip")
		if e.Stats().Rejected[BoundPerIP] != 1 {
			t.Fatal("per-IP rejection not counted")
		}
	})
	t.Run("per-ip-outbound", func(t *testing.T) {
		// An outbound connection is not admitted per IP, so closing one to
		// an IP that also has inbound connections leaves their count alone.
		e, addr := startEngine(t, Config{MaxConnsPerIP: 1, Inline: true}, newEcho())
		roundTrip(t, dial(t, addr), "the one from 127.0.0.1")
		ln, err := net.Listen("tcp", "127.0.0.1:0")
		if err != nil {
			t.Fatal(err)
		}
		defer ln.Close()
		go func() {
			if c, err := ln.Accept(); err == nil {
				io.Copy(io.Discard, c)
				c.Close()
			}
		}()
		out, err := e.Dial(netip.MustParseAddrPort(ln.Addr().String()), netip.Addr{})
		if err != nil {
			t.Fatal(err)
		}
		eventually(t, 10*time.Second, "outbound open", func() bool { return out.State() != StateNew })
		out.Close()
		eventually(t, 10*time.Second, "outbound closed", func() bool { return e.NumConns() == 1 })
		second := dial(t, addr)
		second.SetDeadline(time.Now().Add(5 * time.Second))
		second.Write([]byte("x"))
		if _, err := second.Read(make([]byte, 1)); err == nil {
			t.Fatal("a second connection from one IP served after an outbound one to it closed")
		}
		if e.Stats().Rejected[BoundPerIP] != 1 {
			t.Fatal("per-IP rejection not counted")
		}
	})
	t.Run("accept-rate", func(t *testing.T) {
		clk := newFakeClock()
		e, addr := startEngine(t, Config{AcceptRate: 1, AcceptBurst: 2, Clock: clk, Inline: true}, newEcho())
		for i := 0; i < 4; i++ {
			c := dial(t, addr)
			c.Write([]byte("x"))
		}
		eventually(t, 10*time.Second, "rate rejections", func() bool { return e.Stats().Rejected[BoundAcceptRate] == 2 })
		clk.Advance(time.Second)
		roundTrip(t, dial(t, addr), "refilled")
	})
}

func TestCrossGoroutineWrites(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		var conn atomic.Pointer[Conn]
		opened := make(chan struct{})
		h := &openHandler{onOpen: func(c *Conn) { conn.Store(c); close(opened) }}
		_, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		<-opened
		const writers, each = 8, 200
		var wg sync.WaitGroup
		for w := 0; w < writers; w++ {
			wg.Add(1)
			go func(w int) {
				defer wg.Done()
				for i := 0; i < each; i++ {
					conn.Load().Write([]byte(fmt.Sprintf("%d:%04d\n", w, i)))
				}
			}(w)
		}
		wg.Wait()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got := make([]byte, writers*each*7)
		if _, err := io.ReadFull(c, got); err != nil {
			t.Fatal(err)
		}
		// Each writer's lines arrive whole and in order.
		next := make([]int, writers)
		for _, line := range strings.Split(strings.TrimSpace(string(got)), "\n") {
			var w, i int
			if _, err := fmt.Sscanf(line, "%d:%d", &w, &i); err != nil || i != next[w] {
				t.Fatalf("line %q out of order (want %d)", line, next[w])
			}
			next[w]++
		}
	})
}

type openHandler struct {
	NopHandler
	onOpen func(*Conn)
}

func (h *openHandler) OnOpen(c *Conn) { h.onOpen(c) }

func TestHalfClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newEcho()
		_, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.Write([]byte("last words"))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || string(got) != "last words" {
			t.Fatalf("after half-close got %q, %v", got, err)
		}
		if r := <-h.closed; r != ReasonPeerClosed {
			t.Fatalf("reason %v", r)
		}
	})
}

func TestPeerResetMidWrite(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			// The flood writer outruns any socket: a high-water mark above
			// the whole flood keeps the slow-consumer bound from closing
			// the connection before the reset does.
			cfg := Config{WriteHighWater: 512 << 20}
			k.cfg(&cfg)
			h := &floodHandler{echoHandler: *newEcho()}
			e, addr := startEngine(t, cfg, h)
			c := dial(t, addr)
			c.Write([]byte("flood"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			io.ReadFull(c, make([]byte, 100<<10))
			c.(*net.TCPConn).SetLinger(0)
			c.Close()
			if r := h.awaitClose(t, 5*time.Second, "reset connection not closed"); r != ReasonPeerReset && r != ReasonIOError && r != ReasonPeerClosed {
				t.Fatalf("reason %v", r)
			}
			eventually(t, 10*time.Second, "queue released", func() bool { return e.Stats().QueuedBytes == 0 })
		})
	}
}

func TestShutdownClosesIdleAndWaitsForWork(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newEcho()
		e, err := New(cfg, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		addr := e.Addr().String()
		idle := dial(t, addr)
		roundTrip(t, idle, "idle")
		busy := dial(t, addr)
		// Both admitted before Shutdown: a dial returns before the loop
		// accepts, and a connection still in the backlog is never closed
		// with ReasonShutdown (the count below was 1 now and then).
		eventually(t, 5*time.Second, "both connections accepted", func() bool { return e.NumConns() == 2 })
		if !cfg.Inline {
			busy.Write([]byte("sleep")) // a handler in flight for a second
			select {
			case <-h.sleeping:
			case <-time.After(10 * time.Second):
				t.Fatal("the handler did not start within 10 s")
			}
		}
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if !cfg.Inline {
			// The in-flight handler finished and its answer was delivered.
			buf := make([]byte, 5)
			busy.SetReadDeadline(time.Now().Add(time.Second))
			if _, err := io.ReadFull(busy, buf); err != nil || string(buf) != "sleep" {
				t.Fatalf("in-flight answer lost: %q %v", buf, err)
			}
		}
		if err := e.Wait(); !errors.Is(err, ErrServerClosed) {
			t.Fatalf("Wait: %v", err)
		}
		if h.count(ReasonShutdown) != 2 {
			t.Fatalf("closed with shutdown: %d (%v)", h.count(ReasonShutdown), h.reasons)
		}
		if _, err := net.DialTimeout("tcp", addr, time.Second); err == nil {
			t.Fatal("still accepting after shutdown")
		}
	})
}

func TestShutdownDeadlineForcesClose(t *testing.T) {
	for _, k := range []engineKind{kinds[1], kinds[2]} {
		t.Run(k.name, func(t *testing.T) {
			var cfg Config
			k.cfg(&cfg)
			h := &lineHandler{*newEcho()}
			e, addr := startEngine(t, cfg, h)
			c := dial(t, addr)
			c.Write([]byte("never finished")) // a message in progress keeps it busy
			time.Sleep(50 * time.Millisecond)
			ctx, cancel := context.WithTimeout(context.Background(), 200*time.Millisecond)
			defer cancel()
			if err := e.Shutdown(ctx); !errors.Is(err, context.DeadlineExceeded) {
				t.Fatalf("Shutdown: %v", err)
			}
			if r := <-h.closed; r != ReasonShutdown {
				t.Fatalf("reason %v", r)
			}
		})
	}
}

// drainHandler says goodbye on drain, as a protocol would.
type drainHandler struct{ echoHandler }

func (h *drainHandler) OnDrain(c *Conn) bool {
	c.Write([]byte("bye"))
	c.CloseWithReason(ReasonShutdown)
	return true
}

func TestDrainHook(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := &drainHandler{*newEcho()}
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		roundTrip(t, c, "hello")
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, _ := io.ReadAll(c)
		if string(got) != "bye" {
			t.Fatalf("goodbye %q", got)
		}
	})
}

type stateRecorder struct {
	echoHandler
	mu     sync.Mutex
	states []State
}

func (h *stateRecorder) OnStateChange(c *Conn, from, to State) {
	h.mu.Lock()
	h.states = append(h.states, to)
	h.mu.Unlock()
}

func TestStateChanges(t *testing.T) {
	h := &stateRecorder{echoHandler: *newEcho()}
	e, addr := startEngine(t, Config{Inline: true}, h)
	c := dial(t, addr)
	roundTrip(t, c, "x")
	eventually(t, 10*time.Second, "idle gauge", func() bool { return e.Stats().ByState[StateIdle] == 1 })
	c.Close()
	<-h.closed
	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.states) == 0 || h.states[0] != StateIdle || h.states[len(h.states)-1] != StateClosed {
		t.Fatalf("states %v", h.states)
	}
}

func TestConnsSnapshotAndAdminClose(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newEcho()
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		roundTrip(t, c, "abc")
		conns := e.Conns()
		if len(conns) != 1 || conns[0].BytesIn != 3 || conns[0].Remote.String() != c.LocalAddr().String() {
			t.Fatalf("snapshot %+v", conns)
		}
		if !e.CloseConn(conns[0].ID, ReasonAdmin) {
			t.Fatal("CloseConn did not find the connection")
		}
		if r := <-h.closed; r != ReasonAdmin {
			t.Fatalf("reason %v", r)
		}
		if e.CloseConn(conns[0].ID, ReasonAdmin) {
			t.Fatal("closed twice")
		}
	})
}

func TestReusePortAndLeastConns(t *testing.T) {
	for _, cfg := range []Config{{ReusePort: true, Inline: true}, {Balance: LeastConnections, Inline: true}} {
		e, addr := startEngine(t, cfg, newEcho())
		for i := 0; i < 40; i++ {
			roundTrip(t, dial(t, addr), "x")
		}
		st := e.Stats()
		if len(st.Loops) != 2 || st.Loops[0].Conns+st.Loops[1].Conns != 40 {
			t.Fatalf("loops %+v", st.Loops)
		}
		if cfg.Balance == LeastConnections && (st.Loops[0].Conns != 20 || st.Loops[1].Conns != 20) {
			t.Fatalf("least-connections unbalanced: %+v", st.Loops)
		}
	}
}

func TestStrings(t *testing.T) {
	for _, s := range States() {
		if s.String() == "unknown" {
			t.Fatal(s)
		}
	}
	for _, r := range CloseReasons() {
		if r.String() == "unknown" {
			t.Fatal(r)
		}
	}
	for _, b := range Bounds() {
		if b.String() == "unknown" {
			t.Fatal(b)
		}
	}
	if State(99).String() != "unknown" || CloseReason(99).String() != "unknown" {
		t.Fatal("out-of-range names")
	}
}

// clientHandler records what an outbound connection receives.
type clientHandler struct {
	opened chan *Conn
	got    chan string
	closed chan error
}

func (h *clientHandler) OnOpen(c *Conn) {
	if c.Context() != "attached" {
		panic("context not attached before OnOpen")
	}
	h.opened <- c
}
func (h *clientHandler) OnData(c *Conn, in []byte) int {
	h.got <- string(in)
	return len(in)
}
func (h *clientHandler) OnClose(c *Conn, r CloseReason, err error) { h.closed <- err }

func TestDial(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		_, addr := startEngine(t, Config{Inline: true}, newEcho())
		h := &clientHandler{opened: make(chan *Conn, 1), got: make(chan string, 10), closed: make(chan error, 1)}
		cfg.Loops = 1
		client, err := New(cfg, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := client.Start(""); err != nil {
			t.Fatal(err)
		}
		defer client.Close()
		c, err := client.DialWith(netip.MustParseAddrPort(addr), netip.MustParseAddr("127.0.0.3"), "attached")
		if err != nil {
			t.Fatal(err)
		}
		<-h.opened
		if got := c.LocalAddr().Addr().String(); got != "127.0.0.3" {
			t.Fatalf("local address %s", got)
		}
		c.Write([]byte("via dial"))
		if got := <-h.got; got != "via dial" {
			t.Fatalf("got %q", got)
		}
		// A refused connect ends in OnClose with the error.
		dead := netip.MustParseAddrPort(testaddr.Refused(t))
		if _, err := client.DialWith(dead, netip.Addr{}, "attached"); err != nil {
			if k.name != "portable" {
				t.Fatalf("dial error %v, want it through OnClose", err)
			}
			return
		}
		select {
		case err := <-h.closed:
			if err == nil || !strings.Contains(err.Error(), "refused") {
				t.Fatalf("close error %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("failed dial not reported")
		}
	})
}

// A connection's context may change type, and nil clears it.
func TestSetContextAnyTypes(t *testing.T) {
	got := make(chan string, 1)
	h := HandlerFunc(func(c *Conn, in []byte) int {
		var seen []string
		for _, v := range []any{1, "two", &struct{ n int }{3}, nil, 4.5} {
			c.SetContext(v)
			seen = append(seen, fmt.Sprintf("%T", c.Context()))
		}
		got <- strings.Join(seen, ",")
		return len(in)
	})
	e, err := New(Config{Inline: true, Loops: 1}, h)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	c, err := net.Dial("tcp", e.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("x"))
	select {
	case s := <-got:
		if s != "int,string,*struct { n int },<nil>,float64" {
			t.Fatalf("contexts %s", s)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("no data")
	}
}

// closeOnIdle closes a connection from its state hook, between the reader's
// checks (the portable engine's reader runs the hook before it sets its read
// deadline).
type closeOnIdle struct{ echoHandler }

func (h *closeOnIdle) OnStateChange(c *Conn, from, to State) {
	if to == StateIdle {
		c.Close()
	}
}

// A close requested while the reader prepares to read is not lost.
func TestCloseFromStateHook(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		_, addr := startEngine(t, cfg, &closeOnIdle{echoHandler: *newEcho()})
		c := dial(t, addr)
		c.SetReadDeadline(time.Now().Add(3 * time.Second))
		if b, err := io.ReadAll(c); err != nil || len(b) != 0 {
			t.Fatalf("got %q, %v: want EOF", b, err)
		}
	})
}

// pauser stops reading after the first input, as a protocol applying
// backpressure would.
type pauser struct{ NopHandler }

func (pauser) OnData(c *Conn, in []byte) int {
	c.PauseRead()
	return len(in)
}

// Shutdown drains a connection whose reading is paused.
func TestShutdownDrainsPausedConn(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		e, addr := startEngine(t, cfg, pauser{})
		c := dial(t, addr)
		c.Write([]byte("x"))
		eventually(t, 10*time.Second, "paused", func() bool { return e.NumConns() == 1 })
		time.Sleep(50 * time.Millisecond)
		ctx, cancel := context.WithTimeout(context.Background(), 3*time.Second)
		defer cancel()
		start := time.Now()
		if err := e.Shutdown(ctx); err != nil {
			t.Fatalf("shutdown: %v after %v", err, time.Since(start))
		}
	})
}
