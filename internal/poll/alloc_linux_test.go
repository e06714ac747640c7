//go:build linux && !race

package poll

import "testing"

// A loop parks on every idle moment: parking and waking must not allocate.
func TestParkDoesNotAllocate(t *testing.T) {
	p := newPoller(t, 64)
	ev := make([]Event, 64)
	if a := testing.AllocsPerRun(200, func() {
		p.Wake()
		p.Wait(ev, 50)
	}); a != 0 {
		t.Fatalf("%v allocations per wake and wait, want 0", a)
	}
}
