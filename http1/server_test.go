package http1

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"net/http"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// testServer is a Server on an engine of its own, as the tests use it.
type testServer struct {
	*Server
	ln *engine.Listener
}

// Shutdown shuts the server's engine down.
func (s *testServer) Shutdown(ctx context.Context) error { return s.Engine().Shutdown(ctx) }

// startServer starts a server on an engine of its own (ec, if given) on a
// free loopback port, stopped when the test ends.
func startServer(t testing.TB, cfg Config, h Handler, ec ...engine.Config) (*testServer, string) {
	t.Helper()
	var ecfg engine.Config
	if len(ec) > 0 {
		ecfg = ec[0]
	}
	e := testutil.StartEngine(t, ecfg)
	s, err := NewServer(e, cfg, h)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Close() })
	return &testServer{s, ln}, ln.Addr().String()
}

func testRouter() *Router {
	r := NewRouter()
	r.Handle("GET /", InlineFunc(func(c *Ctx) { c.WriteString("hello") }))
	r.HandleFunc("GET /delay", func(c *Ctx) {
		var ms int
		fmt.Sscanf(string(c.Query("ms")), "%d", &ms)
		time.Sleep(time.Duration(ms) * time.Millisecond)
		c.WriteString("hello")
	})
	r.HandleFunc("POST /echo", func(c *Ctx) {
		c.SetHeader("Content-Type", "application/octet-stream")
		c.Write(c.Body())
	})
	r.HandleFunc("GET /devices/{id}", func(c *Ctx) { c.WriteString("device " + c.Param("id")) })
	r.HandleFunc("GET /files/{path...}", func(c *Ctx) { c.WriteString("file " + c.Param("path")) })
	r.HandleFunc("GET /panic", func(c *Ctx) { panic("boom") })
	r.HandleFunc("GET /stream", func(c *Ctx) {
		c.WriteString("first,")
		c.Flush()
		c.WriteString("second,")
		c.WriteString("third")
	})
	r.HandleFunc("DELETE /devices/{id}", func(c *Ctx) { c.SetStatus(204) })
	return r
}

func forEachEngine(t *testing.T, fn func(t *testing.T, cfg Config, ec engine.Config)) {
	t.Run("loops", func(t *testing.T) { fn(t, Config{}, engine.Config{}) })
	t.Run("portable", func(t *testing.T) { fn(t, Config{}, engine.Config{Portable: true}) })
}

func get(t testing.TB, client *http.Client, url string) (int, string, http.Header) {
	t.Helper()
	resp, err := client.Get(url)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

func TestNetHTTPClient(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		s, addr := startServer(t, cfg, testRouter(), ec)
		client := &http.Client{Timeout: 5 * time.Second}
		base := "http://" + addr
		for _, tc := range []struct {
			path, body string
			status     int
		}{
			{"/", "hello", 200},
			{"/delay?ms=1", "hello", 200},
			{"/devices/42", "device 42", 200},
			{"/files/a/b/c.txt", "file a/b/c.txt", 200},
			{"/nope", "404 page not found\n", 404},
			{"/stream", "first,second,third", 200},
		} {
			st, body, _ := get(t, client, base+tc.path)
			if st != tc.status || body != tc.body {
				t.Errorf("GET %s = %d %q, want %d %q", tc.path, st, body, tc.status, tc.body)
			}
		}
		resp, err := client.Post(base+"/echo", "text/plain", strings.NewReader(strings.Repeat("z", 100000)))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if len(b) != 100000 || resp.Header.Get("Content-Type") != "application/octet-stream" {
			t.Fatalf("POST echo: %d bytes, %v", len(b), resp.Header)
		}
		req, _ := http.NewRequest("PUT", base+"/devices/1", nil)
		resp, err = client.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.StatusCode != 405 || !strings.Contains(resp.Header.Get("Allow"), "GET") || !strings.Contains(resp.Header.Get("Allow"), "DELETE") {
			t.Fatalf("405: %d Allow=%q", resp.StatusCode, resp.Header.Get("Allow"))
		}
		if st := s.Stats(); st.Requests[2] < 6 || st.Requests[4] < 2 {
			t.Fatalf("stats %+v", st.Requests)
		}
		// Keep-alive: all those requests shared few connections.
		if acc := s.Engine().Stats().Accepted; acc > 3 {
			t.Fatalf("%d connections for sequential requests: keep-alive broken", acc)
		}
	})
}

