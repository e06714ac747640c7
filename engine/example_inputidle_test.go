package engine_test

import (
	"fmt"
	"time"

	"github.com/warrenhq/warren/engine"
)

// A protocol with a keep-alive (MQTT's: the client must send something
// within 1.5 × its keep-alive) holds the peer to it with an idle timeout
// that only input restarts: what the server sends does not keep a silent
// client open.
func ExampleConn_SetInputIdleTimeout() {
	keepAlive := 60 * time.Second
	h := engine.HandlerFunc(func(c *engine.Conn, in []byte) int {
		c.SetInputIdleTimeout(keepAlive * 3 / 2)
		return len(in)
	})
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	ln, err := e.Listen("127.0.0.1:0", h)
	fmt.Println(ln != nil, err)
	// Output: true <nil>
}
