package testutil

import (
	"testing"

	"github.com/warrenhq/warren/internal/testaddr"
)

// RefusedAddr returns a loopback TCP address that refuses connections for
// the rest of the test (testaddr.Refused; engine's own tests call that
// package, which does not import engine).
func RefusedAddr(t testing.TB) string { return testaddr.Refused(t) }
