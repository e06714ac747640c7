package engine_test

import (
	"fmt"
	"io"
	"net"
	"time"

	"github.com/warrenhq/warren/engine"
)

// ExampleConn_SetTransform switches a connection to a transform (here a
// toy XOR; in warren, the TLS record layer) once a preamble has been read:
// the transform goes in first, then the protocol handler that speaks
// through it, then what was read ahead.
func ExampleConn_SetTransform() {
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	ln, _ := e.Listen("127.0.0.1:0", gate{}) // gate: SetTransform, SetHandler, InjectInput

	nc, _ := net.Dial("tcp", ln.Addr().String())
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write(append([]byte("start"), xorBytes("hi")...))
	b := make([]byte, 2)
	io.ReadFull(nc, b)
	fmt.Println(string(xorBytes(string(b))))
	// Output: HI
}
