package http1

import (
	"bufio"
	"bytes"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"slices"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// FuzzServerInput sends arbitrary bytes, in up to three writes split
// where the fuzzer chooses (each read by the server before the next is
// sent), to a real server on a real engine, event loops or portable, over
// loopback, then half-closes. The server must not panic and must close the
// connection once the client is done; every response must be well-formed
// HTTP/1.1 and be the one the request stream calls for, in order. The
// package's own Parser and ChunkedReader frame the input, so what is
// checked is the server around them: buffering across reads, pipelining,
// bodies buffered and streamed, interim 100s, streamed responses and
// upgrades. A request they refuse is answered with its status and ends the
// connection, a handled request gets its route's answer, and the bytes
// after an upgrade come back from the upgraded protocol unchanged. Seeds
// are real requests; go test runs only them and testdata/fuzz.
func FuzzServerInput(f *testing.F) {
	type seed struct {
		in   string
		cuts uint32 // two cut points, one per half
	}
	at := func(a, b int) uint32 { return uint32(a) | uint32(b)<<16 }
	const host = "Host: x\r\n"
	seeds := []seed{
		{"GET / HTTP/1.1\r\n" + host + "\r\n", at(3, 20)},
		{"GET / HTTP/1.1\r\n" + host + "\r\nGET /flush HTTP/1.1\r\n" + host + "\r\nHEAD / HTTP/1.1\r\n" + host + "\r\n" +
			"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5\r\n\r\nhello" +
			"GET /nope HTTP/1.1\r\n" + host + "\r\nDELETE / HTTP/1.1\r\n" + host + "\r\n", at(30, 90)},
		{"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n6;ext=1\r\n world\r\n0\r\nTrailer: t\r\n\r\n" +
			"GET / HTTP/1.1\r\n" + host + "\r\n", at(60, 75)},
		{"POST /upload HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n3\r\ndef\r\n0\r\n\r\n" +
			"GET / HTTP/1.1\r\n" + host + "\r\n", at(55, 66)},
		{"POST /echo HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody", at(65, 65)},
		{"POST /upload HTTP/1.1\r\n" + host + "Expect: 100-continue\r\nContent-Length: 4\r\n\r\nbody", at(67, 67)},
		{"GET /up HTTP/1.1\r\n" + host + "Upgrade: raw\r\nConnection: Upgrade\r\n\r\nbytes after the upgrade", at(50, 60)},
		{"GET / HTTP/1.1\r\n" + host + "\r\nGET /upw HTTP/1.1\r\n" + host + "Upgrade: raw\r\nConnection: Upgrade\r\n\r\nGET / HTTP/1.1\r\n\r\n", at(20, 80)},
		{"GET /up HTTP/1.1\r\n" + host + "\r\n", at(0, 0)},
		{"GET / HTTP/1.0\r\n\r\nGET / HTTP/1.1\r\n" + host + "\r\n", at(5, 5)},
		{"GET /flush HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", at(10, 40)},
		{"GET / HTTP/1.1\r\n" + host + "Connection: close\r\n\r\nGET / HTTP/1.1\r\n" + host + "\r\n", at(40, 41)},
		{"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 5000\r\n\r\n", at(10, 20)},
		{"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n7d0\r\n" + strings.Repeat("x", 200), at(70, 80)},
		{"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\nzz\r\nhello\r\n0\r\n\r\n", at(58, 58)},
		{"POST /upload HTTP/1.1\r\n" + host + "Transfer-Encoding: chunked\r\n\r\n5\r\nhel", at(60, 60)},
		{"POST /echo HTTP/1.1\r\n" + host + "Content-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\nabc", at(1, 2)},
		{"POST /echo HTTP/1.1\r\n" + host + "Transfer-Encoding: gzip, chunked\r\n\r\n", at(0, 0)},
		{"GET / HTTP/1.1\r\n" + host + "X: a\r\n b\r\n\r\n", at(8, 8)},
		{"GET / HTTP/1.1\r\n" + host + "X: a\rb\r\n\r\n", at(0, 0)},
		{"GET /" + strings.Repeat("a", 80) + " HTTP/1.1\r\n" + host + "\r\n", at(40, 40)},
		{"GET / HTTP/2.0\r\n" + host + "\r\n", at(0, 0)},
		{"GET / HTTP/1.1\r\n" + strings.Repeat("A: b\r\n", 9) + host + "\r\n", at(30, 30)},
		{"GET / HTTP/1.1\r\n\r\n", at(0, 0)},
		{"\x16\x03\x01\x00\xa5\x01\x00\x00\xa1\x03\x03", at(1, 1)}, // a TLS ClientHello
		{"\r\n\r\nGET / HTTP/1.1\nHost: x\n\n", at(2, 9)},
	}
	for i, s := range seeds {
		f.Add([]byte(s.in), s.cuts, i%3 == 2)
	}

	servers := [2]*fuzzServer{startFuzzServer(f, false), startFuzzServer(f, true)}
	f.Fuzz(func(t *testing.T, in []byte, cuts uint32, portable bool) {
		if len(in) > maxFuzzInput {
			t.Skip("the limits are explored with small ones")
		}
		fs := servers[0]
		if portable {
			fs = servers[1]
		}
		fs.check(t, in, cuts)
	})
}

// fuzzServer is the server FuzzServerInput feeds: small limits, so that
// the fuzzer reaches each of them, and a route for each way a request is
// served (inline, on a worker, streamed body, streamed response, upgrade
// inline and from a worker).
type fuzzServer struct {
	s    *Server
	eng  *engine.Engine
	addr string
	logs *errorLog
}

// fuzzRoute is a route handler with a name, so that the oracle can tell
// which one a request reaches.
type fuzzRoute struct {
	name string
	h    func(c *Ctx)
}

func (r fuzzRoute) ServeHTTP1(c *Ctx) { r.h(c) }

// rawEcho is the protocol the upgrade routes switch to: it sends back
// whatever it receives.
type rawEcho struct{}

func (rawEcho) OnData(c *engine.Conn, in []byte) int { c.Write(in); return len(in) }
func (rawEcho) Inline() bool                         { return true }

const switching = "HTTP/1.1 101 Switching Protocols\r\nUpgrade: raw\r\nConnection: Upgrade\r\n\r\n"

func upgradeRaw(c *Ctx) {
	if c.Request.Upgrade == nil {
		c.SetStatus(426)
		c.WriteString("upgrade required\n")
		return
	}
	c.WriteRaw([]byte(switching))
	c.UpgradeTo(rawEcho{})
}

func startFuzzServer(t testing.TB, portable bool) *fuzzServer {
	logs := &errorLog{}
	log := slog.New(logs)
	e := testutil.StartEngine(t, engine.Config{Logger: log, Portable: portable})
	r := NewRouter()
	r.Handle("GET /", Inline(fuzzRoute{"hello", func(c *Ctx) { c.WriteString("hello") }}))
	r.Handle("POST /echo", fuzzRoute{"echo", func(c *Ctx) { c.Write(c.Body()) }})
	r.Handle("POST /upload", StreamBody(fuzzRoute{"upload", func(c *Ctx) {
		n, err := io.Copy(io.Discard, c.BodyReader())
		if err != nil {
			return // answered with the error's status
		}
		c.WriteString(strconv.FormatInt(n, 10))
	}}, 0))
	r.Handle("GET /flush", fuzzRoute{"flush", func(c *Ctx) {
		c.WriteString("a")
		c.Flush()
		c.WriteString("b")
	}})
	r.Handle("GET /up", Inline(fuzzRoute{"up", upgradeRaw}))
	r.Handle("GET /upw", fuzzRoute{"up", upgradeRaw})
	s, err := NewServer(e, Config{Logger: log, Limits: *fuzzLimits, Overload: Overload{Disabled: true}}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		s.Close()
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
	})
	return &fuzzServer{s: s, eng: e, addr: ln.Addr().String(), logs: logs}
}

