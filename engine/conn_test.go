package engine

import (
	"net/netip"
	"testing"
	"unsafe"
)

// TestConnSize guards the size of Conn: 240 bytes is the top of a malloc
// size class, so one more field costs a whole class step (16 bytes) for
// every idle connection. Shrink it and lower the figure; do not raise it.
func TestConnSize(t *testing.T) {
	if unsafe.Sizeof(uintptr(0)) != 8 {
		t.Skip("the figure is for 64-bit platforms")
	}
	if got := unsafe.Sizeof(Conn{}); got != 240 {
		t.Fatalf("engine.Conn is %d bytes, want 240", got)
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

// BenchmarkWriteDispatch times Write up to the poll engine's write path on
// a connection that is closing, so no system call hides the fixed cost of
// reaching it (host.go: the type check in place of an interface call).
func BenchmarkWriteDispatch(b *testing.B) {
	c := &Conn{host: &loop{}, closing: true}
	msg := make([]byte, 64)
	b.ReportAllocs()
	for b.Loop() {
		if _, err := c.Write(msg); err != ErrClosed {
			b.Fatal(err)
		}
	}
}
