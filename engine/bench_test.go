package engine_test

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"sync"
	"testing"

	"github.com/warrenhq/warren/engine"
)

// Echo benchmarks: a client on Go's net package does write-64/read-64 round
// trips against the engine (inline on one loop, on the worker pool, or the
// portable engine) and, as the peer measured in the same run, against a
// goroutine-per-connection echo server on the net package. Client and
// server share the process, so allocs/op counts both sides; the client's
// side is the same for every peer.
//
//	go test -run '^$' -bench Echo ./engine/
//
// Compare peers only within one run: the machines are noisy.

const benchMsgSize = 64

// benchEcho writes back whatever arrives.
type benchEcho struct{}

func (benchEcho) OnData(c *engine.Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

// benchPeer is one server the echo benchmarks run against.
type benchPeer struct {
	name  string
	start func(b *testing.B) (addr string, stop func())
}

func benchPeers() []benchPeer {
	engineWith := func(cfg engine.Config) func(b *testing.B) (string, func()) {
		return func(b *testing.B) (string, func()) {
			cfg.Logger = slog.New(slog.NewTextHandler(io.Discard, nil))
			e, err := engine.New(cfg, benchEcho{})
			if err != nil {
				b.Fatal(err)
			}
			if err := e.Start("127.0.0.1:0"); err != nil {
				b.Fatal(err)
			}
			return e.Addr().String(), func() { e.Close() }
		}
	}
	return []benchPeer{
		{"peer=warren/mode=inline", engineWith(engine.Config{Inline: true, Loops: 1})},
		{"peer=warren/mode=worker", engineWith(engine.Config{Loops: 1})},
		{"peer=warren/mode=portable", engineWith(engine.Config{Portable: true})},
		{"peer=net", startNetEcho},
	}
}

// startNetEcho runs the idiomatic Go echo server: a goroutine per
// connection with its own 4 KiB buffer.
func startNetEcho(b *testing.B) (string, func()) {
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		b.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	conns := map[net.Conn]struct{}{}
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns[c] = struct{}{}
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 4096)
				for {
					n, err := c.Read(buf)
					if n > 0 {
						if _, err := c.Write(buf[:n]); err != nil {
							return
						}
					}
					if err != nil {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String(), func() {
		ln.Close()
		mu.Lock()
		for c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	}
}

// benchRoundTrip sends msg and reads its echo into in.
func benchRoundTrip(c net.Conn, msg, in []byte) error {
	if _, err := c.Write(msg); err != nil {
		return err
	}
	if _, err := io.ReadFull(c, in); err != nil {
		return err
	}
	if in[0] != msg[0] || in[len(in)-1] != msg[len(msg)-1] {
		return errors.New("echo mismatch")
	}
	return nil
}

// BenchmarkEchoRoundTrip times one 64-byte round trip on one connection:
// latency with nothing else in flight.
func BenchmarkEchoRoundTrip(b *testing.B) {
	for _, p := range benchPeers() {
		b.Run(p.name, func(b *testing.B) {
			addr, stop := p.start(b)
			defer stop()
			c, err := net.Dial("tcp", addr)
			if err != nil {
				b.Fatal(err)
			}
			defer c.Close()
			msg, in := make([]byte, benchMsgSize), make([]byte, benchMsgSize)
			for i := range msg {
				msg[i] = byte('a' + i%26)
			}
			if err := benchRoundTrip(c, msg, in); err != nil { // warm up
				b.Fatal(err)
			}
			b.SetBytes(benchMsgSize)
			b.ReportAllocs()
			for b.Loop() {
				if err := benchRoundTrip(c, msg, in); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkEchoParallel runs GOMAXPROCS×-cpu clients (b.RunParallel), each
// on its own connection doing 64-byte round trips: throughput with many
// connections busy.
func BenchmarkEchoParallel(b *testing.B) {
	for _, p := range benchPeers() {
		b.Run(p.name, func(b *testing.B) {
			addr, stop := p.start(b)
			defer stop()
			b.SetBytes(benchMsgSize)
			b.ReportAllocs()
			b.RunParallel(func(pb *testing.PB) {
				c, err := net.Dial("tcp", addr)
				if err != nil {
					b.Error(err)
					return
				}
				defer c.Close()
				msg, in := make([]byte, benchMsgSize), make([]byte, benchMsgSize)
				for i := range msg {
					msg[i] = byte('A' + i%26)
				}
				for pb.Next() {
					if err := benchRoundTrip(c, msg, in); err != nil {
						b.Error(err)
						return
					}
				}
			})
		})
	}
}
