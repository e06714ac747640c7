package websocket_test

import (
	"fmt"
	"io"
	"log/slog"
	"net/http"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

var quiet = slog.New(slog.NewTextHandler(io.Discard, nil))

// A chat room: every message goes to every connection. The handlers do
// not block, so they run Inline, on the event loops; Broadcast encodes
// each message once for the whole room.
func Example() {
	var room websocket.Group
	closed := make(chan string, 1)
	ws := websocket.New(websocket.Config{Inline: true}, websocket.HandlerFuncs{
		Open: func(c *websocket.Conn) { room.Join(c) }, // connections leave when they close
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			room.Broadcast(op, data) // data is valid only during the call; Broadcast copies it out
		},
		Close: func(c *websocket.Conn, reason engine.CloseReason, code uint16) {
			closed <- fmt.Sprintf("closed: %v %d", reason, code)
		},
	})
	router := http1.NewRouter()
	router.Handle("GET /chat", ws.Handler()) // Handler marks the upgrade Inline
	// One engine carries HTTP and the WebSockets upgraded from it.
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	defer eng.Close()
	srv, err := http1.NewServer(eng, http1.Config{Logger: quiet}, router)
	if err != nil {
		panic(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	addr := ln.Addr().String()

	// Any RFC 6455 client will do; this one is gorilla/websocket.
	client, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/chat", nil)
	if err != nil {
		panic(err)
	}
	client.WriteMessage(gorilla.TextMessage, []byte("hello, room"))
	_, msg, _ := client.ReadMessage()
	fmt.Printf("%s\n", msg)
	client.WriteMessage(gorilla.CloseMessage, gorilla.FormatCloseMessage(websocket.CloseNormal, "bye"))
	client.ReadMessage() // the server's answering Close
	fmt.Println(<-closed)
	// Output:
	// hello, room
	// closed: peer_closed 1000
}

// Handlers that may block (database calls, RPCs) run on the engine's
// worker pool, the default: one message at a time per connection, in
// order. Accept attaches per-connection state from the request.
func ExampleNew() {
	ws := websocket.New(websocket.Config{
		Subprotocols: []string{"telemetry.v1"},
		Accept: func(r *http1.Ctx, c *websocket.Conn) bool {
			if len(r.Header("Authorization")) == 0 {
				r.SetStatus(401)
				return false
			}
			c.SetContext(r.Param("device")) // the router's {device}
			return true
		},
	}, websocket.HandlerFuncs{
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			device := c.Context().(string)
			// Store the reading (blocking is fine here), then acknowledge.
			c.WriteText("stored " + device + ": " + string(data))
		},
	})
	router := http1.NewRouter()
	router.Handle("GET /devices/{device}/ws", ws.Handler())
	addr, stop := serve(router)
	defer stop()

	d := gorilla.Dialer{Subprotocols: []string{"telemetry.v1"}}
	hdr := http.Header{"Authorization": {"Bearer x"}}
	client, _, err := d.Dial("ws://"+addr+"/devices/d42/ws", hdr)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	fmt.Println("subprotocol:", client.Subprotocol())
	client.WriteMessage(gorilla.TextMessage, []byte("21.5C"))
	_, msg, _ := client.ReadMessage()
	fmt.Printf("%s\n", msg)
	// Output:
	// subprotocol: telemetry.v1
	// stored d42: 21.5C
}

// The net/http adapter cannot hijack connections, so a service moving
// over from net/http mounts the upgrade route in the same Router, next to
// its adapted mux.
func ExampleServer_Handler() {
	mux := http.NewServeMux()
	mux.HandleFunc("/hello", func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "hello from net/http") })

	router := http1.NewRouter()
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	router.Handle("GET /ws", ws.Handler())        // WebSocket, on the event loop
	router.Handle("/{path...}", http1.Adapt(mux)) // everything else: net/http
	addr, stop := serve(router)
	defer stop()

	resp, err := http.Get("http://" + addr + "/hello")
	if err != nil {
		panic(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Printf("%s\n", body)

	client, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	client.WriteMessage(gorilla.BinaryMessage, []byte{1, 2, 3})
	typ, msg, _ := client.ReadMessage()
	fmt.Println(typ == gorilla.BinaryMessage, msg)
	// Output:
	// hello from net/http
	// true [1 2 3]
}

// A Hub fans messages out by topic.
func ExampleHub() {
	var hub websocket.Hub
	ws := websocket.New(websocket.Config{Inline: true}, websocket.HandlerFuncs{
		// "sub TOPIC" subscribes; "pub TOPIC TEXT" publishes.
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			var topic, text string
			if n, _ := fmt.Sscanf(string(data), "sub %s", &topic); n == 1 {
				hub.Subscribe(topic, c)
				c.WriteText("subscribed to " + topic)
			} else if n, _ := fmt.Sscanf(string(data), "pub %s %s", &topic, &text); n == 2 {
				hub.Publish(topic, websocket.OpText, []byte(topic+": "+text))
			}
		},
	})
	router := http1.NewRouter()
	router.Handle("GET /ws", ws.Handler())
	addr, stop := serve(router)
	defer stop()

	client, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	for _, m := range []string{"sub alerts", "pub alerts overheating", "pub news ignored", "pub alerts cooled"} {
		client.WriteMessage(gorilla.TextMessage, []byte(m))
	}
	for range 3 {
		_, msg, _ := client.ReadMessage()
		fmt.Printf("%s\n", msg)
	}
	// Output:
	// subscribed to alerts
	// alerts: overheating
	// alerts: cooled
}

// serve starts an engine with an HTTP server for router on a free loopback
// port and returns its address and a function that stops it.
func serve(router *http1.Router) (addr string, stop func()) {
	eng, err := engine.New(engine.Config{Logger: quiet}, nil)
	if err != nil {
		panic(err)
	}
	if err := eng.Start(""); err != nil {
		panic(err)
	}
	srv, err := http1.NewServer(eng, http1.Config{Logger: quiet}, router)
	if err != nil {
		panic(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		panic(err)
	}
	return ln.Addr().String(), func() { eng.Close() }
}
