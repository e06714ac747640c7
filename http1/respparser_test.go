package http1

import (
	"fmt"
	"io"
	"strconv"
	"strings"
	"testing"
	"time"
)

// respResult is what a ResponseParser made of one response.
type respResult struct {
	status    int
	reason    string
	framing   Framing
	close     bool
	keepAlive time.Duration
	length    int64 // ContentLength
	headers   int
	body      string
	trailers  string
	complete  bool // the body, if any, was read to its end
}

func (r respResult) String() string {
	return fmt.Sprintf("%d %q %v close=%t ka=%v cl=%d hdrs=%d body=%q trailers=%q complete=%t",
		r.status, r.reason, r.framing, r.close, r.keepAlive, r.length, r.headers, r.body, r.trailers, r.complete)
}

// respStream is what a ResponseParser made of a connection's input.
type respStream struct {
	resps []respResult
	err   error
	eof   error // what EOF returned
}

func (s respStream) String() string {
	var b strings.Builder
	for _, r := range s.resps {
		b.WriteString(r.String())
		b.WriteByte('\n')
	}
	fmt.Fprintf(&b, "err=%v eof=%v", s.err, s.eof)
	return b.String()
}

// feedResponses presents the pieces to a ResponseParser the way the engine
// does: each call gets every unconsumed byte followed by the new piece, and
// what is left moves to a new buffer between pieces. It stops at a 101.
// check, if given, is called with each response head.
func feedResponses(pieces [][]byte, method string, lim *Limits, check ...func(*Response)) respStream {
	var p ResponseParser
	var out respStream
	var pending []byte
	for _, piece := range pieces {
		pending = append(pending, piece...)
		for {
			if !p.InBody() {
				var resp Response
				n, err := p.Parse(pending, method, &resp, lim)
				if err != nil {
					out.err = err
					return out
				}
				if n < 0 || n > len(pending) || n > 0 && n != resp.HeaderLen {
					out.err = fmt.Errorf("Parse = %d, HeaderLen %d, input %d", n, resp.HeaderLen, len(pending))
					return out
				}
				if n == 0 {
					break
				}
				r := respResult{status: resp.StatusCode, reason: string(resp.Reason), framing: resp.Framing,
					close: resp.Close, keepAlive: resp.KeepAlive, length: resp.ContentLength,
					complete: !p.InBody()}
				for range resp.Headers() {
					r.headers++
				}
				for _, f := range check {
					f(&resp)
				}
				pending = pending[n:]
				out.resps = append(out.resps, r)
				if resp.StatusCode == 101 {
					return out
				}
				continue
			}
			n, data, done, err := p.Body(pending)
			if err != nil {
				out.err = err
				return out
			}
			if n < 0 || n > len(pending) || len(data) > n {
				out.err = fmt.Errorf("Body = %d, %d bytes of data, input %d", n, len(data), len(pending))
				return out
			}
			cur := &out.resps[len(out.resps)-1]
			cur.body += string(data)
			pending = pending[n:]
			if done {
				cur.complete = true
				for _, t := range p.Trailers() {
					cur.trailers += string(t.Name) + "=" + string(t.Value) + ";"
				}
				continue
			}
			if n == 0 {
				break
			}
		}
		pending = append([]byte(nil), pending...)
	}
	done, err := p.EOF()
	if done {
		out.resps[len(out.resps)-1].complete = true
	}
	out.eof = err
	return out
}

// splits returns in whole, split in two at every byte, and byte by byte.
// A long input is split at some bytes only, and not byte by byte.
func splits(in string) map[string][][]byte {
	b := []byte(in)
	m := map[string][][]byte{"whole": {b}}
	step := max(1, len(b)/1024)
	for i := 1; i < len(b); i += step {
		m["split at "+strconv.Itoa(i)] = [][]byte{b[:i], b[i:]}
	}
	if len(b) <= 4096 {
		var bytewise [][]byte
		for i := range b {
			bytewise = append(bytewise, b[i:i+1])
		}
		m["byte by byte"] = bytewise
	}
	return m
}

// pipelined is a connection's worth of responses of every framing.
const pipelined = "HTTP/1.1 100 Continue\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello" +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: y\r\n\r\n" +
	"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" +
	"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: keep-alive, Close\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" +
	"HTTP/1.1 200 OK\nContent-Length: 1\n\nx" +
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nKeep-Alive: timeout=5, max=100\r\nContent-Length: 2\r\n\r\nok" +
	"HTTP/1.1 304 Not Modified\r\nETag: \"x\"\r\n\r\n" +
	"HTTP/1.1 200\r\nContent-Length: 0\r\n\r\n" +
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad" +
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nuntil the server closes"

