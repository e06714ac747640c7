//go:build unix

package engine

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// refusedAddr returns a loopback address that refuses connections for the
// rest of the test: a socket bound to it that never listens, so no other
// test or process can listen on its port meanwhile, which a listener
// closed at once cannot promise. (internal/testutil has the same helper;
// it imports engine, so engine's own tests cannot use it.)
func refusedAddr(t *testing.T) netip.AddrPort {
	t.Helper()
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	unix.CloseOnExec(fd)
	t.Cleanup(func() { unix.Close(fd) })
	if err := unix.Bind(fd, &unix.SockaddrInet4{Addr: [4]byte{127, 0, 0, 1}}); err != nil {
		t.Fatal(err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		t.Fatal(err)
	}
	in4, ok := sa.(*unix.SockaddrInet4)
	if !ok {
		t.Fatalf("getsockname: %T", sa)
	}
	return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port))
}
