package http1

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"encoding/hex"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// hashHandler reads the streamed body and answers "<bytes> <sha256>", or
// the read error.
func hashHandler(c *Ctx) {
	h := sha256.New()
	n, err := io.Copy(h, c.BodyReader())
	if err != nil {
		c.SetStatus(599) // a status of the handler's own: the server keeps it
		fmt.Fprintf(c, "read error after %d: %v", n, err)
		return
	}
	fmt.Fprintf(c, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
}

func streamRouter(max int64, extra func(r *Router)) *Router {
	r := NewRouter()
	r.Handle("POST /upload", StreamBody(HandlerFunc(hashHandler), max))
	r.HandleFunc("POST /echo", func(c *Ctx) { c.Write(c.Body()) })
	r.Handle("GET /", InlineFunc(func(c *Ctx) { c.WriteString("hello") }))
	if extra != nil {
		extra(r)
	}
	return r
}

func digest(b []byte) string {
	s := sha256.Sum256(b)
	return fmt.Sprintf("%d %s", len(b), hex.EncodeToString(s[:]))
}

func payload(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte(i*7 + i>>9)
	}
	return b
}

// A body far over Limits.MaxBodyBytes streams to a route that allows it,
// with Content-Length and chunked, from net/http's client, on both engines;
// other routes keep the server's limit.
func TestStreamBodyLarge(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.Limits.MaxBodyBytes = 1 << 20
		_, addr := startServer(t, cfg, streamRouter(64<<20, nil), ec)
		body := payload(24 << 20)
		client := &http.Client{Timeout: 30 * time.Second}
		// Content-Length.
		resp, err := client.Post("http://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != digest(body) {
			t.Fatalf("content-length upload: %d %q", resp.StatusCode, got)
		}
		// Chunked (the client cannot know the length of a plain reader).
		resp, err = client.Post("http://"+addr+"/upload", "application/octet-stream", io.MultiReader(bytes.NewReader(body[:1<<20]), bytes.NewReader(body[1<<20:])))
		if err != nil {
			t.Fatal(err)
		}
		got, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(got) != digest(body) {
			t.Fatalf("chunked upload: %d %q", resp.StatusCode, got)
		}
		// A buffered route still refuses what is over the server's limit.
		out := rawExchange(t, addr, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 2097152\r\n\r\n", 5*time.Second)
		if !strings.HasPrefix(out, "HTTP/1.1 413 ") {
			t.Fatalf("buffered route over its limit: %q", out)
		}
	})
}

