package proxy

import (
	"bufio"
	"bytes"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// cannedBackend is a raw TCP backend for framing checks: it records each
// request head it reads (and the Content-Length body after it) and
// answers with the response respond returns for that head, written as is.
type cannedBackend struct {
	addr string

	mu    sync.Mutex
	heads []string
}

func startCannedBackend(t *testing.T, respond func(head string) string) *cannedBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &cannedBackend{addr: ln.Addr().String()}
	var wg sync.WaitGroup
	t.Cleanup(func() { ln.Close(); wg.Wait() })
	wg.Add(1)
	go func() {
		defer wg.Done()
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					var head strings.Builder
					cl := 0
					for {
						line, err := br.ReadString('\n')
						if err != nil {
							return
						}
						head.WriteString(line)
						if line == "\r\n" {
							break
						}
						if k, v, ok := strings.Cut(line, ":"); ok && strings.EqualFold(k, "content-length") {
							cl, _ = strconv.Atoi(strings.TrimSpace(v))
						}
					}
					if _, err := io.CopyN(io.Discard, br, int64(cl)); err != nil {
						return
					}
					b.mu.Lock()
					b.heads = append(b.heads, head.String())
					b.mu.Unlock()
					resp := respond(head.String())
					if resp == "" {
						return
					}
					if _, err := io.WriteString(c, resp); err != nil {
						return
					}
				}
			}()
		}
	}()
	return b
}

// seen returns the request heads the backend has read.
func (b *cannedBackend) seen() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.heads...)
}

// rawExchange writes req on a new connection to addr and returns all it
// reads until the proxy closes the connection or 3 s pass.
func rawExchange(t *testing.T, addr string, req ...string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	for i, part := range req {
		if i > 0 {
			time.Sleep(50 * time.Millisecond) // a separate read on the proxy's side
		}
		if _, err := io.WriteString(c, part); err != nil {
			break
		}
	}
	var out bytes.Buffer
	io.Copy(&out, c)
	return out.String()
}

// TestProxyResponseLengthAndChunked: a backend response with both
// Content-Length and Transfer-Encoding is framed by the chunked coding
// (RFC 9112 §6.3), and the proxy must not pass the Content-Length on
// beside its own framing: a client or cache downstream that believed it
// would read past the response (or wait forever for the rest).
func TestProxyResponseLengthAndChunked(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(head string) string {
		return "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"
	})
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	for _, v := range []string{"1.1", "1.0"} {
		out := rawExchange(t, paddr, "GET /x HTTP/"+v+"\r\nHost: a\r\nConnection: close\r\n\r\n")
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(head, "HTTP/"+v+" 200") || strings.Contains(strings.ToLower(head), "content-length") {
			t.Fatalf("HTTP/%s: head %q", v, head)
		}
		want := "3\r\nabc\r\n0\r\n\r\n"
		if v == "1.0" {
			want = "abc"
		}
		if body != want {
			t.Fatalf("HTTP/%s: body %q, want %q", v, body, want)
		}
	}
}

// TestProxyBadChunkMidBody: a request body whose chunked coding breaks
// after its head was forwarded is answered 400 bad_request (the client's
// fault), once, not with the 499 "canceled" of the exchange the proxy
// cancels on the backend side.
func TestProxyBadChunkMidBody(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(head string) string {
		time.Sleep(300 * time.Millisecond) // no answer before the bad chunk
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	head := "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n"
	for i, parts := range [][]string{
		{head + "zz\r\n"}, // one read: the exchange is still connecting
		{head, "zz\r\n"},  // two: the head and first chunk are on the backend
	} {
		out := rawExchange(t, paddr, parts...)
		if !strings.HasPrefix(out, "HTTP/1.1 400 ") || !strings.Contains(out, "X-Warren-Reason: bad_request\r\n") ||
			strings.Count(out, "HTTP/1.1 ") != 1 {
			t.Fatalf("case %d: got %q", i, out)
		}
		if n := p.st.badRequests.Load(); n != uint64(i+1) {
			t.Fatalf("case %d: bad requests counted: %d", i, n)
		}
	}
}