// rawExchange writes req on a fresh connection and returns everything read
// until the server closes or the deadline passes.
// responses reads every response in out, in order, and returns their
// statuses and bodies. methods, when given, are the requests' methods, so
// that a response to HEAD is read without a body.
func responses(out string, methods ...string) (statuses []int, bodies []string) {
	br := bufio.NewReader(strings.NewReader(out))
	for i := 0; ; i++ {
		var req *http.Request
		if i < len(methods) {
			req = &http.Request{Method: methods[i]}
		}
		resp, err := http.ReadResponse(br, req)
		if err != nil {
			return statuses, bodies
		}
		b, _ := io.ReadAll(resp.Body)
		statuses = append(statuses, resp.StatusCode)
		bodies = append(bodies, string(b))
	}
}

func rawExchange(t testing.TB, addr, req string, wait time.Duration) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte(req))
	c.SetReadDeadline(time.Now().Add(wait))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestPipelining(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		_, addr := startServer(t, cfg, testRouter(), ec)
		// Worker handlers of different lengths must still answer in order.
		req := "GET /delay?ms=50 HTTP/1.1\r\nHost: x\r\n\r\n" +
			"GET /devices/7 HTTP/1.1\r\nHost: x\r\n\r\n" +
			"GET / HTTP/1.1\r\nHost: x\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc" +
			"GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"
		out := rawExchange(t, addr, req, 5*time.Second)
		_, bodies := responses(out)
		want := []string{"hello", "device 7", "hello", "abc", "hello"}
		if fmt.Sprint(bodies) != fmt.Sprint(want) {
			t.Fatalf("pipelined bodies %q, want %q\nraw: %q", bodies, want, out)
		}
	})
}

func TestSplitRequestsAndBodies(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		_, addr := startServer(t, cfg, testRouter(), ec)
		full := "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"5;ext=1\r\nhello\r\n7\r\n, world\r\n0\r\nX-Trailer: t\r\n\r\n" +
			"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 11\r\nConnection: close\r\n\r\nhello again"
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		for i := 0; i < len(full); i += 7 { // dribble in 7-byte pieces
			end := min(i+7, len(full))
			c.Write([]byte(full[i:end]))
			time.Sleep(time.Millisecond)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(c)
		for _, want := range []string{"hello, world", "hello again"} {
			resp, err := http.ReadResponse(br, nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if string(b) != want {
				t.Fatalf("body %q want %q", b, want)
			}
		}
	})
}

