package websocket_test

import (
	"fmt"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/websocket"
)

// Echo sends every message back; it never blocks, so the server runs it
// Inline, on the event loops. This is what `warren echo` mounts on
// GET /ws.
func ExampleEcho() {
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	router := http1.NewRouter()
	router.Handle("GET /ws", ws.Handler())
	addr, stop := serve(router)
	defer stop()

	client, _, err := gorilla.DefaultDialer.Dial("ws://"+addr+"/ws", nil)
	if err != nil {
		panic(err)
	}
	defer client.Close()
	client.WriteMessage(gorilla.TextMessage, []byte("hello"))
	typ, msg, _ := client.ReadMessage()
	fmt.Println(typ == gorilla.TextMessage, string(msg))
	// Output: true hello
}

func ExampleAcceptKey() {
	// The key from RFC 6455 §1.3.
	fmt.Println(websocket.AcceptKey("dGhlIHNhbXBsZSBub25jZQ=="))
	// Output: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=
}

func ExampleReader_Next() {
	// Input as a client sends it: a text message in two fragments with a
	// ping between them, then a Close frame, arriving in two reads.
	mask := [4]byte{1, 2, 3, 4}
	var stream []byte
	stream = websocket.AppendMaskedFrame(stream, websocket.OpText, false, mask, []byte("Hello, "))
	stream = websocket.AppendMaskedFrame(stream, websocket.OpPing, true, mask, []byte("are you there?"))
	stream = websocket.AppendMaskedFrame(stream, websocket.OpContinuation, true, mask, []byte("world"))
	stream = websocket.AppendMaskedFrame(stream, websocket.OpClose, true, mask, websocket.AppendClosePayload(nil, websocket.CloseNormal, "done"))
	reads := [][]byte{stream[:20], stream[20:]}

	var r websocket.Reader // a server Reader with default limits
	var in []byte          // unconsumed input, as the engine keeps it
	for _, read := range reads {
		in = append(in, read...)
		for {
			n, ev, err := r.Next(in)
			if err != nil {
				fmt.Println("fail:", err) // send a Close frame with the error's code
				return
			}
			if ev.Op == 0 {
				in = in[n:] // keep the rest for the next read
				break
			}
			switch ev.Op {
			case websocket.OpPing:
				fmt.Printf("ping %q: reply with %q\n", ev.Payload, websocket.AppendFrame(nil, websocket.OpPong, true, ev.Payload))
			case websocket.OpClose:
				fmt.Printf("close %d %q\n", ev.Code, ev.Payload)
			default:
				fmt.Printf("%v message %q\n", ev.Op, ev.Payload)
			}
			in = in[n:] // only after handling ev: Payload may point into in
		}
	}
	// Output:
	// ping "are you there?": reply with "\x8a\x0eare you there?"
	// text message "Hello, world"
	// close 1000 "done"
}

func ExampleAppendFrame() {
	frame := websocket.AppendFrame(nil, websocket.OpText, true, []byte("Hello"))
	fmt.Printf("% x\n", frame)
	// Output: 81 05 48 65 6c 6c 6f
}

func ExampleNegotiateDeflate() {
	offer := []byte("permessage-deflate; client_max_window_bits, permessage-deflate")
	cfg := websocket.DeflateConfig{Enabled: true, ServerNoContextTakeover: true}
	params, ok := websocket.NegotiateDeflate(cfg, offer)
	fmt.Println(ok)
	fmt.Printf("Sec-WebSocket-Extensions: %s\n", params.AppendResponse(nil))

	// The connection then compresses what it sends and decompresses what
	// it reads.
	deflater := params.NewDeflater(websocket.RoleServer, cfg.Level)
	frame := deflater.AppendFrame(nil, websocket.OpText, []byte("Hello"))
	fmt.Printf("% x\n", frame)
	// Output:
	// true
	// Sec-WebSocket-Extensions: permessage-deflate; server_no_context_takeover
	// c1 0b 00 05 00 fa ff 48 65 6c 6c 6f 00
}

func ExampleMaskBytes() {
	key := [4]byte{0x37, 0xfa, 0x21, 0x3d}
	payload := []byte{0x7f, 0x9f, 0x4d, 0x51, 0x58}
	pos := websocket.MaskBytes(key, 0, payload[:2]) // unmask in pieces
	websocket.MaskBytes(key, pos, payload[2:])
	fmt.Printf("%s\n", payload)
	// Output: Hello
}
