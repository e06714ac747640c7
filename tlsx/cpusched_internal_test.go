package tlsx

import (
	"crypto/tls"
	"net"
	"sync/atomic"
	"testing"
	"time"

	wtest "github.com/warrenhq/warren/internal/testutil"
)

// TestCPUSched: slots go to the waiting handshakes oldest first, each
// queued once; a handshake that ended while it waited is skipped; a slot
// with nobody waiting goes back to the free count; one not yet on a worker
// is started with its slot; stop wakes the rest.
func TestCPUSched(t *testing.T) {
	var started []*hsConn
	c := newCPUSched(1, func(hs *hsConn) { started = append(started, hs) })
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
	if !hss[3].slot || len(started) != 0 {
		t.Fatalf("the last waiting handshake not given the slot (%d started)", len(started))
	}
	// A submitted handshake no worker has yet is started with its slot.
	u := &hsConn{unstarted: true}
	u.cond.L = &u.mu
	if acquire(u) {
		t.Fatal("a second slot given")
	}
	hss[3].slot = false
	c.release()
	if !u.slot || u.unstarted || len(started) != 1 || started[0] != u {
		t.Fatalf("the unstarted handshake: slot %v, unstarted %v, %d started", u.slot, u.unstarted, len(started))
	}
	hss[3] = u
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

// TestSubmitWithSlot: under HandshakeCPU a handshake reaches a worker only
// with a CPU slot. While the one slot is held, a second ClientHello waits
// in the scheduler's FIFO, counted as queued, and no worker has it; when
// the first handshake waits for its client (giving the slot back), the
// second is handed to a worker with the slot.
func TestSubmitWithSlot(t *testing.T) {
	var starts atomic.Int32
	gate := make(chan struct{})
	hook := func() {
		if starts.Add(1) == 1 {
			<-gate // the first handshake holds its slot until the gate opens
		}
	}
	testHookHandshake.Store(&hook)
	defer testHookHandshake.Store(nil)
	s, addr, _ := testServer(t, Config{HandshakeCPU: 1, HandshakeWorkers: 4, HandshakeNice: -1, FlightTimeout: -1,
		RatePerIP: -1, Rate: -1, BanThreshold: -1})
	hello := clientHello(t)
	dial := func() net.Conn {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	a := dial()
	a.Write(hello)
	wtest.Eventually(t, 5*time.Second, "the first handshake on a worker", func() bool { return starts.Load() == 1 })
	b := dial()
	b.Write(hello)
	var unstarted bool
	wtest.Eventually(t, 5*time.Second, "the second handshake queued", func() bool { return s.pending.Load() == 1 })
	s.cpu.mu.Lock()
	waiting := s.cpu.ready[s.cpu.head:]
	if len(waiting) == 1 {
		waiting[0].mu.Lock()
		unstarted = waiting[0].unstarted
		waiting[0].mu.Unlock()
	}
	s.cpu.mu.Unlock()
	if len(waiting) != 1 || !unstarted || len(s.jobs) != 0 {
		t.Fatalf("%d waiting for the slot (unstarted: %v), %d in the workers' queue; want 1, true, 0", len(waiting), unstarted, len(s.jobs))
	}
	close(gate) // the first handshake writes its flight and waits for its client
	wtest.Eventually(t, 5*time.Second, "the second handshake on a worker", func() bool { return starts.Load() == 2 })
	if n := s.pending.Load(); n != 0 {
		t.Fatalf("%d still queued", n)
	}
	// Both wait for their clients without a slot: a third handshake completes.
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		t.Fatal(err)
	}
	c.Close()
}