func TestBadRequests(t *testing.T) {
	_, addr := startServer(t, Config{Limits: Limits{MaxBodyBytes: 1000, MaxURIBytes: 100}}, testRouter())
	for _, tc := range []struct {
		name, req string
		status    int
	}{
		{"bad request line", "GARBAGE\r\n\r\n", 400},
		{"bad method", "G(T / HTTP/1.1\r\nHost: x\r\n\r\n", 400},
		{"space before colon", "GET / HTTP/1.1\r\nHost : x\r\n\r\n", 400},
		{"obs-fold", "GET / HTTP/1.1\r\nHost: x\r\nX: a\r\n b\r\n\r\n", 400},
		{"NUL in header", "GET / HTTP/1.1\r\nHost: x\r\nX: a\x00b\r\n\r\n", 400},
		{"bare CR", "GET / HTTP/1.1\r\nHost: x\rY: z\r\n\r\n", 400},
		{"missing host", "GET / HTTP/1.1\r\n\r\n", 400},
		{"two hosts", "GET / HTTP/1.1\r\nHost: a\r\nHost: b\r\n\r\n", 400},
		{"HTTP/2.0", "GET / HTTP/2.0\r\nHost: x\r\n\r\n", 505},
		{"URI too long", "GET /" + strings.Repeat("a", 200) + " HTTP/1.1\r\nHost: x\r\n\r\n", 414},
		{"header too large", "GET / HTTP/1.1\r\nHost: x\r\nX: " + strings.Repeat("a", 70000) + "\r\n\r\n", 431},
		{"body too large", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5000\r\n\r\n", 413},
		{"CL and TE", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
		{"conflicting CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\nContent-Length: 4\r\n\r\n", 400},
		{"negative CL", "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: -1\r\n\r\n", 400},
		{"bad chunk size", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
		{"chunked not final", "POST /echo HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", 400},
	} {
		t.Run(tc.name, func(t *testing.T) {
			// A valid request pipelined after the bad one must never be
			// served (no request smuggling).
			out := rawExchange(t, addr, tc.req+"GET / HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
			want := fmt.Sprintf("HTTP/1.1 %d ", tc.status)
			if !strings.HasPrefix(out, want) {
				t.Fatalf("got %q, want %q", out, want)
			}
			if !strings.Contains(out, "Connection: close") {
				t.Fatal("bad request did not close the connection")
			}
			if strings.Count(out, "HTTP/1.1 ") != 1 || strings.Contains(out, "hello") {
				t.Fatalf("request after a refused one was served: %q", out)
			}
		})
	}
}

// TestRefusalCountedBeforeItsAnswer: a client that has read a refusal's
// answer (its head and its Content-Length of body, not the close after it)
// sees it counted by status class, as a served request's answer is: the
// count is made before the answer is sent. So is a 408 for a head that did
// not arrive in time.
func TestRefusalCountedBeforeItsAnswer(t *testing.T) {
	readAnswer := func(t *testing.T, c net.Conn) int {
		t.Helper()
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		if _, err := io.ReadAll(resp.Body); err != nil {
			t.Fatal(err)
		}
		return resp.StatusCode
	}
	s, addr := startServer(t, Config{}, testRouter())
	for i := 1; i <= 50; i++ {
		c := dial(t, addr)
		c.Write([]byte("GARBAGE\r\n\r\n"))
		if st := readAnswer(t, c); st != 400 {
			t.Fatalf("answer %d: status %d, want 400", i, st)
		}
		if st := s.Stats(); st.Requests[4] != uint64(i) || st.Refused != uint64(i) {
			t.Fatalf("after %d refusals were answered: 4xx %d, refused %d", i, st.Requests[4], st.Refused)
		}
		c.Close()
	}
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.HeaderTimeout = 10 * time.Second
		s, addr, advance := timedServer(t, cfg, ec, 50)
		c := dial(t, addr)
		head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
		c.Write([]byte(head))
		received(t, s, len(head))
		advance(cfg.HeaderTimeout)
		if st := readAnswer(t, c); st != 408 {
			t.Fatalf("slow head: status %d, want 408", st)
		}
		if st := s.Stats(); st.Requests[4] != 1 || st.HeaderTimeouts != 1 {
			t.Fatalf("after the 408 was answered: 4xx %d, timeouts %d", st.Requests[4], st.HeaderTimeouts)
		}
	})
}

func TestHeadAndHTTP10(t *testing.T) {
	_, addr := startServer(t, Config{}, testRouter())
	out := rawExchange(t, addr, "HEAD / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.Contains(out, "Content-Length: 5\r\n") || strings.HasSuffix(out, "hello") {
		t.Fatalf("HEAD: %q", out)
	}
	// HTTP/1.0 without keep-alive: answered as 1.0 and closed.
	out = rawExchange(t, addr, "GET / HTTP/1.0\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.0 200") || !strings.Contains(out, "Connection: close") || !strings.HasSuffix(out, "hello") {
		t.Fatalf("HTTP/1.0: %q", out)
	}
	// HTTP/1.0 keep-alive: two answers on one connection.
	out = rawExchange(t, addr, "GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\nGET / HTTP/1.0\r\n\r\n", 5*time.Second)
	if strings.Count(out, "HTTP/1.0 200") != 2 || !strings.Contains(out, "Connection: keep-alive") {
		t.Fatalf("HTTP/1.0 keep-alive: %q", out)
	}
	// Absolute-form target.
	out = rawExchange(t, addr, "GET http://example.com/devices/9 HTTP/1.1\r\nHost: example.com\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasSuffix(out, "device 9") {
		t.Fatalf("absolute-form: %q", out)
	}
}

func TestExpectContinue(t *testing.T) {
	_, addr := startServer(t, Config{}, testRouter())
	if b := expectContinue(t, addr, "/echo", "data"); b != "data" {
		t.Fatalf("body %q", b)
	}
}

// expectContinue posts body to path with Expect: 100-continue, sending the
// body only after the interim 100, and returns the response body.
func expectContinue(t *testing.T, addr, path, body string) string {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	fmt.Fprintf(c, "POST %s HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\nExpect: 100-continue\r\n\r\n", path, len(body))
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	if line, _ := br.ReadString('\n'); line != "HTTP/1.1 100 Continue\r\n" {
		t.Fatalf("interim %q", line)
	}
	br.ReadString('\n')
	c.Write([]byte(body))
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// timedServer starts a server whose engine reads a fake clock on the event
// loops (they still wake every 10 ms of real time to read it), or, on the
// portable engine, which times out in real time, with the timeouts cut by
// scale. advance moves time past d.
func timedServer(t *testing.T, cfg Config, ec engine.Config, scale time.Duration) (s *testServer, addr string, advance func(d time.Duration)) {
	t.Helper()
	if ec.Portable {
		cfg.HeaderTimeout /= scale
		cfg.BodyTimeout /= scale
		cfg.IdleTimeout /= scale
		s, addr = startServer(t, cfg, testRouter(), ec)
		return s, addr, func(time.Duration) {}
	}
	clk := testutil.NewFakeClock()
	ec.Clock, ec.TickInterval = clk, 10*time.Millisecond
	s, addr = startServer(t, cfg, testRouter(), ec)
	return s, addr, func(d time.Duration) { clk.Advance(d + 20*time.Millisecond) }
}

// received waits until the server has read n bytes in all: a timeout
// that runs from a request's first byte is armed once they are read, so
// a fake clock advanced before that would not end it.
func received(t *testing.T, s *testServer, n int) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, fmt.Sprintf("%d bytes read by the server", n),
		func() bool { return s.Engine().Stats().BytesIn >= uint64(n) })
}

// silent reports that nothing arrives on c for a short while.
func silent(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(30 * time.Millisecond))
	var b [1]byte
	if n, err := c.Read(b[:]); n > 0 || !isTimeout(err) {
		t.Fatalf("got %q, %v before the timeout", b[:n], err)
	}
}

