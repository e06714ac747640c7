//go:build linux || darwin || freebsd

package engine

import (
	"sync"
	"testing"
	"time"
)

// stampHandler echoes a message starting with 'e', echoes and names its
// connection for one starting with 'n' (by the byte after it), and
// consumes anything else without a reply: a device that only sends.
type stampHandler struct {
	*echoHandler
	mu    sync.Mutex
	named map[byte]*Conn
}

func (h *stampHandler) OnData(c *Conn, in []byte) int {
	switch in[0] {
	case 'e':
		c.Write(in)
	case 'n':
		h.mu.Lock()
		h.named[in[1]] = c
		h.mu.Unlock()
		c.Write(in)
	}
	return len(in)
}

func (h *stampHandler) conn(name byte) *Conn {
	h.mu.Lock()
	defer h.mu.Unlock()
	return h.named[name]
}

// TestStampsAgeOverMonths: activity stamps are 32-bit ticks, which read
// back wrong once they lie 2^31 ticks (24 days at a 1 ms tick) behind the
// loop. Over 30 days of a 1 ms tick: a connection that only sends (its
// last write a month old, its reads fresh) still times out when it goes
// quiet, and a connection that had no timeout and then gets one times out
// from its real last activity, not weeks later.
func TestStampsAgeOverMonths(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			clk := newFakeClock()
			cfg := Config{TickInterval: time.Millisecond, IdleTimeout: -1, Clock: clk, Loops: 1}
			k.cfg(&cfg)
			h := &stampHandler{echoHandler: newEcho(), named: map[byte]*Conn{}}
			e, addr := startEngine(t, cfg, h)
			a, b, s := dial(t, addr), dial(t, addr), dial(t, addr)
			roundTrip(t, a, "nA") // A: no timeout, no activity after this
			roundTrip(t, b, "nB") // B: written to once, then only sends
			h.conn('B').SetIdleTimeout(36 * time.Hour)
			const step = 12 * time.Hour
			for d := time.Duration(0); d < 30*24*time.Hour; d += step {
				clk.Advance(step)
				if _, err := b.Write([]byte("x")); err != nil {
					t.Fatal(err)
				}
				roundTrip(t, s, "e") // the loop has run at the new tick
			}
			if n := e.NumConns(); n != 3 {
				t.Fatalf("%d connections after 30 days, want 3", n)
			}
			// B goes quiet: closed 36 hours later, not weeks.
			clk.Advance(37 * time.Hour)
			roundTrip(t, s, "e")
			if r := h.awaitClose(t, 5*time.Second, "a quiet sender whose last write is a month old did not time out"); r != ReasonIdleTimeout {
				t.Fatalf("B closed with %v", r)
			}
			if n := e.NumConns(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
			// A, idle for a month, gets an hour's idle timeout: it is overdue.
			h.conn('A').SetIdleTimeout(time.Hour)
			roundTrip(t, s, "e")
			clk.Advance(2 * time.Millisecond) // a past deadline fires on the next tick
			if r := h.awaitClose(t, 5*time.Second, "a month-idle connection given a timeout did not time out"); r != ReasonIdleTimeout {
				t.Fatalf("A closed with %v", r)
			}
			roundTrip(t, s, "e") // the sync connection, without a timeout, stays
		})
	}
}
