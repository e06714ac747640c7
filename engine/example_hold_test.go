package engine_test

import (
	"bufio"
	"fmt"
	"net"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
)

// asker answers each line when a reply arrives from elsewhere — a timer
// stands in for a message bus — without a worker or the loop waiting for
// it, one line at a time: a line that arrives while one is held waits.
// (One connection here; real code keeps such state per connection, in
// c.Context.)
type asker struct {
	engine.NopHandler
	busy atomic.Bool
}

func (a *asker) OnData(c *engine.Conn, in []byte) int {
	i := 0
	for i < len(in) && in[i] != '\n' {
		i++
	}
	if i == len(in) || a.busy.Load() {
		return 0 // a whole line, and only after the one in progress
	}
	line := string(in[:i])
	a.busy.Store(true)
	release := c.Hold()
	time.AfterFunc(10*time.Millisecond, func() {
		c.Write([]byte("answer to " + line + "\n"))
		a.busy.Store(false)
		release() // what was left is presented again
	})
	return i + 1
}

func ExampleConn_Hold() {
	e, _ := engine.New(engine.Config{Inline: true, Loops: 1}, &asker{})
	e.Start("127.0.0.1:0")
	defer e.Close()
	c, _ := net.Dial("tcp", e.Addr().String())
	defer c.Close()
	c.Write([]byte("one\ntwo\n"))
	r := bufio.NewReader(c)
	for range 2 {
		s, _ := r.ReadString('\n')
		fmt.Print(s)
	}
	// Output:
	// answer to one
	// answer to two
}
