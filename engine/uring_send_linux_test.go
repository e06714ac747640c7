//go:build linux

package engine

import (
	"bytes"
	"io"
	"testing"
	"time"
)

// deferredBytes returns the bytes all loops hold deferred (io_uring mode).
func (e *Engine) deferredBytes() int64 {
	var n int64
	loops, _ := e.parts()
	for _, l := range loops {
		n += l.stats.deferred.Load()
	}
	return n
}

// TestRingDeferredNotEngineQueued: a write deferred to the round's end is
// counted by its loop (loopStats.deferred), not in Engine.queued, which
// both loops would otherwise contend on for every write and completion;
// Stats.QueuedBytes still shows it, and once the send completes nothing
// is left counted anywhere.
func TestRingDeferredNotEngineQueued(t *testing.T) {
	for _, name := range []string{"loops-uring", "loops-uring-locked"} {
		t.Run(name, func(t *testing.T) {
			cfg := Config{Loops: 1}
			kindNamed(name).cfg(&cfg)
			h := &orderedFan{echoHandler: *newEcho()}
			e, addr := startEngine(t, cfg, h)
			peer := dial(t, addr)
			eventually(t, 5*time.Second, "peer open", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return len(h.conns) == 1 })
			h.mu.Lock()
			c := h.conns[0]
			h.mu.Unlock()
			msg := bytes.Repeat([]byte("d"), 1500)
			var queued, deferred, stats int64
			var werr error
			var noRing bool
			onLoopState(t, e, 0, func(l *loop) {
				if noRing = l.ring == nil; noRing {
					return
				}
				// In a round: the write is deferred to its end.
				_, werr = c.Write(msg)
				queued, deferred = e.queued.Load(), l.stats.deferred.Load()
				stats = e.Stats().QueuedBytes
			})
			if noRing {
				t.Skip("the loop is not on a ring")
			}
			if werr != nil {
				t.Fatal(werr)
			}
			if queued != 0 || deferred != int64(len(msg)) || stats != int64(len(msg)) {
				t.Fatalf("deferred write: Engine.queued %d, loop's deferred %d, Stats.QueuedBytes %d; want 0, %d, %d",
					queued, deferred, stats, len(msg), len(msg))
			}
			peer.SetReadDeadline(time.Now().Add(5 * time.Second))
			got := make([]byte, len(msg))
			if _, err := io.ReadFull(peer, got); err != nil || !bytes.Equal(got, msg) {
				t.Fatalf("peer read %q, %v", got, err)
			}
			eventually(t, 5*time.Second, "nothing counted after the send", func() bool {
				return e.queued.Load() == 0 && e.deferredBytes() == 0 && e.Stats().QueuedBytes == 0
			})
			if n := e.Stats().RingSends; n == 0 {
				t.Fatal("no ring send")
			}
		})
	}
}
