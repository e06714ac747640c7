package tlsx

import "sync"

// cpuSched hands out Config.HandshakeCPU slots: a handshake computes only
// while it holds one. A handshake with input to work on and no slot waits
// in a FIFO, its worker parked on its own sync.Cond, and is woken only
// once a slot has been given to it, so at most HandshakeCPU handshake
// goroutines are ever runnable at once, however many are in progress.
// (A semaphore channel would wake each handshake first to let it queue
// for the slot: through a storm, a runnable goroutine per client flight
// ahead of the loops in Go's run queues; docs/benchmarks.md §26.)
//
// Lock order: hsConn.mu, then cpuSched.mu. A slot is given to a waiting
// handshake (under its hsConn.mu) after cpuSched.mu is released, and
// never while holding another hsConn's mu.
type cpuSched struct {
	mu      sync.Mutex
	free    int       // slots nobody holds
	ready   []*hsConn // handshakes waiting for a slot, oldest first (from head)
	head    int
	stopped bool // the Server closed: no more waiting
}

func newCPUSched(n int) *cpuSched { return &cpuSched{free: n} }

// held returns the slots in use (the warren_tls_handshakes_computing gauge).
func (c *cpuSched) held(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n - c.free
}

// acquire gives hs a slot if one is free (hs.slot set) and reports so;
// otherwise it queues hs once (hs.cpuQueued), to be given the next slot
// released. The caller holds hs.mu.
func (c *cpuSched) acquire(hs *hsConn) bool {
	if hs.slot {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.free > 0 && c.head == len(c.ready) {
		c.free--
		hs.slot = true
		return true
	}
	if !hs.cpuQueued && !c.stopped {
		hs.cpuQueued = true
		c.ready = append(c.ready, hs)
	}
	return false
}

// release gives back a slot: to the oldest handshake still waiting for
// one, else to the free count. The caller holds no hsConn's mu.
func (c *cpuSched) release() {
	for {
		c.mu.Lock()
		if c.head == len(c.ready) {
			c.free++
			c.ready, c.head = c.ready[:0], 0
			c.mu.Unlock()
			return
		}
		next := c.ready[c.head]
		c.ready[c.head] = nil
		c.head++
		if c.head > 64 && c.head*2 >= len(c.ready) {
			c.ready, c.head = c.ready[:copy(c.ready, c.ready[c.head:])], 0
		}
		c.mu.Unlock()
		next.mu.Lock()
		next.cpuQueued = false
		if next.cpuGone {
			next.mu.Unlock()
			continue // its handshake ended while it waited: the next one
		}
		next.slot = true
		next.cond.Broadcast()
		next.mu.Unlock()
		return
	}
}

// stop wakes every waiting handshake without a slot (Server.Close).
func (c *cpuSched) stop() {
	c.mu.Lock()
	c.stopped = true
	waiting := c.ready[c.head:]
	c.ready, c.head = nil, 0
	c.mu.Unlock()
	for _, hs := range waiting {
		hs.mu.Lock()
		hs.cpuQueued = false
		hs.cond.Broadcast()
		hs.mu.Unlock()
	}
}

func (c *cpuSched) isStopped() bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.stopped
}
