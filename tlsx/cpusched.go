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
// A new handshake reaches the workers with a slot (submit, release): a
// worker is woken once, with a job it may compute at once, not a first
// time for the job and a second for its slot (each a hand-off between OS
// threads for a worker on a lowered one; docs/benchmarks.md §52, §55).
// Until a worker takes that job its slot is parked with it, and parked
// slots are what make this safe. Three rules, each under mu:
//
//  1. A handshake already on a worker that needs a slot and finds none
//     free takes back a parked one (acquire): the job that lost it waits
//     for a slot like any other once a worker takes it.
//  2. A released slot goes to a handshake already on a worker before any
//     new one (ready before fresh): a slot is parked only when no worker
//     waits for one.
//  3. So a worker never waits for a slot while one is parked (1 stops a
//     new wait while a slot is parked, 2 stops a new park while a worker
//     waits). A parked slot waits only for a worker to come free, as a
//     queued job always has, and every worker busy means each computes
//     (and will release) or waits for its client (whose bytes take the
//     parked slot back, rule 1). Without rule 1 a queued job's slot
//     stalled every worker until HandshakeTimeout (§52's review).
//
// A handshake whose connection closes before a worker took it (cancel)
// gives its parked slot back, and one still waiting for its first slot
// never gets one.
//
// Lock order: hsConn.mu, then cpuSched.mu. A slot is given to a waiting
// handshake (under its hsConn.mu) after cpuSched.mu is released, and
// never while holding another hsConn's mu. The fields an hsConn keeps
// for the scheduler under cpuSched.mu are cpuState and parkAt.
type cpuSched struct {
	// start sends a job whose slot was just parked with it to the
	// workers (Server.jobs; never blocks); called without mu.
	start func(*hsConn)

	mu      sync.Mutex
	free    int       // slots nobody holds
	ready   []*hsConn // handshakes on a worker waiting for a slot, oldest first (from head)
	head    int
	fresh   []*hsConn // new handshakes waiting for their first slot, before any worker, oldest first (from freshHead)
	fhead   int
	parked  []*hsConn // jobs sent to the workers with a slot that no worker has taken yet
	takes   int64     // parked slots taken back by a handshake on a worker (rule 1)
	stopped bool      // the Server closed: no more waiting
}

// An hsConn's place in the scheduler before a worker takes it (under
// cpuSched.mu).
const (
	cpuNone   uint8 = iota // not submitted, on a worker, dropped, or sent on without a slot
	cpuFresh               // in fresh, waiting for its first slot
	cpuParked              // in the workers' queue holding a parked slot (parked[parkAt])
)

func newCPUSched(n int, start func(*hsConn)) *cpuSched {
	return &cpuSched{free: n, start: start}
}

// held returns the slots in use, parked ones included (the
// warren_tls_handshakes_computing gauge).
func (c *cpuSched) held(n int) int {
	c.mu.Lock()
	defer c.mu.Unlock()
	return n - c.free
}

// takenBack returns how many parked slots were taken back (rule 1).
func (c *cpuSched) takenBack() int64 {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.takes
}

// submit places a new handshake: it reports true when hs got a free slot,
// parked with it (the caller sends it to the workers), or when the Server
// has closed (the caller sends it on without a slot); false when it waits
// in fresh for release to send it on with a slot.
func (c *cpuSched) submit(hs *hsConn) bool {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.stopped {
		return true
	}
	if c.free > 0 && c.head == len(c.ready) && c.fhead == len(c.fresh) {
		c.free--
		c.park(hs)
		return true
	}
	hs.cpuState = cpuFresh
	c.fresh = append(c.fresh, hs)
	return false
}

// park gives hs the slot in hand, held for it until a worker takes the job
// (acquire) or a handshake on a worker takes the slot back. Under mu.
func (c *cpuSched) park(hs *hsConn) {
	hs.cpuState, hs.parkAt = cpuParked, len(c.parked)
	c.parked = append(c.parked, hs)
}

// unpark takes hs's parked slot from it (the caller has it in hand). Under mu.
func (c *cpuSched) unpark(hs *hsConn) {
	last := c.parked[len(c.parked)-1]
	c.parked[hs.parkAt], last.parkAt = last, hs.parkAt
	c.parked[len(c.parked)-1] = nil
	c.parked = c.parked[:len(c.parked)-1]
	hs.cpuState = cpuNone
}

// acquire gives hs, a handshake on a worker, a slot and reports so: the
// one parked with its job, a free one, or one taken back from the job
// parked last (rule 1; the furthest back in the workers' queue).
// Otherwise it queues hs once (hs.cpuQueued), to be given the next slot
// released. The caller holds hs.mu.
func (c *cpuSched) acquire(hs *hsConn) bool {
	if hs.slot {
		return true
	}
	c.mu.Lock()
	defer c.mu.Unlock()
	switch {
	case hs.cpuState == cpuParked:
		c.unpark(hs)
	case c.free > 0 && c.head == len(c.ready):
		c.free--
	case len(c.parked) > 0:
		c.unpark(c.parked[len(c.parked)-1])
		c.takes++
	default:
		if !hs.cpuQueued && !c.stopped {
			hs.cpuQueued = true
			c.ready = append(c.ready, hs)
		}
		return false
	}
	hs.slot = true
	return true
}

// release gives back a slot: to the oldest handshake on a worker still
// waiting for one, else to the oldest new one still open (parked with it
// and sent to the workers), else to the free count (rule 2). The caller
// holds no hsConn's mu.
func (c *cpuSched) release() {
	for {
		c.mu.Lock()
		if c.head < len(c.ready) {
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
		for c.fhead < len(c.fresh) {
			next := c.fresh[c.fhead]
			c.fresh[c.fhead] = nil
			c.fhead++
			if c.fhead > 64 && c.fhead*2 >= len(c.fresh) {
				c.fresh, c.fhead = c.fresh[:copy(c.fresh, c.fresh[c.fhead:])], 0
			}
			if next.cpuState != cpuFresh {
				continue // its connection closed while it waited (cancel)
			}
			c.park(next)
			c.mu.Unlock()
			c.start(next)
			return
		}
		c.free++
		c.ready, c.head = c.ready[:0], 0
		c.fresh, c.fhead = c.fresh[:0], 0
		c.mu.Unlock()
		return
	}
}

// cancel takes hs, whose connection closed, out of the scheduler if no
// worker has taken it yet: a parked slot is released; one still waiting
// for its first slot is dropped from fresh, and cancel reports true (it
// will never reach a worker: the caller uncounts it).
func (c *cpuSched) cancel(hs *hsConn) bool {
	c.mu.Lock()
	switch hs.cpuState {
	case cpuFresh:
		hs.cpuState = cpuNone // release skips it
		c.mu.Unlock()
		return true
	case cpuParked:
		c.unpark(hs)
		c.mu.Unlock()
		c.release()
		return false
	}
	c.mu.Unlock()
	return false
}

// stop wakes every waiting handshake without a slot (Server.Close); the
// new ones still waiting never get one.
func (c *cpuSched) stop() {
	c.mu.Lock()
	c.stopped = true
	waiting := c.ready[c.head:]
	c.ready, c.head = nil, 0
	for _, hs := range c.fresh[c.fhead:] {
		hs.cpuState = cpuNone
	}
	c.fresh, c.fhead = nil, 0
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
