package http1

import (
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"
)

// TestWriteInterim: WriteInterim sends a 103 with its fields ahead of the
// final response to an HTTP/1.1 client, nothing to an HTTP/1.0 one, and
// refuses 101, final statuses and a response that has started.
func TestWriteInterim(t *testing.T) {
	errs := make(chan [4]error, 4)
	_, addr := startServer(t, Config{}, HandlerFunc(func(c *Ctx) {
		var e [4]error
		e[0] = c.WriteInterim(103, []Header{{Name: []byte("Link"), Value: []byte("</a.css>; rel=preload")}})
		e[1] = c.WriteInterim(101, nil)
		e[2] = c.WriteInterim(200, nil)
		c.WriteString("x")
		c.Flush()
		e[3] = c.WriteInterim(103, nil)
		errs <- e
	}))
	out := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\nHTTP/1.1 200 OK\r\n") ||
		strings.Count(out, " 103 ") != 1 {
		t.Fatalf("HTTP/1.1: %q", out)
	}
	if e := <-errs; e[0] != nil || e[1] != ErrInterimNotAllowed || e[2] != ErrInterimNotAllowed || e[3] != ErrInterimNotAllowed {
		t.Fatalf("errors %v", e)
	}
	out = rawExchange(t, addr, "GET / HTTP/1.0\r\n\r\n", 3*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.0 200 OK\r\n") || strings.Contains(out, " 103 ") {
		t.Fatalf("HTTP/1.0: %q", out)
	}
	if e := <-errs; e[0] != nil {
		t.Fatalf("HTTP/1.0: %v", e[0])
	}
}

// TestSetTrailer: trailer fields follow a streamed chunked body to an
// HTTP/1.1 client (Go's client reads them), and are not sent with a
// buffered body.
func TestSetTrailer(t *testing.T) {
	_, addr := startServer(t, Config{}, HandlerFunc(func(c *Ctx) {
		c.SetHeader("Trailer", "X-Sum")
		if string(c.Path) == "/stream" {
			c.Flush()
		}
		c.WriteString("body")
		c.SetTrailer("X-Sum", "42")
	}))
	resp, err := http.Get("http://" + addr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "body" || resp.Trailer.Get("X-Sum") != "42" {
		t.Fatalf("streamed: %q, trailer %v", b, resp.Trailer)
	}
	out := rawExchange(t, addr, "GET /buffered HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", 3*time.Second)
	if !strings.HasSuffix(out, "\r\n\r\nbody") || strings.Contains(out, "X-Sum: 42") {
		t.Fatalf("buffered: %q", out)
	}
}

// TestChunkedTrailerBytes: TrailerBytes counts the trailer section's
// bytes as Next consumes them, the final CRLF included, however the input
// is split.
func TestChunkedTrailerBytes(t *testing.T) {
	body := "3\r\nabc\r\n0\r\nX-A: 1\r\nX-B: 2\r\n\r\n"
	trailer := len("X-A: 1\r\nX-B: 2\r\n\r\n")
	for split := 1; split < len(body); split++ {
		var r ChunkedReader
		in := []byte(body)
		used, done := 0, false
		for _, part := range [][]byte{in[:split], in[split:]} {
			for len(part) > 0 {
				n, _, d, err := r.Next(part)
				if err != nil {
					t.Fatal(err)
				}
				used, part, done = used+n, part[n:], d
				if d || n == 0 {
					break
				}
			}
			if want := max(0, used-(len(body)-trailer)); r.TrailerBytes() != want {
				t.Fatalf("split %d: after %d bytes TrailerBytes %d, want %d", split, used, r.TrailerBytes(), want)
			}
		}
		if !done || len(r.Trailers()) != 2 {
			t.Fatalf("split %d: done %v, trailers %v", split, done, r.Trailers())
		}
	}
}

// TestCtxTrailers: a collected chunked body's trailer fields are the
// handler's (Trailers), whether the trailer section came with the body
// or in later reads (written separately, each a read of its own on the
// server's side as a rule); a body without them has none.
func TestCtxTrailers(t *testing.T) {
	_, addr := startServer(t, Config{}, HandlerFunc(func(c *Ctx) {
		c.WriteString(string(c.Body()))
		for _, h := range c.Trailers() {
			c.WriteString(" " + string(h.Name) + "=" + string(h.Value))
		}
	}))
	head := "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	for i, tc := range []struct {
		parts []string
		want  string
	}{
		{[]string{head + "3\r\nabc\r\n0\r\nX-Sum: 7\r\nX-B: two\r\n\r\n"}, "abc X-Sum=7 X-B=two"},
		{[]string{head + "3\r\nabc\r\n0\r\n", "X-Sum: 7\r\nX-B: two\r\n\r\n"}, "abc X-Sum=7 X-B=two"},
		{[]string{head + "3\r\nabc\r\n0\r\nX-S", "um: 7\r\nX-B: t", "wo\r\n\r\n"}, "abc X-Sum=7 X-B=two"},
		{[]string{head + "3\r\nabc\r\n0\r\n\r\n"}, "abc"},
	} {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		for j, part := range tc.parts {
			if j > 0 {
				time.Sleep(50 * time.Millisecond) // a separate read on the server's side
			}
			c.Write([]byte(part))
		}
		b, _ := io.ReadAll(c)
		c.Close()
		if out := string(b); !strings.HasSuffix(out, "\r\n\r\n"+tc.want) {
			t.Fatalf("case %d: %q", i, out)
		}
	}
}

// TestStreamBodyKeepsNoTrailers: a StreamBody route's chunked body does
// not copy its trailer fields (Ctx.Trailers is only for a collected
// body), while the collected path's decoder keeps them.
func TestStreamBodyKeepsNoTrailers(t *testing.T) {
	in := []byte("3\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\n")
	p := newBodyPipe(nil, &Request{Chunked: true}, Limits{}, 1<<20, time.Second)
	if n, done, err := p.feed(in); n != len(in) || !done || err != nil {
		t.Fatalf("feed: %d %v %v", n, done, err)
	}
	if p.trailers != nil {
		t.Fatalf("streamed body kept trailers %q", p.trailers)
	}
	p.release()
	var d bodyDecoder
	d.chunk = chunkedPool.Get().(*ChunkedReader)
	d.chunk.Reset(&Limits{})
	if n, done, err := d.decode(in, func([]byte, bool) {}); n != len(in) || !done || err != nil {
		t.Fatalf("decode: %d %v %v", n, done, err)
	}
	if len(d.trailers) != 1 || string(d.trailers[0].Name) != "X-Sum" || string(d.trailers[0].Value) != "7" {
		t.Fatalf("collected body's trailers %q", d.trailers)
	}
}
