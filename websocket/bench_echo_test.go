package websocket

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"sync"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
)

// echoClient drives an echo server over one connection: it writes batches
// of identical masked frames and reads the echoes back, allocation-free.
type echoClient struct {
	nc    net.Conn
	br    *bufio.Reader
	batch []byte // depth masked frames
	reply []byte // room for depth server frames
}

func newEchoClient(b *testing.B, addr string, size, depth int) *echoClient {
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		b.Fatal(err)
	}
	br := bufio.NewReaderSize(nc, 64<<10)
	io.WriteString(nc, handshakeRequest(addr, "/ws"))
	resp, err := http.ReadResponse(br, nil)
	if err != nil || resp.StatusCode != 101 {
		b.Fatalf("handshake: %v", err)
	}
	payload := make([]byte, size)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}
	c := &echoClient{nc: nc, br: br}
	for range depth {
		c.batch = AppendMaskedFrame(c.batch, OpText, true, NewMask(), payload)
	}
	c.reply = make([]byte, depth*(HeaderLen(FrameHeader{Length: int64(size)})+size))
	return c
}

// round sends one batch and reads its echoes.
func (c *echoClient) round() error {
	if _, err := c.nc.Write(c.batch); err != nil {
		return err
	}
	_, err := io.ReadFull(c.br, c.reply)
	return err
}

// runEcho measures echoed messages over conns connections, each keeping
// depth messages in flight, and reports the process's CPU time and
// allocations per message (client included: compare servers, not
// absolutes).
func runEcho(b *testing.B, addr string, size, depth, conns int) {
	clients := make([]*echoClient, conns)
	for i := range clients {
		clients[i] = newEchoClient(b, addr, size, depth)
		defer clients[i].nc.Close()
	}
	rounds := (b.N + depth*conns - 1) / (depth * conns)
	b.SetBytes(int64(size))
	b.ReportAllocs()
	b.ResetTimer()
	cpu := processCPU()
	var wg sync.WaitGroup
	for _, c := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range rounds {
				if err := c.round(); err != nil {
					b.Error(err)
					return
				}
			}
		}()
	}
	wg.Wait()
	b.StopTimer()
	if d := processCPU() - cpu; d > 0 {
		b.ReportMetric(float64(d.Nanoseconds())/float64(rounds*depth*conns), "cpu-ns/msg")
	}
}

var echoCases = []struct{ size, depth, conns int }{
	{16, 1, 1},   // ping-pong latency
	{128, 1, 16}, // many connections, one message in flight each
	{128, 32, 4}, // pipelined
	{4096, 8, 4},
}

// BenchmarkEcho is warren's echo server (Config.Inline, as warren echo
// runs it) with an in-process client over loopback.
func BenchmarkEcho(b *testing.B) {
	for _, tc := range echoCases {
		b.Run(fmt.Sprintf("size=%d/depth=%d/conns=%d", tc.size, tc.depth, tc.conns), func(b *testing.B) {
			srv := startServer(b, Config{Inline: true}, Echo)
			runEcho(b, srv.addr, tc.size, tc.depth, tc.conns)
		})
	}
}

// BenchmarkEchoGorilla is the same client against gorilla/websocket on
// net/http, echoing with NextReader/NextWriter (its efficient form), for
// comparing cpu-ns/msg.
func BenchmarkEchoGorilla(b *testing.B) {
	up := gorilla.Upgrader{}
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	hs := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		ws, err := up.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		defer ws.Close()
		for {
			typ, rd, err := ws.NextReader()
			if err != nil {
				return
			}
			wr, err := ws.NextWriter(typ)
			if err != nil {
				return
			}
			io.Copy(wr, rd)
			if wr.Close() != nil {
				return
			}
		}
	})}
	go hs.Serve(ln)
	defer hs.Close()
	for _, tc := range echoCases {
		b.Run(fmt.Sprintf("size=%d/depth=%d/conns=%d", tc.size, tc.depth, tc.conns), func(b *testing.B) {
			runEcho(b, ln.Addr().String(), tc.size, tc.depth, tc.conns)
		})
	}
}

// BenchmarkBroadcast sends one message to a group of connections whose
// clients read and discard.
func BenchmarkBroadcast(b *testing.B) {
	rec := newRecorder(false)
	srv := startServer(b, Config{Inline: true}, rec)
	var g Group
	const members = 100
	for range members {
		c := newEchoClient(b, srv.addr, 1, 1)
		defer c.nc.Close()
		go io.Copy(io.Discard, c.nc)
		g.Join(rec.next(b, "open").conn)
	}
	msg := make([]byte, 128)
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		if n := g.Broadcast(OpBinary, msg); n != members {
			b.Fatalf("reached %d", n)
		}
	}
	b.StopTimer()
	b.ReportMetric(float64(b.Elapsed().Nanoseconds())/float64(b.N*members), "ns/delivery")
	_ = time.Second
}