// errorLog is a slog.Handler that keeps the messages logged at level Error
// (panics recovered by the engine or the server among them).
type errorLog struct {
	mu   sync.Mutex
	msgs []string
}

func (l *errorLog) Enabled(_ context.Context, lv slog.Level) bool { return lv >= slog.LevelError }
func (l *errorLog) Handle(_ context.Context, r slog.Record) error {
	var b strings.Builder
	b.WriteString(r.Message)
	r.Attrs(func(a slog.Attr) bool {
		fmt.Fprintf(&b, " %s=%v", a.Key, a.Value)
		return true
	})
	l.mu.Lock()
	l.msgs = append(l.msgs, b.String())
	l.mu.Unlock()
	return nil
}
func (l *errorLog) WithAttrs([]slog.Attr) slog.Handler { return l }
func (l *errorLog) WithGroup(string) slog.Handler      { return l }

func (l *errorLog) take() []string {
	l.mu.Lock()
	defer l.mu.Unlock()
	m := l.msgs
	l.msgs = nil
	return m
}

// wantResp is a response the oracle expects.
type wantResp struct {
	method  string
	minor   int    // the request's HTTP minor version
	status  int    // a refusal's status; 0 when a route answers
	route   string // the fuzzRoute name; "" for the Router's 404 and 405
	body    []byte // the request body
	upgrade bool   // the response switches protocols
	closes  bool   // the connection ends after this response
}

