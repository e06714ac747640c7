//go:build linux || darwin || freebsd

package engine

import (
	"sync"
	"testing"
	"time"
)

// stampHandler echoes a message starting with 'e', echoes and names its
// connection for one starting with 'n' (by the byte after it), and
// consumes anything else without a reply (a device that only sends),
// telling got.
type stampHandler struct {
	*echoHandler
	nmu   sync.Mutex
	named map[byte]*Conn
	got   chan struct{}
}

func (h *stampHandler) OnData(c *Conn, in []byte) int {
	switch in[0] {
	case 'e':
		c.Write(in)
	case 'n':
		h.nmu.Lock()
		h.named[in[1]] = c
		h.nmu.Unlock()
		c.Write(in)
	default:
		h.got <- struct{}{}
	}
	return len(in)
}

func (h *stampHandler) conn(name byte) *Conn {
	h.nmu.Lock()
	defer h.nmu.Unlock()
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
			h := &stampHandler{echoHandler: newEcho(), named: map[byte]*Conn{}, got: make(chan struct{}, 1)}
			e, addr := startEngine(t, cfg, h)
			a, b, s := dial(t, addr), dial(t, addr), dial(t, addr)
			roundTrip(t, a, "nA") // A: no timeout, no activity after this
			roundTrip(t, b, "nB") // B: written to once, then only sends
			h.conn('B').SetIdleTimeout(36 * time.Hour)
			const step = 12 * time.Hour
			for d := time.Duration(0); d < 30*24*time.Hour; d += step {
				clk.Advance(step)
				if _, err := b.Write([]byte("x")); err != nil {
					t.Fatalf("day %d: %v", d/(24*time.Hour), err)
				}
				select { // read, and so stamped, at the new tick
				case <-h.got:
				case <-time.After(5 * time.Second):
					t.Fatalf("day %d: B's message not handled", d/(24*time.Hour))
				}
			}
			if n := e.NumConns(); n != 3 {
				t.Fatalf("%d connections after 30 days, want 3", n)
			}
			// B goes quiet: closed 36 hours later, not weeks.
			clk.Advance(37 * time.Hour)
			if r := tickUntilClose(t, clk, h, "a quiet sender whose last write is a month old did not time out"); r != ReasonIdleTimeout {
				t.Fatalf("B closed with %v", r)
			}
			if n := e.NumConns(); n != 2 {
				t.Fatalf("%d connections, want 2", n)
			}
			// A, idle for a month, gets an hour's idle timeout: it is overdue.
			h.conn('A').SetIdleTimeout(time.Hour)
			if r := tickUntilClose(t, clk, h, "a month-idle connection given a timeout did not time out"); r != ReasonIdleTimeout {
				t.Fatalf("A closed with %v", r)
			}
			roundTrip(t, s, "e") // the sync connection, without a timeout, stays
		})
	}
}

// tickUntilClose moves the clock a tick at a time (a deadline found past
// fires on the next tick, and a worker may still hold the connection when
// the clock jumps) until a connection closes, and returns its reason.
func tickUntilClose(t *testing.T, clk *fakeClock, h *stampHandler, what string) CloseReason {
	t.Helper()
	for end := time.Now().Add(5 * time.Second); time.Now().Before(end); {
		select {
		case r := <-h.closed:
			return r
		case <-time.After(5 * time.Millisecond):
			clk.Advance(time.Millisecond)
		}
	}
	t.Fatal(what)
	return ReasonNone
}
