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