// plan is what the server must do with an input.
type plan struct {
	resps []wantResp
	// stop is where the server decides to close the connection (a refused
	// request, Connection: close): bytes from there on may meet a closed
	// socket, so the client sends no write that starts at or after it.
	stop int
	// tail is where the upgraded protocol's bytes start, or -1.
	tail int
	// partial reports that the input ends inside a StreamBody request whose
	// handler has started: it may be answered as its body fails.
	partial bool
}

// expect frames in as the server does, with the server's own parser,
// routes and limits.
func (fs *fuzzServer) expect(in []byte) plan {
	pl := plan{stop: len(in), tail: -1}
	lim := fs.s.parseLim
	off := 0
	for off < len(in) {
		var p Parser
		req := new(Request)
		n, err := p.Parse(in[off:], req, &lim)
		if err != nil {
			pl.resps = append(pl.resps, wantResp{status: errStatus(err), closes: true})
			pl.stop = off + headErrorAt(in[off:], &lim)
			return pl
		}
		if n == 0 {
			return pl // the head is incomplete: no answer
		}
		h, mode, _ := fs.s.route(req)
		w := wantResp{method: string(req.Method), minor: req.ProtoMinor, route: routeName(h)}
		end := off + n
		complete := true
		switch {
		case req.Chunked:
			body, used, done, errAt, err := decodeChunkedAt(in[end:], &fs.s.limits)
			if err != nil {
				pl.resps = append(pl.resps, wantResp{status: errStatus(err), closes: true})
				pl.stop = end + errAt
				return pl
			}
			w.body, end, complete = body, end+used, done
		case req.ContentLength > 0:
			if int64(len(in)-end) < req.ContentLength {
				complete = false
			} else {
				w.body = in[end : end+int(req.ContentLength)]
				end += int(req.ContentLength)
			}
		}
		if !complete {
			pl.partial = mode.stream
			return pl
		}
		if w.route == "up" && req.Upgrade != nil {
			w.upgrade = true
			pl.resps = append(pl.resps, w)
			pl.tail = end
			return pl
		}
		w.closes = req.Close || (w.route == "flush" && req.ProtoMinor == 0)
		pl.resps = append(pl.resps, w)
		if w.closes {
			pl.stop = end
			return pl
		}
		off = end
	}
	return pl
}

