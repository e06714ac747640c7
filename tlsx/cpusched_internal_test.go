package tlsx

import "testing"

// TestCPUSched: slots go to the waiting handshakes oldest first, each
// queued once; a handshake that ended while it waited is skipped; a slot
// with nobody waiting goes back to the free count; stop wakes the rest.
func TestCPUSched(t *testing.T) {
	c := newCPUSched(1)
	hss := make([]*hsConn, 4)
	for i := range hss {
		hss[i] = &hsConn{}
		hss[i].cond.L = &hss[i].mu
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
	x := &hsConn{}
	x.cond.L = &x.mu
	acquire(hss[0])
	acquire(x)
	c.stop()
	if x.slot || x.cpuQueued || !c.isStopped() {
		t.Fatal("stop did not let the waiting handshake go")
	}
	y := &hsConn{}
	y.cond.L = &y.mu
	if acquire(y) || y.cpuQueued {
		t.Fatal("queued after stop")
	}
}
