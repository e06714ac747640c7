package http1

import (
	"bytes"
	"errors"
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// want describes the fields of a parsed request a test checks; nil byte
// slices and zero values are checked too, except where noted.
type want struct {
	method, path, query, host string
	hostNil, queryNil         bool
	minor                     int
	cl                        int64
	chunked, close, expect    bool
	upgrade                   string
	headers                   int
}

type parseCase struct {
	name string
	in   string
	lim  *Limits
	err  *Error // nil: valid, and want applies
	want want
}

var small = &Limits{MaxHeaderBytes: 128, MaxHeaders: 4, MaxURIBytes: 16, MaxBodyBytes: 100}

const (
	curlGET = "GET /index.html HTTP/1.1\r\nHost: localhost:8080\r\nUser-Agent: curl/8.5.0\r\nAccept: */*\r\n\r\n"
	postCL  = "POST /api/v1/items HTTP/1.1\r\nHost: api.example.com\r\nContent-Type: application/json\r\nContent-Length: 13\r\n\r\n"
	postTE  = "POST /upload HTTP/1.1\r\nHost: example.com\r\nTransfer-Encoding: chunked\r\nExpect: 100-continue\r\n\r\n"
)

var validCases = []parseCase{
	{name: "curl", in: curlGET,
		want: want{method: "GET", path: "/index.html", queryNil: true, host: "localhost:8080", minor: 1, cl: -1, headers: 3}},
	{name: "wrk", in: string(wrkGET),
		want: want{method: "GET", path: "/plaintext", queryNil: true, host: "localhost:8080", minor: 1, cl: -1, headers: 3}},
	{name: "browser", in: string(browserGET),
		want: want{method: "GET", path: "/docs/getting-started", query: "lang=en&theme=dark", host: "www.example.com", minor: 1, cl: -1, headers: 17}},
	{name: "post content-length", in: postCL,
		want: want{method: "POST", path: "/api/v1/items", queryNil: true, host: "api.example.com", minor: 1, cl: 13, headers: 3}},
	{name: "post chunked expect", in: postTE,
		want: want{method: "POST", path: "/upload", queryNil: true, host: "example.com", minor: 1, cl: -1, chunked: true, expect: true, headers: 3}},
	{name: "http/1.0 closes by default", in: "GET / HTTP/1.0\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, hostNil: true, minor: 0, cl: -1, close: true}},
	{name: "http/1.0 keep-alive", in: "GET / HTTP/1.0\r\nConnection: Keep-Alive\r\nHost: a\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 0, cl: -1, headers: 2}},
	{name: "http/1.0 keep-alive and close", in: "GET / HTTP/1.0\r\nConnection: keep-alive, close\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, hostNil: true, minor: 0, cl: -1, close: true, headers: 1}},
	{name: "http/1.0 expect ignored", in: "PUT /x HTTP/1.0\r\nExpect: 100-continue\r\nContent-Length: 3\r\n\r\n",
		want: want{method: "PUT", path: "/x", queryNil: true, hostNil: true, minor: 0, cl: 3, close: true, headers: 2}},
	{name: "http/1.1 close", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, close: true, headers: 2}},
	{name: "http/1.1 close in list", in: "GET / HTTP/1.1\r\nHost: a\r\nConnection: foo\r\nConnection: Keep-Alive ,CLOSE\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, close: true, headers: 3}},
	{name: "leading empty lines", in: "\r\n\n\r\nGET / HTTP/1.1\r\nHost: a\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 1}},
	{name: "bare LF line ends", in: "GET /a?b HTTP/1.1\nHost: a\nX: y \n\n",
		want: want{method: "GET", path: "/a", query: "b", host: "a", minor: 1, cl: -1, headers: 2}},
	{name: "mixed line ends", in: "GET / HTTP/1.1\nHost: a\r\nX: y\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 2}},
	{name: "content-length list", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 5\r\nContent-Length: 5\r\n\r\n",
		want: want{method: "POST", path: "/", queryNil: true, host: "a", minor: 1, cl: 5, headers: 3}},
	{name: "content-length zero", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0\r\n\r\n",
		want: want{method: "POST", path: "/", queryNil: true, host: "a", minor: 1, cl: 0, headers: 2}},
	{name: "content-length at limit", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 100\r\n\r\n", lim: small,
		want: want{method: "POST", path: "/", queryNil: true, host: "a", minor: 1, cl: 100, headers: 2}},
	{name: "unlimited body", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775807\r\n\r\n", lim: &Limits{MaxBodyBytes: -1},
		want: want{method: "POST", path: "/", queryNil: true, host: "a", minor: 1, cl: 1<<63 - 1, headers: 2}},
	{name: "chunked any case, empty elements", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: , CHUNKED\r\n\r\n",
		want: want{method: "POST", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, chunked: true, headers: 2}},
	{name: "absolute-form", in: "GET http://example.com:8080/p/q?x=1 HTTP/1.1\r\nHost: other.example\r\n\r\n",
		want: want{method: "GET", path: "/p/q", query: "x=1", host: "example.com:8080", minor: 1, cl: -1, headers: 1}},
	{name: "absolute-form without path or Host", in: "GET HTTPS://example.com HTTP/1.1\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "example.com", minor: 1, cl: -1}},
	{name: "absolute-form query without path", in: "GET http://[::1]:80?a=b HTTP/1.1\r\n\r\n",
		want: want{method: "GET", path: "/", query: "a=b", host: "[::1]:80", minor: 1, cl: -1}},
	{name: "asterisk-form", in: "OPTIONS * HTTP/1.1\r\nHost: a\r\n\r\n",
		want: want{method: "OPTIONS", path: "*", queryNil: true, host: "a", minor: 1, cl: -1, headers: 1}},
	{name: "authority-form", in: "CONNECT example.com:443 HTTP/1.1\r\nHost: example.com:443\r\n\r\n",
		want: want{method: "CONNECT", queryNil: true, host: "example.com:443", minor: 1, cl: -1, headers: 1}},
	{name: "websocket upgrade", in: "GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: keep-alive, Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n",
		want: want{method: "GET", path: "/ws", queryNil: true, host: "a", minor: 1, cl: -1, upgrade: "websocket", headers: 5}},
	{name: "upgrade without connection option", in: "GET / HTTP/1.1\r\nHost: a\r\nUpgrade: h2c\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 2}},
	{name: "custom method and query with ?", in: "PURGE /a?b?c HTTP/1.1\r\nHost: a\r\n\r\n",
		want: want{method: "PURGE", path: "/a", query: "b?c", host: "a", minor: 1, cl: -1, headers: 1}},
	{name: "value whitespace, tabs, obs-text, empty", in: "GET / HTTP/1.1\r\nHost:a\r\nX-A: \t a\tb \t\r\nX-B:\r\nX-C: caf\xc3\xa9\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 4}},
	{name: "empty Host", in: "GET / HTTP/1.1\r\nHost:\r\n\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "", minor: 1, cl: -1, headers: 1}},
	{name: "header section at limit", in: "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 128-32) + "\r\n\r\n", lim: small,
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 2}},
	{name: "target at limit", in: "GET /" + strings.Repeat("t", 15) + " HTTP/1.1\r\nHost: a\r\n\r\n", lim: small,
		want: want{method: "GET", path: "/" + strings.Repeat("t", 15), queryNil: true, host: "a", minor: 1, cl: -1, headers: 1}},
	{name: "headers at limit", in: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", lim: small,
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 4}},
	{name: "more headers than inline", in: "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(40) + "\r\n",
		want: want{method: "GET", path: "/", queryNil: true, host: "a", minor: 1, cl: -1, headers: 41}},
}

func manyHeaders(n int) string {
	var b strings.Builder
	for i := range n {
		fmt.Fprintf(&b, "X-Header-%d: value %d\r\n", i, i)
	}
	return b.String()
}

var invalidCases = []parseCase{
	// Request line.
	{name: "no version", in: "GET /\r\n\r\n", err: ErrBadRequestLine},
	{name: "no target", in: "GET\r\n\r\n", err: ErrBadRequestLine},
	{name: "double space", in: "GET  / HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadRequestLine},
	{name: "leading space", in: " GET / HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadRequestLine},
	{name: "space after version", in: "GET / HTTP/1.1 \r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "tab separator", in: "GET\t/ HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadMethod},
	{name: "method with @", in: "G@T / HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadMethod},
	{name: "method with NUL", in: "GE\x00T / HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadMethod},
	{name: "tls client hello", in: "\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03\x03", err: ErrBadMethod},
	{name: "target with NUL", in: "GET /a\x00b HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "target with DEL", in: "GET /a\x7fb HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "asterisk with GET", in: "GET * HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "relative target", in: "GET example.com/p HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "absolute-form empty authority", in: "GET http:///p HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "absolute-form userinfo", in: "GET http://user@example.com/ HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadHost},
	{name: "connect without port", in: "CONNECT example.com HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBadTarget},
	{name: "HTTX", in: "GET / HTTX/1.1\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "lowercase http", in: "GET / http/1.1\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "HTTP/1.", in: "GET / HTTP/1.\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "HTTP/", in: "GET / HTTP/\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "HTTP/a.b", in: "GET / HTTP/a.b\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "HTTP/1.1x", in: "GET / HTTP/1.1x\r\nHost: a\r\n\r\n", err: ErrBadVersion},
	{name: "HTTP/2.0", in: "GET / HTTP/2.0\r\nHost: a\r\n\r\n", err: ErrVersionNotSupported},
	{name: "HTTP/1.2", in: "GET / HTTP/1.2\r\nHost: a\r\n\r\n", err: ErrVersionNotSupported},
	{name: "HTTP/0.9", in: "GET / HTTP/0.9\r\n\r\n", err: ErrVersionNotSupported},
	{name: "HTTP/3", in: "GET / HTTP/3\r\nHost: a\r\n\r\n", err: ErrVersionNotSupported},
	{name: "HTTP/10.0", in: "GET / HTTP/10.0\r\nHost: a\r\n\r\n", err: ErrVersionNotSupported},

	// Line ends.
	{name: "bare CR before request line", in: "\rGET / HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrBareCR},
	{name: "bare CR ends request line", in: "GET / HTTP/1.1\rHost: a\r\n\r\n", err: ErrBareCR},
	{name: "bare CR in value", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\rb\r\n\r\n", err: ErrBareCR},
	{name: "CR CR LF", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\r\n\r\n", err: ErrBareCR},
	{name: "bare CR in final line", in: "GET / HTTP/1.1\r\nHost: a\r\n\rX\r\n\r\n", err: ErrBareCR},
	{name: "bare CR in name", in: "GET / HTTP/1.1\r\nHost: a\r\nX\rY: b\r\n\r\n", err: ErrBadHeaderName},

	// Field lines.
	{name: "name with @", in: "GET / HTTP/1.1\r\nHost: a\r\nFoo@Bar: x\r\n\r\n", err: ErrBadHeaderName},
	{name: "name with quote", in: "GET / HTTP/1.1\r\nHost: a\r\n\"x\": y\r\n\r\n", err: ErrBadHeaderName},
	{name: "empty name", in: "GET / HTTP/1.1\r\nHost: a\r\n: y\r\n\r\n", err: ErrBadHeaderName},
	{name: "no colon", in: "GET / HTTP/1.1\r\nHost: a\r\nNoColon\r\n\r\n", err: ErrBadHeaderName},
	{name: "name with NUL", in: "GET / HTTP/1.1\r\nHost: a\r\nX\x00: y\r\n\r\n", err: ErrBadHeaderName},
	{name: "space before colon", in: "GET / HTTP/1.1\r\nHost : a\r\n\r\n", err: ErrSpaceBeforeColon},
	{name: "tab before colon", in: "GET / HTTP/1.1\r\nHost: a\r\nX\t: y\r\n\r\n", err: ErrSpaceBeforeColon},
	{name: "obs-fold", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n b\r\n\r\n", err: ErrObsFold},
	{name: "obs-fold tab", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\r\n\tb\r\n\r\n", err: ErrObsFold},
	{name: "value with NUL", in: "GET / HTTP/1.1\r\nHost: a\r\nX: a\x00b\r\n\r\n", err: ErrBadHeaderValue},
	{name: "value with SOH", in: "GET / HTTP/1.1\r\nHost: a\r\nX: \x01\r\n\r\n", err: ErrBadHeaderValue},
	{name: "value with DEL", in: "GET / HTTP/1.1\r\nHost: a\r\nX: \x7f\r\n\r\n", err: ErrBadHeaderValue},
	{name: "missing Host", in: "GET / HTTP/1.1\r\nAccept: */*\r\n\r\n", err: ErrMissingHost},
	{name: "duplicate Host", in: "GET / HTTP/1.1\r\nHost: a\r\nhost: a\r\n\r\n", err: ErrDuplicateHost},
	{name: "duplicate Host in HTTP/1.0", in: "GET / HTTP/1.0\r\nHost: a\r\nHost: b\r\n\r\n", err: ErrDuplicateHost},
	{name: "Host with space", in: "GET / HTTP/1.1\r\nHost: a b\r\n\r\n", err: ErrBadHost},
	{name: "Host with userinfo", in: "GET / HTTP/1.1\r\nHost: u@a\r\n\r\n", err: ErrBadHost},

	// Limits.
	{name: "header section too large", in: "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 128-31) + "\r\n\r\n", lim: small, err: ErrHeaderTooLarge},
	{name: "header section too large by default", in: "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 64<<10) + "\r\n\r\n", err: ErrHeaderTooLarge},
	{name: "too many headers", in: "GET / HTTP/1.1\r\nHost: a\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\n\r\n", lim: small, err: ErrTooManyHeaders},
	{name: "too many headers by default", in: "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(100) + "\r\n", err: ErrTooManyHeaders},
	{name: "URI too long", in: "GET /" + strings.Repeat("t", 16) + " HTTP/1.1\r\nHost: a\r\n\r\n", lim: small, err: ErrURITooLong},
	{name: "URI too long by default", in: "GET /" + strings.Repeat("t", 8<<10) + " HTTP/1.1\r\nHost: a\r\n\r\n", err: ErrURITooLong},
	{name: "URI too long with control", in: "GET /\x01" + strings.Repeat("t", 16) + " HTTP/1.1\r\nHost: a\r\n\r\n", lim: small, err: ErrURITooLong},
	{name: "body too large", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 101\r\n\r\n", lim: small, err: ErrBodyTooLarge},
	{name: "body too large by default", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 10485761\r\n\r\n", err: ErrBodyTooLarge},

	// Framing.
	{name: "content-length and chunked", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrLengthAndChunked},
	{name: "chunked and content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nContent-Length: 5\r\n\r\n", err: ErrLengthAndChunked},
	{name: "conflicting content-length list", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5, 6\r\n\r\n", err: ErrBadContentLength},
	{name: "conflicting content-length lines", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\nContent-Length: 6\r\n\r\n", err: ErrBadContentLength},
	{name: "negative content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: -1\r\n\r\n", err: ErrBadContentLength},
	{name: "plus content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: +5\r\n\r\n", err: ErrBadContentLength},
	{name: "non-numeric content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: abc\r\n\r\n", err: ErrBadContentLength},
	{name: "hex content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 0x10\r\n\r\n", err: ErrBadContentLength},
	{name: "empty content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length:\r\n\r\n", err: ErrBadContentLength},
	{name: "content-length with space", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5 5\r\n\r\n", err: ErrBadContentLength},
	{name: "content-length trailing comma", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 5,\r\n\r\n", err: ErrBadContentLength},
	{name: "overflowing content-length", in: "POST / HTTP/1.1\r\nHost: a\r\nContent-Length: 9223372036854775808\r\n\r\n", err: ErrBadContentLength},
	{name: "gzip, chunked", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n", err: ErrUnsupportedTransferEncoding},
	{name: "gzip then chunked lines", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrUnsupportedTransferEncoding},
	{name: "chunked, gzip", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked, gzip\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "gzip alone", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "identity", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: identity\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "chunked twice", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "chunked with parameter", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked;q=1\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "empty transfer-encoding", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \r\n\r\n", err: ErrBadTransferEncoding},
	{name: "transfer-encoding not a token", in: "POST / HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: \"chunked\"\r\n\r\n", err: ErrBadTransferEncoding},
	{name: "transfer-encoding in HTTP/1.0", in: "POST / HTTP/1.0\r\nTransfer-Encoding: chunked\r\n\r\n", err: ErrTransferEncodingHTTP10},
}

func checkWant(t *testing.T, r *Request, w want, in string) {
	t.Helper()
	str := func(name string, got []byte, want string, wantNil bool) {
		t.Helper()
		if wantNil {
			if got != nil {
				t.Errorf("%s = %q, want nil", name, got)
			}
			return
		}
		if got == nil || string(got) != want {
			t.Errorf("%s = %q (nil %t), want %q", name, got, got == nil, want)
		}
	}
	str("Method", r.Method, w.method, false)
	str("Path", r.Path, w.path, w.method == "CONNECT")
	str("RawQuery", r.RawQuery, w.query, w.queryNil)
	str("Host", r.Host, w.host, w.hostNil)
	str("Upgrade", r.Upgrade, w.upgrade, w.upgrade == "")
	if r.ProtoMajor != 1 || r.ProtoMinor != w.minor {
		t.Errorf("version = %d.%d, want 1.%d", r.ProtoMajor, r.ProtoMinor, w.minor)
	}
	if r.ContentLength != w.cl || r.Chunked != w.chunked || r.Close != w.close || r.Expect100 != w.expect {
		t.Errorf("cl, chunked, close, expect100 = %d %t %t %t, want %d %t %t %t",
			r.ContentLength, r.Chunked, r.Close, r.Expect100, w.cl, w.chunked, w.close, w.expect)
	}
	if got := len(r.Headers()); got != w.headers {
		t.Errorf("%d headers, want %d", got, w.headers)
	}
	if r.HeaderLen != len(in) || string(r.Raw()) != in {
		t.Errorf("HeaderLen = %d, Raw = %q; want %d", r.HeaderLen, r.Raw(), len(in))
	}
}

func TestParseValid(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var req Request
			in := []byte(tc.in)
			n, err := p.Parse(in, &req, tc.lim)
			if err != nil || n != len(in) {
				t.Fatalf("Parse = %d, %v; want %d, nil", n, err, len(in))
			}
			checkWant(t, &req, tc.want, tc.in)
			checkViews(t, &req, in)
		})
	}
}

func TestParseInvalid(t *testing.T) {
	for _, tc := range invalidCases {
		t.Run(tc.name, func(t *testing.T) {
			var p Parser
			var req Request
			n, err := p.Parse([]byte(tc.in), &req, tc.lim)
			if n != 0 || err != tc.err {
				t.Fatalf("Parse = %d, %v; want 0, %v", n, err, tc.err)
			}
			var e *Error
			if !errors.As(err, &e) || e.Status != tc.err.Status {
				t.Fatalf("error %v is not an *Error with status %d", err, tc.err.Status)
			}
			// The parser is reset: a valid request parses next.
			if n, err := p.Parse([]byte(curlGET), &req, nil); n != len(curlGET) || err != nil {
				t.Fatalf("Parse after error = %d, %v", n, err)
			}
		})
	}
}

// TestParseStatuses pins the status code of each required outcome.
func TestParseStatuses(t *testing.T) {
	status := map[string]int{
		"no version": 400, "method with @": 400, "name with @": 400, "space before colon": 400,
		"obs-fold": 400, "value with NUL": 400, "bare CR in value": 400, "target with NUL": 400,
		"value with SOH": 400, "missing Host": 400, "duplicate Host": 400,
		"HTTP/2.0": 505, "HTTP/1.2": 505, "HTTP/3": 505, "HTTX": 400,
		"header section too large": 431, "too many headers": 431, "URI too long": 414, "body too large": 413,
		"content-length and chunked": 400, "conflicting content-length lines": 400,
		"content-length list": 0, "negative content-length": 400, "non-numeric content-length": 400,
		"overflowing content-length": 400, "gzip, chunked": 501, "chunked, gzip": 400,
		"transfer-encoding in HTTP/1.0": 400,
	}
	all := append(append([]parseCase(nil), validCases...), invalidCases...)
	seen := 0
	for _, tc := range all {
		want, ok := status[tc.name]
		if !ok {
			continue
		}
		seen++
		o := parseWhole([]byte(tc.in), tc.lim)
		got := 0
		if e, ok := o.err.(*Error); ok {
			got = e.Status
		}
		if got != want {
			t.Errorf("%s: status %d (%v), want %d", tc.name, got, o.err, want)
		}
	}
	if seen != len(status) {
		t.Errorf("checked %d cases, want %d", seen, len(status))
	}
}

// TestParseSplit feeds every case split at every byte boundary: the first
// part must yield (0, nil) or the final outcome, and the whole the same as
// when fed at once.
func TestParseSplit(t *testing.T) {
	for _, tc := range append(append([]parseCase(nil), validCases...), invalidCases...) {
		in := []byte(tc.in)
		whole := parseWhole(in, tc.lim)
		for _, k := range splitPoints(len(in)) {
			got, _ := parseSplit(in, k, tc.lim)
			if got != whole {
				t.Fatalf("%s: split at %d:\n got %v\nwant %v", tc.name, k, got, whole)
			}
		}
		got, _, _ := parseTrickle(in, tc.lim)
		if got != whole {
			t.Fatalf("%s: byte by byte:\n got %v\nwant %v", tc.name, got, whole)
		}
	}
}

// TestParseEarlyErrors checks that limit errors and a bad method are
// reported before the header section is complete.
func TestParseEarlyErrors(t *testing.T) {
	tests := []struct {
		name string
		in   string
		lim  *Limits
		err  *Error
		at   int // bytes fed when the error must appear
	}{
		{"section too large", "GET / HTTP/1.1\r\nHost: a\r\nX: " + strings.Repeat("v", 200), small, ErrHeaderTooLarge, 129},
		{"too many headers", "GET / HTTP/1.1\r\nA: 1\r\nB: 2\r\nC: 3\r\nD: 4\r\nE", small, ErrTooManyHeaders, 41},
		{"URI too long", "GET /" + strings.Repeat("t", 100), small, ErrURITooLong, 4 + 17},
		{"URI too long by default", "GET /" + strings.Repeat("t", 9000), nil, ErrURITooLong, 4 + 8<<10 + 1},
		{"bad method", "GET\x01", nil, ErrBadMethod, 4},
		{"tls", "\x16\x03\x01\x02\x00", nil, ErrBadMethod, 1},
		{"leading bare CR", "\r\r", nil, ErrBareCR, 2},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			o, k, _ := parseTrickle([]byte(tc.in), tc.lim)
			if o.err != tc.err || k != tc.at {
				t.Fatalf("after %d bytes: %v; want %v after %d", k, o, tc.err, tc.at)
			}
			// Also when it all arrives at once.
			if o := parseWhole([]byte(tc.in), tc.lim); o.err != tc.err {
				t.Fatalf("whole: %v; want %v", o, tc.err)
			}
		})
	}
}

// TestParseLinear trickles a 64 KiB header section one byte at a time and
// checks the total bytes examined stays linear in its size.
func TestParseLinear(t *testing.T) {
	value := strings.Repeat("v", 1000)
	var b strings.Builder
	b.WriteString("GET /" + strings.Repeat("p", 8000) + " HTTP/1.1\r\nHost: a\r\n")
	for b.Len() < 64<<10-1300 {
		b.WriteString("X: " + value + "\r\n")
	}
	// Many short lines too: 40 of them.
	for range 40 {
		b.WriteString("Y: 1\r\n")
	}
	b.WriteString("\r\n")
	in := []byte(b.String())
	if len(in) > 64<<10 {
		t.Fatalf("section is %d bytes", len(in))
	}
	o, k, p := parseTrickle(in, nil)
	if o.err != nil || o.n != len(in) || k != len(in) {
		t.Fatalf("trickle: %v after %d bytes", o, k)
	}
	if limit := 3 * len(in); p.scanned > limit {
		t.Fatalf("examined %d bytes for a %d-byte section, want at most %d", p.scanned, len(in), limit)
	}
	t.Logf("examined %d bytes for a %d-byte section", p.scanned, len(in))
}

func TestParsePipelined(t *testing.T) {
	reqs := []string{curlGET, postCL + "{\"name\":\"x\"}\n", string(wrkGET), "\r\nGET /last HTTP/1.0\n\n"}
	in := []byte(strings.Join(reqs, ""))
	var p Parser
	var req Request
	paths := []string{"/index.html", "/api/v1/items", "/plaintext", "/last"}
	for i, path := range paths {
		n, err := p.Parse(in, &req, nil)
		if err != nil || n == 0 {
			t.Fatalf("request %d: Parse = %d, %v", i, n, err)
		}
		if string(req.Path) != path {
			t.Fatalf("request %d: Path = %q, want %q", i, req.Path, path)
		}
		in = in[n:]
		if req.ContentLength > 0 {
			in = in[req.ContentLength:]
		}
	}
	if len(in) != 0 {
		t.Fatalf("%d bytes left over", len(in))
	}
	if n, err := p.Parse(in, &req, nil); n != 0 || err != nil {
		t.Fatalf("Parse(empty) = %d, %v", n, err)
	}
}

// TestParsePipelinedPartial has the second request arrive in pieces after
// the first was parsed from the same buffer.
func TestParsePipelinedPartial(t *testing.T) {
	second := []byte("GET /second HTTP/1.1\r\nHost: b\r\n\r\n")
	in := append([]byte(curlGET), second[:10]...)
	var p Parser
	var req Request
	n, err := p.Parse(in, &req, nil)
	if n != len(curlGET) || err != nil {
		t.Fatalf("first: %d, %v", n, err)
	}
	rest := in[n:]
	if n, err := p.Parse(rest, &req, nil); n != 0 || err != nil {
		t.Fatalf("partial second: %d, %v", n, err)
	}
	rest = append(clone(rest), second[10:]...)
	if n, err := p.Parse(rest, &req, nil); n != len(second) || err != nil || string(req.Host) != "b" {
		t.Fatalf("second: %d, %v, host %q", n, err, req.Host)
	}
}

// checkViews checks that every byte slice of r is a view into in.
func checkViews(t *testing.T, r *Request, in []byte) {
	t.Helper()
	views := [][]byte{r.Method, r.Target, r.Path, r.RawQuery, r.Host, r.Upgrade, r.Raw()}
	for _, h := range r.Headers() {
		views = append(views, h.Name, h.Value)
	}
	for i, v := range views {
		if v != nil && !within(v, in) {
			t.Errorf("view %d %q is not inside the input", i, v)
		}
	}
}

// within reports whether v lies inside b's backing array.
func within(v, b []byte) bool {
	if cap(v) == 0 {
		return false
	}
	off := cap(b) - cap(v)
	return off >= 0 && off+len(v) <= len(b) && &b[:cap(b)][off] == &v[:1][0]
}

func TestCopyTo(t *testing.T) {
	for _, tc := range validCases {
		t.Run(tc.name, func(t *testing.T) {
			in := []byte(tc.in)
			var p Parser
			var req, dst Request
			if _, err := p.Parse(in, &req, tc.lim); err != nil {
				t.Fatal(err)
			}
			want := snapshot(&req)
			buf := req.CopyTo(&dst, make([]byte, 0, 4))
			// Clobber the input and reuse the source Request.
			for i := range in {
				in[i] = 'Z'
			}
			if _, err := p.Parse([]byte(curlGET), &req, nil); err != nil {
				t.Fatal(err)
			}
			if got := snapshot(&dst); got != want {
				t.Fatalf("copy:\n got %s\nwant %s", got, want)
			}
			checkViews(t, &dst, buf)

			// Rebase after moving the bytes, and CopyTo onto itself.
			moved := append([]byte(nil), buf...)
			dst.Rebase(moved)
			for i := range buf {
				buf[i] = 'Y'
			}
			if got := snapshot(&dst); got != want {
				t.Fatalf("rebased:\n got %s\nwant %s", got, want)
			}
			own := dst.CopyTo(&dst, nil)
			clear(moved)
			if got := snapshot(&dst); got != want {
				t.Fatalf("copied onto itself:\n got %s\nwant %s", got, want)
			}
			checkViews(t, &dst, own)
		})
	}
}

func TestRebaseLeavesForeignSlices(t *testing.T) {
	in := []byte(curlGET)
	var p Parser
	var req Request
	if _, err := p.Parse(in, &req, nil); err != nil {
		t.Fatal(err)
	}
	foreign := []byte("/elsewhere")
	req.Path = foreign
	moved := clone(in)
	req.Rebase(moved)
	if &req.Path[0] != &foreign[0] {
		t.Fatal("Rebase moved a slice that was not a view into the input")
	}
	if !within(req.Method, moved) {
		t.Fatal("Rebase left Method behind")
	}
}

func TestHeaderLookup(t *testing.T) {
	in := []byte("GET / HTTP/1.1\r\nHost: a\r\nX-Empty:\r\nAccept: one\r\naccept: two\r\n\r\n")
	var p Parser
	var req Request
	if _, err := p.Parse(in, &req, nil); err != nil {
		t.Fatal(err)
	}
	if got := req.Header("ACCEPT"); string(got) != "one" {
		t.Errorf("Header(ACCEPT) = %q, want the first, one", got)
	}
	if got := req.Header("x-empty"); got == nil || len(got) != 0 {
		t.Errorf("Header(x-empty) = %#v, want empty non-nil", got)
	}
	if got := req.Header("Missing"); got != nil {
		t.Errorf("Header(Missing) = %q, want nil", got)
	}
	if a := testing.AllocsPerRun(100, func() { req.Header("accept") }); a != 0 {
		t.Errorf("Header allocates %v times", a)
	}
	req.Reset()
	if req.ContentLength != -1 || req.Method != nil || len(req.Headers()) != 0 {
		t.Errorf("after Reset: %s", snapshot(&req))
	}
}

func TestParseManyHeadersReuse(t *testing.T) {
	in := []byte("GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(60) + "\r\n")
	var p Parser
	var req Request
	if _, err := p.Parse(in, &req, nil); err != nil {
		t.Fatal(err)
	}
	hs := req.Headers()
	if len(hs) != 61 || string(hs[60].Name) != "X-Header-59" || string(req.Header("x-header-40")) != "value 40" {
		t.Fatalf("headers: %d, last %q", len(hs), hs[len(hs)-1].Name)
	}
	// Parsing a small request afterwards drops the spilled headers.
	if _, err := p.Parse([]byte(curlGET), &req, nil); err != nil {
		t.Fatal(err)
	}
	if len(req.Headers()) != 3 || req.Header("x-header-1") != nil {
		t.Fatalf("stale headers after reuse: %d", len(req.Headers()))
	}
	if a := testing.AllocsPerRun(100, func() { p.Parse(in, &req, nil) }); a != 0 {
		t.Errorf("reparsing 61 headers allocates %v times", a)
	}
}

func TestParseNoAllocs(t *testing.T) {
	var p Parser
	var req Request
	for _, in := range [][]byte{wrkGET, browserGET, []byte(postTE)} {
		if a := testing.AllocsPerRun(100, func() { p.Parse(in, &req, nil) }); a != 0 {
			t.Errorf("Parse(%.20q) allocates %v times", in, a)
		}
	}
	// Nor does the incremental path.
	half := browserGET[:len(browserGET)/2]
	if a := testing.AllocsPerRun(100, func() {
		p.Parse(half, &req, nil)
		p.Parse(browserGET, &req, nil)
	}); a != 0 {
		t.Errorf("incremental Parse allocates %v times", a)
	}
}

func TestParserContractBreach(t *testing.T) {
	// Shrinking the input between calls must not panic; the parser
	// starts over.
	var p Parser
	var req Request
	in := []byte(curlGET)
	if n, err := p.Parse(in[:40], &req, nil); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := p.Parse(in[:5], &req, nil); n != 0 || err != nil {
		t.Fatal(n, err)
	}
	if n, err := p.Parse(in, &req, nil); n != len(in) || err != nil {
		t.Fatal(n, err)
	}
}

func TestErrorString(t *testing.T) {
	if got := ErrObsFold.Error(); got != "http1: obsolete line folding" {
		t.Errorf("Error() = %q", got)
	}
	var err error = ErrBodyTooLarge
	if !errors.Is(fmt.Errorf("reading: %w", err), ErrBodyTooLarge) {
		t.Error("errors.Is does not see through wrapping")
	}
}

func TestLimitsDefaults(t *testing.T) {
	var nilLim *Limits
	for _, l := range []*Limits{nilLim, {}, {MaxHeaderBytes: -1, MaxHeaders: -1, MaxURIBytes: -1}} {
		r := l.resolve()
		if r.headerBytes != 64<<10 || r.headers != 100 || r.uriBytes != 8<<10 || r.bodyBytes != 10<<20 {
			t.Errorf("%+v resolves to %+v", l, r)
		}
	}
	if r := (&Limits{MaxBodyBytes: -1}).resolve(); r.bodyBytes >= 0 {
		t.Errorf("negative MaxBodyBytes resolves to %d", r.bodyBytes)
	}
}

var _ = bytes.Equal

// TestRequestResetClearsEveryHeader: Reset leaves r equal to a fresh
// Request (ContentLength -1) holding no view of any input, whatever the
// requests parsed into it since the last Reset: a long head, then a short
// one (whose parse leaves the long one's later fields in place), then a
// head past the inline storage.
func TestRequestResetClearsEveryHeader(t *testing.T) {
	heads := [][]string{
		{"GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(5) + "\r\n", "GET / HTTP/1.1\r\nHost: b\r\n\r\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(40) + "\r\n", "GET / HTTP/1.1\r\nHost: b\r\nX: 1\r\n\r\n"},
		{"GET / HTTP/1.1\r\nHost: b\r\n\r\n"},
		{"GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(40) + "\r\n", "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(35) + "\r\n"},
	}
	for _, hs := range heads {
		var req Request
		for round := range 2 {
			for _, h := range hs {
				var p Parser
				if n, err := p.Parse([]byte(h), &req, nil); err != nil || n != len(h) {
					t.Fatalf("Parse(%q) = %d, %v", h, n, err)
				}
			}
			req.Reset()
			fresh := Request{ContentLength: -1, spill: req.spill}
			if !reflect.DeepEqual(req, fresh) {
				t.Fatalf("round %d after %d heads: Reset left %s", round, len(hs), snapshot(&req))
			}
			// Nor in the spill's storage past its length, which a
			// shorter head did not overwrite.
			for i, h := range req.spill[:cap(req.spill)] {
				if h.Name != nil || h.Value != nil {
					t.Fatalf("round %d after %d heads: Reset left spill[%d] = %q: %q", round, len(hs), i, h.Name, h.Value)
				}
			}
		}
	}
}

// TestRequestSpilled: Spilled is false for a request of up to 32 fields,
// true once more were parsed into it, and stays true across Reset (the
// grown storage is kept).
func TestRequestSpilled(t *testing.T) {
	var p Parser
	var r Request
	parse := func(fields int) {
		t.Helper()
		head := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-F: v\r\n", fields-1) + "\r\n"
		if _, err := p.Parse([]byte(head), &r, &Limits{MaxHeaders: 100}); err != nil {
			t.Fatal(err)
		}
	}
	parse(32)
	if r.Spilled() {
		t.Fatal("32 fields: Spilled")
	}
	p.Reset()
	r.Reset()
	parse(33)
	if !r.Spilled() {
		t.Fatal("33 fields: not Spilled")
	}
	r.Reset()
	if !r.Spilled() {
		t.Fatal("after Reset: not Spilled (the storage is kept)")
	}
}

func TestIsToken(t *testing.T) {
	for s, want := range map[string]bool{"X-Device-Id": true, "a!#$%&'*+-.^_`|~9": true, "": false,
		"X Device": false, "X:Id": false, "é": false, "X\r\n": false} {
		if got := IsToken(s); got != want {
			t.Errorf("IsToken(%q) = %v, want %v", s, got, want)
		}
	}
}
