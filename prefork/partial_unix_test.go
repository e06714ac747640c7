//go:build linux || darwin || freebsd

package prefork

import (
	"context"
	"encoding/json"
	"io"
	"log/slog"
	"net"
	"slices"
	"testing"
	"time"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// workerAdmin starts a real admin listener over a real two-loop inline
// engine holding n connections to a LoopHolder listener, and returns its
// address, the connections and the holder.
func workerAdmin(t *testing.T, n int) (string, []net.Conn, *testutil.LoopHolder) {
	t.Helper()
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Loops: 2, FixedLoops: true, Inline: true, Logger: quiet})
	h := testutil.NewLoopHolder(t)
	addr := testutil.Listen(t, e, h)
	s, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Logger: quiet}, e)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	var cs []net.Conn
	for range n {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		cs = append(cs, c)
	}
	testutil.Eventually(t, 0, "connections registered", func() bool { return len(e.Conns()) == n })
	return s.Addr().String(), cs, h
}

// TestParentDebugConnsPartial: a worker whose engine left a loop out of
// its walk (held past the 5 s turn) answers partial; the parent's merged
// list must say so too, naming the worker and the loop, and stay 200 with
// the connections it has, with the default Config. A worker that does
// not answer makes it partial as well.
func TestParentDebugConnsPartial(t *testing.T) {
	if testing.Short() {
		t.Skip("waits out the walk's 5 s turn")
	}
	a0, cs0, h0 := workerAdmin(t, 2)
	a1, _, _ := workerAdmin(t, 1)
	// The default Config (ScrapeTimeout 2 s, shorter than the walk's
	// turn): the parent must still wait for the held worker's partial
	// answer rather than give up on that worker.
	_, base := fakeSupervisor(t, Config{}, a0, a1)
	get := func() WorkerConnList {
		t.Helper()
		code, body := fetch(t, "GET", base+"/debug/conns", "", nil)
		var l WorkerConnList
		if err := json.Unmarshal([]byte(body), &l); err != nil || code != 200 {
			t.Fatalf("%d %s", code, body)
		}
		return l
	}
	if l := get(); l.Partial || l.MissedLoops != nil || l.Total != 3 {
		t.Fatalf("before the hold: %+v", l)
	}
	h0.Hold(t, cs0[0])
	l := get()
	if !l.Partial || len(l.MissedLoops) != 1 || len(l.MissedLoops[0]) != 1 || l.Total != 2 || len(l.Conns) != 2 {
		t.Fatalf("worker 0 held: %+v", l)
	}
	heldLoop := l.MissedLoops[0][0]
	for _, c := range l.Conns {
		if c.Worker == 0 && c.Loop == heldLoop {
			t.Fatalf("a connection of the held loop listed: %+v", c)
		}
	}
	// worker=0 relays worker 0's own partial answer.
	code, body := fetch(t, "GET", base+"/debug/conns?worker=0", "", nil)
	var one WorkerConnList
	if err := json.Unmarshal([]byte(body), &one); err != nil || code != 200 || !one.Partial ||
		!slices.Equal(one.MissedLoops[0], []int{heldLoop}) {
		t.Fatalf("worker=0: %d %s", code, body)
	}
	h0.Release()
	if l := get(); l.Partial || l.Total != 3 {
		t.Fatalf("after release: %+v", l)
	}

	// A worker that does not answer: partial, with its error.
	_, base2 := fakeSupervisor(t, Config{ScrapeTimeout: time.Second}, a1, hungWorkerAdmin(t))
	code, body = fetch(t, "GET", base2+"/debug/conns", "", nil)
	var l2 WorkerConnList
	if err := json.Unmarshal([]byte(body), &l2); err != nil || code != 200 || !l2.Partial || l2.Errors[1] == "" || l2.Total != 1 {
		t.Fatalf("hung worker: %d %s", code, body)
	}
}
