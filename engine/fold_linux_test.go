//go:build linux

package engine

import (
	"context"
	"fmt"
	"io"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// hosts returns each loop's host index.
func hosts(e *Engine) []int {
	var h []int
	for _, l := range e.Stats().Loops {
		h = append(h, l.Host)
	}
	return h
}

// An idle engine folds its loops into loop 0; a folded loop's connections
// are served, its timers fire and its mailbox runs; shutdown stops it.
func TestFoldWhenIdle(t *testing.T) {
	reuse := engineKind{"reuseport", func(c *Config) { c.Inline, c.ReusePort = true, true }}
	keepFolded(t)
	for _, k := range append(kinds[:2:2], reuse) {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Loops: 3, IdleTimeout: 400 * time.Millisecond, TickInterval: 20 * time.Millisecond}
			k.cfg(&cfg)
			h := newEcho()
			e, addr := startEngine(t, cfg, h)
			eventually(t, 10*time.Second, "loops 1 and 2 folded into 0", func() bool {
				hs := hosts(e)
				return hs[1] == 0 && hs[2] == 0
			})
			// With ReusePort the kernel picks the loop by a hash: of 24
			// connections loop 1 misses all one time in 16,000.
			cs := make([]interface{ Close() error }, 0, 24)
			for i := 0; i < 24; i++ {
				c := dial(t, addr)
				roundTrip(t, c, fmt.Sprintf("hello %d", i))
				cs = append(cs, c)
			}
			perLoop := map[int]int{}
			for _, ci := range e.Conns() { // runs on each loop's mailbox
				perLoop[ci.Loop]++
			}
			if perLoop[1] == 0 || (perLoop[2] == 0 && k.name != "reuseport") {
				t.Fatalf("connections per loop %v: want some on the folded loops", perLoop)
			}
			if hs := hosts(e); hs[1] != 0 || hs[2] != 0 {
				t.Fatalf("hosts %v after light traffic, want folded", hs)
			}
			for range cs {
				if r := h.awaitClose(t, 5*time.Second, "idle connections on folded loops were not timed out"); r != ReasonIdleTimeout {
					t.Fatalf("closed with %v, want idle timeout", r)
				}
			}
			c := dial(t, addr)
			roundTrip(t, c, "last")
			if k.name == "reuseport" {
				if err := e.Close(); err != nil {
					t.Fatalf("close with folded loops: %v", err)
				}
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown with folded loops: %v", err)
			}
		})
	}
}

// sleepyTick is a tick longer than any wait in these tests: a loop that
// sleeps wakes only for its events and its mailbox, so a lost wake-up holds
// a round trip past its deadline instead of making it a little slower.
const sleepyTick = time.Minute

// awaitFold waits until loop 1 of e runs on loop 0. With sleepyTick the
// loops would not wake to measure their load; each poll's Conns posts to
// every loop's mailbox and wakes it.
func awaitFold(t *testing.T, e *Engine, what string) {
	t.Helper()
	eventually(t, 10*time.Second, what, func() bool {
		if hosts(e)[1] == 0 {
			return true
		}
		e.Conns()
		time.Sleep(45 * time.Millisecond) // with eventually's 5 ms: a wake-up every 50 ms
		return hosts(e)[1] == 0
	})
}

// A post to a folded loop wakes its host when the host sleeps: with a tick
// of a minute, a lost wake-up holds a round trip past its deadline.
// Handlers on the worker pool hand every message back to the loop through
// its mailbox; connections dialled out land on folded loops too.
func TestFoldedLoopMailboxWakesHost(t *testing.T) {
	keepFolded(t)
	// Fold whatever the loops' load: the test is about folded loops, and
	// on a loaded machine awaitFold's wake-ups, stretched by the wait for
	// a core, made the loops look busy (seen under a full race run at load
	// 9: loop 1 never folded).
	foldBelow = 1e9
	e, addr := startEngine(t, Config{Loops: 2, TickInterval: sleepyTick}, newEcho())
	awaitFold(t, e, "loop 1 folded")
	var onLoop1 net.Conn
	for i := 0; i < 2; i++ {
		c := dial(t, addr)
		roundTrip(t, c, "which loop")
		for _, ci := range e.Conns() {
			if ci.Loop == 1 && ci.Remote.String() == c.LocalAddr().String() {
				onLoop1 = c
			}
		}
	}
	if onLoop1 == nil {
		t.Fatal("no connection on loop 1")
	}
	for i := 0; i < 20; i++ {
		time.Sleep(2 * time.Millisecond) // let the host fall asleep
		roundTrip(t, onLoop1, fmt.Sprintf("message %d", i))
	}
	if hs := hosts(e); hs[1] != 0 {
		t.Fatalf("loop 1 unfolded under light traffic: hosts %v", hs)
	}

	// The engine as a client: dialled connections go to both loops.
	h := &clientHandler{opened: make(chan *Conn, 4), got: make(chan string, 4), closed: make(chan error, 4)}
	client, _ := startEngine(t, Config{Loops: 2, Inline: true, TickInterval: sleepyTick}, h)
	awaitFold(t, client, "client loop 1 folded")
	for i := 0; i < 2; i++ {
		if _, err := client.DialWith(netip.MustParseAddrPort(addr), netip.Addr{}, "attached"); err != nil {
			t.Fatal(err)
		}
		var c *Conn
		select {
		case c = <-h.opened:
		case <-time.After(10 * time.Second):
			t.Fatal("a dialled connection did not open within 10 s")
		}
		c.Write([]byte("dialled"))
		select {
		case got := <-h.got:
			if got != "dialled" {
				t.Fatalf("got %q", got)
			}
		case <-time.After(10 * time.Second):
			t.Fatal("no echo on a dialled connection within 10 s: a wake-up lost")
		}
	}
}

