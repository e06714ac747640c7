package engine

import (
	"testing"
	"time"
)

// TestConnNowRoundTime: on an event loop with the system clock, Conn.Now
// in an inline handler's callback is the time the loop woke for the round:
// not before the peer's write that woke it, not after the callback's own
// time.Now, and the same reading for every call of the round, however long
// the callback runs (it reads no clock). A later round has a later time.
func TestConnNowRoundTime(t *testing.T) {
	type reading struct{ first, second, after time.Time }
	got := make(chan reading, 2)
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) {
		var r reading
		r.first = c.Now()
		for d := time.Now(); !time.Now().After(d); { // let the clock move (bounded: it does)
		}
		r.second = c.Now()
		r.after = time.Now()
		got <- r
	}
	_, addr := startEngine(t, Config{Inline: true, Loops: 1, IdleTimeout: time.Hour}, h)
	nc := dial(t, addr)
	var prev time.Time
	for i := range 2 {
		before := time.Now()
		if _, err := nc.Write([]byte("x")); err != nil {
			t.Fatal(err)
		}
		var r reading
		select {
		case r = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no OnData")
		}
		if r.first.Before(before) || r.first.After(r.after) {
			t.Errorf("write %d: Now %v, not between the write %v and the callback's time.Now %v", i, r.first, before, r.after)
		}
		if !r.second.Equal(r.first) {
			t.Errorf("write %d: a second Now in the same callback %v, want the round's %v", i, r.second, r.first)
		}
		if !r.first.After(prev) {
			t.Errorf("write %d: Now %v, not after the previous round's %v", i, r.first, prev)
		}
		prev = r.first
	}
}

// TestConnNowInjectedClock: with Config.Clock, Conn.Now is the clock's
// reading at the call (Engine.Now), on the loops and the portable engine:
// a test that advances its clock inside a callback sees the new time.
func TestConnNowInjectedClock(t *testing.T) {
	for _, portable := range []bool{false, true} {
		clk := newFakeClock()
		got := make(chan [2]time.Time, 1)
		h := newRVHandler()
		h.onData = func(c *Conn, in []byte) {
			a := c.Now()
			clk.Advance(time.Second)
			got <- [2]time.Time{a, c.Now()}
		}
		_, addr := startEngine(t, Config{Inline: true, Portable: portable, Clock: clk, IdleTimeout: time.Hour}, h)
		nc := dial(t, addr)
		start := clk.Now()
		nc.Write([]byte("x"))
		var r [2]time.Time
		select {
		case r = <-got:
		case <-time.After(10 * time.Second):
			t.Fatal("no OnData")
		}
		if !r[0].Equal(start) || !r[1].Equal(start.Add(time.Second)) {
			t.Errorf("portable %v: Now %v then %v, want the clock's %v then %v", portable, r[0], r[1], start, start.Add(time.Second))
		}
	}
}

// TestConnNowPortable: the portable engine has no rounds: Conn.Now reads
// the system clock at each call.
func TestConnNowPortable(t *testing.T) {
	got := make(chan [3]time.Time, 1)
	h := newRVHandler()
	h.onData = func(c *Conn, in []byte) {
		a := c.Now()
		for d := time.Now(); !time.Now().After(d); {
		}
		b := time.Now()
		got <- [3]time.Time{a, b, c.Now()}
	}
	_, addr := startEngine(t, Config{Portable: true, IdleTimeout: time.Hour}, h)
	nc := dial(t, addr)
	nc.Write([]byte("x"))
	select {
	case r := <-got:
		if r[2].Before(r[1]) {
			t.Errorf("second Now %v before the time.Now %v read after the first: not a fresh reading", r[2], r[1])
		}
	case <-time.After(10 * time.Second):
		t.Fatal("no OnData")
	}
}
