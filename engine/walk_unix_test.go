//go:build linux || darwin || freebsd

package engine

import (
	"bytes"
	"errors"
	"slices"
	"testing"
	"time"
)

// holdHandler echoes, except that a "hold" message keeps its loop (the
// handler runs inline) until release is closed.
type holdHandler struct {
	held    chan struct{}
	release chan struct{}
}

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
	h := &holdHandler{held: make(chan struct{}, 1), release: make(chan struct{})}
	e, addr := startEngine(t, Config{Loops: 2, Inline: true, FixedLoops: true}, h)
	ids := map[int]uint64{}
	send := map[int]func(string){}
	for len(ids) < 2 {
		c := dial(t, addr)
		roundTrip(t, c, "hi")
		var ci ConnInfo
		for _, x := range e.Conns() {
			if _, seen := ids[x.Loop]; !seen && !slices.Contains(mapValues(ids), x.ID) {
				ci = x
			}
		}
		if ci.ID == 0 {
			continue // on a loop that already has one
		}
		ids[ci.Loop] = ci.ID
		send[ci.Loop] = func(s string) { c.Write([]byte(s)) }
		if len(send) > 8 {
			t.Fatal("connections not spread over the loops")
		}
	}
	return e, ids, send, h
}

func mapValues(m map[int]uint64) []uint64 {
	var out []uint64
	for _, v := range m {
		out = append(out, v)
	}
	return out
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
	close(h.release)
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
		eventually(t, 5*time.Second, "4 open", func() bool { conns = e.Conns(); return len(conns) == 4 })
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
