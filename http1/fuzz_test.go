package http1

import (
	"errors"
	"testing"
)

// maxFuzzInput keeps each fuzz run, which feeds the input byte by byte,
// fast enough for the fuzzer to make progress.
const maxFuzzInput = 4 << 10

// fuzzLimits are small enough for the fuzzer to reach every limit.
var fuzzLimits = &Limits{MaxHeaderBytes: 512, MaxHeaders: 8, MaxURIBytes: 64, MaxBodyBytes: 1000}

func FuzzParse(f *testing.F) {
	seeds := []string{
		curlGET,
		string(wrkGET),
		string(browserGET),
		postCL + `{"name":"x"}`,
		postTE + "5\r\nhello\r\n0\r\n\r\n",
		"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n",
		"GET http://example.com:8080/p?q=1 HTTP/1.1\r\n\r\n",
		"GET /ws HTTP/1.1\r\nHost: a\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n\r\n",
		curlGET + string(wrkGET),
		"\r\nGET / HTTP/1.1\nHost: a\n\n",
	}
	for _, tc := range validCases {
		seeds = append(seeds, tc.in)
	}
	for _, tc := range invalidCases {
		if len(tc.in) < 1024 {
			seeds = append(seeds, tc.in)
		}
	}
	for i, s := range seeds {
		f.Add([]byte(s), uint16(i*7), i%2 == 0)
	}
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, small bool) {
		if len(in) > maxFuzzInput {
			t.Skip("the limits are explored with small ones")
		}
		lim := (*Limits)(nil)
		if small {
			lim = fuzzLimits
		}
		var p Parser
		var req Request
		buf := clone(in)
		n, err := p.Parse(buf, &req, lim)
		if n < 0 || n > len(in) {
			t.Fatalf("n = %d for %d bytes", n, len(in))
		}
		whole := result(n, err)(&req)
		if err != nil {
			var e *Error
			if n != 0 || !errors.As(err, &e) || !validStatus[e.Status] {
				t.Fatalf("Parse = %d, %v", n, err)
			}
		}
		if n > 0 {
			checkRequest(t, &req, buf[:n])
		}

		k := int(cut) % (len(in) + 1)
		if got, _ := parseSplit(in, k, lim); got != whole {
			t.Fatalf("split at %d:\n got %v\nwant %v", k, got, whole)
		}
		if got, _, _ := parseTrickle(in, lim); got != whole {
			t.Fatalf("byte by byte:\n got %v\nwant %v", got, whole)
		}
		if n > 0 { // a pipelined request may follow
			if m, _ := p.Parse(buf[n:], &req, lim); m > len(in)-n {
				t.Fatalf("second request: n = %d for %d bytes", m, len(in)-n)
			}
		}
	})
}

var validStatus = map[int]bool{400: true, 413: true, 414: true, 431: true, 501: true, 505: true}

// checkRequest checks the invariants of a successfully parsed request.
func checkRequest(t *testing.T, r *Request, in []byte) {
	t.Helper()
	if r.HeaderLen != len(in) || len(r.Raw()) != len(in) {
		t.Fatalf("HeaderLen %d, Raw %d bytes, n %d", r.HeaderLen, len(r.Raw()), len(in))
	}
	checkViews(t, r, in)
	if !isTokenString(r.Method) || len(r.Target) == 0 {
		t.Fatalf("method %q, target %q", r.Method, r.Target)
	}
	if r.ProtoMajor != 1 || r.ProtoMinor > 1 {
		t.Fatalf("version %d.%d", r.ProtoMajor, r.ProtoMinor)
	}
	if r.ProtoMinor == 1 && r.Host == nil {
		t.Fatal("HTTP/1.1 request without host")
	}
	if r.Chunked && r.ContentLength >= 0 || r.ContentLength < -1 {
		t.Fatalf("chunked %t with length %d", r.Chunked, r.ContentLength)
	}
	for _, h := range r.Headers() {
		if !isTokenString(h.Name) {
			t.Fatalf("header name %q", h.Name)
		}
		for _, c := range h.Value {
			if !isValue[c] {
				t.Fatalf("header value %q", h.Value)
			}
		}
	}
	var dst Request
	want := snapshot(r)
	dst2 := r.CopyTo(&dst, nil)
	if got := snapshot(&dst); got != want {
		t.Fatalf("CopyTo:\n got %s\nwant %s", got, want)
	}
	checkViews(t, &dst, dst2)
}

func FuzzChunked(f *testing.F) {
	for i, tc := range chunkedCases {
		if len(tc.in) < 1024 {
			f.Add([]byte(tc.in), uint16(i*5), i%2 == 0)
		}
	}
	f.Add(AppendLastChunk(AppendChunk(AppendChunk(nil, []byte("hello")), []byte(" world"))), uint16(9), false)
	f.Fuzz(func(t *testing.T, in []byte, cut uint16, small bool) {
		if len(in) > maxFuzzInput {
			t.Skip("the limits are explored with small ones")
		}
		lim := (*Limits)(nil)
		if small {
			lim = &Limits{MaxHeaderBytes: 64, MaxHeaders: 3, MaxBodyBytes: 100}
		}
		whole := decodeChunked(in, lim) // panics if Next over-consumes
		if whole.consumed > len(in) || len(whole.data) > len(in) {
			t.Fatalf("consumed %d, data %d of %d bytes", whole.consumed, len(whole.data), len(in))
		}
		if whole.err != nil {
			var e *Error
			if !errors.As(whole.err, &e) || !validStatus[e.Status] {
				t.Fatalf("error %v", whole.err)
			}
		}
		k := int(cut) % (len(in) + 1)
		if got := decodeChunked(in, lim, k); got != whole {
			t.Fatalf("split at %d: %+v; whole %+v", k, got, whole)
		}
		cuts := make([]int, len(in))
		for i := range cuts {
			cuts[i] = i
		}
		if got := decodeChunked(in, lim, cuts...); got != whole {
			t.Fatalf("byte by byte: %+v; whole %+v", got, whole)
		}
	})
}