// A handler that does not read holds the client back: the server buffers
// at most its window plus one read, not the body.
func TestStreamBodyBackpressure(t *testing.T) {
	gate := make(chan struct{})
	var pipe atomic.Pointer[bodyPipe]
	r := streamRouter(0, func(r *Router) {
		r.Handle("POST /slow", StreamBody(HandlerFunc(func(c *Ctx) {
			pipe.Store(c.pipe)
			<-gate
			hashHandler(c)
		}), -1))
	})
	_, addr := startServer(t, Config{}, r)
	body := payload(64 << 20)
	conn, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	var sent atomic.Int64
	werr := make(chan error, 1)
	go func() {
		_, err := conn.Write([]byte(fmt.Sprintf("POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", len(body))))
		for off := 0; err == nil && off < len(body); off += 64 << 10 {
			var n int
			n, err = conn.Write(body[off : off+64<<10])
			sent.Add(int64(n))
		}
		werr <- err
	}()
	eventually(t, func() bool { return pipe.Load() != nil })
	// Let the client fill whatever it can.
	var last int64 = -1
	for i := 0; i < 100 && sent.Load() != last; i++ {
		last = sent.Load()
		time.Sleep(50 * time.Millisecond)
	}
	p := pipe.Load()
	p.mu.Lock()
	got := p.got
	p.mu.Unlock()
	if max := int64(streamWindow + 64<<10); got > max {
		t.Fatalf("server took %d body bytes from a handler that reads nothing, want <= %d", got, max)
	}
	if sent.Load() >= int64(len(body)) {
		t.Fatal("the client sent the whole body: no backpressure")
	}
	close(gate)
	if err := <-werr; err != nil {
		t.Fatal(err)
	}
	conn.SetReadDeadline(time.Now().Add(30 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(conn), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != digest(body) {
		t.Fatalf("after backpressure: %q", b)
	}
}

// Every way a streamed body can end early, and what the client sees.
func TestStreamBodyErrors(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		var calls atomic.Int64
		r := streamRouter(100, func(r *Router) {
			r.Handle("POST /count", StreamBody(HandlerFunc(func(c *Ctx) {
				calls.Add(1)
				hashHandler(c)
			}), 100))
			r.Handle("POST /ignore", StreamBody(HandlerFunc(func(c *Ctx) {
				c.WriteString("ignored")
			}), 0))
			r.Handle("POST /default", StreamBody(HandlerFunc(func(c *Ctx) {
				io.Copy(io.Discard, c.BodyReader())
				c.WriteString("fine") // a 200 the server replaces when the body failed
			}), 100))
		})
		// Only the stall waits for the body timeout, on a server of its
		// own: on the others a loaded machine's delay in reaching the
		// handler or the FIN must not turn into a 408 (a 30 s timeout
		// outlasts rawExchange's 5 s wait, so waiting for it still fails).
		stalled := cfg
		stalled.BodyTimeout = 300 * time.Millisecond
		ss, saddr := startServer(t, stalled, r, ec)
		cfg.BodyTimeout = 30 * time.Second
		s, addr := startServer(t, cfg, r, ec)

		t.Run("content-length over the route limit", func(t *testing.T) {
			out := rawExchange(t, addr, "POST /count HTTP/1.1\r\nHost: x\r\nContent-Length: 101\r\n\r\n", 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 413 ") || calls.Load() != 0 {
				t.Fatalf("got %q, handler calls %d", out, calls.Load())
			}
		})
		t.Run("chunked over the route limit", func(t *testing.T) {
			req := "POST /default HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n50\r\n" + strings.Repeat("a", 80) + "\r\n50\r\n" + strings.Repeat("b", 80) + "\r\n0\r\n\r\n"
			out := rawExchange(t, addr, req, 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 413 ") || !strings.Contains(out, "Connection: close") {
				t.Fatalf("got %q", out)
			}
		})
		t.Run("bad chunk size", func(t *testing.T) {
			out := rawExchange(t, addr, "POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\nzz\r\n", 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 599 ") || !strings.Contains(out, "invalid chunk size") {
				t.Fatalf("got %q", out)
			}
		})
		t.Run("stall", func(t *testing.T) {
			start := time.Now()
			out := rawExchange(t, saddr, "POST /default HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc", 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 408 ") {
				t.Fatalf("got %q", out)
			}
			if el := time.Since(start); el < 300*time.Millisecond {
				t.Fatalf("cut after %v, before the body timeout", el)
			}
		})
		t.Run("client stops sending", func(t *testing.T) {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer conn.Close()
			// The body timeout is 30 s here: a handler that waited for it
			// instead of learning of the FIN gets nothing within the 5 s
			// read deadline (nor this error), without a timed assertion.
			conn.Write([]byte("POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"))
			conn.(*net.TCPConn).CloseWrite()
			conn.SetReadDeadline(time.Now().Add(5 * time.Second))
			out, _ := io.ReadAll(conn)
			if !strings.Contains(string(out), "read error after 3: unexpected EOF") {
				t.Fatalf("got %q", out)
			}
		})
		t.Run("handler returns early", func(t *testing.T) {
			// The body has not arrived whole: Connection: close.
			out := rawExchange(t, addr, "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 1000\r\n\r\nabc", 5*time.Second)
			if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.Contains(out, "Connection: close") {
				t.Fatalf("got %q", out)
			}
		})
		t.Run("unread but complete body keeps the connection", func(t *testing.T) {
			req := "POST /ignore HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
				"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello" +
				"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
			out := rawExchange(t, addr, req, 5*time.Second)
			_, bodies := responses(out)
			want := []string{"ignored", digest([]byte("hello")), "hello"}
			if fmt.Sprint(bodies) != fmt.Sprint(want) {
				t.Fatalf("bodies %q, want %q", bodies, want)
			}
		})
		eventually(t, func() bool {
			return ss.Engine().Stats().Closed[engine.ReasonReadTimeout] >= 1 && s.Engine().Stats().Closed[engine.ReasonProtocolError] >= 1
		})
	})
}

// Expect: 100-continue is answered when the handler reads, not before; a
// handler that refuses without reading never invites the body.
func TestStreamBodyExpectContinue(t *testing.T) {
	r := streamRouter(0, func(r *Router) {
		r.Handle("POST /refuse", StreamBody(HandlerFunc(func(c *Ctx) {
			c.SetStatus(403)
			c.WriteString("no")
		}), 0))
	})
	_, addr := startServer(t, Config{}, r)
	if b := expectContinue(t, addr, "/upload", "data"); b != digest([]byte("data")) {
		t.Fatalf("body %q", b)
	}

	out := rawExchange(t, addr, "POST /refuse HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nExpect: 100-continue\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 403 ") || strings.Contains(out, "100 Continue") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("refused: %q", out)
	}
}

