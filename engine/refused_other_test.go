//go:build !unix

package engine

import (
	"net"
	"net/netip"
	"testing"
)

// refusedAddr returns a loopback address nothing listens on (here a
// listener closed at once: its port may be handed out again).
func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer ln.Close()
	return netip.MustParseAddrPort(ln.Addr().String())
}
