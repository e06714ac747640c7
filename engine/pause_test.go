package engine

import (
	"sync/atomic"
	"testing"
	"time"
)

// TestPauseOffReader: PauseRead from another goroutine while c waits for
// input stops its reads: bytes the peer sends afterwards do not reach
// OnData until ResumeRead. The portable reader, parked in its read, went
// on reading.
func TestPauseOffReader(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var n atomic.Int64
		h := newRVHandler()
		h.onData = func(c *Conn, in []byte) { n.Add(1) }
		cfg := Config{Loops: 1, IdleTimeout: time.Hour}
		k.cfg(&cfg)
		_, addr := startEngine(t, cfg, h)
		nc := dial(t, addr)
		nc.Write([]byte("x"))
		c := <-h.seen
		eventually(t, 2*time.Second, "the first OnData", func() bool { return n.Load() == 1 })
		time.Sleep(20 * time.Millisecond) // the reader waits in its read
		c.PauseRead()
		// A Post queued behind the pause runs once the pause has been
		// taken (the loops handle their mailbox in order), so a busy
		// machine cannot let "z" in before it.
		posted := make(chan struct{})
		if !c.Post(func() { close(posted) }) {
			t.Fatal("Post refused")
		}
		select {
		case <-posted:
		case <-time.After(5 * time.Second):
			t.Fatal("the Post after PauseRead did not run")
		}
		time.Sleep(50 * time.Millisecond)
		nc.Write([]byte("z"))
		time.Sleep(300 * time.Millisecond)
		if got := n.Load(); got != 1 {
			t.Errorf("OnData ran %d times; the second after PauseRead", got)
		}
		c.ResumeRead()
		eventually(t, 5*time.Second, "OnData after ResumeRead", func() bool { return n.Load() == 2 })
	})
}
