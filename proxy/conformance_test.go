package proxy

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/http1"
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

// requestShapes are the request-target and Content-Length shapes both the
// proxy's listener and a Forward route must normalize or refuse.
func checkRequestShapes(t *testing.T, paddr string, be *cannedBackend) {
	t.Helper()
	before := len(be.seen())
	// CONNECT is not proxied: a reverse proxy that forwarded it could
	// open a tunnel through a backend that is a forward proxy, and the
	// proxy does not splice a 2xx to it. Refused, nothing forwarded.
	out := rawExchange(t, paddr, "CONNECT evil:443 HTTP/1.1\r\nHost: evil:443\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 405 ") || !strings.Contains(out, "X-Warren-Reason: bad_request\r\n") {
		t.Fatalf("CONNECT: %q", out)
	}
	if n := len(be.seen()); n != before {
		t.Fatalf("CONNECT reached the backend: %q", be.seen()[before:])
	}
	// Absolute-form: the target's authority is the request's host (RFC
	// 9112 §3.2.2, the received Host is ignored), and the backend gets
	// origin-form with that Host, not a Host the proxy did not act on.
	out = rawExchange(t, paddr, "GET http://real.example:8080/p/q?x=1 HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("absolute-form: %q", out)
	}
	heads := be.seen()
	h := heads[len(heads)-1]
	if !strings.HasPrefix(h, "GET /p/q?x=1 HTTP/1.1\r\n") || strings.Count(h, "Host: ") != 1 || !strings.Contains(h, "\r\nHost: real.example:8080\r\n") {
		t.Fatalf("absolute-form forwarded as %q", h)
	}
	out = rawExchange(t, paddr, "GET http://real.example HTTP/1.1\r\nHost: other\r\nConnection: close\r\n\r\n")
	heads = be.seen()
	if h := heads[len(heads)-1]; !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasPrefix(h, "GET / HTTP/1.1\r\n") || !strings.Contains(h, "\r\nHost: real.example\r\n") {
		t.Fatalf("absolute-form without a path: %q forwarded as %q", out, h)
	}
	// An HTTP/1.0 request may come without Host; the backend gets
	// HTTP/1.1, which must have one: empty, as RFC 9112 §3.2 says for a
	// target without an authority (a Go or Node backend answered 400).
	out = rawExchange(t, paddr, "GET /old HTTP/1.0\r\n\r\n")
	heads = be.seen()
	if h := heads[len(heads)-1]; !strings.HasPrefix(out, "HTTP/1.0 200 ") || !strings.HasPrefix(h, "GET /old HTTP/1.1\r\n") || strings.Count(h, "Host:") != 1 || !strings.Contains(h, "\r\nHost: \r\n") {
		t.Fatalf("HTTP/1.0 without Host: %q forwarded as %q", out, h)
	}
	// Repeated or listed identical Content-Length values (RFC 9110 §8.6
	// lets a recipient take them as one) go on as one field.
	for _, cl := range []string{"Content-Length: 4\r\nContent-Length: 4\r\n", "Content-Length: 4, 4\r\n"} {
		out = rawExchange(t, paddr, "POST /cl HTTP/1.1\r\nHost: a\r\n"+cl+"Connection: close\r\n\r\nabcd")
		heads = be.seen()
		h := heads[len(heads)-1]
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || strings.Count(strings.ToLower(h), "content-length") != 1 || !strings.Contains(h, "\r\nContent-Length: 4\r\n") {
			t.Fatalf("%q: %q forwarded as %q", cl, out, h)
		}
	}
}

func okBackend(t *testing.T) *cannedBackend {
	return startCannedBackend(t, func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
}

// TestProxyRequestShapes: CONNECT refused, absolute-form and repeated
// Content-Length normalized, on the proxy's listener.
func TestProxyRequestShapes(t *testing.T) {
	e := startEngine(t)
	be := okBackend(t)
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	checkRequestShapes(t, paddr, be)
}

// TestForwardRequestShapes: the same on a Forward route (warren serve
// -upstream).
func TestForwardRequestShapes(t *testing.T) {
	e := startEngine(t)
	be := okBackend(t)
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{be.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(e, cl, Config{})
	defer p.Close()
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	checkRequestShapes(t, ln.Addr().String(), be)
}

// TestProxyBadResponseBodyBeforeFlush: a response whose body breaks
// before any of it (or its head, held for the first piece) went to the
// client is answered 502 bad_response, not with a connection closed
// without a word.
func TestProxyBadResponseBodyBeforeFlush(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\nabc\r\n0\r\n\r\n"
	})
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	out := rawExchange(t, paddr, "GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 502 ") || !strings.Contains(out, "X-Warren-Reason: bad_response\r\n") ||
		!strings.Contains(out, "Connection: close\r\n") {
		t.Fatalf("got %q", out)
	}
}

