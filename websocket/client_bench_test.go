package websocket

import (
	"fmt"
	"testing"
)

// BenchmarkDialEcho measures the dialled connection's hot path, closed
// loop against warren's echo server: each echo received sends the next
// message (masked, copied into a pooled buffer, gathered while corked).
// allocs/op counts both sides, as they share the process.
func BenchmarkDialEcho(b *testing.B) {
	for _, size := range []int{32, 4096} {
		b.Run(fmt.Sprint(size, "B"), func(b *testing.B) {
			srv := startServer(b, Config{Inline: true}, Echo)
			e := clientEngine(b, false)
			payload := make([]byte, size)
			left := b.N
			done := make(chan struct{})
			_, err := Dial(e, wsURL(srv.addr, "/ws"), DialConfig{Inline: true}, HandlerFuncs{
				Open: func(c *Conn) { c.WriteMessage(OpBinary, payload) },
				Message: func(c *Conn, op Opcode, data []byte) {
					if left--; left == 0 {
						close(done)
						return
					}
					c.WriteMessage(OpBinary, payload)
				},
			})
			if err != nil {
				b.Fatal(err)
			}
			b.ReportAllocs()
			b.SetBytes(int64(size))
			b.ResetTimer()
			<-done
		})
	}
}
