package timerwheel

import (
	"math/rand"
	"testing"
	"unsafe"
)

// item embeds its entry first, so the entry's address is the item's.
type item struct {
	e        Entry
	deadline int64
	fired    int64
}

func itemOf(e *Entry) *item { return (*item)(unsafe.Pointer(e)) }

func TestFiresAtDeadline(t *testing.T) {
	w := New(64, 0)
	items := make([]*item, 500)
	r := rand.New(rand.NewSource(1))
	for i := range items {
		it := &item{deadline: 1 + r.Int63n(1000), fired: -1}
		items[i] = it
		w.Schedule(&it.e, it.deadline)
	}
	if w.Len() != len(items) {
		t.Fatalf("Len = %d", w.Len())
	}
	for now := int64(1); now <= 1000; now++ {
		w.Advance(now, func(e *Entry) {
			if itemOf(e).fired != -1 {
				t.Fatalf("fired twice")
			}
			itemOf(e).fired = now
		})
	}
	for _, it := range items {
		if it.fired != it.deadline {
			t.Fatalf("deadline %d fired at %d", it.deadline, it.fired)
		}
	}
	if w.Len() != 0 {
		t.Fatalf("Len = %d after all fired", w.Len())
	}
}

func TestAdvanceJumpsAndRemove(t *testing.T) {
	w := New(8, 0)
	a, b, c := &item{}, &item{}, &item{}
	w.Schedule(&a.e, 5)
	w.Schedule(&b.e, 100) // beyond one rotation
	w.Schedule(&c.e, 6)
	w.Remove(&c.e)
	w.Remove(&c.e) // idempotent
	var got []*item
	w.Advance(50, func(e *Entry) { got = append(got, itemOf(e)) })
	if len(got) != 1 || got[0] != a {
		t.Fatalf("after jump to 50 fired %v", got)
	}
	if !b.e.Scheduled() || w.Len() != 1 {
		t.Fatal("far entry lost")
	}
	w.Advance(99, func(e *Entry) { t.Fatal("fired early") })
	w.Advance(100, func(e *Entry) { got = append(got, itemOf(e)) })
	if len(got) != 2 || got[1] != b {
		t.Fatal("far entry not fired at its deadline")
	}
}

func TestRescheduleFromFire(t *testing.T) {
	w := New(16, 0)
	it := &item{}
	w.Schedule(&it.e, 3)
	count := 0
	for now := int64(1); now <= 40; now++ {
		w.Advance(now, func(e *Entry) {
			count++
			w.Schedule(e, now+3)
		})
	}
	if count != 13 {
		t.Fatalf("periodic entry fired %d times, want 13", count)
	}
	if d, ok := w.NextDeadline(10); !ok || d != 42 {
		t.Fatalf("NextDeadline = %d %v", d, ok)
	}
}

// TestFireChangesOthers lets fire remove and reschedule entries that the
// same pass has not visited yet: each stays in exactly one list.
func TestFireChangesOthers(t *testing.T) {
	w := New(8, 0)
	items := make([]item, 6)
	for i := range items {
		items[i].deadline = int64(i) // here: the item's number
		w.Schedule(&items[i].e, 3)
	}
	var fired []int64
	w.Advance(3, func(e *Entry) {
		n := itemOf(e).deadline
		fired = append(fired, n)
		if n == 0 {
			w.Remove(&items[5].e)       // the last one of the pass
			w.Schedule(&items[2].e, 7)  // a later tick
			w.Schedule(&items[3].e, 11) // this very slot, a rotation on
		}
	})
	if len(fired) != 3 || fired[0] != 0 || fired[1] != 1 || fired[2] != 4 {
		t.Fatalf("fired %v, want [0 1 4]", fired)
	}
	if w.Len() != 2 || !items[2].e.Scheduled() || !items[3].e.Scheduled() || items[5].e.Scheduled() {
		t.Fatalf("Len %d after the pass", w.Len())
	}
	var later []int64
	for now := int64(4); now <= 11; now++ {
		w.Advance(now, func(e *Entry) { later = append(later, itemOf(e).deadline) })
	}
	if len(later) != 2 || later[0] != 2 || later[1] != 3 || w.Len() != 0 {
		t.Fatalf("later fired %v, Len %d", later, w.Len())
	}
}

func TestPastDeadlineFiresNextTick(t *testing.T) {
	w := New(16, 10)
	it := &item{}
	w.Schedule(&it.e, 3)
	fired := false
	w.Advance(11, func(*Entry) { fired = true })
	if !fired {
		t.Fatal("past deadline did not fire on the next tick")
	}
}

func BenchmarkScheduleAdvance(b *testing.B) {
	w := New(1024, 0)
	items := make([]item, 10000)
	for i := range items {
		w.Schedule(&items[i].e, int64(1+i%2000))
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := 0; i < b.N; i++ {
		it := &items[i%len(items)]
		w.Schedule(&it.e, w.Now()+int64(1+i%2000))
		if i%100 == 0 {
			w.Advance(w.Now()+1, func(e *Entry) { w.Schedule(e, w.Now()+500) })
		}
	}
}