func isTimeout(err error) bool {
	ne, ok := err.(net.Error)
	return ok && ne.Timeout()
}

func readAll(t *testing.T, c net.Conn) string {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, _ := io.ReadAll(c)
	return string(b)
}

func TestHeaderTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.HeaderTimeout = 10 * time.Second
		s, addr, advance := timedServer(t, cfg, ec, 50)
		c := dial(t, addr)
		head := "GET / HTTP/1.1\r\nHost: x\r\nX-Slow: "
		c.Write([]byte(head))
		received(t, s, len(head))
		if !ec.Portable {
			silent(t, c)
		}
		advance(cfg.HeaderTimeout)
		if out := readAll(t, c); !strings.HasPrefix(out, "HTTP/1.1 408 ") {
			t.Fatalf("slow header got %q", out)
		}
		c.Close() // the server's lingering close waits for this end of stream
		eventually(t, func() bool { return s.Engine().Stats().Closed[engine.ReasonReadTimeout] == 1 })
	})
}

func TestBodyTimeout(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.BodyTimeout = 30 * time.Second
		s, addr, advance := timedServer(t, cfg, ec, 150)
		c := dial(t, addr)
		req := "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 10\r\n\r\nabc"
		c.Write([]byte(req))
		received(t, s, len(req))
		if !ec.Portable {
			silent(t, c)
		}
		advance(cfg.BodyTimeout)
		if out := readAll(t, c); !strings.HasPrefix(out, "HTTP/1.1 408 ") {
			t.Fatalf("slow body got %q", out)
		}
		eventually(t, func() bool { return s.Stats().HeaderTimeouts == 1 })
	})
}

func eventually(t testing.TB, cond func() bool) {
	t.Helper()
	testutil.Eventually(t, 0, "condition", cond)
}

func dial(t testing.TB, addr string) net.Conn {
	t.Helper()
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

func TestIdleTimeoutAndMaxRequests(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.IdleTimeout, cfg.MaxRequestsPerConn = 10*time.Second, 3
		s, addr, advance := timedServer(t, cfg, ec, 50)
		out := rawExchange(t, addr, strings.Repeat("GET / HTTP/1.1\r\nHost: x\r\n\r\n", 4), 5*time.Second)
		if strings.Count(out, "HTTP/1.1 200") != 3 || strings.Count(out, "Connection: close") != 1 {
			t.Fatalf("max requests: %q", out)
		}
		c := dial(t, addr)
		c.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		br := bufio.NewReader(c)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		if !ec.Portable {
			silent(t, c)
		}
		advance(cfg.IdleTimeout)
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		if n, err := br.Read(make([]byte, 1)); n != 0 || err != io.EOF {
			t.Fatalf("idle connection not closed: %d, %v", n, err)
		}
		eventually(t, func() bool { return s.Engine().Stats().Closed[engine.ReasonIdleTimeout] == 1 })
	})
}

// TestFakeClockKeepsAlive is the clock defect: http1 compared the wall
// clock with the engine's, so an injected clock made every response carry
// Connection: close (the connection looked older than MaxConnAge).
func TestFakeClockKeepsAlive(t *testing.T) {
	ec := engine.Config{Clock: testutil.NewFakeClock()}
	_, addr := startServer(t, Config{}, testRouter(), ec)
	out := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
	if strings.Count(out, "HTTP/1.1 200") != 2 || strings.Count(out, "Connection: close") != 1 {
		t.Fatalf("with an injected clock: %q", out)
	}
}

func TestPanicAnswers500(t *testing.T) {
	s, addr := startServer(t, Config{Logger: discardLogger()}, testRouter())
	out := rawExchange(t, addr, "GET /panic HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 500 ") || !strings.Contains(out, "Connection: close") {
		t.Fatalf("panic: %q", out)
	}
	st, body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/")
	if st != 200 || body != "hello" {
		t.Fatal("server broken after a panic")
	}
	eventually(t, func() bool { return s.Engine().Stats().Closed[engine.ReasonPanic] == 1 })
}