var pipelinedWant = []respResult{
	{status: 100, reason: "Continue", framing: FramingNone, length: -1, complete: true},
	{status: 200, reason: "OK", framing: FramingLength, length: 5, headers: 2, body: "hello", complete: true},
	{status: 200, reason: "OK", framing: FramingChunked, length: -1, headers: 1,
		body: "helloabcdefghijklmnopqrstuvwxyz", trailers: "X-Trailer=y;", complete: true},
	{status: 204, reason: "No Content", framing: FramingNone, length: 7, headers: 1, complete: true},
	{status: 404, reason: "Not Found", framing: FramingLength, close: true, headers: 2, complete: true},
	{status: 200, reason: "OK", framing: FramingChunked, length: -1, headers: 1, complete: true},
	{status: 200, reason: "OK", framing: FramingLength, length: 1, headers: 1, body: "x", complete: true},
	{status: 200, reason: "OK", framing: FramingLength, keepAlive: 5 * time.Second, length: 2, headers: 3,
		body: "ok", complete: true},
	{status: 304, reason: "Not Modified", framing: FramingNone, length: -1, headers: 1, complete: true},
	{status: 200, reason: "", framing: FramingLength, headers: 1, complete: true},
	{status: 500, reason: "Internal Server Error", framing: FramingLength, length: 3, headers: 1, body: "bad",
		complete: true},
	{status: 200, reason: "OK", framing: FramingClose, close: true, length: -1, headers: 1,
		body: "until the server closes", complete: true},
}

func checkStream(t *testing.T, what string, got respStream, want []respResult) {
	t.Helper()
	if got.err != nil || got.eof != nil {
		t.Fatalf("%s:\n%v", what, got)
	}
	if len(got.resps) != len(want) {
		t.Fatalf("%s: %d responses, want %d:\n%v", what, len(got.resps), len(want), got)
	}
	for i := range want {
		if got.resps[i] != want[i] {
			t.Fatalf("%s: response %d:\n got %v\nwant %v", what, i, got.resps[i], want[i])
		}
	}
}

func TestResponseParserPipelined(t *testing.T) {
	for what, pieces := range splits(pipelined) {
		checkStream(t, what, feedResponses(pieces, "GET", nil), pipelinedWant)
	}
}

func TestResponseParserFraming(t *testing.T) {
	for _, tc := range []struct {
		method, in string
		want       respResult
	}{
		// No body, whatever the header says.
		{"HEAD", "HTTP/1.1 200 OK\r\nContent-Length: 1000\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingNone, length: 1000, headers: 1, complete: true}},
		{"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingNone, length: -1, headers: 1, complete: true}},
		{"HEAD", "HTTP/1.1 200 OK\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingNone, length: -1, complete: true}},
		{"CONNECT", "HTTP/1.1 200 Connection Established\r\nContent-Length: 3\r\n\r\n",
			respResult{status: 200, reason: "Connection Established", framing: FramingNone, length: 3, headers: 1,
				complete: true}},
		{"CONNECT", "HTTP/1.1 407 Proxy Authentication Required\r\nContent-Length: 2\r\n\r\nno",
			respResult{status: 407, reason: "Proxy Authentication Required", framing: FramingLength, length: 2,
				headers: 1, body: "no", complete: true}},
		{"GET", "HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n\x81\x00",
			respResult{status: 101, reason: "Switching Protocols", framing: FramingNone, length: -1, headers: 2,
				complete: true}},
		{"GET", "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n",
			respResult{status: 103, reason: "Early Hints", framing: FramingNone, length: -1, headers: 1, complete: true}},
		{"GET", "HTTP/1.1 999 Whatever\r\nContent-Length: 0\r\n\r\n",
			respResult{status: 999, reason: "Whatever", framing: FramingLength, headers: 1, complete: true}},
		// Transfer-Encoding overrides Content-Length, and the connection
		// is not reused.
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingChunked, close: true, length: -1, headers: 2,
				body: "a", complete: true}},
		// Chunked not last: read to the close.
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz",
			respResult{status: 200, reason: "OK", framing: FramingClose, close: true, length: -1, headers: 1,
				body: "xyz", complete: true}},
		{"GET", "HTTP/1.0 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingChunked, close: true, length: -1, headers: 1,
				body: "a", complete: true}},
		// HTTP/1.0 closes unless it says keep-alive.
		{"GET", "HTTP/1.0 200 OK\r\nContent-Length: 2\r\n\r\nok",
			respResult{status: 200, reason: "OK", framing: FramingLength, close: true, length: 2, headers: 1,
				body: "ok", complete: true}},
		{"GET", "HTTP/1.0 200 OK\r\nConnection: keep-alive, close\r\nContent-Length: 0\r\n\r\n",
			respResult{status: 200, reason: "OK", framing: FramingLength, close: true, headers: 2, complete: true}},
		// Identical Content-Length values, listed or repeated.
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 2, 2\r\nContent-Length: 2\r\n\r\nok",
			respResult{status: 200, reason: "OK", framing: FramingLength, length: 2, headers: 2, body: "ok",
				complete: true}},
		// An incomplete body is cut short by EOF.
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 10\r\n\r\nshort",
			respResult{status: 200, reason: "OK", framing: FramingLength, length: 10, headers: 1, body: "short"}},
	} {
		for what, pieces := range splits(tc.in) {
			got := feedResponses(pieces, tc.method, nil)
			if got.err != nil || len(got.resps) != 1 || got.resps[0] != tc.want {
				t.Fatalf("%s %q, %s:\n%v\nwant %v", tc.method, tc.in, what, got, tc.want)
			}
			wantEOF := error(nil)
			if !tc.want.complete {
				wantEOF = io.ErrUnexpectedEOF
			}
			if got.eof != wantEOF {
				t.Fatalf("%s %q, %s: EOF %v, want %v", tc.method, tc.in, what, got.eof, wantEOF)
			}
		}
	}
}

