// Package timerwheel is a coarse hashed timing wheel owned by one event loop.
//
// Entries are intrusive (an Entry lives inside the object it times), so
// scheduling allocates nothing. An Entry is three words and nothing else:
// the owner finds its object from the entry's address (the engine's Conn
// holds one per connection, so every word counts). Deadlines are in whole ticks. Advance visits
// only the slots whose tick has passed; an entry whose deadline lies more
// than one rotation ahead stays in its slot and is looked at again one
// rotation later, so a tick costs time proportional to the entries hashed to
// it, not to every entry in the wheel.
//
// A Wheel is not safe for concurrent use; its owner serialises access.
package timerwheel

// Entry is one scheduled item. The zero Entry is unscheduled. It holds
// no pointer to what it times: Advance hands back the entry itself, and
// the owner gets from it to the object it is embedded in.
type Entry struct {
	next, prev *Entry // nil while unscheduled
	deadline   int64
}

// Scheduled reports whether e is in a wheel.
func (e *Entry) Scheduled() bool { return e.next != nil }

// Deadline returns the tick e is scheduled for; meaningful while Scheduled.
func (e *Entry) Deadline() int64 { return e.deadline }

// Wheel is a ring of slots, each a circular doubly linked list of entries
// around a sentinel.
type Wheel struct {
	slots []Entry // sentinels
	pass  Entry   // sentinel of the entries Advance is visiting
	mask  int64
	now   int64 // last tick advanced to
	n     int
}

// New returns a wheel with at least slots slots (rounded up to a power of two)
// whose current tick is now.
func New(slots int, now int64) *Wheel {
	size := 1
	for size < slots {
		size <<= 1
	}
	w := &Wheel{slots: make([]Entry, size), mask: int64(size - 1), now: now}
	for i := range w.slots {
		s := &w.slots[i]
		s.next, s.prev = s, s
	}
	return w
}

// Len returns the number of scheduled entries.
func (w *Wheel) Len() int { return w.n }

// Now returns the last tick the wheel was advanced to.
func (w *Wheel) Now() int64 { return w.now }

// Schedule places e at deadline (a tick), moving it if already scheduled.
// A deadline at or before the current tick fires on the next Advance.
func (w *Wheel) Schedule(e *Entry, deadline int64) {
	if e.next != nil {
		w.unlink(e)
	}
	if deadline <= w.now {
		deadline = w.now + 1
	}
	e.deadline = deadline
	idx := deadline & w.mask
	s := &w.slots[idx]
	e.prev = s.prev
	e.next = s
	s.prev.next = e
	s.prev = e
	w.n++
}

// Remove unschedules e; it is a no-op for an unscheduled entry.
func (w *Wheel) Remove(e *Entry) {
	if e.next != nil {
		w.unlink(e)
	}
}

func (w *Wheel) unlink(e *Entry) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.next, e.prev = nil, nil
	w.n--
}

// Advance moves the wheel to tick now and calls fire for every entry whose
// deadline is at or before now, after unscheduling it. fire may schedule
// entries again (including the one it was given).
func (w *Wheel) Advance(now int64, fire func(e *Entry)) {
	if now <= w.now {
		return
	}
	from := w.now + 1
	// Past a whole rotation every slot is visited once.
	if now-from > w.mask {
		from = now - w.mask
	}
	w.now = now
	for t := from; t <= now; t++ {
		s := &w.slots[t&w.mask]
		// Move the slot's list to the pass list first, so fire can
		// reschedule into this very slot without being visited again in
		// this pass. Every entry stays in a proper list throughout, so fire
		// may also remove or reschedule entries not yet visited.
		if s.next == s {
			continue
		}
		p := &w.pass
		p.next, p.prev = s.next, s.prev
		p.next.prev, p.prev.next = p, p
		s.next, s.prev = s, s
		for p.next != p {
			e := p.next
			w.unlink(e)
			if e.deadline <= now {
				fire(e)
			} else {
				w.Schedule(e, e.deadline)
			}
		}
	}
}

// NextDeadline reports the earliest tick with anything scheduled at most
// limit ticks ahead, and whether there is one. It scans slots, so owners
// call it only to size a poll timeout.
func (w *Wheel) NextDeadline(limit int64) (int64, bool) {
	if w.n == 0 {
		return 0, false
	}
	if limit > w.mask {
		limit = w.mask
	}
	for t := w.now + 1; t <= w.now+limit; t++ {
		s := &w.slots[t&w.mask]
		if s.next != s {
			return t, true
		}
	}
	return 0, false
}