func TestBlockingHandlersDoNotStallInline(t *testing.T) {
	gate := make(chan struct{})
	var entered sync.WaitGroup
	entered.Add(64)
	r := testRouter()
	r.HandleFunc("GET /gate", func(c *Ctx) {
		entered.Done()
		<-gate
		c.WriteString("released")
	})
	_, addr := startServer(t, Config{}, r)
	client := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{MaxIdleConnsPerHost: 100}}
	var wg sync.WaitGroup
	for i := 0; i < 64; i++ {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if st, body, _ := get(t, client, "http://"+addr+"/gate"); st != 200 || body != "released" {
				t.Errorf("gated request: %d %q", st, body)
			}
		}()
	}
	entered.Wait() // 64 handlers are now blocked on workers
	// Inline requests are served while they stay blocked: were the loop
	// stalled, these would time out.
	for i := 0; i < 20; i++ {
		if st, _, _ := get(t, client, "http://"+addr+"/"); st != 200 {
			t.Fatal(st)
		}
	}
	close(gate)
	wg.Wait()
}

func TestShutdownSendsConnectionClose(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		// The busy connection's handler holds its response until the
		// drain has begun.
		entered, release := make(chan struct{}), make(chan struct{})
		var releaseOnce sync.Once
		r := testRouter()
		r.HandleFunc("GET /hold", func(c *Ctx) {
			close(entered)
			<-release
			c.WriteString("hello")
		})
		s, addr := startServer(t, cfg, r, ec)
		t.Cleanup(func() { releaseOnce.Do(func() { close(release) }) }) // before the server's Close
		idle, _ := net.Dial("tcp", addr)
		defer idle.Close()
		idle.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
		idle.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(idle)
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		busy, _ := net.Dial("tcp", addr)
		defer busy.Close()
		busy.Write([]byte("GET /hold HTTP/1.1\r\nHost: x\r\n\r\n"))
		select {
		case <-entered:
		case <-time.After(10 * time.Second):
			t.Fatal("the busy request never reached its handler")
		}
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(ctx) }()
		testutil.Eventually(t, 0, "the drain to begin", s.Engine().Draining)
		releaseOnce.Do(func() { close(release) })
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		busy.SetReadDeadline(time.Now().Add(10 * time.Second))
		out, _ := io.ReadAll(busy)
		if !strings.Contains(string(out), "Connection: close") || !strings.HasSuffix(string(out), "hello") {
			t.Fatalf("in-flight response on shutdown: %q", out)
		}
		idle.SetReadDeadline(time.Now().Add(10 * time.Second))
		if _, err := br.ReadByte(); err != io.EOF {
			t.Fatalf("idle connection not closed: %v", err)
		}
	})
}

func TestAdaptNetHTTP(t *testing.T) {
	mux := http.NewServeMux()
	mux.HandleFunc("POST /up/{name}", func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		w.Header().Set("X-Name", r.PathValue("name"))
		w.WriteHeader(201)
		fmt.Fprintf(w, "%s:%s:%s", r.Method, r.URL.Query().Get("q"), b)
	})
	mux.HandleFunc("GET /flush", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("a"))
		w.(http.Flusher).Flush()
		w.Write([]byte("b"))
	})
	_, addr := startServer(t, Config{}, Adapt(mux))
	resp, err := http.Post("http://"+addr+"/up/dev1?q=z", "text/plain", strings.NewReader("payload"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 201 || resp.Header.Get("X-Name") != "dev1" || string(b) != "POST:z:payload" {
		t.Fatalf("adapter: %d %v %q", resp.StatusCode, resp.Header, b)
	}
	st, body, h := get(t, http.DefaultClient, "http://"+addr+"/flush")
	if st != 200 || body != "ab" || h.Get("Transfer-Encoding") != "" && false {
		t.Fatalf("flush: %d %q", st, body)
	}
}

func TestHooks(t *testing.T) {
	var mu sync.Mutex
	var statuses []int
	cfg := Config{Hooks: Hooks{
		OnRequest: func(c *Ctx) bool {
			if c.Header("X-Token") == nil {
				c.SetStatus(401)
				c.WriteString("no token")
				return false
			}
			return true
		},
		OnResponse: func(c *Ctx, status int, _ time.Duration) {
			mu.Lock()
			statuses = append(statuses, status)
			mu.Unlock()
		},
	}}
	_, addr := startServer(t, cfg, testRouter())
	out := rawExchange(t, addr, "GET / HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\nX-Token: t\r\nConnection: close\r\n\r\n", 5*time.Second)
	if !strings.HasPrefix(out, "HTTP/1.1 401") || !strings.HasSuffix(out, "hello") {
		t.Fatalf("hooks: %q", out)
	}
	mu.Lock()
	defer mu.Unlock()
	if fmt.Sprint(statuses) != "[401 200]" {
		t.Fatalf("OnResponse saw %v", statuses)
	}
}

func TestOverloadPolicy(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{MaxConns: 100})
	s, err := NewServer(e, Config{IdleTimeout: 60 * time.Second}, testRouter())
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		p         float64
		idle      time.Duration
		keepAlive bool
		level     int
	}{
		{0.1, 60 * time.Second, true, 0},
		{0.8, 60 * time.Second, true, 1},
		{0.9, 30500 * time.Millisecond, true, 1},
		{0.96, 12800 * time.Millisecond, false, 2},
		{0.92, 24600 * time.Millisecond, false, 2}, // hysteresis: keep-alive stays off until < 0.90
		{0.89, 33500 * time.Millisecond, true, 1},
		{0.76, 60 * time.Second, true, 1}, // still "reducing" until < 0.75, but by nothing below 0.8
		{0.5, 60 * time.Second, true, 0},
	} {
		s.ov.apply(tc.p)
		st := s.Overload()
		if st.KeepAlive != tc.keepAlive || st.Level() != tc.level {
			t.Fatalf("p=%.2f: %+v", tc.p, st)
		}
		if st.IdleTimeout != tc.idle {
			t.Fatalf("p=%.2f idle %v, want %v", tc.p, st.IdleTimeout, tc.idle)
		}
	}
}

