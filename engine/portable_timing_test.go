package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPortableInputIdleWritesDoNotRearm: on the portable engine an
// input-only idle timeout (SetInputIdleTimeout) expires on its deadline
// whatever c writes meanwhile. A read that timed out on the idle deadline
// after a write made since it was armed was taken for a timeout that the
// write had moved, for input-only timeouts too, which writes never move:
// the reader re-armed the same, passed, deadline, and did so again on
// every turn a write landed in, so a busy writer kept the connection open
// past its timeout (5–35 % late on 200 ms, as long as the writes went on).
// Here a write lands on every read the reader arms (readHook, on the
// reader), at most writeCap of them: the connection must close as idle
// after a few armed reads, not after writeCap.
func TestPortableInputIdleWritesDoNotRearm(t *testing.T) {
	const writeCap = 2000
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) { c.SetInputIdleTimeout(200 * time.Millisecond) }
	e, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour}, h)
	var armed atomic.Int64
	hook := func(c *Conn) {
		if _, inputOnly := c.idleTimeout(); !inputOnly || c.pending() {
			return
		}
		if armed.Add(1) <= writeCap {
			c.Write([]byte("z")) // fits the socket's buffers: the peer need not read
		}
	}
	e.portable.readHook.Store(&hook)
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	<-h.seen
	select {
	case r := <-h.closed:
		if r != ReasonIdleTimeout {
			t.Errorf("closed with %v, want %v", r, ReasonIdleTimeout)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the input-only idle timeout never closed c")
	}
	if n := armed.Load(); n > 20 {
		t.Errorf("%d reads armed under an input-only idle timeout of 200 ms, each after a write: writes re-armed its passed deadline", n)
	}
}
