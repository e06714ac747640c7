package engine

import (
	"bytes"
	"net"
	"sync"
	"testing"
	"time"
)

// TestConnNowFolded: a folded loop's round runs after its host's, which
// can take long; input the folded loop reads then may have arrived after
// the host woke, and Conn.Now must not be earlier than it (review
// rv-upx3: the folded loop was given the host's wake-up time). Loop 1 is
// folded into loop 0; a callback on loop 0 spins while the test writes to
// a connection of loop 1, whose readiness the host saw in the same round.
func TestConnNowFolded(t *testing.T) {
	keepFolded(t)
	foldBelow = 1e9 // fold whatever the load (see TestFoldedLoopMailboxWakesHost)
	type stamp struct {
		now time.Time
		in  []byte
	}
	var mu sync.Mutex
	stamps := map[*Conn][]stamp{}
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) {
		if bytes.Contains(in, []byte("spin")) {
			for d := time.Now().Add(100 * time.Millisecond); time.Now().Before(d); { // bounded: 100 ms
			}
		}
		mu.Lock()
		stamps[c] = append(stamps[c], stamp{c.Now(), append([]byte(nil), in...)})
		mu.Unlock()
	}
	e, addr := startEngine(t, Config{Loops: 2, Inline: true, IdleTimeout: time.Hour, TickInterval: sleepyTick}, h)
	awaitFold(t, e, "loop 1 folded")
	var onLoop [2]net.Conn
	for i := 0; i < 8 && (onLoop[0] == nil || onLoop[1] == nil); i++ {
		c := dial(t, addr)
		if _, err := c.Write([]byte("hello")); err != nil {
			t.Fatal(err)
		}
		eventually(t, 5*time.Second, "hello seen", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for sc := range stamps {
				if sc.RemoteAddr().String() == c.LocalAddr().String() {
					return true
				}
			}
			return false
		})
		for _, ci := range e.Conns() {
			if ci.Remote.String() == c.LocalAddr().String() && onLoop[ci.Loop] == nil {
				onLoop[ci.Loop] = c
			}
		}
	}
	if onLoop[0] == nil || onLoop[1] == nil {
		t.Fatal("no connection on each loop")
	}
	if hs := hosts(e); hs[1] != 0 {
		t.Fatalf("hosts %v, want loop 1 folded into 0", hs)
	}
	a, b := onLoop[0], onLoop[1]
	var late time.Time
	for try := 0; try < 5; try++ {
		// b's first bytes and a's spin together, so that the host's wait
		// reports both; b's second bytes come while a's callback spins.
		b.Write([]byte("one"))
		a.Write([]byte("spin"))
		time.Sleep(50 * time.Millisecond)
		late = time.Now()
		b.Write([]byte("two"))
		eventually(t, 5*time.Second, "b's second bytes", func() bool {
			mu.Lock()
			defer mu.Unlock()
			for sc, ss := range stamps {
				if sc.RemoteAddr().String() != b.LocalAddr().String() {
					continue
				}
				for _, s := range ss {
					if bytes.Contains(s.in, []byte("two")) {
						return true
					}
				}
			}
			return false
		})
		mu.Lock()
		for sc, ss := range stamps {
			if sc.RemoteAddr().String() != b.LocalAddr().String() {
				continue
			}
			for _, s := range ss {
				if bytes.Contains(s.in, []byte("two")) && s.now.Before(late) {
					t.Errorf("try %d: b's %q stamped %v, %v before it was written", try, s.in, s.now, late.Sub(s.now))
				}
			}
			stamps[sc] = nil
		}
		mu.Unlock()
	}
}
