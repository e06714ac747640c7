package http1

import (
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
