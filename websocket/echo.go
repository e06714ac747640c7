package websocket

// Echo is a Handler that sends every message back as it was received,
// text as text and binary as binary. It never blocks, so it suits
// Config.Inline. `warren echo` serves it on GET /ws, inline, configured
// by its -ws-* flags; ExampleEcho mounts it.
var Echo Handler = echoHandler{}

type echoHandler struct{}

func (echoHandler) OnMessage(c *Conn, op Opcode, data []byte) { c.WriteMessage(op, data) }
