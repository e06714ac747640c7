package engine

import (
	"testing"
	"time"
)

// TestPortableStrayWake: a wake-up of the portable reader that no signal
// claims — a deadline of now landing after the reader has taken the post
// it was for and armed its next read, as a Post's did when it woke the
// reader outside pc.mu (§85 in docs/benchmarks.md) — is no timeout: the
// connection stays open with its pending input, and the next read reaches
// the handler. Before, it closed with ReasonReadTimeout long before the
// read timeout.
func TestPortableStrayWake(t *testing.T) {
	b := &injB{keep: 1, closed: make(chan CloseReason, 4)}
	e, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour}, b)
	armed := make(chan *Conn, 16)
	hook := func(c *Conn) {
		if c.pending() { // the read timeout applies to this read
			select {
			case armed <- c:
			default:
			}
		}
	}
	e.portable.readHook.Store(&hook)
	nc := dial(t, addr)
	nc.Write([]byte("ab"))
	var c *Conn
	select {
	case c = <-armed:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never armed a read with input pending")
	}
	// The reader has armed its read (the read timeout, 30 s away) and
	// reads, or is about to: a stray wake-up cuts that read short.
	c.portable().nc.SetReadDeadline(time.Now())
	select {
	case c = <-armed: // it read nothing, and armed the next read again
	case r := <-b.closed:
		t.Fatalf("closed with %v after a stray wake-up", r)
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not re-arm after a stray wake-up")
	}
	nc.Write([]byte("c"))
	eventually(t, 5*time.Second, "B consumed ab", func() bool {
		select {
		case r := <-b.closed:
			t.Fatalf("closed with %v, B consumed %q", r, b.consumed())
		default:
		}
		return b.consumed() == "ab"
	})
	if held, _ := heldInput(t, c); held != "c" {
		t.Errorf("c holds %q, want %q", held, "c")
	}
}
