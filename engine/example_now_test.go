package engine_test

import (
	"fmt"
	"net"
	"time"

	"github.com/warrenhq/warren/engine"
)

// stamper answers each read with whether the request's time, read with
// Conn.Now as an inline handler may, is not before the client sent it.
type stamper struct{ sent chan time.Time }

func (stamper) Inline() bool { return true }

func (s stamper) OnData(c *engine.Conn, in []byte) int {
	at := c.Now() // on a loop: the round's time, no clock read
	fmt.Fprintf(c, "stamped after the send: %v\n", !at.Before(<-s.sent))
	return len(in)
}

// ExampleConn_Now: a handler timestamps each request with Conn.Now. On an
// event loop with the system clock that is the time the loop woke for the
// round, read once for all the round's callbacks; elsewhere Engine.Now.
func ExampleConn_Now() {
	h := stamper{sent: make(chan time.Time, 1)}
	e, _ := engine.New(engine.Config{Inline: true, Loops: 1}, h)
	e.Start("127.0.0.1:0")
	defer e.Close()
	c, _ := net.Dial("tcp", e.Addr().String())
	defer c.Close()
	h.sent <- time.Now()
	c.Write([]byte("GET"))
	reply := make([]byte, 64)
	n, _ := c.Read(reply)
	fmt.Print(string(reply[:n]))
	// Output: stamped after the send: true
}