func errStatus(err error) int {
	var e *Error
	if !errors.As(err, &e) {
		panic(fmt.Sprintf("parser error %v is not an *Error", err))
	}
	return e.Status
}

func routeName(h Handler) string {
	if ih, ok := h.(inlineHandler); ok {
		h = ih.Handler
	}
	if sh, ok := h.(streamHandler); ok {
		h = sh.Handler
	}
	if r, ok := h.(fuzzRoute); ok {
		return r.name
	}
	return ""
}

// headErrorAt returns the length of the shortest prefix of in on which
// Parse fails: the server refuses the request once it has read that far.
func headErrorAt(in []byte, lim *Limits) int {
	var p Parser
	var req Request
	for k := 1; k <= len(in); k++ {
		if _, err := p.Parse(in[:k], &req, lim); err != nil {
			return k
		}
	}
	panic("Parse failed on the whole input but on no prefix")
}

// decodeChunkedAt decodes a chunked body from in one byte at a time, as
// the server would if the bytes arrived so: the body, the bytes it used,
// whether it is complete, and on error the length of the prefix that
// revealed it.
func decodeChunkedAt(in []byte, lim *Limits) (body []byte, used int, done bool, errAt int, err error) {
	var r ChunkedReader
	r.Reset(lim)
	for end := 1; end <= len(in); end++ {
		for {
			m, data, fin, err := r.Next(in[used:end])
			if err != nil {
				return nil, 0, false, end, err
			}
			used += m
			body = append(body, data...)
			if fin {
				return body, used, true, 0, nil
			}
			if m == 0 {
				break
			}
		}
	}
	return body, used, false, 0, nil
}

// check sends in to the server in pieces and holds what comes back against
// the plan.
func (fs *fuzzServer) check(t *testing.T, in []byte, cuts uint32) {
	pl := fs.expect(in)
	a, b := int(cuts&0xffff)%(len(in)+1), int(cuts>>16)%(len(in)+1)
	if a > b {
		a, b = b, a
	}
	nc, err := net.DialTimeout("tcp", fs.addr, 5*time.Second)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	// Read all the while, so that what the server sends before it closes
	// is never lost to a reset.
	var rd reader
	rd.done = make(chan struct{})
	nc.SetReadDeadline(time.Now().Add(10 * time.Second))
	go rd.run(nc)
	testutil.Eventually(t, 10*time.Second, "the server to accept the connection", func() bool { return fs.eng.NumConns() == 1 })
	sent := 0
	for _, piece := range [][2]int{{0, a}, {a, b}, {b, len(in)}} {
		if piece[0] == piece[1] || piece[0] >= pl.stop {
			continue
		}
		base := fs.eng.Stats().BytesIn
		if _, err := nc.Write(in[piece[0]:piece[1]]); err != nil {
			t.Fatalf("write: %v", err)
		}
		sent = piece[1]
		// Wait for the server to read the piece, so that the next one
		// arrives in a read of its own.
		want := base + uint64(piece[1]-piece[0])
		deadline := time.Now().Add(5 * time.Second)
		for fs.eng.Stats().BytesIn < want && !rd.closed() {
			if time.Now().After(deadline) {
				t.Fatalf("the server stopped reading: %d of %d bytes read", fs.eng.Stats().BytesIn-base, piece[1]-piece[0])
			}
			time.Sleep(50 * time.Microsecond)
		}
	}
	// Half-close only once the answers are in. The engine loses input
	// pending behind work on a worker when the client's FIN is read between
	// the end of that work and the loop taking the connection back (see
	// TestHalfClosePipelinedBehindWorker), which a client sending its
	// last bytes and FIN together hits now and then.
	deadline := time.Now().Add(5 * time.Second)
	for !answered(pl, rd.bytes(), in[:sent]) && !rd.closed() && time.Now().Before(deadline) {
		time.Sleep(100 * time.Microsecond)
	}
	nc.(*net.TCPConn).CloseWrite()
	<-rd.done
	out, err := rd.result()
	if err != nil {
		t.Fatalf("reading the responses: %v (the server must close the connection once the client is done; got %q)", err, out)
	}
	for _, m := range fs.logs.take() {
		t.Errorf("server logged: %s", m)
	}
	fs.verify(t, in[:sent], pl, out)
	testutil.Eventually(t, 10*time.Second, "the server to release the connection", func() bool { return fs.eng.NumConns() == 0 })
}

