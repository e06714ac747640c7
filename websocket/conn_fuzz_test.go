package websocket

import (
	"io"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// FuzzConnInput sends arbitrary bytes to an upgraded connection, whole
// and in two reads, and checks that the server neither panics nor leaves
// the connection open once the client goes away. Seeds are real client
// streams; go test runs only them.
func FuzzConnInput(f *testing.F) {
	mask := [4]byte{9, 8, 7, 6}
	m := func(op Opcode, fin bool, p string) []byte { return AppendMaskedFrame(nil, op, fin, mask, []byte(p)) }
	join := func(bs ...[]byte) []byte {
		var out []byte
		for _, b := range bs {
			out = append(out, b...)
		}
		return out
	}
	f.Add(m(OpText, true, "hello"), uint16(3))
	f.Add(join(m(OpText, false, "frag"), m(OpPing, true, "p"), m(OpContinuation, true, "ment")), uint16(7))
	f.Add(join(m(OpBinary, true, ""), m(OpClose, true, "\x03\xe8bye")), uint16(0))
	f.Add(join(m(OpText, true, "a"), m(OpClose, true, "")), uint16(1))
	f.Add(AppendFrame(nil, OpText, true, []byte("unmasked")), uint16(2))
	f.Add([]byte{0xc1, 0x85, 1, 2, 3, 4, 0xff, 0xff, 0xff, 0xff, 0xff}, uint16(5)) // RSV1, corrupt deflate
	f.Add(join(m(OpText, true, "\xff"), m(OpPong, true, "")), uint16(4))
	f.Add([]byte{0x82, 0xff, 0, 0, 0, 0, 0, 0, 1, 0}, uint16(9))

	panics := make(chan engine.CloseReason, 1)
	h := HandlerFuncs{
		Message: func(c *Conn, op Opcode, data []byte) { c.WriteMessage(op, data) },
		Close: func(c *Conn, reason engine.CloseReason, code uint16) {
			if reason == engine.ReasonPanic {
				select {
				case panics <- reason:
				default:
				}
			}
		},
	}
	srv := startServer(f, Config{Inline: true, MaxMessageSize: 4096,
		Deflate: DeflateConfig{Enabled: true, ServerNoContextTakeover: true, ClientNoContextTakeover: true}}, h)
	f.Fuzz(func(t *testing.T, in []byte, split uint16) {
		c := dialRaw(t, srv.addr, "Sec-WebSocket-Extensions: permessage-deflate")
		k := int(split) % (len(in) + 1)
		c.nc.Write(in[:k])
		c.nc.Write(in[k:])
		// Read until the server closes, or give up quickly: the input may
		// leave a frame incomplete.
		c.nc.SetReadDeadline(time.Now().Add(50 * time.Millisecond))
		io.Copy(io.Discard, c.nc)
		c.nc.Close()
		select {
		case <-panics:
			t.Fatal("handler or codec panicked")
		default:
		}
	})
	testutil.Eventually(f, 0, "every connection closed", func() bool { return srv.ws.Stats().Open == 0 })
}