func TestCurlInterop(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("curl not installed")
	}
	_, addr := startServer(t, Config{}, testRouter())
	out, err := exec.Command(curl, "-s", "-S", "--max-time", "5", "http://"+addr+"/", "http://"+addr+"/devices/3",
		"-X", "GET").CombinedOutput()
	if err != nil || string(out) != "hellodevice 3" {
		t.Fatalf("curl: %q %v", out, err)
	}
	out, err = exec.Command(curl, "-s", "-S", "--max-time", "5", "-H", "Expect: 100-continue", "--data-binary", "@-",
		"http://"+addr+"/echo").CombinedOutput()
	_ = out
	if err != nil {
		t.Fatalf("curl post: %v", err)
	}
	cmd := exec.Command(curl, "-s", "-S", "--max-time", "5", "-T", "-", "-X", "POST", "http://"+addr+"/echo")
	cmd.Stdin = bytes.NewReader(bytes.Repeat([]byte("q"), 70000)) // chunked upload
	out, err = cmd.CombinedOutput()
	if err != nil || len(out) != 70000 {
		t.Fatalf("curl chunked upload: %d bytes %v", len(out), err)
	}
}

// wrk, the load tool the CPU target is measured with, gets only 200s and
// no socket errors from keep-alive connections, on both engines.
func TestWrkInterop(t *testing.T) {
	wrk, err := exec.LookPath("wrk")
	if err != nil {
		t.Skip("wrk not installed")
	}
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		s, addr := startServer(t, cfg, testRouter(), ec)
		out, err := exec.Command(wrk, "-t1", "-c16", "-d1s", "http://"+addr+"/").CombinedOutput()
		if err != nil {
			t.Fatalf("wrk: %v\n%s", err, out)
		}
		if strings.Contains(string(out), "Non-2xx") || strings.Contains(string(out), "Socket errors") {
			t.Fatalf("wrk reported errors:\n%s", out)
		}
		if s.Stats().Requests[2] < 100 {
			t.Fatalf("only %d requests served:\n%s", s.Stats().Requests[2], out)
		}
	})
}

func TestNodeInterop(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed")
	}
	_, addr := startServer(t, Config{}, testRouter())
	script := `
const http = require('http');
const agent = new http.Agent({keepAlive: true});
let out = [];
function get(path) {
  return new Promise((res, rej) => {
    http.get('http://` + addr + `' + path, {agent}, r => {
      let b = ''; r.on('data', d => b += d); r.on('end', () => res(r.statusCode + ':' + b));
    }).on('error', rej);
  });
}
(async () => {
  for (const p of ['/', '/devices/5', '/stream', '/missing']) out.push(await get(p));
  const body = 'x'.repeat(5000);
  await new Promise((res, rej) => {
    const req = http.request('http://` + addr + `/echo', {method: 'POST', agent}, r => {
      let b = ''; r.on('data', d => b += d); r.on('end', () => { out.push(r.statusCode + ':' + b.length); res(); });
    });
    req.on('error', rej); req.write(body.slice(0, 100)); req.end(body.slice(100));
  });
  console.log(out.join('|'));
  agent.destroy();
})().catch(e => { console.error(e); process.exit(1); });
`
	out, err := exec.Command(node, "-e", script).CombinedOutput()
	want := "200:hello|200:device 5|200:first,second,third|404:404 page not found\n|200:5000\n"
	if err != nil || string(out) != want {
		t.Fatalf("node: %q %v", out, err)
	}
}