// Engines stop cleanly whatever the folding does at that moment, including
// a fold decided in the same pass as the stop.
func TestStopWhileFolding(t *testing.T) {
	setFolding(t, 5*time.Millisecond)
	for i := 0; i < 20; i++ {
		e, addr := startEngine(t, Config{Loops: 3, TickInterval: 5 * time.Millisecond, Inline: i%2 == 0}, newEcho())
		for j := 0; j < 3; j++ {
			roundTrip(t, dial(t, addr), "x")
		}
		time.Sleep(time.Duration(i%7) * time.Millisecond)
		done := make(chan error, 1)
		go func() {
			if i%3 == 0 {
				done <- e.Close()
				return
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			done <- e.Shutdown(ctx)
		}()
		select {
		case err := <-done:
			if err != nil {
				t.Fatalf("round %d: stop: %v", i, err)
			}
		case <-time.After(10 * time.Second):
			t.Fatalf("round %d: stop hung", i)
		}
	}
}

func TestFixedLoopsNeverFold(t *testing.T) {
	e, _ := startEngine(t, Config{Loops: 2, FixedLoops: true}, newEcho())
	time.Sleep(3 * foldWindow)
	if hs := hosts(e); hs[1] != 1 {
		t.Fatalf("hosts %v with FixedLoops", hs)
	}
}

// restorePolicy puts the folding policy's figures back when the test ends.
func restorePolicy(t *testing.T) {
	w, below, above, all, after := foldWindow, foldBelow, unfoldAbove, unfoldAllAbove, refoldAfter
	t.Cleanup(func() { foldWindow, foldBelow, unfoldAbove, unfoldAllAbove, refoldAfter = w, below, above, all, after })
}

// keepFolded stops loop 0 from handing folded loops back, so a test about
// folded loops stays one on a loaded machine.
func keepFolded(t *testing.T) {
	skipIfRingForced(t)
	restorePolicy(t)
	unfoldAbove, unfoldAllAbove = 2, 2
}

// setFolding makes loops fold and unfold every window, for the test.
func setFolding(t *testing.T, window time.Duration) {
	restorePolicy(t)
	foldWindow, foldBelow, unfoldAbove, unfoldAllAbove, refoldAfter = window, 1e9, -1, 0.5, 0
}

// Loops fold and unfold every few milliseconds while connections on all of
// them echo, are listed and are closed: nothing is lost, doubled or raced.
func TestFoldUnfoldUnderTraffic(t *testing.T) {
	skipIfRingForced(t)
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			setFolding(t, 2*time.Millisecond)
			cfg := Config{Loops: 4, TickInterval: 5 * time.Millisecond}
			k.cfg(&cfg)
			h := newEcho()
			e, addr := startEngine(t, cfg, h)
			var folded, unfolded atomic.Int64
			stop := make(chan struct{})
			var watch sync.WaitGroup
			watch.Add(1)
			go func() {
				defer watch.Done()
				for {
					select {
					case <-stop:
						return
					case <-time.After(time.Millisecond):
					}
					for i, hst := range hosts(e) {
						if i == 0 {
							continue
						}
						if hst == 0 {
							folded.Add(1)
						} else {
							unfolded.Add(1)
						}
					}
					e.Conns()
				}
			}()
			var wg sync.WaitGroup
			for g := 0; g < 16; g++ {
				wg.Add(1)
				go func(g int) {
					defer wg.Done()
					for round := 0; round < 4; round++ {
						c, err := net.DialTimeout("tcp", addr, 5*time.Second)
						if err != nil {
							t.Error(err)
							return
						}
						for j := 0; j < 100; j++ {
							msg := fmt.Sprintf("g%d r%d m%d %s", g, round, j, make([]byte, j*37))
							c.SetDeadline(time.Now().Add(5 * time.Second))
							buf := make([]byte, len(msg))
							if _, err := c.Write([]byte(msg)); err != nil {
								t.Error(err)
							} else if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
								t.Errorf("echo %q: %v", buf, err)
							}
						}
						c.Close()
					}
				}(g)
			}
			wg.Wait()
			close(stop)
			watch.Wait()
			if folded.Load() == 0 || unfolded.Load() == 0 {
				t.Fatalf("samples folded %d, unfolded %d: want both", folded.Load(), unfolded.Load())
			}
			eventually(t, 10*time.Second, "all closed", func() bool { return e.NumConns() == 0 })
			if st := e.Stats(); st.Closed[ReasonPeerClosed] != 64 {
				t.Fatalf("peer-closed %d, want 64", st.Closed[ReasonPeerClosed])
			}
			for i := 0; i < 8; i++ { // stop while loops are folded or not
				roundTrip(t, dial(t, addr), "x")
			}
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			defer cancel()
			if err := e.Shutdown(ctx); err != nil {
				t.Fatalf("shutdown: %v", err)
			}
		})
	}
}

// skipIfRingForced skips a folding test under WARREN_IO_URING=on: loops
// on a ring never fold.
func skipIfRingForced(t *testing.T) {
	t.Helper()
	if ringForced {
		t.Skip("WARREN_IO_URING=on: loops on io_uring do not fold")
	}
}
