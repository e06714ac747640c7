//go:build linux || darwin || freebsd

package engine

import (
	"bytes"
	"errors"
	"runtime"
	"slices"
	"sync"
	"testing"
	"time"
)

// holdHandler echoes, except that a "hold" message keeps its loop (the
// handler runs inline) until release is closed.
type holdHandler struct {
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

// free releases every held loop; it may be called more than once.
func (h *holdHandler) free() { h.once.Do(func() { close(h.release) }) }

func (h *holdHandler) OnData(c *Conn, in []byte) int {
	if bytes.HasPrefix(in, []byte("hold")) {
		h.held <- struct{}{}
		<-h.release
	}
	c.Write(in)
	return len(in)
}

// startHeldEngine starts an inline two-loop engine with a connection on
// each loop and returns it, the connections' ids by loop and the handler.
func startHeldEngine(t *testing.T) (*Engine, map[int]uint64, map[int]func(string), *holdHandler) {
	t.Helper()
	return startHeldLoops(t, 2)
}

// startHeldLoops starts an inline engine of n loops with (at least) one
// connection on each loop, and returns it, one connection's id by loop, a
// sender to that connection by loop and the handler. It gives up after
// 10·n dials if the engine does not spread them over its loops.
func startHeldLoops(t *testing.T, n int) (*Engine, map[int]uint64, map[int]func(string), *holdHandler) {
	t.Helper()
	h := &holdHandler{held: make(chan struct{}, n), release: make(chan struct{})}
	e, addr := startEngine(t, Config{Loops: n, Inline: true, FixedLoops: true}, h)
	t.Cleanup(h.free)
	ids := map[int]uint64{}
	send := map[int]func(string){}
	seen := map[uint64]bool{}
	for dials := 0; len(ids) < n; dials++ {
		if dials == 10*n {
			t.Fatalf("%d dials left connections on %d loops of %d", dials, len(ids), n)
		}
		c := dial(t, addr)
		roundTrip(t, c, "hi")
		for _, x := range e.Conns() {
			if seen[x.ID] {
				continue
			}
			seen[x.ID] = true
			if _, ok := ids[x.Loop]; !ok {
				ids[x.Loop] = x.ID
				send[x.Loop] = func(s string) { c.Write([]byte(s)) }
			}
		}
	}
	return e, ids, send, h
}

// TestEachConnInfoMissedLoop holds one loop busy past the walk's turn:
// EachConnInfo must say it left that loop out (a *WalkError naming it)
// and still describe the other loop's connections, and the late walk must
// not call fn after EachConnInfo returned.
func TestEachConnInfoMissedLoop(t *testing.T) {
	e, ids, send, h := startHeldEngine(t)
	if err := e.EachConnInfo(func(*ConnInfo) {}); err != nil {
		t.Fatalf("idle engine: %v", err)
	}
	send[0]("hold")
	<-h.held
	// A shorter turn than 5 s for the held walks; long enough for the
	// free loop to answer on a loaded machine.
	e.walkWait = 2 * time.Second
	var seen []uint64
	returned := false
	err := e.EachConnInfo(func(ci *ConnInfo) {
		if returned {
			t.Error("fn called after EachConnInfo returned")
		}
		seen = append(seen, ci.ID)
	})
	returned = true
	var we *WalkError
	if !errors.As(err, &we) || !errors.Is(err, ErrWalkIncomplete) || !slices.Equal(we.Loops, []int{0}) {
		t.Fatalf("err = %v, want a WalkError for loop 0", err)
	}
	if !slices.Equal(seen, []uint64{ids[1]}) {
		t.Fatalf("saw %v, want loop 1's %d", seen, ids[1])
	}
	// The description of the held loop's connection cannot be taken either.
	if _, _, err := e.ConnInfoByID(ids[0]); !errors.Is(err, ErrWalkIncomplete) {
		t.Fatalf("ConnInfoByID on the held loop: %v", err)
	}
	h.free()
	e.walkWait = 0 // the 5 s turn again
	// The late walk and description run now, and must call nothing.
	eventually(t, 5*time.Second, "loop 0 free", func() bool { return e.EachConnInfo(func(*ConnInfo) {}) == nil })
	returned = false
	n := 0
	if err := e.EachConnInfo(func(*ConnInfo) { n++ }); err != nil || n != 2 {
		t.Fatalf("after release: %d conns, %v", n, err)
	}
}

// TestConnInfoByID finds each connection as Conns describes it, without
// a snapshot, and nothing for an id that is not live.
func TestConnInfoByID(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		var cfg Config
		k.cfg(&cfg)
		e, addr := startEngine(t, cfg, newEcho())
		var conns []ConnInfo
		for i := 0; i < 4; i++ {
			roundTrip(t, dial(t, addr), "hi")
		}
		// Idle: a worker-mode connection is active until its worker's
		// turn ends, which may be after the echo reached the client.
		eventually(t, 5*time.Second, "4 open and idle", func() bool {
			conns = e.Conns()
			for _, c := range conns {
				if c.State != StateIdle {
					return false
				}
			}
			return len(conns) == 4
		})
		var maxID uint64
		for _, want := range conns {
			got, ok, err := e.ConnInfoByID(want.ID)
			if err != nil || !ok {
				t.Fatalf("conn %d: found %v, %v", want.ID, ok, err)
			}
			// Idle moves with the clock; everything else is the same.
			got.LastActive, want.LastActive = time.Time{}, time.Time{}
			if got != want {
				t.Fatalf("conn %d:\n got %+v\nwant %+v", want.ID, got, want)
			}
			maxID = max(maxID, want.ID)
		}
		if _, ok, err := e.ConnInfoByID(maxID + 1000); ok || err != nil {
			t.Fatalf("unknown id: found %v, %v", ok, err)
		}
	})
}

