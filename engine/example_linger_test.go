package engine_test

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"

	"github.com/warrenhq/warren/engine"
)

// refuser answers a request it will not take ("upload" followed by its
// body) at once and closes lingering: the client is still sending, and a
// plain close would reset the connection and could lose the answer.
type refuser struct {
	engine.NopHandler
	closed chan engine.CloseReason
}

func (h refuser) OnData(c *engine.Conn, in []byte) int {
	if bytes.HasPrefix(in, []byte("upload")) {
		c.Write([]byte("refused: too large\n"))
		c.CloseLinger(engine.ReasonLimitReached, nil)
	}
	return len(in)
}

func (h refuser) OnClose(c *engine.Conn, reason engine.CloseReason, err error) { h.closed <- reason }

func ExampleConn_CloseLinger() {
	h := refuser{closed: make(chan engine.CloseReason, 1)}
	e, err := engine.New(engine.Config{Inline: true, Loops: 1}, h)
	if err != nil {
		panic(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	c, _ := net.Dial("tcp", e.Addr().String())
	go func() { // the client sends its upload whatever the server says
		c.Write([]byte("upload"))
		c.Write(make([]byte, 256<<10))
	}()
	answer, err := io.ReadAll(c) // the answer, then the end of stream
	fmt.Printf("%q %v\n", answer, err)
	c.Close() // the server's linger ends at this end of stream
	fmt.Println("closed:", <-h.closed)
	fmt.Println("lingers ended by the peer's end of stream:", e.Stats().Lingers[engine.LingerEOF])
	e.Shutdown(context.Background())
	// Output:
	// "refused: too large\n" <nil>
	// closed: limit_reached
	// lingers ended by the peer's end of stream: 1
}
