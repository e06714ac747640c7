package schedslice_test

import (
	"context"
	"errors"
	"fmt"
	"time"

	"github.com/warrenhq/warren/internal/schedslice"
)

// A server asks once for a 200 µs slice for all its threads, then keeps
// new threads at it until it stops; it exports the Sweeper's metrics.
func Example() {
	s, err := schedslice.New(schedslice.Config{Slice: 200 * time.Microsecond})
	if errors.Is(err, schedslice.ErrUnsupported) {
		fmt.Println("the kernel's slice it is") // not Linux 6.12+: go on without
		return
	}
	if err != nil {
		fmt.Println(err)
		return
	}
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.Run(ctx)
	// registry.MustRegister(s.Collector())
	fmt.Println(s.Slice())
}

// A slice outside the kernel's 0.1–100 ms is refused, not clamped.
func ExampleNew_outOfRange() {
	_, err := schedslice.New(schedslice.Config{Slice: 50 * time.Microsecond})
	fmt.Println(errors.Is(err, schedslice.ErrRange))
	// Output: true
}
