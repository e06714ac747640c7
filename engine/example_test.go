package engine_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"time"

	"github.com/warrenhq/warren/engine"
)

// upper answers each input with its upper-case form. It never blocks, so it
// can run inline on the event loop.
type upper struct{ engine.NopHandler }

func (upper) OnData(c *engine.Conn, in []byte) int {
	out := make([]byte, len(in))
	for i, b := range in {
		if 'a' <= b && b <= 'z' {
			b -= 'a' - 'A'
		}
		out[i] = b
	}
	c.Write(out)
	return len(in)
}

func (upper) OnClose(c *engine.Conn, reason engine.CloseReason, err error) {
	fmt.Println("closed:", reason)
}

func Example() {
	e, err := engine.New(engine.Config{Inline: true, Loops: 1}, upper{})
	if err != nil {
		panic(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	c, _ := net.Dial("tcp", e.Addr().String())
	c.Write([]byte("hello"))
	buf := make([]byte, 5)
	io.ReadFull(c, buf)
	fmt.Println(string(buf))
	c.Close()
	time.Sleep(100 * time.Millisecond) // let OnClose print
	e.Shutdown(context.Background())
	// Output:
	// HELLO
	// closed: peer_closed
}

// lines consumes whole lines only: a partial line stays pending (and is
// subject to the read timeout) until the rest arrives.
type lines struct{ engine.NopHandler }

func (lines) OnData(c *engine.Conn, in []byte) int {
	n := 0
	for i, b := range in {
		if b == '\n' {
			fmt.Printf("line: %s\n", in[n:i])
			n = i + 1
		}
	}
	return n
}

func ExampleHandler() {
	e, _ := engine.New(engine.Config{Inline: true, Loops: 1}, lines{})
	e.Start("127.0.0.1:0")
	c, _ := net.Dial("tcp", e.Addr().String())
	c.Write([]byte("first\nsec"))
	time.Sleep(50 * time.Millisecond)
	c.Write([]byte("ond\n"))
	time.Sleep(50 * time.Millisecond)
	c.Close()
	e.Close()
	// Output:
	// line: first
	// line: second
}

func ExampleEngine_Shutdown() {
	e, _ := engine.New(engine.Config{}, engine.NopHandler{})
	e.Start("127.0.0.1:0")
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	// Stop accepting, let connections finish, close the rest at the deadline.
	err := e.Shutdown(ctx)
	fmt.Println(err, e.Wait())
	// Output: <nil> engine: server closed
}

func ExampleConn_Dispatch() {
	done := make(chan string, 1)
	h := engine.HandlerFunc(func(c *engine.Conn, in []byte) int {
		msg := string(in)
		// Parse on the loop, then hand blocking work to the worker pool;
		// tasks of one connection run in order.
		c.Dispatch(func() {
			time.Sleep(10 * time.Millisecond) // e.g. a database call
			c.Write([]byte("done " + msg))
		})
		return len(in)
	})
	e, _ := engine.New(engine.Config{Inline: true, Loops: 1}, h)
	e.Start("127.0.0.1:0")
	defer e.Close()
	c, _ := net.Dial("tcp", e.Addr().String())
	defer c.Close()
	c.Write([]byte("job"))
	buf := make([]byte, 8)
	io.ReadFull(c, buf)
	done <- string(buf)
	fmt.Println(<-done)
	// Output: done job
}

// counter counts the bytes a client sends and answers the total when the
// client has finished sending (half-closed its side).
type counter struct{ engine.NopHandler }

func (counter) OnData(c *engine.Conn, in []byte) int {
	n, _ := c.Context().(int)
	c.SetContext(n + len(in))
	return len(in)
}

func (counter) OnEOF(c *engine.Conn) {
	n, _ := c.Context().(int)
	fmt.Fprintf(c, "%d bytes\n", n)
}

func ExampleEOFHandler() {
	e, _ := engine.New(engine.Config{Inline: true, Loops: 1}, counter{})
	e.Start("127.0.0.1:0")
	defer e.Close()
	c, _ := net.Dial("tcp", e.Addr().String())
	c.Write([]byte("twelve bytes"))
	c.(*net.TCPConn).CloseWrite() // FIN: the server's OnEOF runs
	reply, _ := io.ReadAll(c)
	fmt.Print(string(reply))
	// Output: 12 bytes
}

// ExampleEngine_EventLoops: a layer that keeps state per loop index (a
// free list per loop) asks whether the engine has loops; the portable
// engine has none, and its clock is the system clock unless one is
// injected (Engine.SystemClock).
func ExampleEngine_EventLoops() {
	e, err := engine.New(engine.Config{Portable: true}, nil)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println("event loops:", e.EventLoops())
	fmt.Println("system clock:", e.SystemClock())
	// Output:
	// event loops: false
	// system clock: true
}
