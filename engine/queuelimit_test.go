package engine

import (
	"net"
	"testing"
	"time"
)

// TestTotalQueueLimitDetail: a connection cut because all queued output
// reached MaxQueuedBytes (not its own high watermark) closes as a slow
// consumer with detail total_queue_full, counted apart.
func TestTotalQueueLimitDetail(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{WriteHighWater: 64 << 20, MaxQueuedBytes: 1 << 20}
			k.cfg(&cfg)
			h := &floodHandler{echoHandler: *newEcho()}
			e, addr := startEngine(t, cfg, h)
			slow := dial(t, addr)
			slow.(*net.TCPConn).SetReadBuffer(4096)
			slow.Write([]byte("flood"))
			if r := h.awaitClose(t, 10*time.Second, "not closed at the total queue limit"); r != ReasonSlowConsumer {
				t.Fatalf("closed with %v, want slow_consumer", r)
			}
			eventually(t, 5*time.Second, "the detail counted", func() bool {
				for _, d := range e.Stats().Details {
					if d.Reason == ReasonSlowConsumer && d.Detail == "total_queue_full" && d.Count == 1 {
						return true
					}
				}
				return false
			})
			if e.Stats().WatermarkHits != 0 {
				t.Fatal("a watermark hit counted: the connection's own queue was under its high watermark")
			}
		})
	}
}
