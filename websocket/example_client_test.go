package websocket_test

import (
	"errors"
	"fmt"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

// Dial opens a connection on an engine's event loops and returns at once;
// the callbacks follow the connection's life. Here the client says hello
// to an echo server, reads the echo and closes.
func ExampleDial() {
	addr := startEcho() // ws://addr/ws echoes every message

	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil { // loops, no listener
		panic(err)
	}
	defer eng.Close()

	done := make(chan struct{})
	_, err = websocket.Dial(eng, "ws://"+addr+"/ws", websocket.DialConfig{Inline: true}, websocket.HandlerFuncs{
		Open: func(c *websocket.Conn) { c.WriteText("hello") },
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			fmt.Printf("%v %s\n", op, data)
			c.Close(websocket.CloseNormal, "done")
		},
		Error: func(c *websocket.Conn, err error) { fmt.Println(err) },
		Close: func(c *websocket.Conn, reason engine.CloseReason, code uint16) {
			fmt.Println("closed:", reason, code)
			close(done)
		},
	})
	if err != nil {
		panic(err)
	}
	<-done
	// Output:
	// text hello
	// closed: local 1000
}

// A handshake the server refuses ends in OnError with a HandshakeError
// (status, header fields and the start of the body), then OnClose.
func ExampleHandshakeError() {
	addr := startEcho()
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Close()

	done := make(chan struct{})
	websocket.Dial(eng, "ws://"+addr+"/no-such-route", websocket.DialConfig{}, websocket.HandlerFuncs{
		Open: func(c *websocket.Conn) { fmt.Println("opened?") },
		Error: func(c *websocket.Conn, err error) {
			var he *websocket.HandshakeError
			if errors.As(err, &he) {
				fmt.Println(he.StatusCode, err)
			}
		},
		Close: func(c *websocket.Conn, reason engine.CloseReason, code uint16) {
			fmt.Println("closed:", reason, code)
			close(done)
		},
	})
	<-done
	// Output:
	// 404 websocket: handshake refused: 404 Not Found: 404 page not found
	// closed: protocol_error 1006
}

// A Client keeps one configuration for many connections, which share it:
// each costs only its Conn. DialWith attaches a value before any callback
// can run.
func ExampleClient() {
	addr := startEcho()
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Close()

	got := make(chan string, 3)
	cl, err := websocket.NewClient(eng, websocket.DialConfig{
		Inline: true,
		Header: [][2]string{{"User-Agent", "fleet-sim"}},
	}, websocket.HandlerFuncs{
		Open: func(c *websocket.Conn) { c.WriteText(fmt.Sprint("device ", c.Context())) },
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			got <- string(data)
			c.Close(websocket.CloseNormal, "")
		},
	})
	if err != nil {
		panic(err)
	}
	for id := range 3 {
		if _, err := cl.DialWith("ws://"+addr+"/ws", id); err != nil {
			panic(err)
		}
	}
	seen := map[string]bool{}
	for range 3 {
		seen[<-got] = true
	}
	fmt.Println(len(seen), seen["device 0"], seen["device 2"])
	fmt.Println("handshakes:", cl.Stats().Upgrades)
	// Output:
	// 3 true true
	// handshakes: 3
}

// startEcho serves websocket.Echo on GET /ws of a loopback port and
// returns the address. The server lives as long as the process.
func startEcho() string {
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	router := http1.NewRouter()
	router.Handle("GET /ws", websocket.New(websocket.Config{Inline: true}, websocket.Echo).Handler())
	srv, err := http1.NewServer(eng, http1.Config{Logger: quiet}, router)
	if err != nil {
		panic(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln.Addr().String()
}