func TestHalfCloseAnswersPipelined(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		_, addr := startServer(t, cfg, testRouter(), ec)
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.Write([]byte("GET /delay?ms=50 HTTP/1.1\r\nHost: x\r\n\r\nGET /devices/2 HTTP/1.1\r\nHost: x\r\n\r\n"))
		c.(*net.TCPConn).CloseWrite()
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(c)
		if strings.Count(string(out), "HTTP/1.1 200") != 2 || !strings.HasSuffix(string(out), "device 2") {
			t.Fatalf("after half-close: %q", out)
		}
	})
}

// TestHalfClosePipelinedBehindWorker sends a request for a worker and one
// pipelined behind it, then half-closes at once, many times: the second
// request must be answered every time. The fuzzer found the engine losing
// it about once in a hundred runs: when the client's FIN was read after the
// worker's task had finished (Conn.inflight back to 0) but before the loop
// handled the opQuiet that redelivers pending input, onReadable closed the
// connection with the pipelined request still unparsed. The engine now
// redelivers pending input before closing a half-closed connection.
func TestHalfClosePipelinedBehindWorker(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		r := NewRouter()
		r.HandleFunc("GET /w", func(c *Ctx) { c.WriteString("w") })
		r.Handle("GET /", InlineFunc(func(c *Ctx) { c.WriteString("i") }))
		_, addr := startServer(t, cfg, r, ec)
		for i := range 1000 {
			c := dial(t, addr)
			c.Write([]byte("GET /w HTTP/1.1\r\nHost: x\r\n\r\nGET / HTTP/1.1\r\nHost: x\r\n\r\n"))
			c.(*net.TCPConn).CloseWrite()
			out := readAll(t, c)
			c.Close()
			if strings.Count(out, "HTTP/1.1 200") != 2 {
				t.Fatalf("run %d: got %q", i, out)
			}
		}
	})
}

// shout is a line protocol an HTTP connection upgrades to: it answers each
// input with the same bytes upper-cased.
type shout struct {
	sawSelf atomic.Bool
	opened  atomic.Bool
	closed  atomic.Bool
	states  atomic.Int32
}

// OnOpen runs when the upgrade hands the open connection over.
func (p *shout) OnOpen(c *engine.Conn) { p.opened.Store(true) }

// OnStateChange follows the connection once it is shout's.
func (p *shout) OnStateChange(c *engine.Conn, from, to engine.State) { p.states.Add(1) }

func (p *shout) OnData(c *engine.Conn, in []byte) int {
	p.sawSelf.Store(c.Handler() == engine.Handler(p) && c.Context() == nil && p.opened.Load())
	c.Write(bytes.ToUpper(in))
	return len(in)
}

func (p *shout) OnClose(c *engine.Conn, r engine.CloseReason, err error) { p.closed.Store(true) }

// An upgraded connection hands every later byte, including bytes that
// arrived with the upgrade request, to the new protocol, and keeps no HTTP
// state: the protocol is the connection's handler, with no forwarding, and
// the connection's Context stays the application's. Inline handlers and
// handlers on the worker pool may upgrade.
func TestUpgradeTo(t *testing.T) {
	for _, route := range []string{"/up", "/upw"} {
		t.Run(route, func(t *testing.T) { testUpgradeTo(t, route) })
	}
}