// checkRepeatedFields: X-Forwarded-For and Via received on several field
// lines are one list each (RFC 9110 §5.3): the proxy appends to all of
// it, not to the last line only.
func checkRepeatedFields(t *testing.T, paddr string, be *cannedBackend, respVia string) {
	t.Helper()
	out := rawExchange(t, paddr, "GET /f HTTP/1.1\r\nHost: a\r\nX-Forwarded-For: 1.1.1.1\r\nX-Forwarded-For: 2.2.2.2, 3.3.3.3\r\n"+
		"Via: 1.0 a\r\nVia: 1.1 b\r\nConnection: close\r\n\r\n")
	heads := be.seen()
	h := heads[len(heads)-1]
	if !strings.Contains(h, "\r\nX-Forwarded-For: 1.1.1.1, 2.2.2.2, 3.3.3.3, 127.0.0.1\r\n") || strings.Count(h, "X-Forwarded-For") != 1 ||
		!strings.Contains(h, "\r\nVia: 1.0 a, 1.1 b, 1.1 warren\r\n") || strings.Count(h, "Via:") != 1 {
		t.Fatalf("forwarded as %q", h)
	}
	if respVia != "" && !strings.Contains(out, respVia) {
		t.Fatalf("response %q, want %q", out, respVia)
	}
}

// TestProxyRepeatedForwardingFields: on the listener, both ways.
func TestProxyRepeatedForwardingFields(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nVia: 1.0 x\r\nVia: 1.1 y\r\nContent-Length: 2\r\n\r\nok"
	})
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	checkRepeatedFields(t, paddr, be, "\r\nVia: 1.0 x, 1.1 y, 1.1 warren\r\n")
}

// TestForwardRepeatedForwardingFields: on a Forward route (the response's
// Via lines are passed as they are, the proxy's after them).
func TestForwardRepeatedForwardingFields(t *testing.T) {
	e := startEngine(t)
	be := okBackend(t)
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{be.addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(e, cl, Config{})
	defer p.Close()
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	checkRepeatedFields(t, ln.Addr().String(), be, "")
}

// TestProxySlowUploadNotBackendFault: a client that stops sending its
// request body is answered 408 body_timeout when the request times out
// (its fault, not a 504 blaming the backend), and such clients do not
// open the breaker for everyone else: six of them, then a GET is served.
func TestProxySlowUploadNotBackendFault(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(echoBackend))
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}, Timeout: 200 * time.Millisecond}, Config{})
	var wg sync.WaitGroup
	outs := make([]string, 6)
	for i := range outs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			outs[i] = rawExchange(t, paddr, "POST /up HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\nabc")
		}()
	}
	wg.Wait()
	for i, out := range outs {
		if !strings.HasPrefix(out, "HTTP/1.1 408 ") || !strings.Contains(out, "X-Warren-Reason: body_timeout\r\n") {
			t.Fatalf("stalled upload %d: %q", i, out)
		}
	}
	out := rawExchange(t, paddr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
		t.Fatalf("GET after the stalled uploads: %q", out)
	}
}

// TestProxyDrainFinishesInFlight: an engine shutdown (warren proxy's
// SIGTERM) lets a request in flight finish within the drain timeout —
// the client connection and the backend connection both wait for the
// response, which goes out with Connection: close — instead of cutting
// both at once because neither had bytes queued (a deploy must not cut
// requests in flight).
func TestProxyDrainFinishesInFlight(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(300 * time.Millisecond)
		io.WriteString(w, "finished")
	}))
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}}, Config{})
	got := make(chan string, 1)
	go func() { got <- rawExchange(t, paddr, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n") }()
	time.Sleep(100 * time.Millisecond) // the request is on the backend
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	if err := e.Shutdown(ctx); err != nil {
		t.Errorf("shutdown: %v", err)
	}
	out := <-got
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "finished") || !strings.Contains(out, "Connection: close\r\n") {
		t.Fatalf("in flight during the drain: %q", out)
	}
}

// TestForwardClientGoneNo499: a Forward route whose client goes away
// (here: half-closes) while the backend works cancels the exchange and
// closes, without writing a "499" status line (a log code, not an HTTP
// status a client should ever be sent).
func TestForwardClientGoneNo499(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		time.Sleep(200 * time.Millisecond)
		io.WriteString(w, "late")
	}))
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(e, cl, Config{})
	defer p.Close()
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(3 * time.Second))
	io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
	c.(*net.TCPConn).CloseWrite()
	out, _ := io.ReadAll(c)
	if len(out) != 0 {
		t.Fatalf("written to a client that went away: %q", out)
	}
}

// TestProxyForwardedForPerClient: X-Forwarded-For names each client's own
// address, one after the other from different addresses (the pooled
// connection state that keeps the last address's text must not leak it to
// the next client).
func TestProxyForwardedForPerClient(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(string) string { return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok" })
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	for _, ip := range []string{"127.0.0.1", "127.0.0.2", "127.0.0.3", "127.0.0.2", "127.0.0.1"} {
		d := net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(ip)}, Timeout: 3 * time.Second}
		c, err := d.Dial("tcp", paddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(3 * time.Second))
		for range 2 { // and again on the same connection
			if _, err := io.WriteString(c, "GET /xff HTTP/1.1\r\nHost: a\r\n\r\n"); err != nil {
				t.Fatal(err)
			}
			resp, err := http.ReadResponse(bufio.NewReader(io.LimitReader(c, 1<<20)), nil)
			if err != nil {
				t.Fatalf("from %s: %v", ip, err)
			}
			io.Copy(io.Discard, resp.Body)
			resp.Body.Close()
			heads := be.seen()
			if h := heads[len(heads)-1]; !strings.Contains(h, "\r\nX-Forwarded-For: "+ip+"\r\n") {
				t.Fatalf("from %s: forwarded as %q", ip, h)
			}
		}
		c.Close()
	}
}
