package memtrim_test

import (
	"context"
	"fmt"
	"os"

	"github.com/warrenhq/warren/internal/memtrim"
)

// A server starts one Trimmer for its process and exports its metrics.
func Example() {
	t := memtrim.New(memtrim.Config{}) // the defaults: 16 MiB, 1 MiB/s, 1s, 30s
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go t.Run(ctx)
	// registry.MustRegister(t.Collector())
	fmt.Println(t.Stats().Trims)
	// Output: 0
}

// A server settles its runtime once its listeners are up: the collection
// at the end of start-up.
func ExampleTrimmer_Settle() {
	t := memtrim.New(memtrim.Config{})
	// ... listeners up ...
	t.Settle()
	fmt.Println(t.Stats().Settles)
	// Output: 1
}

// A -gogc flag whose default is $GOGC when set, else the program's own.
func ExampleEnvGOGC() {
	os.Setenv("GOGC", "off")
	fmt.Println(memtrim.EnvGOGC(25))
	os.Unsetenv("GOGC")
	fmt.Println(memtrim.EnvGOGC(25))
	// Output:
	// -1
	// 25
}