func testUpgradeTo(t *testing.T, route string) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		p := new(shout)
		r := NewRouter()
		up := func(c *Ctx) {
			c.WriteRaw([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: shout\r\nConnection: Upgrade\r\n\r\n"))
			c.UpgradeTo(p)
		}
		r.Handle("GET /up", InlineFunc(up))
		r.HandleFunc("GET /upw", up)
		r.HandleFunc("GET /work", func(c *Ctx) { c.WriteString("worked") })
		_, addr := startServer(t, cfg, r, ec)
		conn, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer conn.Close()
		conn.SetReadDeadline(time.Now().Add(5 * time.Second))
		br := bufio.NewReader(conn)
		// A request on a worker first, then an upgrade whose head arrives
		// in two reads: the connection has held HTTP state before.
		conn.Write([]byte("GET /work HTTP/1.1\r\nHost: x\r\n\r\n"))
		if resp, err := http.ReadResponse(br, nil); err != nil || resp.StatusCode != 200 {
			t.Fatalf("worker request: %v %v", resp, err)
		} else {
			io.ReadAll(resp.Body)
		}
		conn.Write([]byte("GET " + route + " HTTP/1.1\r\nHost: x\r\n"))
		time.Sleep(50 * time.Millisecond)
		conn.Write([]byte("Upgrade: shout\r\nConnection: Upgrade\r\n\r\nhello "))
		resp, err := http.ReadResponse(br, nil)
		if err != nil || resp.StatusCode != 101 {
			t.Fatalf("upgrade: %v %v", resp, err)
		}
		want := "HELLO WORLD"
		got := make([]byte, 0, len(want))
		buf := make([]byte, 64)
		for i := 0; len(got) < len(want); i++ {
			if i == 0 {
				conn.Write([]byte("world"))
			}
			n, err := br.Read(buf)
			if err != nil {
				t.Fatal(err)
			}
			got = append(got, buf[:n]...)
		}
		if string(got) != want || !p.sawSelf.Load() {
			t.Fatalf("got %q, protocol is the handler and was opened first: %v", got, p.sawSelf.Load())
		}

		conn.Close()
		eventually(t, p.closed.Load)
		// The close is a state change the upgraded protocol sees, at the
		// latest (Active and Idle may not alternate when reads coalesce).
		if p.states.Load() == 0 {
			t.Fatal("OnStateChange did not reach the upgraded protocol")
		}
	})
}

// TestDrainAfterResponse is the drain race: the response of a request on a
// worker had been sent, but its connection still counted as busy, when the
// drain began; the drain left the close to the response, which had already
// gone, and the keep-alive connection stayed open until its idle timeout.
// The hook holds the worker in exactly that window until the drain has
// reached the connection.
func TestDrainAfterResponse(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		cfg.IdleTimeout = time.Hour
		srv := make(chan *testServer, 1)
		shutdown := make(chan error, 1)
		cfg.Hooks.OnResponse = func(c *Ctx, status int, _ time.Duration) {
			s := <-srv
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
				defer cancel()
				shutdown <- s.Shutdown(ctx)
			}()
			testutil.Eventually(t, 0, "the drain to reach the connection", func() bool {
				return c.Conn().State() == engine.StateDraining
			})
		}
		r := NewRouter()
		r.HandleFunc("GET /work", func(c *Ctx) { c.WriteString("done") })
		s, addr := startServer(t, cfg, r, ec)
		srv <- s
		c := dial(t, addr)
		c.Write([]byte("GET /work HTTP/1.1\r\nHost: x\r\n\r\n"))
		out := readAll(t, c) // the server closes the connection
		if !strings.HasPrefix(out, "HTTP/1.1 200") || !strings.HasSuffix(out, "done") {
			t.Fatalf("got %q", out)
		}
		select {
		case err := <-shutdown:
			if err != nil {
				t.Fatalf("Shutdown: %v (the connection waited for its idle timeout)", err)
			}
		case <-time.After(15 * time.Second):
			t.Fatal("Shutdown did not return")
		}
	})
}

// TestRequestContext: a handler's context ends when the client goes away,
// when the handler returns, and when the engine drains.
func TestRequestContext(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		started := make(chan struct{}, 1)
		causes := make(chan error, 4)
		kept := make(chan context.Context, 1)
		r := NewRouter()
		r.HandleFunc("GET /wait", func(c *Ctx) {
			started <- struct{}{}
			<-c.Context().Done()
			causes <- context.Cause(c.Context())
		})
		r.HandleFunc("GET /quick", func(c *Ctx) {
			kept <- c.Context()
			c.WriteString("ok")
		})
		s, addr := startServer(t, cfg, r, ec)

		out := rawExchange(t, addr, "GET /quick HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n", 5*time.Second)
		if !strings.HasSuffix(out, "ok") {
			t.Fatalf("quick: %q", out)
		}
		k := <-kept
		testutil.Eventually(t, 0, "the context to end with the handler", func() bool { return k.Err() != nil })
		if context.Cause(k) != ErrHandlerDone {
			t.Fatalf("after the handler returned: cause %v", context.Cause(k))
		}

		c := dial(t, addr)
		c.Write([]byte("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"))
		<-started
		c.Close()
		select {
		case err := <-causes:
			if err != ErrClientGone {
				t.Fatalf("client gone: cause %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("context not cancelled when the client went away")
		}

		c = dial(t, addr)
		c.Write([]byte("GET /wait HTTP/1.1\r\nHost: x\r\n\r\n"))
		<-started
		go s.Shutdown(context.Background())
		select {
		case err := <-causes:
			if err != engine.ErrServerClosed {
				t.Fatalf("drain: cause %v", err)
			}
		case <-time.After(5 * time.Second):
			t.Fatal("context not cancelled when the engine drained")
		}
	})
}