// reader collects what the server sends until it closes the connection.
type reader struct {
	done chan struct{} // closed at the end of the stream
	mu   sync.Mutex
	out  []byte
	err  error
}

func (r *reader) run(nc net.Conn) {
	buf := make([]byte, 4096)
	for {
		n, err := nc.Read(buf)
		r.mu.Lock()
		r.out = append(r.out, buf[:n]...)
		if err != nil && err != io.EOF {
			r.err = err
		}
		r.mu.Unlock()
		if err != nil {
			close(r.done)
			return
		}
	}
}

func (r *reader) closed() bool {
	select {
	case <-r.done:
		return true
	default:
		return false
	}
}

func (r *reader) bytes() []byte {
	r.mu.Lock()
	defer r.mu.Unlock()
	return slices.Clone(r.out)
}

func (r *reader) result() ([]byte, error) {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.out, r.err
}

// answered reports whether out holds every response the plan expects,
// and after an upgrade the echo of every byte sent after it.
func answered(pl plan, out, sent []byte) bool {
	pos := 0
	for _, w := range pl.resps {
		for {
			resp, _, n, err := parseResponse(out[pos:], w.method)
			if err != nil || resp == nil {
				return false
			}
			pos += n
			if resp.StatusCode != 100 {
				break
			}
		}
		if w.upgrade {
			return len(out)-pos >= len(sent)-pl.tail
		}
	}
	return true
}

// verify holds the server's output against the plan.
func (fs *fuzzServer) verify(t *testing.T, sent []byte, pl plan, out []byte) {
	t.Helper()
	pos := 0
	for i, w := range pl.resps {
		var resp *http.Response
		var body []byte
		// Interim responses (100 Continue) may come first.
		for {
			var n int
			resp, body, n = readResponse(t, out[pos:], w.method)
			if resp == nil {
				t.Fatalf("response %d of %d missing: output %q", i+1, len(pl.resps), out)
			}
			pos += n
			if resp.StatusCode >= 200 || resp.StatusCode == 101 {
				break
			}
			if resp.StatusCode != 100 {
				t.Fatalf("response %d: interim status %d", i+1, resp.StatusCode)
			}
		}
		desc := fmt.Sprintf("response %d (%+v): %d %q", i+1, w, resp.StatusCode, body)
		switch {
		case w.status != 0:
			if resp.StatusCode != w.status || !resp.Close {
				t.Fatalf("%s: want %d and Connection: close", desc, w.status)
			}
		case w.upgrade:
			if resp.StatusCode != 101 {
				t.Fatalf("%s: want 101", desc)
			}
			if got, want := out[pos:], sent[pl.tail:]; !bytes.Equal(got, want) {
				t.Fatalf("after the upgrade got %q, want %q", got, want)
			}
			return
		default:
			checkRouteAnswer(t, desc, w, resp, body)
			if w.closes != resp.Close {
				t.Fatalf("%s: Connection: close is %t, want %t", desc, resp.Close, w.closes)
			}
		}
		if w.closes && pos != len(out) {
			t.Fatalf("%s: the connection should have closed, then came %q", desc, out[pos:])
		}
	}
	// A request cut short may have been invited to send its body, and a
	// StreamBody one answered as its body failed.
	for pos < len(out) {
		resp, body, n := readResponse(t, out[pos:], "POST")
		if resp.StatusCode != 100 && (!pl.partial || !resp.Close) {
			t.Fatalf("after the %d responses expected came %d %q; want only a 100 Continue, or a final answer with Connection: close to a partial StreamBody request",
				len(pl.resps), resp.StatusCode, body)
		}
		pos += n
		if resp.StatusCode != 100 {
			break
		}
	}
	if pos != len(out) {
		t.Fatalf("after the %d responses expected came %q", len(pl.resps), out[pos:])
	}
}