// The net/http adapter streams Request.Body on a StreamBody route.
func TestStreamBodyAdapter(t *testing.T) {
	r := NewRouter()
	var sawLength atomic.Int64
	r.Handle("PUT /blob", StreamBody(Adapt(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		sawLength.Store(r.ContentLength)
		h := sha256.New()
		n, err := io.Copy(h, r.Body)
		if err != nil {
			http.Error(w, err.Error(), 400)
			return
		}
		fmt.Fprintf(w, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	})), -1))
	_, addr := startServer(t, Config{Limits: Limits{MaxBodyBytes: 1024}}, r)
	body := payload(5 << 20)
	req, _ := http.NewRequest("PUT", "http://"+addr+"/blob", bytes.NewReader(body))
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != digest(body) || sawLength.Load() != int64(len(body)) {
		t.Fatalf("got %q, ContentLength %d", b, sawLength.Load())
	}
}

func TestBodyReaderBuffered(t *testing.T) {
	r := NewRouter()
	r.HandleFunc("POST /r", func(c *Ctx) {
		b, err := io.ReadAll(c.BodyReader())
		if err != nil || !bytes.Equal(b, c.Body()) {
			c.SetStatus(500)
		}
		c.Write(b)
	})
	_, addr := startServer(t, Config{}, r)
	out := rawExchange(t, addr, "POST /r HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, "hello") {
		t.Fatalf("got %q", out)
	}
}

// A request pipelined after a streamed one waits for its handler, even
// when the whole streamed body arrived in the same read as both heads.
func TestStreamBodyPipelinedOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		r := streamRouter(0, func(r *Router) {
			r.Handle("POST /slow", StreamBody(HandlerFunc(func(c *Ctx) {
				b, _ := io.ReadAll(c.BodyReader())
				time.Sleep(100 * time.Millisecond)
				c.Write(b)
			}), 0))
		})
		_, addr := startServer(t, cfg, r, ec)
		req := "POST /slow HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nfirst" +
			"POST /slow HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n6\r\nsecond\r\n0\r\n\r\n" +
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		out := rawExchange(t, addr, req, 5*time.Second)
		_, bodies := responses(out)
		if want := []string{"first", "second", "hello"}; fmt.Sprint(bodies) != fmt.Sprint(want) {
			t.Fatalf("bodies %q, want %q", bodies, want)
		}
	})
}

