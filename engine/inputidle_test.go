package engine

import (
	"io"
	"testing"
	"time"
)

// keepAliveHandler echoes, and on its first input sets the connection's
// idle timeout the way a protocol with a keep-alive would, handing the
// connection to the test.
type keepAliveHandler struct {
	*echoHandler
	inputOnly bool
	conns     chan *Conn
}

func (h keepAliveHandler) OnData(c *Conn, in []byte) int {
	if h.inputOnly {
		c.SetInputIdleTimeout(10 * time.Second)
	} else {
		c.SetIdleTimeout(10 * time.Second)
	}
	select {
	case h.conns <- c:
	default:
	}
	return h.echoHandler.OnData(c, in)
}

// TestInputIdleTimeout: output every 3 s to a peer that sends nothing
// keeps a connection under SetIdleTimeout open, but not one under
// SetInputIdleTimeout, which closes 10 s after the peer's last byte.
func TestInputIdleTimeout(t *testing.T) {
	for _, k := range kinds[:2] {
		for _, inputOnly := range []bool{false, true} {
			name := k.name + "/idle"
			if inputOnly {
				name = k.name + "/input-only"
			}
			t.Run(name, func(t *testing.T) {
				clk := newFakeClock()
				cfg := Config{IdleTimeout: time.Hour, TickInterval: 10 * time.Millisecond, Clock: clk}
				k.cfg(&cfg)
				h := keepAliveHandler{echoHandler: newEcho(), inputOnly: inputOnly, conns: make(chan *Conn, 1)}
				e, addr := startEngine(t, cfg, h)
				c := dial(t, addr)
				roundTrip(t, c, "hi")
				sc := <-h.conns
				b := make([]byte, 1)
				for i := 0; i < 5; i++ { // 15 s of output and no input
					clk.Advance(3 * time.Second)
					time.Sleep(30 * time.Millisecond) // several real ticks
					if _, err := sc.Write([]byte("z")); err != nil {
						if !inputOnly {
							t.Fatalf("write at %d s: %v", 3*(i+1), err)
						}
						break
					}
					c.SetReadDeadline(time.Now().Add(5 * time.Second))
					if _, err := io.ReadFull(c, b); err != nil {
						if !inputOnly {
							t.Fatalf("read at %d s: %v", 3*(i+1), err)
						}
						break
					}
				}
				if !inputOnly {
					if e.NumConns() != 1 {
						t.Fatal("output did not keep the idle timer running")
					}
					return
				}
				if r := h.awaitClose(t, 5*time.Second, "silent peer kept open by output"); r != ReasonIdleTimeout {
					t.Fatalf("reason %v", r)
				}
			})
		}
	}
}
