package inline_test

import (
	"fmt"
	"unsafe"

	"github.com/warrenhq/warren/internal/inline"
)

// name is a value that keeps its name's bytes after itself.
type name struct {
	n    uint64
	rest uint64
}

func (v *name) String() string {
	return unsafe.String((*byte)(unsafe.Add(unsafe.Pointer(v), unsafe.Sizeof(name{}))), int(v.n))
}

func ExampleNew() {
	s := "devices/dev-42/commands/+"
	v, b, ok := inline.New[name](len(s))
	if !ok {
		return // too long: inline.WithString
	}
	v.n = uint64(copy(b, s))
	fmt.Println(v)
	// Output: devices/dev-42/commands/+
}
