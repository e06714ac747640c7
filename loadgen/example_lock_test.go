package loadgen_test

import (
	"context"
	"fmt"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/loadgen"
)

// ExampleConfig_lockOSThread runs the client's event loops locked to their
// OS threads and blocking in epoll_wait (warren load -lock-threads
// -blocking-poll); with Procs the settings reach every worker.
func ExampleConfig_lockOSThread() {
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("hello") }))
	eng, err := engine.New(engine.Config{}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Close()
	srv, err := http1.NewServer(eng, http1.Config{}, r)
	if err != nil {
		panic(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}

	rep, err := loadgen.Run(context.Background(), loadgen.Config{
		URL:          "http://" + ln.Addr().String() + "/",
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
