//go:build linux || darwin || freebsd

package engine

import (
	"io"
	"log/slog"
	"testing"
)

// straddleHandler consumes whole 64-byte messages and leaves a partial one
// pending, as a protocol's parser does; it writes nothing, so the
// benchmarks below time the engine's input path and no system call.
type straddleHandler struct{ conns chan *Conn }

func (h straddleHandler) OnOpen(c *Conn) { h.conns <- c }

func (straddleHandler) OnData(c *Conn, in []byte) int { return len(in) &^ 63 }

// benchDeliver runs reads through the poll engine's input path (deliver,
// with its pending input, keepRest and the read timeout's retiming) on a
// real connection's loop, each cut into the pieces cuts gives: {64} is a
// message per read, {20, 44} one straddling two reads, which is where the
// connection holds its unconsumed input (Conn.in).
func benchDeliver(b *testing.B, cuts []int) {
	h := straddleHandler{conns: make(chan *Conn, 1)}
	e, err := New(Config{Inline: true, Loops: 1, Logger: slog.New(slog.NewTextHandler(io.Discard, nil))}, h)
	if err != nil {
		b.Fatal(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		b.Fatal(err)
	}
	defer e.Close()
	nc := dial(b, e.Addr().String())
	defer nc.Close()
	c := <-h.conns
	l := c.host.(*loop)
	msg := make([]byte, 64)
	done := make(chan struct{})
	b.ReportAllocs()
	b.ResetTimer()
	if !c.Post(func() {
		defer close(done)
		for i := 0; i < b.N; i++ {
			off := 0
			for _, n := range cuts {
				l.deliver(c, msg[off:off+n])
				off += n
			}
		}
	}) {
		b.Fatal("the connection closed")
	}
	<-done
	b.StopTimer()
}

// BenchmarkDeliver times a message per read, and one straddling two reads.
//
//	go test -run '^$' -bench Deliver ./engine/
func BenchmarkDeliver(b *testing.B) {
	b.Run("whole", func(b *testing.B) { benchDeliver(b, []int{64}) })
	b.Run("straddle", func(b *testing.B) { benchDeliver(b, []int{20, 44}) })
}
