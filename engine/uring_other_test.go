//go:build !linux

package engine

import "testing"

// skipWithoutRing skips t: Config.IOUring is Linux's.
func skipWithoutRing(t testing.TB) {
	t.Helper()
	t.Skip("io_uring is Linux's")
}
