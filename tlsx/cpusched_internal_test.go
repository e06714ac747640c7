package tlsx

import "testing"

// newTestHS returns an hsConn for the scheduler's tests.
func newTestHS() *hsConn {
	hs := &hsConn{}
	hs.cond.L = &hs.mu
	return hs
}

// TestCPUSched: slots go to the waiting handshakes oldest first, each
// queued once; a handshake that ended while it waited is skipped; a slot
// with nobody waiting goes back to the free count; stop wakes the rest.
func TestCPUSched(t *testing.T) {
	c := newCPUSched(1, func(*hsConn) { t.Fatal("a handshake started") })
	hss := make([]*hsConn, 4)
	for i := range hss {
		hss[i] = newTestHS()
	}
	acquire := func(hs *hsConn) bool {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		return c.acquire(hs)
	}
	if !acquire(hss[0]) || c.held(1) != 1 {
		t.Fatal("the free slot was not given")
	}
	for _, hs := range hss[1:] {
		if acquire(hs) {
			t.Fatal("a second slot given")
		}
		acquire(hs) // queued once only
	}
	if got := len(c.ready) - c.head; got != 3 {
		t.Fatalf("%d waiting, want 3", got)
	}
	hss[1].cpuGone = true // its handshake ended while it waited
	hss[0].slot = false
	c.release()
	if hss[1].slot || !hss[2].slot || hss[3].slot {
		t.Fatalf("slot after the first release: %v %v %v, want the third handshake's", hss[1].slot, hss[2].slot, hss[3].slot)
	}
	hss[2].slot = false
	c.release()
	if !hss[3].slot {
		t.Fatal("the last waiting handshake not given the slot")
	}
	hss[3].slot = false
	c.release()
	if c.held(1) != 0 || c.free != 1 {
		t.Fatalf("free %d after every release, want 1", c.free)
	}
	// stop: a waiting handshake is let go without a slot, and no more queue.
	x := newTestHS()
	acquire(hss[0])
	acquire(x)
	c.stop()
	if x.slot || x.cpuQueued || !c.isStopped() {
		t.Fatal("stop did not let the waiting handshake go")
	}
	y := newTestHS()
	if acquire(y) || y.cpuQueued {
		t.Fatal("queued after stop")
	}
}

// TestCPUSchedParked: a new handshake is sent to the workers with a free
// slot, parked with it, and its worker finds it there; with none free it
// waits in fresh and is sent on by the next release, but only once no
// handshake on a worker waits (rule 2); a handshake on a worker takes a
// parked slot back rather than wait (rule 1), the last parked first;
// cancel gives a parked slot back and drops a waiting new one.
func TestCPUSchedParked(t *testing.T) {
	var started []*hsConn
	c := newCPUSched(2, func(hs *hsConn) { started = append(started, hs) })
	acquire := func(hs *hsConn) bool {
		hs.mu.Lock()
		defer hs.mu.Unlock()
		return c.acquire(hs)
	}
	n := make([]*hsConn, 5)
	for i := range n {
		n[i] = newTestHS()
	}
	if !c.submit(n[0]) || !c.submit(n[1]) || c.submit(n[2]) || c.submit(n[3]) {
		t.Fatal("want the first two sent with a slot, the next two waiting")
	}
	if c.free != 0 || len(c.parked) != 2 || n[2].cpuState != cpuFresh {
		t.Fatalf("free %d, parked %d, want 0 and 2", c.free, len(c.parked))
	}
	// n[0]'s worker takes its job and finds its slot.
	if !acquire(n[0]) || n[0].cpuState != cpuNone || len(c.parked) != 1 || c.takenBack() != 0 {
		t.Fatal("the worker did not find the parked slot")
	}
	// A handshake on a worker with input takes n[1]'s parked slot back.
	w := newTestHS()
	if !acquire(w) || n[1].cpuState != cpuNone || len(c.parked) != 0 || c.takenBack() != 1 {
		t.Fatal("the parked slot was not taken back")
	}
	// n[1]'s worker then waits like any handshake on a worker.
	if acquire(n[1]) || !n[1].cpuQueued {
		t.Fatal("n[1] got a slot with none free")
	}
	// Rule 2: n[0]'s release goes to n[1] (on a worker), not to n[2].
	n[0].slot = false
	c.release()
	if !n[1].slot || len(started) != 0 {
		t.Fatalf("release: n[1] slot %v, %d started", n[1].slot, len(started))
	}
	// n[2]'s connection closes while it waits: dropped, and skipped.
	if !c.cancel(n[2]) || c.cancel(n[2]) {
		t.Fatal("cancel did not drop the waiting handshake once")
	}
	w.slot = false
	c.release()
	if len(started) != 1 || started[0] != n[3] || n[3].cpuState != cpuParked || len(c.parked) != 1 {
		t.Fatalf("release with nobody on a worker waiting: %d started, want n[3] parked", len(started))
	}
	// n[3]'s connection closes before a worker takes it: its slot goes
	// back (to n[4], new, which then is sent on with it).
	c.submit(n[4])
	if c.cancel(n[3]) || len(started) != 2 || started[1] != n[4] || n[4].cpuState != cpuParked {
		t.Fatal("the closed job's parked slot was not passed on")
	}
	if !acquire(n[4]) {
		t.Fatal("n[4]'s worker found no slot")
	}
	n[1].slot, n[4].slot = false, false
	c.release()
	c.release()
	if c.free != 2 || len(c.parked) != 0 || c.head != len(c.ready) || c.fhead != len(c.fresh) {
		t.Fatalf("free %d, parked %d at the end, want 2 and 0", c.free, len(c.parked))
	}
}
