//go:build !unix

package testaddr

import (
	"net"
	"testing"
)

// Refused returns a loopback TCP address nothing listens on (here a
// listener closed at once: its port may be handed out again).
func Refused(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
