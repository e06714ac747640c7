package loadgen_test

import (
	"context"
	"fmt"
	"time"

	"github.com/warrenhq/warren/loadgen"
)

// ExampleConfig_lockOSThread runs the client's event loops locked to their
// OS threads and blocking in epoll_wait (warren load -lock-threads
// -blocking-poll); with Procs the settings reach every worker.
func ExampleConfig_lockOSThread() {
	addr, stop := helloServer() // as in ExampleRun
	defer stop()

	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:          "http://" + addr + "/",
		Conns:        4,
		Duration:     200 * time.Millisecond,
		Loops:        1,
		BlockingPoll: true,
		LockOSThread: true,
	})
	if err != nil {
		panic(err)
	}
	fmt.Println("connections:", rep.Connects)
	fmt.Println("all answered:", rep.Requests > 0 && rep.Requests == rep.Sent)
	fmt.Println("errors:", rep.TotalErrors())

	// Output:
	// connections: 4
	// all answered: true
	// errors: 0
}