func TestResponseParserKeepAlive(t *testing.T) {
	for v, want := range map[string]time.Duration{
		"timeout=5":                    5 * time.Second,
		"timeout=5, max=1000":          5 * time.Second,
		"max=1000, Timeout = 30":       30 * time.Second,
		`timeout="7"`:                  7 * time.Second,
		"timeout=0":                    0,
		"timeout=x":                    0,
		"timeout=-1":                   0,
		"max=3":                        0,
		"":                             0,
		"timeout=99999999999999999999": 0, // overflows int64: malformed
		"timeout=9999999999999999":     time.Duration(1<<63-1) / time.Second * time.Second,
		"foo, timeout=2, timeout=3":    2 * time.Second,
		"timeout=1, timeout=2;x=y,,":   time.Second,
	} {
		in := "HTTP/1.1 204 No Content\r\nKeep-Alive: " + v + "\r\nKeep-Alive: timeout=9\r\n\r\n"
		var p ResponseParser
		var resp Response
		if _, err := p.Parse([]byte(in), "GET", &resp, nil); err != nil || resp.KeepAlive != want {
			t.Errorf("Keep-Alive: %s: %v, %v; want %v", v, resp.KeepAlive, err, want)
		}
	}
}

func TestResponseParserErrors(t *testing.T) {
	big := &Limits{MaxBodyBytes: -1}
	for _, tc := range []struct {
		in   string
		lim  *Limits
		want *Error
	}{
		{"HTTP/2 200 OK\r\n\r\n", nil, ErrVersionNotSupported},
		{"HTTP/1.2 200 OK\r\n\r\n", nil, ErrVersionNotSupported},
		{"HTTP/x 200 OK\r\n\r\n", nil, ErrBadVersion},
		{"SSH-2.0-OpenSSH_9.6\r\n", nil, ErrBadVersion},
		{"\x16\x03\x01\x00", nil, ErrBadVersion},
		{"\r\nHTTP/1.1 200 OK\r\n\r\n", nil, ErrBadVersion},
		{"http/1.1 200 OK\r\n\r\n", nil, ErrBadVersion},
		{"HTTP/1.1 2x0 OK\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1 200OK\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1 20 OK\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1 099 OK\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1  200 OK\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1 200 O\x00K\r\n\r\n", nil, ErrBadStatusLine},
		{"HTTP/1.1 200 OK\rX: y\r\n\r\n", nil, ErrBareCR},
		{"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n", nil, ErrSpaceBeforeColon},
		{"HTTP/1.1 200 OK\r\n: empty\r\n\r\n", nil, ErrBadHeaderName},
		{"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n", nil, ErrObsFold},
		{"HTTP/1.1 200 OK\r\nX: a\x7f\r\n\r\n", nil, ErrBadHeaderValue},
		{"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx", nil, ErrBadContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n", nil, ErrBadContentLength},
		{"HTTP/1.1 200 OK\r\nContent-Length: 99999999999999999999\r\n\r\n", big, ErrBadContentLength},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, chunked\r\n\r\n", nil, ErrBadTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: \r\n\r\n", nil, ErrBadTransferEncoding},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", nil, ErrBadChunkSize},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n", nil, ErrBadChunkSize},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n", nil, ErrBadChunkData},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n", big, ErrBadChunkSize},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n1;" + strings.Repeat("e", maxChunkLine) + "\r\n", nil,
			ErrChunkLineTooLong},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX: y\r\nZ\r\n\r\n", nil, ErrBadTrailer},
		{"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", DefaultMaxHeaderBytes) + "\r\n\r\n", nil, ErrHeaderTooLarge},
		{"HTTP/1.1 200 OK\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", &Limits{MaxHeaders: 2}, ErrTooManyHeaders},
		{"HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\nhello world", &Limits{MaxBodyBytes: 10}, ErrBodyTooLarge},
		{"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nb\r\nhello world\r\n0\r\n\r\n",
			&Limits{MaxBodyBytes: 10}, ErrBodyTooLarge},
		{"HTTP/1.1 200 OK\r\n\r\nhello world", &Limits{MaxBodyBytes: 10}, ErrBodyTooLarge},
	} {
		for what, pieces := range splits(tc.in) {
			if got := feedResponses(pieces, "GET", tc.lim); got.err != tc.want {
				t.Fatalf("%.70q, %s: %v, want %v\n%v", tc.in, what, got.err, tc.want, got)
			}
		}
	}
	// The same limits pass a response to HEAD, which has no body.
	got := feedResponses([][]byte{[]byte("HTTP/1.1 200 OK\r\nContent-Length: 11\r\n\r\n")}, "HEAD",
		&Limits{MaxBodyBytes: 10})
	if got.err != nil || len(got.resps) != 1 {
		t.Fatalf("HEAD: %v", got)
	}
}

