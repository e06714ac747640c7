package http1

import (
	"errors"
	"iter"
	"testing"
)

// FuzzResponseParser feeds a connection's input to a ResponseParser whole,
// split in two and byte by byte, and checks that the outcome is the same
// and that each response head is consistent. Its seed corpus in
// testdata/fuzz/FuzzResponseParser holds responses captured from net/http;
// the seeds below add typical origin servers' and the unit tests' cases.
func FuzzResponseParser(f *testing.F) {
	seeds := []string{
		pipelined,
		// nginx with keep-alive.
		"HTTP/1.1 200 OK\r\nServer: nginx/1.25.3\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
			"Content-Type: text/html\r\nContent-Length: 12\r\nLast-Modified: Mon, 02 Jan 2006 15:04:05 GMT\r\n" +
			"Connection: keep-alive\r\nKeep-Alive: timeout=5\r\nETag: \"659d4a3b-c\"\r\nAccept-Ranges: bytes\r\n\r\n" +
			"hello world\n",
		// Apache answering HTTP/1.0 without a length.
		"HTTP/1.0 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nServer: Apache/2.4.58 (Unix)\r\n" +
			"Content-Type: text/plain\r\n\r\nuntil the close",
		// A WebSocket upgrade followed by a frame.
		"HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: s3pPLMBiTxaQ9kYGzzhZRbK+xOo=\r\n\r\n\x81\x05hello",
		// warren echo.
		"HTTP/1.1 200 OK\r\nDate: Mon, 02 Jan 2006 15:04:05 GMT\r\nContent-Length: 5\r\n\r\nhello",
	}
	for _, tc := range []string{
		"HTTP/1.1 200 OK\r\nContent-Length: 100\r\nTransfer-Encoding: chunked\r\n\r\n1\r\na\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked, gzip\r\n\r\nxyz",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: a\r\n folded\r\n\r\n",
		"HTTP/2 200 OK\r\n\r\n",
	} {
		seeds = append(seeds, tc)
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint16(i*37), i%3 == 0)
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, head bool) {
		if len(in) > maxFuzzInput {
			t.Skip("the limits are explored with small ones")
		}
		method := "GET"
		if head {
			method = "HEAD"
		}
		lim := (*Limits)(nil)
		if cut&0x8000 != 0 {
			lim = &Limits{MaxHeaderBytes: 256, MaxHeaders: 6, MaxBodyBytes: 300}
		}
		whole := feedResponses([][]byte{in}, method, lim, func(r *Response) { checkResponse(t, r) })
		if whole.err != nil {
			var e *Error
			if !errors.As(whole.err, &e) || !validStatus[e.Status] && e.Status != 502 {
				t.Fatalf("error %v", whole.err)
			}
		}
		for _, r := range whole.resps {
			if r.framing == FramingLength && r.complete && int64(len(r.body)) != r.length {
				t.Fatalf("body of %d bytes for Content-Length %d", len(r.body), r.length)
			}
		}
		want := whole.String()
		k := int(cut&0x7fff) % (len(in) + 1)
		if got := feedResponses([][]byte{in[:k], in[k:]}, method, lim).String(); got != want {
			t.Fatalf("split at %d:\n%s\nwhole:\n%s", k, got, want)
		}
		if len(in) <= 1024 {
			bytewise := make([][]byte, len(in))
			for i := range in {
				bytewise[i] = in[i : i+1]
			}
			if got := feedResponses(bytewise, method, lim).String(); got != want {
				t.Fatalf("byte by byte:\n%s\nwhole:\n%s", got, want)
			}
		}
	})
}

// checkResponse checks the invariants of a parsed response head.
func checkResponse(t *testing.T, r *Response) {
	t.Helper()
	if r.HeaderLen != len(r.Raw()) || r.StatusCode < 100 || r.StatusCode > 999 || r.ProtoMajor != 1 || r.ProtoMinor > 1 {
		t.Fatalf("HeaderLen %d, Raw %d bytes, status %d, version %d.%d",
			r.HeaderLen, len(r.Raw()), r.StatusCode, r.ProtoMajor, r.ProtoMinor)
	}
	switch {
	case r.Framing > FramingClose,
		r.Framing == FramingLength && r.ContentLength < 0,
		r.Framing == FramingChunked && r.ContentLength >= 0,
		r.Framing == FramingClose && !r.Close,
		r.ContentLength < -1, r.KeepAlive < 0:
		t.Fatalf("framing %v, length %d, close %t, keep-alive %v", r.Framing, r.ContentLength, r.Close, r.KeepAlive)
	}
	for _, c := range r.Reason {
		if !isValue[c] {
			t.Fatalf("reason %q", r.Reason)
		}
	}
	for h := range r.Headers() {
		if !isTokenString(h.Name) {
			t.Fatalf("header name %q", h.Name)
		}
		for _, c := range h.Value {
			if !isValue[c] {
				t.Fatalf("header value %q", h.Value)
			}
		}
		if len(trimOWS(h.Value)) != len(h.Value) {
			t.Fatalf("header value %q", h.Value)
		}
	}
	// The fields' noted places and a scan of the head agree.
	scanned := *r
	scanned.nf = -1
	next, stop := iter.Pull(scanned.Headers())
	defer stop()
	for h := range r.Headers() {
		w, ok := next()
		if !ok || &h.Name[0] != &w.Name[0] || len(h.Name) != len(w.Name) || string(h.Value) != string(w.Value) ||
			cap(h.Value) != cap(w.Value) {
			t.Fatalf("Headers %q=%q; scan %q=%q (%t)", h.Name, h.Value, w.Name, w.Value, ok)
		}
	}
	if w, ok := next(); ok {
		t.Fatalf("scan has a field more: %q", w.Name)
	}
}
