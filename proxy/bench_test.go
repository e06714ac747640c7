package proxy

import (
	"bytes"
	"io"
	"net"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// rawBackend answers every request head it reads with a fixed 5-byte
// response, on plain sockets with fixed buffers: it allocates nothing per
// request, so a benchmark's allocations are the proxy's.
func rawBackend(tb testing.TB) string {
	tb.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		tb.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	tb.Cleanup(func() {
		ln.Close()
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	resp := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello")
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				buf := make([]byte, 8192)
				n := 0
				for {
					k, err := c.Read(buf[n:])
					if err != nil {
						return
					}
					n += k
					for {
						i := bytes.Index(buf[:n], []byte("\r\n\r\n"))
						if i < 0 {
							break
						}
						if _, err := c.Write(resp); err != nil {
							return
						}
						n = copy(buf, buf[i+4:n])
					}
					if n == len(buf) {
						return
					}
				}
			}()
		}
	}()
	return ln.Addr().String()
}

// BenchmarkProxyKeepAlive is one proxied keep-alive GET per op, client and
// backend on plain sockets: allocs/op are the proxy's (engine, upstream
// and proxy) per request. Run with -benchmem.
func BenchmarkProxyKeepAlive(b *testing.B) {
	benchProxy(b, upstream.ClusterConfig{Hosts: []string{"http://" + rawBackend(b)}})
}

// BenchmarkProxyKeepAliveHedged is BenchmarkProxyKeepAlive with hedging
// on (two backends, a hedge delay no answer reaches): the cost of the
// hedging machinery on a request that is not hedged.
func BenchmarkProxyKeepAliveHedged(b *testing.B) {
	benchProxy(b, upstream.ClusterConfig{Hosts: []string{"http://" + rawBackend(b), "http://" + rawBackend(b)},
		HedgeDelay: time.Second})
}

func benchProxy(b *testing.B, cfg upstream.ClusterConfig) {
	e := startEngine(b)
	paddr, _ := startProxy(b, e, cfg, Config{})
	c, err := net.Dial("tcp", paddr)
	if err != nil {
		b.Fatal(err)
	}
	defer c.Close()
	req := []byte("GET / HTTP/1.1\r\nHost: bench\r\nUser-Agent: bench\r\nAccept: */*\r\n\r\n")
	buf := make([]byte, 4096)
	roundTrip := func() {
		if _, err := c.Write(req); err != nil {
			b.Fatal(err)
		}
		n := 0
		for {
			k, err := c.Read(buf[n:])
			if err != nil {
				b.Fatal(err)
			}
			n += k
			if i := bytes.Index(buf[:n], []byte("\r\n\r\n")); i >= 0 && n >= i+4+5 {
				if !bytes.HasPrefix(buf, []byte("HTTP/1.1 200 ")) {
					b.Fatalf("response %q", buf[:n])
				}
				return
			}
			if n == len(buf) {
				b.Fatal(io.ErrShortBuffer)
			}
		}
	}
	for range 100 {
		roundTrip() // warm the pools
	}
	b.ReportAllocs()
	b.ResetTimer()
	for b.Loop() {
		roundTrip()
	}
}