func TestResponseHeaders(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nServer: warren\r\nSet-Cookie: a=1\r\nset-cookie:  b=2 \t\r\nX-Empty:\r\n\r\nbody")
	var p ResponseParser
	var resp Response
	n, err := p.Parse(in, "GET", &resp, nil)
	if err != nil || n != len(in)-4 || string(resp.Raw()) != string(in[:n]) {
		t.Fatalf("Parse = %d, %v", n, err)
	}
	var got []string
	for h := range resp.Headers() {
		got = append(got, string(h.Name)+"="+string(h.Value))
	}
	if want := "Server=warren Set-Cookie=a=1 set-cookie=b=2 X-Empty="; strings.Join(got, " ") != want {
		t.Fatalf("Headers: %q, want %q", got, want)
	}
	if v := resp.Header("SET-COOKIE"); string(v) != "a=1" {
		t.Fatalf("Header(SET-COOKIE) = %q", v)
	}
	if v := resp.Header("x-empty"); v == nil || len(v) != 0 {
		t.Fatalf("Header(x-empty) = %#v", v)
	}
	if v := resp.Header("Missing"); v != nil {
		t.Fatalf("Header(Missing) = %q", v)
	}
	for range resp.Headers() {
		break // stopping early must not panic
	}

	// Rebase follows the head to a new buffer.
	moved := append([]byte(nil), in...)
	clear(in)
	resp.Rebase(moved)
	if string(resp.Reason) != "OK" || string(resp.Header("server")) != "warren" || &resp.Raw()[0] != &moved[0] {
		t.Fatalf("after Rebase: %q %q", resp.Reason, resp.Header("server"))
	}
	defer func() {
		if recover() == nil {
			t.Fatal("Rebase onto a short buffer did not panic")
		}
	}()
	resp.Rebase(moved[:3])
}

// TestResponseParserLinear checks that a head trickled in byte by byte is
// scanned once, not once per byte: after each call the scanner has reached
// the end of the input, and only the first call parses from the start.
func TestResponseParserLinear(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 2000) + "Content-Length: 0\r\n\r\n"
	lim := &Limits{MaxHeaders: 3000}
	var p ResponseParser
	var resp Response
	var pending []byte
	for i := range len(head) {
		pending = append(pending, head[i])
		n, err := p.Parse(pending, "GET", &resp, lim)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			if n != len(head) || i != len(head)-1 {
				t.Fatalf("Parse = %d after %d bytes of %d", n, i+1, len(head))
			}
			return
		}
		// A '\r' that may start the final CRLF waits for its LF.
		if int(p.pos) < len(pending)-1 {
			t.Fatalf("after %d bytes the scan is at %d", len(pending), p.pos)
		}
	}
	t.Fatal("not done")
}

