//go:build linux

package engine

import (
	"bytes"
	"net"
	"testing"
	"time"
)

// TestRingQueueBoundWithFullPeers: on the ring, MaxQueuedBytes holds
// within a quarter of itself (Config.IOUring) when every peer of a
// fan-out has a full socket: the sends of deferred bytes then wait for
// room, and those bytes count as queued. Before, they stayed "deferred"
// until their sends completed, uncounted for other connections'
// queueing, and queued output reached twice the bound (131,072 of
// 65,536; review rv-uringC).
func TestRingQueueBoundWithFullPeers(t *testing.T) {
	for _, k := range ringKinds() {
		t.Run(k.name, func(t *testing.T) {
			const peers = 20
			msg := bytes.Repeat([]byte("m"), 8<<10)
			max := 8 * int64(len(msg))
			cfg := Config{Loops: 1, MaxQueuedBytes: max}
			k.cfg(&cfg)
			h := &orderedFan{echoHandler: *newEcho(), msg: msg}
			e, addr := startEngine(t, cfg, h)
			var cs []net.Conn
			for range peers {
				cs = append(cs, h.dialOpened(t, addr, "peer"))
			}
			onLoopState(t, e, 0, func(l *loop) { // fill every peer's socket
				h.mu.Lock()
				defer h.mu.Unlock()
				for _, p := range h.conns {
					fillSendBuffer(int(p.fd))
				}
			})
			src := h.dialOpened(t, addr, "source")
			var peak int64
			for i := 0; i < 3; i++ {
				src.Write([]byte("fan"))
				eventually(t, 5*time.Second, "the fan-out", func() bool { h.mu.Lock(); defer h.mu.Unlock(); return h.fans == i+1 })
				time.Sleep(20 * time.Millisecond)
				if q := e.Stats().QueuedBytes; q > peak {
					peak = q
				}
			}
			if bound := max + max/4; peak > bound {
				t.Errorf("QueuedBytes reached %d, past MaxQueuedBytes %d and its quarter (%d)", peak, max, bound)
			}
			for _, c := range cs {
				c.Close()
			}
		})
	}
}
