package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestBusyPastDeadlineThenPeerClosed: the peer half-closes while OnData
// runs past the idle timeout, with nothing after its FIN. The connection
// must end as the peer's close, at once, on every kind. On the portable
// engine the short read made before an expiry found the end of stream and
// dropped it: the reader armed the same passed deadline again and again
// (a busy loop of 10^4–10^5 reads a second) until one turn happened to
// close it as idle_timeout, without OnEOF.
func TestBusyPastDeadlineThenPeerClosed(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var got atomic.Int64
		h := newRVHandler()
		h.onData = func(c *Conn, in []byte) {
			if got.Add(1) == 1 {
				time.Sleep(400 * time.Millisecond)
			}
		}
		cfg := Config{Loops: 1, IdleTimeout: 200 * time.Millisecond}
		k.cfg(&cfg)
		e, addr := startEngine(t, cfg, h)
		var arms atomic.Int64
		if e.portable != nil {
			hook := func(*Conn) { arms.Add(1) }
			e.portable.readHook.Store(&hook)
		}
		nc := dial(t, addr)
		nc.Write([]byte("slow"))
		eventually(t, 5*time.Second, "the first OnData", func() bool { return got.Load() == 1 })
		if err := nc.(interface{ CloseWrite() error }).CloseWrite(); err != nil {
			t.Fatal(err)
		}
		select {
		case r := <-h.closed:
			if r != ReasonPeerClosed {
				t.Errorf("closed with %v, want %v", r, ReasonPeerClosed)
			}
		case <-time.After(3 * time.Second):
			t.Fatalf("never closed after the peer's FIN (the portable reader armed %d reads)", arms.Load())
		}
		if n := arms.Load(); n > 100 {
			t.Errorf("the portable reader armed %d reads around one FIN: a busy loop", n)
		}
	})
}
