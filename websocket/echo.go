package websocket

import "github.com/warrenhq/warren/http1"

// Echo is a Handler that sends every message back as it was received,
// text as text and binary as binary. It never blocks, so it suits
// Config.Inline.
var Echo Handler = echoHandler{}

type echoHandler struct{}

func (echoHandler) OnMessage(c *Conn, op Opcode, data []byte) { c.WriteMessage(op, data) }

// EchoHandler returns the upgrade handler of `warren echo`'s GET /ws: an
// Inline server with the default Config whose handler is Echo, also run
// inline.
//
//	router.Handle("GET /ws", websocket.EchoHandler())
func EchoHandler() http1.Handler {
	return New(Config{Inline: true}, Echo).Handler()
}
