//go:build unix

package testaddr

import (
	"net/netip"
	"testing"

	"golang.org/x/sys/unix"
)

// Refused returns a loopback TCP address that refuses connections
// for the rest of the test: a socket bound to it that never listens.
// Holding the port keeps any other listener of a parallel test or
// process off it, which a listener closed at once cannot (its port may
// be handed out again before the test dials it).
func Refused(t testing.TB) string {
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
	return netip.AddrPortFrom(netip.AddrFrom4(in4.Addr), uint16(in4.Port)).String()
}
