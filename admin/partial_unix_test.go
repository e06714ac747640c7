//go:build linux || darwin || freebsd

package admin

import (
	"bytes"
	"fmt"
	"log/slog"
	"net"
	"slices"
	"strings"
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

// walkMissSource is a stubSource whose walk of its connections always
// leaves loop 1 out, as an engine with a stuck loop does.
type walkMissSource struct{ stubSource }

func (s *walkMissSource) EachConnInfo(fn func(ci *engine.ConnInfo)) error {
	for _, ci := range s.Conns() {
		fn(&ci)
	}
	return &engine.WalkError{Loops: []int{1}}
}

// TestDebugConnsPartialWarnLimited: a dashboard polling /debug/conns while
// a loop is stuck must not log a warning per poll: a burst, then one per
// partialWarnEvery saying how many it left out; every answer still says
// it is partial.
func TestDebugConnsPartialWarnLimited(t *testing.T) {
	var logs bytes.Buffer
	mu := make(chan struct{}, 1)
	mu <- struct{}{}
	clk := testutil.NewFakeClock()
	s := startAdmin(t, Config{Clock: clk, Logger: slog.New(slog.NewTextHandler(lockedWriter{&logs, mu}, nil))}, &walkMissSource{})
	warnings := func() string {
		<-mu
		defer func() { mu <- struct{}{} }()
		return logs.String()
	}
	poll := func() {
		t.Helper()
		var l ConnList
		if code := getJSON(t, s, "/debug/conns", &l); code != 200 || !l.Partial || !slices.Equal(l.MissedLoops, []int{1}) {
			t.Fatalf("%d %+v", code, l)
		}
	}
	for range partialWarnBurst + 10 {
		poll()
	}
	if n := strings.Count(warnings(), "/debug/conns is partial"); n != partialWarnBurst {
		t.Fatalf("%d warnings for %d polls, want %d:\n%s", n, partialWarnBurst+10, partialWarnBurst, warnings())
	}
	clk.Advance(partialWarnEvery)
	poll()
	out := warnings()
	if n := strings.Count(out, "/debug/conns is partial"); n != partialWarnBurst+1 || !strings.Contains(out, "suppressed=10") {
		t.Fatalf("after %v: %d warnings, want %d with suppressed=10:\n%s", partialWarnEvery, n, partialWarnBurst+1, out)
	}
}
