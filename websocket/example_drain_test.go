package websocket_test

import (
	"context"
	"fmt"
	"sync"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

// job is a connection's state in ExampleConfig_drainHold: whether it has
// work in progress, and whether the drain held it for that work. DrainHold
// runs on the event loop and Message on a worker: one lock makes "held
// while busy" and "done, so let go if held" exclusive, so a connection is
// never held with nobody left to let it go.
type job struct {
	mu         sync.Mutex
	busy, held bool
}

// A connection with work in progress when the engine drains is held
// open (DrainHold) until the work is done, and then says goodbye with the
// drain's own close 1001 (GoingAway); an idle one gets it at once.
func ExampleConfig_drainHold() {
	heldNow := make(chan struct{}, 1) // (for the example's client: the drain held the connection)
	ws := websocket.New(websocket.Config{
		Accept: func(_ *http1.Ctx, c *websocket.Conn) bool { c.SetContext(new(job)); return true },
		DrainHold: func(c *websocket.Conn) bool {
			j := c.Context().(*job)
			j.mu.Lock()
			j.held = j.busy
			held := j.held
			j.mu.Unlock()
			if held {
				heldNow <- struct{}{}
			}
			return held
		},
	}, websocket.HandlerFuncs{
		Message: func(c *websocket.Conn, _ websocket.Opcode, data []byte) {
			j := c.Context().(*job)
			switch string(data) {
			case "start":
				j.mu.Lock()
				j.busy = true
				j.mu.Unlock()
				c.WriteText("started")
			case "done":
				j.mu.Lock()
				j.busy = false
				held := j.held
				j.mu.Unlock()
				c.WriteText("result")
				if held {
					c.GoingAway()
				}
			}
		},
	})
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil || eng.Start("") != nil {
		panic(err)
	}
	srv, _ := http1.NewServer(eng, http1.Config{Logger: quiet}, ws.Handler())
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	client, _, err := gorilla.DefaultDialer.Dial("ws://"+ln.Addr().String()+"/", nil)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	client.WriteMessage(gorilla.TextMessage, []byte("start"))
	client.ReadMessage() // "started"
	drained := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		drained <- eng.Shutdown(ctx)
	}()
	<-heldNow
	client.WriteMessage(gorilla.TextMessage, []byte("done"))
	_, msg, _ := client.ReadMessage()
	fmt.Printf("%s\n", msg)
	_, _, err = client.ReadMessage()
	if ce, ok := err.(*gorilla.CloseError); ok {
		fmt.Println("closed:", ce.Code)
	}
	fmt.Println("drained:", <-drained)
	// Output:
	// result
	// closed: 1001
	// drained: <nil>
}
