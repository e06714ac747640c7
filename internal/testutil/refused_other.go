//go:build !unix

package testutil

import (
	"net"
	"testing"
)

// RefusedAddr returns a loopback TCP address nothing listens on (here a
// listener closed at once: its port may be handed out again).
func RefusedAddr(t testing.TB) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	ln.Close()
	return addr
}
