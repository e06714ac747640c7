package mqtt

import (
	"testing"
	"unsafe"
)

// The structs an idle subscribed client holds stay within their size
// classes: a field added carelessly shows here first.
func TestIdleStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"conn with its Client", unsafe.Sizeof(conn{}), 144},
		{"Client", unsafe.Sizeof(Client{}), 64},
		{"session", unsafe.Sizeof(session{}), 64},
		{"subscription", unsafe.Sizeof(subscription{}), 48},
		{"trie node", unsafe.Sizeof(node[*subscription]{}), 48},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over %d", c.name, c.size, c.max)
		}
	}
}
