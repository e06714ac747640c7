package engine

import (
	"testing"
	"unsafe"
)

// TestConnSize guards the per-connection cost: an idle connection is this
// struct and its slot in the loop's table. Growing it past 240 bytes moves
// it into the next allocation size class (256) and costs every idle
// connection.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(Conn{}); n > 240 {
		t.Fatalf("engine.Conn is %d bytes, over 240", n)
	}
}