func TestResponseParserState(t *testing.T) {
	var p ResponseParser
	var resp Response
	// Body with nothing pending reports done.
	if n, data, done, err := p.Body([]byte("x")); n != 0 || data != nil || !done || err != nil {
		t.Fatalf("Body before a head = %d %q %t %v", n, data, done, err)
	}
	// EOF in the middle of a head.
	if n, err := p.Parse([]byte("HTTP/1.1 200 OK\r\n"), "GET", &resp, nil); n != 0 || err != nil {
		t.Fatalf("Parse = %d, %v", n, err)
	}
	if done, err := p.EOF(); done || err != io.ErrUnexpectedEOF {
		t.Fatalf("EOF in a head = %t, %v", done, err)
	}
	// EOF between responses, and after Reset.
	if done, err := p.EOF(); done || err != nil {
		t.Fatalf("EOF between responses = %t, %v", done, err)
	}
	// Parse in the middle of a body is a bug.
	if _, err := p.Parse([]byte("HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n"), "GET", &resp, nil); err != nil {
		t.Fatal(err)
	}
	if !p.InBody() {
		t.Fatal("not in the body")
	}
	func() {
		defer func() {
			if recover() == nil {
				t.Fatal("Parse during a body did not panic")
			}
		}()
		p.Parse([]byte("HTTP/1.1 200 OK\r\n\r\n"), "GET", &resp, nil)
	}()
	p.Reset()
	if p.InBody() {
		t.Fatal("in a body after Reset")
	}
	// Trailers last until the next Parse.
	in := []byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nA: b\r\n\r\n")
	n, _ := p.Parse(in, "GET", &resp, nil)
	if _, _, done, err := p.Body(in[n:]); !done || err != nil || len(p.Trailers()) != 1 {
		t.Fatalf("Body = %t, %v, trailers %q", done, err, p.Trailers())
	}
	if _, err := p.Parse([]byte("HTTP/1.1 204 No Content\r\n\r\n"), "GET", &resp, nil); err != nil {
		t.Fatal(err)
	}
	if tr := p.Trailers(); tr != nil {
		t.Fatalf("trailers after the next Parse: %q", tr)
	}
	if s := FramingChunked.String() + " " + Framing(9).String(); s != "chunked framing(9)" {
		t.Fatalf("String: %s", s)
	}
}

func TestResponseParserAllocs(t *testing.T) {
	in := []byte("HTTP/1.1 200 OK\r\nContent-Length: 5\r\nKeep-Alive: timeout=5\r\n\r\nhello" +
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\nX-T: 1\r\n\r\n")
	var p ResponseParser
	run := func() {
		var resp Response
		for off := 0; off < len(in); {
			n, err := p.Parse(in[off:], "GET", &resp, nil)
			if err != nil || n == 0 {
				t.Fatalf("Parse = %d, %v", n, err)
			}
			off += n
			if resp.Header("keep-alive") == nil && resp.Framing == FramingLength {
				t.Fatal("no Keep-Alive")
			}
			for done := false; !done; {
				n, _, done, err = p.Body(in[off:])
				if err != nil {
					t.Fatal(err)
				}
				off += n
			}
		}
	}
	run() // allocates the ChunkedReader and its trailer buffers
	if n := testing.AllocsPerRun(100, run); n != 0 {
		t.Fatalf("%v allocations per run", n)
	}
}

// TestResponseParserCoded checks that a transfer coding other than
// chunked is reported (a proxy must not pass such a body on as plain),
// wherever it appears, and that chunked alone is not.
func TestResponseParserCoded(t *testing.T) {
	for _, tc := range []struct {
		method, in string
		coded      bool
	}{
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n", false},
		{"GET", "HTTP/1.1 200 OK\r\nContent-Length: 3\r\n\r\n", false},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", true},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", true},
		{"GET", "HTTP/1.1 200 OK\r\nTransfer-Encoding: deflate\r\n\r\n", true},
		{"HEAD", "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", true},
	} {
		var p ResponseParser
		var resp Response
		n, err := p.Parse([]byte(tc.in), tc.method, &resp, nil)
		if err != nil || n != len(tc.in) {
			t.Fatalf("%q: Parse = %d, %v", tc.in, n, err)
		}
		if resp.Coded != tc.coded {
			t.Fatalf("%q: Coded %v, want %v", tc.in, resp.Coded, tc.coded)
		}
	}
}

