package engine

import (
	"bytes"
	"context"
	"io"
	"testing"
	"time"
)

// holder takes a hold for each "hold\n" line and hands its release to the
// test; while one is held it leaves further input (as HTTP does).
type holder struct {
	*echoHandler
	releases chan func()
	conns    chan *Conn
	held     chan int // how many lines were taken, sent at each hold
	n        int
}

func newHolder() *holder {
	return &holder{echoHandler: newEcho(), releases: make(chan func(), 16), conns: make(chan *Conn, 16), held: make(chan int, 16)}
}

func (h *holder) OnData(c *Conn, in []byte) int {
	if c.inflight.Load() > 0 {
		return 0
	}
	i := bytes.IndexByte(in, '\n')
	if i < 0 {
		return 0
	}
	h.n++
	h.conns <- c
	h.releases <- c.Hold()
	h.held <- h.n
	return i + 1
}

func TestHoldKeepsTimeoutsAndInputWaiting(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		cfg := Config{IdleTimeout: 100 * time.Millisecond, ReadTimeout: 100 * time.Millisecond, TickInterval: 10 * time.Millisecond, Loops: 1}
		k.cfg(&cfg)
		h := newHolder()
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.Write([]byte("hold\nsecond\npart"))
		release := <-h.releases
		<-h.held
		// Several idle and read timeouts long: a held connection stays.
		time.Sleep(400 * time.Millisecond)
		if e.NumConns() != 1 {
			t.Fatal("a held connection was closed by a timeout")
		}
		select {
		case n := <-h.held:
			t.Fatalf("line %d taken while the first is held", n)
		default:
		}
		release()
		release() // a second call does nothing
		// The input left while held is presented again: the second line.
		release2 := <-h.releases
		if n := <-h.held; n != 2 {
			t.Fatalf("held line %d, want 2", n)
		}
		release2()
		// "part" has no newline: the read timeout now applies and closes c.
		if r := h.awaitClose(t, 5*time.Second, "not closed after its holds ended"); r != ReasonReadTimeout {
			t.Fatalf("reason %v, want %v", r, ReasonReadTimeout)
		}
	})
}

func TestHoldHalfClosedStaysUntilReleased(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newHolder()
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.Write([]byte("hold\n"))
		release := <-h.releases
		conn := <-h.conns
		c.(interface{ CloseWrite() error }).CloseWrite()
		time.Sleep(100 * time.Millisecond)
		if e.NumConns() != 1 {
			t.Fatal("a held, half-closed connection was closed before its answer")
		}
		conn.Write([]byte("answer"))
		release()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, err := io.ReadAll(c)
		if err != nil || string(b) != "answer" {
			t.Fatalf("read %q, %v; want the answer, then EOF", b, err)
		}
		if r := h.awaitClose(t, 5*time.Second, "not closed"); r != ReasonPeerClosed {
			t.Fatalf("reason %v", r)
		}
	})
}

func TestShutdownWaitsForHold(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		h := newHolder()
		e, err := New(cfg, h)
		if err != nil {
			t.Fatal(err)
		}
		if err := e.Start("127.0.0.1:0"); err != nil {
			t.Fatal(err)
		}
		defer e.Close()
		addr := e.Addr().String()
		dial(t, addr) // an idle connection, closed at once by the drain
		c := dial(t, addr)
		c.Write([]byte("hold\n"))
		release := <-h.releases
		conn := <-h.conns
		eventually(t, 5*time.Second, "both connections accepted", func() bool { return e.NumConns() == 2 })
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done := make(chan error, 1)
		go func() { done <- e.Shutdown(ctx) }()
		eventually(t, 5*time.Second, "the idle connection closed", func() bool { return e.NumConns() == 1 })
		select {
		case err := <-done:
			t.Fatalf("Shutdown returned %v with a hold in progress", err)
		case <-time.After(100 * time.Millisecond):
		}
		conn.Write([]byte("late answer"))
		release()
		if err := <-done; err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		b, _ := io.ReadAll(c)
		if string(b) != "late answer" {
			t.Fatalf("read %q, want the held request's answer before the close", b)
		}
	})
}

// rvHandler consumes all its input, hands its connection to the test on
// the first bytes, runs onData if set, and records why it closed.
type rvHandler struct {
	seen   chan *Conn
	closed chan CloseReason
	onData func(c *Conn, in []byte)
}

func newRVHandler() *rvHandler {
	return &rvHandler{seen: make(chan *Conn, 1), closed: make(chan CloseReason, 4)}
}

func (h *rvHandler) Inline() bool { return true }

func (h *rvHandler) OnData(c *Conn, in []byte) int {
	select {
	case h.seen <- c:
	default:
	}
	if h.onData != nil {
		h.onData(c, in)
	}
	return len(in)
}

func (h *rvHandler) OnClose(c *Conn, r CloseReason, err error) { h.closed <- r }

// TestHoldOffReader: a hold taken from another goroutine while c waits
// for input, its idle deadline armed, keeps the idle timeout from running
// (Hold's doc). The portable reader closed c as idle_timeout when the
// deadline it had armed before the hold fired.
func TestHoldOffReader(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newRVHandler()
		cfg := Config{Loops: 1, IdleTimeout: 300 * time.Millisecond}
		k.cfg(&cfg)
		_, addr := startEngine(t, cfg, h)
		nc := dial(t, addr)
		nc.Write([]byte("x"))
		c := <-h.seen
		time.Sleep(20 * time.Millisecond) // the reader waits in its read
		release := c.Hold()
		defer release()
		select {
		case r := <-h.closed:
			t.Errorf("closed with %v while held", r)
		case <-time.After(time.Second):
		}
	})
}

// TestLongHoldThenIdle: a hold longer than the idle timeout that ends
// with a reply leaves c idle from the reply (Config.IdleTimeout: no bytes
// moved for this long), not closed at once. The portable reader counted
// input only, and closed c as soon as the hold ended.
func TestLongHoldThenIdle(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newRVHandler()
		h.onData = func(c *Conn, in []byte) {
			rel := c.Hold()
			time.AfterFunc(600*time.Millisecond, func() { c.Write([]byte("reply")); rel() })
		}
		cfg := Config{Loops: 1, IdleTimeout: 300 * time.Millisecond}
		k.cfg(&cfg)
		_, addr := startEngine(t, cfg, h)
		nc := dial(t, addr)
		nc.Write([]byte("x"))
		nc.SetReadDeadline(time.Now().Add(5 * time.Second))
		buf := make([]byte, 5)
		if _, err := io.ReadFull(nc, buf); err != nil {
			t.Fatalf("read the reply: %v", err)
		}
		select {
		case r := <-h.closed:
			t.Errorf("closed with %v just after the reply (idle timeout 300ms)", r)
		case <-time.After(150 * time.Millisecond):
		}
		select {
		case r := <-h.closed: // idle from the reply on
			if r != ReasonIdleTimeout {
				t.Errorf("closed with %v, want %v", r, ReasonIdleTimeout)
			}
		case <-time.After(5 * time.Second):
			t.Error("the idle timeout never closed c after the reply")
		}
	})
}
