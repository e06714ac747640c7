package mqtt

import (
	"runtime"
	"strings"
	"testing"
	"unsafe"
)

// A subscription's fields take 20 bytes and a filter of up to
// maxInlineFilter bytes follows them in the same object, the smallest size
// class that holds both: idle/12345 in 32 bytes, a device's
// devices/dev-12345/commands/+ in 48.
func TestSubscriptionLayout(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the sizes are a 64-bit platform's")
	}
	if s := unsafe.Sizeof(subscription{}); s != 24 {
		t.Fatalf("subscription is %d bytes, want 24", s)
	}
	if subSize != 20 {
		t.Fatalf("the inline filter starts at %d, want 20", subSize)
	}
	classes := []uintptr{32, 48, 64, 80, 96, 112, 128, 144, 160}
	ss := newSession("s")
	for n := 0; n <= maxInlineFilter; n++ {
		want := uintptr(0)
		for _, c := range classes {
			if subSize+uintptr(n) <= c {
				want = c
				break
			}
		}
		filter := strings.Repeat("f", n)
		if got := objectBytes(func() { newSub(ss, filter, 0) }); got != want {
			t.Errorf("filter of %d bytes: a %d-byte object, want %d", n, got, want)
		}
	}
	for _, f := range []string{"idle/12345", "devices/dev-12345/commands/+"} {
		var got uintptr
		if got = objectBytes(func() { newSub(ss, f, 0) }); got != 32 && len(f) == 10 || got != 48 && len(f) == 28 {
			t.Errorf("%s: a %d-byte object", f, got)
		}
	}
}

// objectBytes returns the bytes the heap gives to what f allocates: the
// least, over five rounds, of the average over 100 calls, rounded down. A
// stray allocation elsewhere in the process during a round (the race
// detector's, the runtime's) can add several bytes a call to that round's
// average, enough to reach the next size class; it does not strike every
// round.
func objectBytes(f func()) uintptr {
	defer runtime.GOMAXPROCS(runtime.GOMAXPROCS(1))
	f() // warm up
	least := ^uintptr(0)
	for range 5 {
		var a, b runtime.MemStats
		runtime.ReadMemStats(&a)
		for range 100 {
			f()
		}
		runtime.ReadMemStats(&b)
		least = min(least, uintptr((b.TotalAlloc-a.TotalAlloc)/100))
	}
	return least
}

// Every form of subscription keeps what it was given: the filter (a copy:
// onSubscribe hands it a view of the packet), the identifier, where the
// topic filter starts (past 255 in a long one, with a long share name) and
// the options; an identifier or a filter over maxInlineFilter makes it
// long.
func TestSubscriptionForms(t *testing.T) {
	ss := newSession("s")
	for _, group := range []string{"", "g", strings.Repeat("g", 300)} {
		for _, n := range []int{0, 1, 12, 13, 28, 29, 100, 128, 129, 400} {
			for _, id := range []uint32{0, 1, 268435455} {
				topic := strings.Repeat("t", n)
				filter := topic
				if group != "" {
					filter = sharePrefix + group + "/" + topic
				}
				src := []byte(filter)
				sub := newSub(ss, stringOf(src), id)
				sub.setTF(len(filter) - len(topic))
				for i := range src {
					src[i] = '#'
				}
				long := len(filter) > maxInlineFilter || id != 0
				if sub.filter() != filter || sub.topicFilter() != topic || sub.group() != group || sub.id() != id ||
					sub.sess != ss || sub.flags&subIsLong != 0 != long {
					t.Fatalf("group %d, topic %d, id %d: filter %q, topic %q, group %q, id %d, long %v",
						len(group), n, id, sub.filter(), sub.topicFilter(), sub.group(), sub.id(), sub.flags&subIsLong != 0)
				}
				for _, o := range []struct {
					qos          QoS
					noLocal, rap bool
				}{{QoS2, true, false}, {QoS1, false, true}, {QoS0, true, true}, {QoS2, false, false}} {
					sub.setOptions(o.qos, o.noLocal, o.rap)
					if sub.qos != o.qos || sub.noLocal() != o.noLocal || sub.rap() != o.rap || sub.id() != id || sub.filter() != filter {
						t.Fatalf("options %+v: qos %d, no local %v, rap %v, id %d", o, sub.qos, sub.noLocal(), sub.rap(), sub.id())
					}
				}
			}
		}
	}
}
