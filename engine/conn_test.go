package engine

import (
	"net/netip"
	"slices"
	"testing"
	"time"
	"unsafe"
)

// connSizeClasses are the Go allocator's size classes around Conn's size
// (runtime/sizeclasses.go): an object is rounded up to the next of them.
var connSizeClasses = []uintptr{176, 192, 208, 224, 240, 256, 288}

// connSize is what an engine.Conn costs, the top of its malloc size class:
// one more field costs a whole class step (16 bytes) for every idle
// connection. Shrink it and lower the figure; do not raise it.
const connSize = 192

// TestConnSize guards the size of Conn and that it fills its size class.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the figure is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Conn{}); got != connSize {
		t.Fatalf("engine.Conn is %d bytes, want %d", got, connSize)
	}
	if !slices.Contains(connSizeClasses, connSize) {
		t.Fatalf("%d is not a malloc size class: Conn pays for bytes it does not use", connSize)
	}
}

// TestConnOfTimer checks the step from a wheel entry back to its Conn.
func TestConnOfTimer(t *testing.T) {
	c := new(Conn)
	if got := connOfTimer(&c.timer); got != c {
		t.Fatalf("connOfTimer(&c.timer) = %p, want %p", got, c)
	}
}

// TestRemoteAddr checks that the compact peer address gives back what
// setRemote stored, for both families.
func TestRemoteAddr(t *testing.T) {
	for _, s := range []string{
		"192.0.2.1:80", "[2001:db8::1]:443", "[::ffff:192.0.2.7]:8080", "[::]:1", "0.0.0.0:0",
	} {
		ap := netip.MustParseAddrPort(s)
		var c Conn
		c.setRemote(ap)
		want := netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
		if got := c.RemoteAddr(); got != want {
			t.Errorf("RemoteAddr after setRemote(%s) = %s, want %s", s, got, want)
		}
	}
}

// TestStamp checks that a 32-bit stamp reads back as its tick around the
// points where the low 32 bits wrap, a little behind now (activity stamped
// earlier) and a little ahead (a writer stamped a tick the loop has not
// read yet), and that no tick stamps as "none".
func TestStamp(t *testing.T) {
	for _, now := range []int64{1, 100, 1<<31 - 1, 1 << 31, 1<<32 - 1, 1 << 32, 1<<32 + 5, 3<<32 + 17, 1 << 40} {
		for _, d := range []int64{-maxTimeoutTicks - 1, -1 << 20, -1, 0, 1, 2} {
			tick := now + d
			if tick < 1 {
				continue
			}
			s := stampOf(tick)
			if s == 0 {
				t.Fatalf("stampOf(%d) is the zero stamp", tick)
			}
			if got := s.at(now); got != tick && !(uint32(tick) == 0 && got == tick+1) {
				t.Errorf("stampOf(%d).at(%d) = %d", tick, now, got)
			}
		}
	}
}

// TestWhyBits checks that the close reason kept in cs leaves the
// close-state bits alone, for every reason.
func TestWhyBits(t *testing.T) {
	var c Conn
	c.cs = csClosing | csArmPending
	for r := ReasonNone; r < numReasons; r++ {
		c.setWhy(r)
		if c.why() != r || c.cs&(1<<whyShift-1) != csClosing|csArmPending {
			t.Fatalf("setWhy(%v): why %v, cs %#x", r, c.why(), c.cs)
		}
	}
}

// BenchmarkWriteDispatch times Write up to the poll engine's write path on
// a connection that is closing, so no system call hides the fixed cost of
// reaching it (host.go: the type check in place of an interface call).
func BenchmarkWriteDispatch(b *testing.B) {
	c := &Conn{host: &loop{}, cs: csClosing}
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != ErrClosed {
			b.Fatal(err)
		}
	}
}

// TestTicksCap: a timeout converts to whole ticks rounded up, capped at
// maxTimeoutTicks, whatever the tick (a long tick once overflowed the cap's
// product and gave every timeout centuries).
func TestTicksCap(t *testing.T) {
	for _, c := range []struct {
		tick, d time.Duration
		want    int64
	}{
		{100 * time.Millisecond, 30 * time.Second, 300},
		{100 * time.Millisecond, 150 * time.Millisecond, 2},
		{time.Millisecond, 1000 * 24 * time.Hour, maxTimeoutTicks},
		{9 * time.Second, 30 * time.Second, 4},
		{10 * time.Second, 30 * time.Second, 3},
		{time.Minute, 30 * time.Second, 1},
		{time.Hour, time.Duration(1 << 62), 1281024},
		{100 * time.Millisecond, time.Duration(1<<63 - 1), maxTimeoutTicks},
	} {
		e := &Engine{tickDur: c.tick}
		if got := e.ticks(c.d); got != c.want {
			t.Errorf("tick %v, timeout %v: %d ticks, want %d", c.tick, c.d, got, c.want)
		}
	}
}
