// Package timerwheel is a coarse hashed timing wheel owned by one event loop.
//
// Entries are intrusive (an Entry lives inside the object it times), so
// scheduling allocates nothing. Deadlines are in whole ticks. Advance visits
// only the slots whose tick has passed; an entry whose deadline lies more
// than one rotation ahead stays in its slot and is looked at again one
// rotation later, so a tick costs time proportional to the entries hashed to
// it, not to every entry in the wheel.
//
// A Wheel is not safe for concurrent use; its owner serialises access.
package timerwheel

// Entry is one scheduled item. The zero Entry is unscheduled.
type Entry[T any] struct {
	next, prev *Entry[T]
	deadline   int64
	slot       int32
	// Value is what the entry times; Advance hands it back on expiry.
	Value T
}

// Scheduled reports whether e is in a wheel.
func (e *Entry[T]) Scheduled() bool { return e.slot > 0 }

// Deadline returns the tick e is scheduled for; meaningful while Scheduled.
func (e *Entry[T]) Deadline() int64 { return e.deadline }

// Wheel is a ring of slots, each a circular doubly linked list of entries.
type Wheel[T any] struct {
	slots []Entry[T] // sentinels; slot numbers stored in entries are index+1
	mask  int64
	now   int64 // last tick advanced to
	n     int
}

// New returns a wheel with at least slots slots (rounded up to a power of two)
// whose current tick is now.
func New[T any](slots int, now int64) *Wheel[T] {
	size := 1
	for size < slots {
		size <<= 1
	}
	w := &Wheel[T]{slots: make([]Entry[T], size), mask: int64(size - 1), now: now}
	for i := range w.slots {
		s := &w.slots[i]
		s.next, s.prev = s, s
	}
	return w
}

// Len returns the number of scheduled entries.
func (w *Wheel[T]) Len() int { return w.n }

// Now returns the last tick the wheel was advanced to.
func (w *Wheel[T]) Now() int64 { return w.now }

// Schedule places e at deadline (a tick), moving it if already scheduled.
// A deadline at or before the current tick fires on the next Advance.
func (w *Wheel[T]) Schedule(e *Entry[T], deadline int64) {
	if e.slot > 0 {
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
	e.slot = int32(idx) + 1
	w.n++
}

// Remove unschedules e; it is a no-op for an unscheduled entry.
func (w *Wheel[T]) Remove(e *Entry[T]) {
	if e.slot > 0 {
		w.unlink(e)
	}
}

func (w *Wheel[T]) unlink(e *Entry[T]) {
	e.prev.next = e.next
	e.next.prev = e.prev
	e.next, e.prev = nil, nil
	e.slot = 0
	w.n--
}

// Advance moves the wheel to tick now and calls fire for every entry whose
// deadline is at or before now, after unscheduling it. fire may schedule
// entries again (including the one it was given).
func (w *Wheel[T]) Advance(now int64, fire func(e *Entry[T])) {
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
		// Detach the slot's list first so fire can reschedule into this
		// very slot without being visited again in this pass.
		first, last := s.next, s.prev
		if first == s {
			continue
		}
		s.next, s.prev = s, s
		first.prev, last.next = nil, nil
		for e := first; e != nil; {
			next := e.next
			e.next, e.prev, e.slot = nil, nil, 0
			w.n--
			if e.deadline <= now {
				fire(e)
			} else {
				w.Schedule(e, e.deadline)
			}
			e = next
		}
	}
}

// NextDeadline reports the earliest tick with anything scheduled at most
// limit ticks ahead, and whether there is one. It scans slots, so owners
// call it only to size a poll timeout.
func (w *Wheel[T]) NextDeadline(limit int64) (int64, bool) {
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
