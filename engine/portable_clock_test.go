package engine

import (
	"testing"
	"time"
)

// TestPortableMessagePendingFakeClock: on the portable engine, whose
// timeouts are read deadlines on the real clock, SetMessagePending starts
// the message on the real clock too, whatever Config.Clock is. It took
// Config.Clock's time, and a clock behind the real one put the read
// timeout's deadline in the past: the connection closed at once.
func TestPortableMessagePendingFakeClock(t *testing.T) {
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) { c.SetMessagePending(true) }
	_, addr := startEngine(t, Config{Portable: true, Clock: newFakeClock(), ReadTimeout: 30 * time.Second, IdleTimeout: time.Hour}, h)
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	<-h.seen
	select {
	case r := <-h.closed:
		t.Fatalf("closed with %v; the read timeout is 30s", r)
	case <-time.After(500 * time.Millisecond):
	}
}

// TestPortableInputIdleIgnoresWrites: on the portable engine, whose idle
// timeout counts writes as the loops' does, an input-only idle timeout
// (SetInputIdleTimeout) still counts input only: writes to a silent peer
// do not keep c open.
func TestPortableInputIdleIgnoresWrites(t *testing.T) {
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) { c.SetInputIdleTimeout(300 * time.Millisecond) }
	_, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour}, h)
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	c := <-h.seen
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		tick := time.NewTicker(20 * time.Millisecond)
		defer tick.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tick.C:
				c.Write([]byte("z"))
			}
		}
	}()
	select {
	case r := <-h.closed:
		if r != ReasonIdleTimeout {
			t.Errorf("closed with %v, want %v", r, ReasonIdleTimeout)
		}
	case <-time.After(5 * time.Second):
		t.Error("writes kept an input-only idle timeout from running")
	}
}
