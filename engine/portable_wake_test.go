package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPortableStrayWake: the portable reader tells a wake-up from its own
// deadline by the wake-up count arm recorded, not by the clock (§85 in
// docs/benchmarks.md). A Post from another goroutine that lands once the
// reader has armed its read (from readHook) cuts the read short: that is
// a wake-up, not a read timeout — the post runs, the connection stays
// open with its pending input, and the next read reaches the handler. A
// read that times out with no wake-up counted is a timeout, even though
// the wall clock says its deadline (the read timeout, 30 s away) has not
// passed: that is what a backwards step of the wall clock looks like to
// the reader, and the clock test that stood here before took it for a
// wake-up and read on, stretching the user's timeout by the step.
func TestPortableStrayWake(t *testing.T) {
	b := &injB{keep: 1, closed: make(chan CloseReason, 4)}
	e, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour, ReadTimeout: 30 * time.Second}, b)
	const (
		modeNone = iota
		modePost // a Post from another goroutine
		modeStep // the read's deadline fires early, as after a clock step
	)
	var mode atomic.Int32
	armed := make(chan *Conn, 16)
	ran := make(chan struct{}, 1)
	hook := func(c *Conn) {
		if !c.pending() { // the read timeout applies to this read
			return
		}
		switch mode.Swap(modeNone) {
		case modePost:
			done := make(chan bool)
			go func() { done <- c.Post(func() { ran <- struct{}{} }) }()
			if !<-done {
				t.Error("Post failed")
			}
		case modeStep:
			c.portable().nc.SetReadDeadline(time.Now())
		}
		select {
		case armed <- c:
		default:
		}
	}
	e.portable.readHook.Store(&hook)

	nc := dial(t, addr)
	mode.Store(modePost)
	nc.Write([]byte("ab"))
	var c *Conn
	select {
	case c = <-armed:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never armed a read with input pending")
	}
	select {
	case <-ran:
	case r := <-b.closed:
		t.Fatalf("closed with %v after a post woke the read", r)
	case <-time.After(5 * time.Second):
		t.Fatal("the post never ran")
	}
	select {
	case c = <-armed: // it read nothing, and armed the next read again
	case r := <-b.closed:
		t.Fatalf("closed with %v after a post woke the read", r)
	case <-time.After(5 * time.Second):
		t.Fatal("the reader did not re-arm after a post woke it")
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

	for len(armed) > 0 {
		<-armed
	}
	// Set from the reader, so the step lands on the read it arms next,
	// with no wake-up after it.
	c.Post(func() { mode.Store(modeStep) })
	select {
	case <-armed:
	case <-time.After(5 * time.Second):
		t.Fatal("the reader never armed its next read")
	}
	select {
	case r := <-b.closed:
		if r != ReasonReadTimeout {
			t.Errorf("closed with %v, want %v", r, ReasonReadTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("a read that timed out with no wake-up was not taken for a timeout")
	}
}

// TestPortablePostStormLetsReadsThrough: posts that keep coming, so that
// a signal waits at every turn of the portable reader (here a post that
// posts itself again), do not starve its reads: past portableSignalTurns
// turns in a row a short read is let through, and the peer's bytes reach
// OnData while the storm goes on.
func TestPortablePostStormLetsReadsThrough(t *testing.T) {
	var got atomic.Int64
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) { got.Add(int64(len(in))) }
	_, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour}, h)
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	c := <-h.seen
	var stop atomic.Bool
	defer stop.Store(true)
	var storm func()
	storm = func() {
		if !stop.Load() {
			c.Post(storm)
		}
	}
	c.Post(storm)
	nc.Write([]byte("y"))
	eventually(t, 5*time.Second, "the second byte reached OnData", func() bool { return got.Load() == 2 })
}

// TestPortableBusyThenWaitingInput: OnData runs past the idle timeout
// while the peer's next bytes already wait in the socket. The deadline
// the reader arms next has passed, and a read whose deadline has passed
// returns without reading: the reader took that for silence and closed
// with the bytes unread. It now reads what waits (one short read) before
// it closes, and the bytes reach OnData.
func TestPortableBusyThenWaitingInput(t *testing.T) {
	var got atomic.Int64
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) {
		if got.Add(1) == 1 {
			time.Sleep(400 * time.Millisecond)
		}
	}
	_, addr := startEngine(t, Config{Portable: true, IdleTimeout: 200 * time.Millisecond}, h)
	nc := dial(t, addr)
	nc.Write([]byte("slow"))
	eventually(t, 5*time.Second, "the first OnData", func() bool { return got.Load() == 1 })
	nc.Write([]byte("next"))
	select {
	case r := <-h.closed:
		if got.Load() < 2 {
			t.Fatalf("closed with %v with the second message unread", r)
		}
	case <-time.After(5 * time.Second):
		t.Fatal("the idle timeout never closed c")
	}
}
