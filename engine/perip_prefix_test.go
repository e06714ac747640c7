package engine

import (
	"net/netip"
	"testing"
)

// TestPerIPv6Prefix counts IPv6 clients by their /64 unless told otherwise,
// and gives a /64's slot back when one of its connections closes. The
// addresses are synthetic (admit and release are what accept and close
// call), since a test cannot give loopback a second IPv6 address.
func TestPerIPv6Prefix(t *testing.T) {
	a := netip.MustParseAddr("2001:db8:1:2::a")
	b := netip.MustParseAddr("2001:db8:1:2:ffff::b") // a's /64
	other := netip.MustParseAddr("2001:db8:1:3::a")  // the next /64
	v4 := netip.MustParseAddr("192.0.2.1")
	v4b := netip.MustParseAddr("192.0.2.2")

	admitted := func(e *Engine, ip netip.Addr) bool {
		t.Helper()
		bound, ok := e.admit(ip)
		if !ok && bound != BoundPerIP {
			t.Fatalf("admit(%s) refused by %v", ip, bound)
		}
		return ok
	}
	conn := func(ip netip.Addr) *Conn { return &Conn{ln: 1, raddr: ip.Unmap().As16()} }

	t.Run("default /64", func(t *testing.T) {
		e, err := New(Config{MaxConnsPerIP: 1}, newEcho())
		if err != nil {
			t.Fatal(err)
		}
		if !admitted(e, a) {
			t.Fatal("first address of a /64 refused")
		}
		if admitted(e, b) {
			t.Fatal("a second address of the same /64 admitted past MaxConnsPerIP 1")
		}
		if !admitted(e, other) {
			t.Fatal("another /64 refused")
		}
		if !admitted(e, v4) || admitted(e, v4) || !admitted(e, v4b) {
			t.Fatal("IPv4 clients not counted by address")
		}
		e.release(conn(a))
		if !admitted(e, b) {
			t.Fatal("the /64's slot not given back when a's connection closed")
		}
		e.release(conn(b))
		e.release(conn(other))
		e.release(conn(v4))
		e.release(conn(v4b))
		if n := len(e.perIP); n != 0 {
			t.Fatalf("%d per-IP entries left after every connection closed", n)
		}
	})
	t.Run("128", func(t *testing.T) {
		e, err := New(Config{MaxConnsPerIP: 1, PerIPv6Prefix: 128}, newEcho())
		if err != nil {
			t.Fatal(err)
		}
		if !admitted(e, a) || !admitted(e, b) || admitted(e, a) {
			t.Fatal("with PerIPv6Prefix 128 each address must be its own client")
		}
	})
	t.Run("48", func(t *testing.T) {
		e, err := New(Config{MaxConnsPerIP: 1, PerIPv6Prefix: 48}, newEcho())
		if err != nil {
			t.Fatal(err)
		}
		if !admitted(e, a) || admitted(e, other) {
			t.Fatal("with PerIPv6Prefix 48 two /64s of one /48 must be one client")
		}
	})
}
