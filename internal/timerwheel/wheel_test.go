package timerwheel

import (
	"math/rand"
	"testing"
)

type item struct {
	e        Entry[*item]
	deadline int64
	fired    int64
}

func TestFiresAtDeadline(t *testing.T) {
	w := New[*item](64, 0)
	items := make([]*item, 500)
	r := rand.New(rand.NewSource(1))
	for i := range items {
		it := &item{deadline: 1 + r.Int63n(1000), fired: -1}
		it.e.Value = it
		items[i] = it
		w.Schedule(&it.e, it.deadline)
	}
	if w.Len() != len(items) {
		t.Fatalf("Len = %d", w.Len())
	}
	for now := int64(1); now <= 1000; now++ {
		w.Advance(now, func(e *Entry[*item]) {
			if e.Value.fired != -1 {
				t.Fatalf("fired twice")
			}
			e.Value.fired = now
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
	w := New[*item](8, 0)
	a, b, c := &item{}, &item{}, &item{}
	for _, it := range []*item{a, b, c} {
		it.e.Value = it
	}
	w.Schedule(&a.e, 5)
	w.Schedule(&b.e, 100) // beyond one rotation
	w.Schedule(&c.e, 6)
	w.Remove(&c.e)
	w.Remove(&c.e) // idempotent
	var got []*item
	w.Advance(50, func(e *Entry[*item]) { got = append(got, e.Value) })
	if len(got) != 1 || got[0] != a {
		t.Fatalf("after jump to 50 fired %v", got)
	}
	if !b.e.Scheduled() || w.Len() != 1 {
		t.Fatal("far entry lost")
	}
	w.Advance(99, func(e *Entry[*item]) { t.Fatal("fired early") })
	w.Advance(100, func(e *Entry[*item]) { got = append(got, e.Value) })
	if len(got) != 2 || got[1] != b {
		t.Fatal("far entry not fired at its deadline")
	}
}

func TestRescheduleFromFire(t *testing.T) {
	w := New[*item](16, 0)
	it := &item{}
	it.e.Value = it
	w.Schedule(&it.e, 3)
	count := 0
	for now := int64(1); now <= 40; now++ {
		w.Advance(now, func(e *Entry[*item]) {
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

func TestPastDeadlineFiresNextTick(t *testing.T) {
	w := New[*item](16, 10)
	it := &item{}
	w.Schedule(&it.e, 3)
	fired := false
	w.Advance(11, func(*Entry[*item]) { fired = true })
	if !fired {
		t.Fatal("past deadline did not fire on the next tick")
	}
}

func BenchmarkScheduleAdvance(b *testing.B) {
	w := New[*item](1024, 0)
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
			w.Advance(w.Now()+1, func(e *Entry[*item]) { w.Schedule(e, w.Now()+500) })
		}
	}
}