// A reader a little slower than the network keeps the server's buffer
// within its window: read space is reused, not grown.
func TestStreamBodyBufferBounded(t *testing.T) {
	var maxCap atomic.Int64
	r := NewRouter()
	r.Handle("POST /trickle", StreamBody(HandlerFunc(func(c *Ctx) {
		h := sha256.New()
		buf := make([]byte, 8<<10)
		var n int64
		for i := 0; ; i++ {
			k, err := c.BodyReader().Read(buf)
			h.Write(buf[:k])
			n += int64(k)
			c.pipe.mu.Lock()
			if cp := int64(cap(c.pipe.buf)); cp > maxCap.Load() {
				maxCap.Store(cp)
			}
			c.pipe.mu.Unlock()
			if err != nil {
				break
			}
			if i%64 == 0 {
				time.Sleep(time.Millisecond)
			}
		}
		fmt.Fprintf(c, "%d %s", n, hex.EncodeToString(h.Sum(nil)))
	}), -1))
	_, addr := startServer(t, Config{}, r)
	body := payload(64 << 20)
	resp, err := http.Post("http://"+addr+"/trickle", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != digest(body) {
		t.Fatalf("got %q", b)
	}
	if max := int64(2 * streamWindow); maxCap.Load() > max {
		t.Fatalf("stream buffer grew to %d bytes, want <= %d", maxCap.Load(), max)
	}
}

// Inline(StreamBody(h)) and a StreamBody NotFound handler stream too.
func TestStreamBodyWrapped(t *testing.T) {
	r := NewRouter()
	r.Handle("POST /inline", Inline(StreamBody(HandlerFunc(hashHandler), 0)))
	r.NotFound = StreamBody(HandlerFunc(func(c *Ctx) {
		if c.pipe == nil {
			c.SetStatus(500)
		}
		hashHandler(c)
	}), -1)
	_, addr := startServer(t, Config{Limits: Limits{MaxBodyBytes: 1 << 10}}, r)
	body := payload(1 << 20)
	for _, path := range []string{"/inline", "/anything"} {
		resp, err := http.Post("http://"+addr+path, "application/octet-stream", bytes.NewReader(body[:512]))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != digest(body[:512]) {
			t.Fatalf("%s: %d %q", path, resp.StatusCode, b)
		}
	}
	// The NotFound route allows any size; the server parses heads with it.
	resp, err := http.Post("http://"+addr+"/big", "application/octet-stream", bytes.NewReader(body))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || string(b) != digest(body) {
		t.Fatalf("big: %d %q", resp.StatusCode, b)
	}
}

// The same pipelined requests — buffered and streamed bodies, chunked
// with trailers, worker and inline routes — get the same answers however
// the client's writes split them across reads.
func TestServerSplitWrites(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		r := streamRouter(-1, nil)
		r.HandleFunc("GET /devices/{id}", func(c *Ctx) { c.WriteString("device " + c.Param("id")) })
		r.HandleFunc("POST /count", func(c *Ctx) { fmt.Fprintf(c, "%d", len(c.Body())) })
		_, addr := startServer(t, cfg, r, ec)
		stream := "GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\n\r\nhello world" +
			"POST /upload HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5\r\nfirst\r\n7;ext=1\r\n, secon\r\n1\r\nd\r\n0\r\nX-Trailer: yes\r\n\r\n" +
			"POST /upload HTTP/1.1\r\nHost: x\r\nContent-Length: 300\r\n\r\n" + strings.Repeat("0123456789", 30) +
			"GET /devices/7?x=1 HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST /count HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n" +
			"HEAD / HTTP/1.1\r\nHost: x\r\n\r\n" +
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		answers := func(out string) []string {
			statuses, bodies := responses(out, "GET", "POST", "POST", "POST", "GET", "POST", "HEAD", "GET")
			got := make([]string, len(bodies))
			for i := range bodies {
				got[i] = fmt.Sprintf("%d %s", statuses[i], bodies[i])
			}
			return got
		}
		want := []string{"200 hello", "200 hello world", "200 " + digest([]byte("first, second")),
			"200 " + digest([]byte(strings.Repeat("0123456789", 30))), "200 device 7", "200 3", "200 ", "200 hello"}
		if got := answers(rawExchange(t, addr, stream, 5*time.Second)); fmt.Sprint(got) != fmt.Sprint(want) {
			t.Fatalf("in one write: %q\nwant %q", got, want)
		}
		rng := rand.New(rand.NewPCG(1, 2))
		for round := 0; round < 20; round++ {
			conn, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			conn.SetDeadline(time.Now().Add(10 * time.Second))
			done := make(chan string, 1)
			go func() { b, _ := io.ReadAll(conn); done <- string(b) }()
			for rest := stream; len(rest) > 0; {
				n := 1 + rng.IntN(40)
				if n > len(rest) {
					n = len(rest)
				}
				conn.Write([]byte(rest[:n]))
				rest = rest[n:]
				if rng.IntN(4) == 0 {
					time.Sleep(time.Duration(rng.IntN(800)) * time.Microsecond)
				}
			}
			out := <-done
			conn.Close()
			if got := answers(out); fmt.Sprint(got) != fmt.Sprint(want) {
				t.Fatalf("round %d: %q\nwant %q", round, got, want)
			}
		}
	})
}

// Streamed requests in progress are bounded: each holds a worker while its
// body arrives, and slow uploads must not take the whole pool.
func TestStreamBodyMaxStreams(t *testing.T) {
	gate := make(chan struct{})
	var started atomic.Int64
	r := NewRouter()
	r.Handle("POST /hold", StreamBody(HandlerFunc(func(c *Ctx) {
		started.Add(1)
		<-gate
		hashHandler(c)
	}), 0))
	r.Handle("GET /", InlineFunc(func(c *Ctx) { c.WriteString("hello") }))
	s, addr := startServer(t, Config{MaxStreams: 1}, r)
	first, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer first.Close()
	first.Write([]byte("POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhel"))
	eventually(t, func() bool { return started.Load() == 1 })
	out := rawExchange(t, addr, "POST /hold HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 503 ") || started.Load() != 1 {
		t.Fatalf("second stream: %q, handlers started %d", out, started.Load())
	}
	// Other routes are not affected.
	if out := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second); !strings.HasSuffix(out, "hello") {
		t.Fatalf("GET / while a stream holds: %q", out)
	}
	close(gate)
	first.Write([]byte("lo"))
	first.SetReadDeadline(time.Now().Add(5 * time.Second))
	resp, err := http.ReadResponse(bufio.NewReader(first), nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	if string(b) != digest([]byte("hello")) {
		t.Fatalf("first stream: %q", b)
	}
	// Its slot is free again.
	eventually(t, func() bool { return s.streaming.Load() == 0 })
	out = rawExchange(t, addr, "POST /hold HTTP/1.1\r\nHost: x\r\nConnection: close\r\nContent-Length: 5\r\n\r\nhello", 5*time.Second)
	if !strings.Contains(out, digest([]byte("hello"))) {
		t.Fatalf("after the first finished: %q", out)
	}
}
