package keytab_test

import (
	"fmt"

	"github.com/warrenhq/warren/internal/keytab"
)

// device is keyed by its id: the table keeps a pointer to it, nothing
// else.
type device struct{ id string }

func (d *device) TableKey() string { return d.id }

func Example() {
	var t keytab.Table[*device]
	a, b := &device{"dev-1"}, &device{"dev-2"}
	t.Put(a)
	t.Put(b)
	fmt.Println(t.Len(), t.Get("dev-2") == b, t.Get("dev-3") == nil)
	// A device connecting again replaces its entry, by the same key.
	a2 := &device{"dev-1"}
	t.Replace(a, a2)
	fmt.Println(t.Get("dev-1") == a2, t.Remove(a))
	t.Remove(a2)
	t.Remove(b)
	fmt.Println(t.Len())
	// Output:
	// 2 true true
	// true false
	// 0
}
