package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"

	"github.com/warrenhq/warren/engine"
)

// echoBack writes every input back; it never blocks.
type echoBack struct{ engine.NopHandler }

func (echoBack) OnData(c *engine.Conn, in []byte) int {
	c.Write(append([]byte(nil), in...))
	return len(in)
}

// A service that is busy and latency-bound lets its idle loops block their
// threads in epoll_wait (Config.BlockingPoll), as warren proxy does: under
// load no loop's events then wait for another loop's busy spell. Starting
// the engine raises GOMAXPROCS by one when it equals Loops.
func ExampleConfig_blockingPoll() {
	e, err := engine.New(engine.Config{Inline: true, Loops: 1, BlockingPoll: true}, echoBack{})
	if err != nil {
		panic(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer e.Shutdown(context.Background())
	c, _ := net.Dial("tcp", e.Addr().String())
	defer c.Close()
	c.Write([]byte("ping"))
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output: ping
}

// Loops can also be locked to their OS threads (Config.LockOSThread), so
// that each loop's work stays on one thread; with BlockingPoll, a loop's
// thread then sleeps in epoll_wait and is woken by the kernel for that
// loop's sockets alone.
func ExampleConfig_lockOSThread() {
	cfg := engine.Config{Inline: true, Loops: 2, BlockingPoll: true, LockOSThread: true}
	e, err := engine.New(cfg, echoBack{})
	if err != nil {
		panic(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer e.Shutdown(context.Background())
	c, _ := net.Dial("tcp", e.Addr().String())
	defer c.Close()
	c.Write([]byte("pong"))
	buf := make([]byte, 4)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	// Output: pong
}
