//go:build linux || darwin || freebsd

package admin

import (
	"fmt"
	"net"
	"slices"
	"testing"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// TestDebugConnsPartial holds one of two loops busy past the walk's turn
// (5 s): /debug/conns must answer with the other loop's connection and say
// that it is partial and which loop it left out, and /debug/conns/{id} of
// the held loop's connection must answer 503, not 404.
func TestDebugConnsPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the walk's 5 s turn")
	}
	e := testutil.StartEngine(t, engine.Config{Loops: 2, FixedLoops: true, Inline: true, Logger: quietLogger()})
	h := testutil.NewLoopHolder(t)
	addr := testutil.Listen(t, e, h)
	s := startAdmin(t, Config{}, e)
	var cs []net.Conn
	for range 2 { // round robin: one on each loop
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	var all ConnList
	testutil.Eventually(t, 0, "two connections", func() bool {
		getJSON(t, s, "/debug/conns", &all)
		return all.Total == 2
	})
	if all.Partial || all.MissedLoops != nil || all.Conns[0].Loop == all.Conns[1].Loop {
		t.Fatalf("before the hold: %+v", all)
	}
	// The first connection dialled has the lower id.
	held, free := all.Conns[0], all.Conns[1]
	h.Hold(t, cs[0])

	var l ConnList
	if code := getJSON(t, s, "/debug/conns", &l); code != 200 {
		t.Fatalf("status %d", code)
	}
	if !l.Partial || !slices.Equal(l.MissedLoops, []int{held.Loop}) || l.Total != 1 || len(l.Conns) != 1 || l.Conns[0].ID != free.ID {
		t.Fatalf("held loop %d: %+v", held.Loop, l)
	}
	code, body, _ := get(t, s, fmt.Sprintf("/debug/conns/%d", held.ID), "")
	if code != 503 {
		t.Fatalf("/debug/conns/%d on the held loop: %d %s", held.ID, code, body)
	}
	var one Conn
	if code := getJSON(t, s, fmt.Sprintf("/debug/conns/%d", free.ID), &one); code != 200 || one.ID != free.ID {
		t.Fatalf("/debug/conns/%d: %d %+v", free.ID, code, one)
	}

	h.Release()
	testutil.Eventually(t, 0, "whole again", func() bool {
		l = ConnList{} // the fields left out when empty must not stay from before
		getJSON(t, s, "/debug/conns", &l)
		return !l.Partial && l.Total == 2 && l.MissedLoops == nil
	})
}