// checkRouteAnswer checks the response of a request a route answered.
func checkRouteAnswer(t *testing.T, desc string, w wantResp, resp *http.Response, body []byte) {
	t.Helper()
	if resp.ProtoMinor != min(w.minor, 1) {
		t.Fatalf("%s: HTTP/1.%d response to HTTP/1.%d", desc, resp.ProtoMinor, w.minor)
	}
	want, status := "", 200
	switch w.route {
	case "":
		if resp.StatusCode != 404 && resp.StatusCode != 405 {
			t.Fatalf("%s: want 404 or 405", desc)
		}
		return
	case "hello":
		want = "hello"
	case "echo":
		want = string(w.body)
	case "upload":
		want = strconv.Itoa(len(w.body))
	case "flush":
		want = "ab"
	case "up":
		want, status = "upgrade required\n", 426
	}
	if w.method == "HEAD" {
		want = ""
	}
	if resp.StatusCode != status || string(body) != want {
		t.Fatalf("%s: want %d %q", desc, status, want)
	}
}

// readResponse parses one response at the start of out, strictly: a
// status line and header lines ended by CRLF, then whatever net/http's
// ReadResponse makes of it, body included. It returns the response, its
// body and its length in out, or nil when out is empty.
func readResponse(t *testing.T, out []byte, method string) (*http.Response, []byte, int) {
	t.Helper()
	resp, body, n, err := parseResponse(out, method)
	if err != nil {
		t.Fatal(err)
	}
	return resp, body, n
}

func parseResponse(out []byte, method string) (*http.Response, []byte, int, error) {
	if len(out) == 0 {
		return nil, nil, 0, nil
	}
	end := bytes.Index(out, []byte("\r\n\r\n"))
	if end < 0 {
		return nil, nil, 0, fmt.Errorf("response head not ended by CRLF CRLF: %q", out)
	}
	lines := strings.Split(string(out[:end]), "\r\n")
	if !strings.HasPrefix(lines[0], "HTTP/1.") || len(lines[0]) < len("HTTP/1.1 200 ") || lines[0][12] != ' ' {
		return nil, nil, 0, fmt.Errorf("status line %q", lines[0])
	}
	for _, l := range lines {
		if strings.ContainsAny(l, "\r\n") {
			return nil, nil, 0, fmt.Errorf("bare CR or LF in response head %q", out[:end+4])
		}
	}
	for _, l := range lines[1:] {
		if i := strings.IndexByte(l, ':'); i <= 0 || strings.ContainsAny(l[:i], " \t") {
			return nil, nil, 0, fmt.Errorf("header line %q", l)
		}
	}
	rd := bytes.NewReader(out)
	br := bufio.NewReader(rd)
	resp, err := http.ReadResponse(br, &http.Request{Method: method})
	if err != nil {
		return nil, nil, 0, fmt.Errorf("ReadResponse: %v in %q", err, out)
	}
	body, err := io.ReadAll(resp.Body)
	if err != nil {
		return nil, nil, 0, fmt.Errorf("response body: %v in %q", err, out)
	}
	if resp.ProtoMajor != 1 || resp.ContentLength >= 0 && len(resp.TransferEncoding) > 0 {
		return nil, nil, 0, fmt.Errorf("response %q", out)
	}
	return resp, body, len(out) - rd.Len() - br.Buffered(), nil
}
