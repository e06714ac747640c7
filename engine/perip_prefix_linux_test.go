//go:build linux

package engine

import (
	"net"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/netns"
)

// TestPerIPv6PrefixSockets: with real connections from three IPv6 source
// addresses, two of one /64 and one of the next, MaxConnsPerIP 1 admits
// one connection from the /64 and one from the other.
func TestPerIPv6PrefixSockets(t *testing.T) {
	if !netns.Run(t, "2001:db8::1/64", "2001:db8::2/64", "2001:db8:0:1::1/64") {
		return
	}
	e, err := New(Config{Loops: 2, MaxConnsPerIP: 1, Inline: true}, newEcho())
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start("[2001:db8::1]:0"); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { e.Close() })
	addr := e.Addr().String()
	from := func(src string) net.Conn {
		t.Helper()
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := d.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		return c
	}
	roundTrip(t, from("2001:db8::1"), "first of the /64")
	second := from("2001:db8::2")
	second.SetReadDeadline(time.Now().Add(5 * time.Second))
	second.Write([]byte("x"))
	if _, err := second.Read(make([]byte, 1)); err == nil {
		t.Fatal("a second address of the same /64 was served past MaxConnsPerIP 1")
	}
	roundTrip(t, from("2001:db8:0:1::1"), "another /64")
}