// TestResponseHasConnectionField: HasConnectionField reports a Connection
// field in any case, with any value, and is cleared for the next response
// on the same parser.
func TestResponseHasConnectionField(t *testing.T) {
	for _, c := range []struct {
		head string
		want bool
	}{
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nKeep-Alive: timeout=5\r\nContent-Length: 0\r\n\r\n", false},
		{"HTTP/1.1 200 OK\r\nCONNECTION: X-Hop\r\nContent-Length: 0\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nContent-Length: 0\r\nconnection: keep-alive\r\n\r\n", true},
		{"HTTP/1.1 200 OK\r\nConnection:\r\nContent-Length: 0\r\n\r\n", true},
	} {
		var p ResponseParser
		var resp Response
		// After a response with a Connection field on the same parser.
		prev := "HTTP/1.1 200 OK\r\nConnection: X-Prev\r\nContent-Length: 0\r\n\r\n"
		if _, err := p.Parse([]byte(prev), "GET", &resp, nil); err != nil || !resp.HasConnectionField() {
			t.Fatalf("%q: %v, HasConnectionField %v", prev, err, resp.HasConnectionField())
		}
		if _, _, done, err := p.Body(nil); !done || err != nil {
			t.Fatalf("%q: Body: done %v, %v", prev, done, err)
		}
		if n, err := p.Parse([]byte(c.head), "GET", &resp, nil); err != nil || n != len(c.head) {
			t.Fatalf("%q: Parse = %d, %v", c.head, n, err)
		}
		if got := resp.HasConnectionField(); got != c.want {
			t.Errorf("%q: HasConnectionField = %v, want %v", c.head, got, c.want)
		}
	}
}

// TestResponseHeadersTable checks the header fields a Response notes the
// place of (the first respFields, in a head of at most 64 KiB) against a
// scan of its head: the same views, in the same order, for heads with
// fewer, as many and more fields, with and without whitespace around the
// values and bare LF line ends, and for a head longer than the offsets
// reach.
func TestResponseHeadersTable(t *testing.T) {
	scan := func(r *Response) []Header {
		s := *r
		s.nf = -1
		var hs []Header
		for h := range s.Headers() {
			hs = append(hs, h)
		}
		return hs
	}
	for n := 0; n <= respFields+3; n++ {
		for _, long := range []bool{false, true} {
			var b strings.Builder
			b.WriteString("HTTP/1.1 200 OK\r\n")
			for k := range n {
				switch k % 3 {
				case 0:
					fmt.Fprintf(&b, "X-F%d: v%d\r\n", k, k)
				case 1:
					fmt.Fprintf(&b, "x-f%d:\t v %d \t\n", k, k)
				default:
					fmt.Fprintf(&b, "X-Empty-%d:\r\n", k)
				}
			}
			if long {
				fmt.Fprintf(&b, "X-Long: %s\r\n", strings.Repeat("a", 70000))
			}
			b.WriteString("Content-Length: 0\r\n\r\n")
			in := []byte(b.String())
			var p ResponseParser
			var resp Response
			if _, err := p.Parse(in, "GET", &resp, &Limits{MaxHeaderBytes: 1 << 20}); err != nil {
				t.Fatalf("n %d long %v: %v", n, long, err)
			}
			if want := !long && n+1 <= respFields; (resp.nf >= 0) != want {
				t.Fatalf("n %d long %v: nf %d", n, long, resp.nf)
			}
			want := scan(&resp)
			var got []Header
			for h := range resp.Headers() {
				got = append(got, h)
			}
			if len(got) != len(want) || len(got) != n+1+btoi(long) {
				t.Fatalf("n %d long %v: %d fields, scan %d", n, long, len(got), len(want))
			}
			for k := range got {
				g, w := got[k], want[k]
				if string(g.Name) != string(w.Name) || string(g.Value) != string(w.Value) ||
					cap(g.Name) != cap(w.Name) || cap(g.Value) != cap(w.Value) ||
					&g.Name[0] != &w.Name[0] {
					t.Fatalf("n %d long %v field %d: %q=%q (cap %d, %d), scan %q=%q (cap %d, %d)", n, long, k,
						g.Name, g.Value, cap(g.Name), cap(g.Value), w.Name, w.Value, cap(w.Name), cap(w.Value))
				}
			}
		}
	}
}

func btoi(b bool) int {
	if b {
		return 1
	}
	return 0
}
