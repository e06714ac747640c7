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

// ExampleTransformCloser: a transform that also implements Closed hears of
// its connection's close, by any path, with the reason — the TLS layer
// counts connections that end soon after they open this way.
func ExampleTransformCloser() {
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	tr := &closingXor{closed: make(chan engine.CloseReason, 1)}
	ln, _ := e.Listen("127.0.0.1:0", closeGate{tr}) // installs tr after the first byte

	nc, _ := net.Dial("tcp", ln.Addr().String())
	nc.SetDeadline(time.Now().Add(5 * time.Second))
	nc.Write([]byte("x"))
	nc.Write(xorBytes("hi"))
	io.ReadFull(nc, make([]byte, 2))
	nc.Close()
	fmt.Println(<-tr.closed)
	// Output: peer_closed
}
