package upstream

import (
	"bufio"
	"context"
	"net"
	"net/http"
	"testing"
	"time"
)

// FuzzClientResponse feeds arbitrary backend replies to the client over a
// real socket: whatever the bytes, the exchange ends exactly once (a
// response or an *Error), nothing panics, and the pool stays usable.
func FuzzClientResponse(f *testing.F) {
	for _, s := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n",
		"HTTP/1.1 100 Continue\r\n\r\nHTTP/1.1 204 No Content\r\n\r\n",
		"HTTP/1.0 200 OK\r\n\r\nuntil close",
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: x\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nab",
		"HTTP/1.1 503 Busy\r\nKeep-Alive: timeout=1\r\nContent-Length: 0\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nokHTTP/1.1 200 OK\r\n\r\n",
	} {
		f.Add([]byte(s))
	}
	e := startEngine(f)
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		f.Fatal(err)
	}
	defer ln.Close()
	replies := make(chan []byte, 1)
	go func() {
		for {
			conn, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer conn.Close()
				conn.SetDeadline(time.Now().Add(5 * time.Second))
				if _, err := http.ReadRequest(bufio.NewReader(conn)); err != nil {
					return
				}
				select {
				case r := <-replies:
					conn.Write(r)
				case <-time.After(2 * time.Second):
				}
			}()
		}
	}()
	c, err := NewCluster(e, ClusterConfig{Hosts: []string{ln.Addr().String()}, OutlierOff: true, BreakerOff: true,
		Retry: RetryPolicy{MaxRetries: -1}, Timeout: 3 * time.Second,
		Pool: PoolConfig{MaxIdlePerHost: 1, MaxConnsPerHost: 4}})
	if err != nil {
		f.Fatal(err)
	}
	defer c.Close()
	f.Fuzz(func(t *testing.T, reply []byte) {
		replies <- reply
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		head := AppendRequestHead(nil, "GET", "/", "fuzz", []string{"Connection", "close"}, -1, false)
		_, err := c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 1<<20)
		if ctx.Err() != nil {
			t.Fatalf("exchange did not end: %v", err)
		}
		// Drain a reply nobody consumed (the request never reached the
		// backend).
		select {
		case <-replies:
		default:
		}
	})
}