// TestEachConnInfoOneTurnForAll: the walk is posted to every loop up front
// and the loops share one turn, rather than one turn after another (k busy
// loops would hold the caller k turns). With every loop held and a long
// turn, each loop's mailbox must hold the walk while the walk waits.
func TestEachConnInfoOneTurnForAll(t *testing.T) {
	const n = 3
	e, ids, send, h := startHeldLoops(t, n)
	for i := range n {
		send[i]("hold")
		<-h.held
	}
	e.walkWait = time.Minute
	loops, _ := e.parts()
	errc := make(chan error, 1)
	seen := 0
	go func() { errc <- e.EachConnInfo(func(*ConnInfo) { seen++ }) }()
	eventually(t, 5*time.Second, "the walk posted to every loop", func() bool {
		for _, l := range loops {
			if l.mbLen.Load() == 0 {
				return false
			}
		}
		return true
	})
	h.free()
	if err := <-errc; err != nil || seen < len(ids) {
		t.Fatalf("after release: %d conns, %v", seen, err)
	}
}

// TestEachConnInfoBegunLoopWalkedWhole: a loop whose part of the walk has
// begun when the turn ends is walked to its end and counted walked, so
// that a loop is never both reported left out and (partly) passed to fn.
func TestEachConnInfoBegunLoopWalkedWhole(t *testing.T) {
	e, ids, _, _ := startHeldLoops(t, 2)
	all := len(e.Conns())
	e.walkWait = time.Second
	first := true
	var seen []int
	err := e.EachConnInfo(func(ci *ConnInfo) {
		if first {
			first = false
			// Mid-walk past the turn: the walk of this loop has begun,
			// and the other's is queued behind fn's lock.
			time.Sleep(e.walkWait + e.walkWait/2)
		}
		seen = append(seen, ci.Loop)
	})
	if err != nil || len(seen) != all {
		t.Fatalf("saw %d of %d conns (loops %v), %v", len(seen), all, seen, err)
	}
	for l := range ids {
		if !slices.Contains(seen, l) {
			t.Fatalf("loop %d not walked: %v", l, seen)
		}
	}
}

// TestEachConnInfoGivenUpDropsFn: a walk given up on a stuck loop stays in
// its mailbox until the loop runs again, but must not keep fn (and what fn
// holds: a caller's page of results) alive meanwhile.
func TestEachConnInfoGivenUpDropsFn(t *testing.T) {
	e, _, send, h := startHeldLoops(t, 2)
	send[0]("hold")
	<-h.held
	e.walkWait = 50 * time.Millisecond
	freed := make(chan struct{})
	func() {
		page := make([]byte, 1<<20) // stands for the caller's results
		runtime.AddCleanup(&page[0], func(ch chan struct{}) { close(ch) }, freed)
		err := e.EachConnInfo(func(*ConnInfo) { page[0]++ })
		if !errors.Is(err, ErrWalkIncomplete) {
			t.Errorf("held loop: %v", err)
		}
	}()
	eventually(t, 5*time.Second, "fn collected while the loop is held", func() bool {
		runtime.GC()
		select {
		case <-freed:
			return true
		default:
			return false
		}
	})
	h.free()
}

// TestWalkInfoStopsAtFalse: walkInfo stops at the first false, and the
// table walk under it (eachConnWhile) visits nothing after that.
func TestWalkInfoStopsAtFalse(t *testing.T) {
	h := &holdHandler{held: make(chan struct{}, 1), release: make(chan struct{})}
	e, addr := startEngine(t, Config{Loops: 1, Inline: true, FixedLoops: true}, h)
	for range 3 {
		roundTrip(t, dial(t, addr), "hi")
	}
	eventually(t, 5*time.Second, "3 open", func() bool { return len(e.Conns()) == 3 })
	loops, _ := e.parts()
	l := loops[0]
	type counts struct{ calls, visits int }
	ch := make(chan counts, 1)
	if !l.postFunc(func() {
		var c counts
		l.walkInfo(func(*ConnInfo) bool { c.calls++; return false })
		l.eachConnWhile(func(*Conn) bool { c.visits++; return c.visits < 2 })
		ch <- c
	}) {
		t.Fatal("loop stopped")
	}
	if c := <-ch; c.calls != 1 || c.visits != 2 {
		t.Fatalf("walkInfo called fn %d times (want 1), eachConnWhile visited %d (want 2)", c.calls, c.visits)
	}
}
