package http1

import (
	"fmt"
	"strings"
	"testing"
)

// chunkedOutcome is what decoding a chunked body reports in total.
type chunkedOutcome struct {
	data     string
	consumed int
	done     bool
	err      error
	trailers string
}

// decodeChunked feeds in to a ChunkedReader in pieces cut at the given
// offsets, as an engine would: each arrival is appended to the unconsumed
// bytes, copied to a new address, and Next is called until it needs more.
func decodeChunked(in []byte, lim *Limits, cuts ...int) chunkedOutcome {
	var r ChunkedReader
	if lim != nil {
		r.Reset(lim)
	}
	var o chunkedOutcome
	var data strings.Builder
	var pending []byte
	prev := 0
	for _, cut := range append(cuts, len(in)) {
		pending = clone(append(pending, in[prev:cut]...))
		prev = cut
		for {
			n, d, done, err := r.Next(pending)
			if err != nil {
				// What was consumed before depends on the cuts.
				return chunkedOutcome{data: data.String(), err: err}
			}
			if n > len(pending) || len(d) > n {
				panic(fmt.Sprintf("Next consumed %d of %d bytes with %d of data", n, len(pending), len(d)))
			}
			data.Write(d)
			o.consumed += n
			pending = pending[n:]
			if done {
				o.done = true
				o.data = data.String()
				for _, h := range r.Trailers() {
					o.trailers += fmt.Sprintf("%s=%q;", h.Name, h.Value)
				}
				return o
			}
			if n == 0 {
				break
			}
		}
	}
	o.data = data.String()
	return o
}

type chunkedCase struct {
	name     string
	in       string
	lim      *Limits
	data     string
	trailers string
	err      *Error // nil: valid and complete
}

var chunkedCases = []chunkedCase{
	{name: "one chunk", in: "5\r\nhello\r\n0\r\n\r\n", data: "hello"},
	{name: "empty body", in: "0\r\n\r\n"},
	{name: "chunks in hex", in: "A\r\n0123456789\r\n1a\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\n\r\n", data: "0123456789abcdefghijklmnopqrstuvwxyz"},
	{name: "leading zeros", in: "0005\r\nhello\r\n000\r\n\r\n", data: "hello"},
	{name: "data with CRLF", in: "4\r\n\r\n\r\n\r\n0\r\n\r\n", data: "\r\n\r\n"},
	{name: "extensions", in: "5;name=value;q=\"a;b\\\"c\"\r\nhello\r\n6 ; ext\r\n world\r\n0;last\r\n\r\n", data: "hello world"},
	{name: "whitespace after size", in: "5 \t\r\nhello\r\n0\r\n\r\n", data: "hello"},
	{name: "trailers", in: "5\r\nhello\r\n0\r\nX-Checksum: abc\r\nX-Other:  v w \t\r\nEmpty:\r\n\r\n", data: "hello",
		trailers: `X-Checksum="abc";X-Other="v w";Empty="";`},
	{name: "body at limit", in: "5\r\nhello\r\n5\r\nworld\r\n0\r\n\r\n", lim: &Limits{MaxBodyBytes: 10}, data: "helloworld"},
	{name: "unlimited body", in: "4000000000000000\r\nab", lim: &Limits{MaxBodyBytes: -1}, data: "ab", err: errIncomplete},
	{name: "trailers at limit", in: "0\r\nA: 1\r\nB: 2\r\n\r\n", lim: &Limits{MaxHeaders: 2, MaxHeaderBytes: 12}, trailers: `A="1";B="2";`},

	{name: "empty size", in: "\r\nhello\r\n", err: ErrBadChunkSize},
	{name: "non-hex size", in: "g\r\n", err: ErrBadChunkSize},
	{name: "negative size", in: "-5\r\n", err: ErrBadChunkSize},
	{name: "0x prefix", in: "0x5\r\nhello\r\n", err: ErrBadChunkSize},
	{name: "size overflow", in: "10000000000000000\r\n", err: ErrBadChunkSize},
	{name: "size over 2^62", in: "4000000000000001\r\n", lim: &Limits{MaxBodyBytes: -1}, err: ErrBadChunkSize},
	{name: "size 2^62 over default limit", in: "4000000000000000\r\n", err: ErrBodyTooLarge},
	{name: "bare LF after size", in: "5\nhello\r\n0\r\n\r\n", err: ErrBadChunkSize},
	{name: "bare CR after size", in: "5\rhello\r\n0\r\n\r\n", err: ErrBareCR},
	{name: "space inside size", in: "5 5\r\n", err: ErrBadChunkSize},
	{name: "extension with control", in: "5;a\x01\r\nhello\r\n0\r\n\r\n", err: ErrBadChunkExtension},
	{name: "extension with bare LF", in: "5;a\nhello\r\n0\r\n\r\n", err: ErrBadChunkSize},
	{name: "line too long", in: "5;" + strings.Repeat("e", 5000) + "\r\nhello\r\n", err: ErrChunkLineTooLong},
	{name: "data without CRLF", in: "5\r\nhelloX\r\n0\r\n\r\n", data: "hello", err: ErrBadChunkData},
	{name: "data with bare LF", in: "5\r\nhello\n0\r\n\r\n", data: "hello", err: ErrBadChunkData},
	{name: "data with CR only", in: "5\r\nhello\rX", data: "hello", err: ErrBadChunkData},
	{name: "overhead", in: strings.Repeat("1;"+strings.Repeat("e", 300)+"\r\nx\r\n", 100), data: strings.Repeat("x", 56), err: ErrChunkOverhead},
	{name: "body too large at once", in: "b\r\nhello world\r\n0\r\n\r\n", lim: &Limits{MaxBodyBytes: 10}, err: ErrBodyTooLarge},
	{name: "body too large later", in: "6\r\nhello \r\n6\r\nworld!\r\n0\r\n\r\n", lim: &Limits{MaxBodyBytes: 10}, data: "hello ", err: ErrBodyTooLarge},
	{name: "trailer name with space", in: "0\r\nBad Name: x\r\n\r\n", err: ErrBadTrailer},
	{name: "trailer space before colon", in: "0\r\nX : x\r\n\r\n", err: ErrBadTrailer},
	{name: "trailer without colon", in: "0\r\nX\r\n\r\n", err: ErrBadTrailer},
	{name: "trailer obs-fold", in: "0\r\nX: a\r\n b\r\n\r\n", err: ErrBadTrailer},
	{name: "trailer with NUL", in: "0\r\nX: a\x00\r\n\r\n", err: ErrBadTrailer},
	{name: "trailer with bare LF", in: "0\r\nX: a\n\r\n", err: ErrBadTrailer},
	{name: "trailer with bare CR", in: "0\r\nX: a\rb\r\n\r\n", err: ErrBareCR},
	{name: "too many trailers", in: "0\r\nA: 1\r\nB: 2\r\nC: 3\r\n\r\n", lim: &Limits{MaxHeaders: 2}, err: ErrTrailerTooLarge},
	{name: "trailers too large", in: "0\r\nA: 1\r\nB: 23\r\n\r\n", lim: &Limits{MaxHeaderBytes: 12}, err: ErrTrailerTooLarge},
	{name: "bare CR at end", in: "0\r\n\rX", err: ErrBareCR},
	{name: "bare LF at end", in: "0\r\n\n", err: ErrBadTrailer},
}

// errIncomplete marks a case whose input ends before the body does.
var errIncomplete = &Error{0, "incomplete"}

func (tc chunkedCase) check(t *testing.T, o chunkedOutcome, how string) {
	t.Helper()
	wantErr := error(tc.err)
	if tc.err == nil || tc.err == errIncomplete {
		wantErr = nil
	}
	if o.err != wantErr || o.data != tc.data || o.trailers != tc.trailers {
		t.Fatalf("%s: %s: got data %q trailers %q err %v; want %q %q %v", tc.name, how, o.data, o.trailers, o.err, tc.data, tc.trailers, wantErr)
	}
	if tc.err == nil && (!o.done || o.consumed != len(tc.in)) {
		t.Fatalf("%s: %s: done %t after %d bytes; want done after %d", tc.name, how, o.done, o.consumed, len(tc.in))
	}
	if tc.err == errIncomplete && o.done {
		t.Fatalf("%s: %s: done on incomplete input", tc.name, how)
	}
}

func TestChunked(t *testing.T) {
	for _, tc := range chunkedCases {
		in := []byte(tc.in)
		whole := decodeChunked(in, tc.lim)
		tc.check(t, whole, "whole")
		for _, k := range splitPoints(len(in)) {
			if got := decodeChunked(in, tc.lim, k); got != whole {
				t.Fatalf("%s: split at %d: %+v; whole %+v", tc.name, k, got, whole)
			}
		}
		cuts := make([]int, len(in))
		for i := range cuts {
			cuts[i] = i
		}
		if got := decodeChunked(in, tc.lim, cuts...); got != whole {
			t.Fatalf("%s: byte by byte: %+v; whole %+v", tc.name, got, whole)
		}
	}
}

// TestChunkedStopsAtEnd checks that bytes after the body, the next
// pipelined request, are left alone.
func TestChunkedStopsAtEnd(t *testing.T) {
	body := "3;x=y\r\nabc\r\n0\r\nT: v\r\n\r\n"
	in := []byte(body + "GET / HTTP/1.1\r\n")
	var r ChunkedReader
	var data []byte
	total := 0
	for {
		n, d, done, err := r.Next(in[total:])
		if err != nil {
			t.Fatal(err)
		}
		data = append(data, d...)
		total += n
		if done {
			break
		}
	}
	if total != len(body) || string(data) != "abc" || r.Len() != 3 {
		t.Fatalf("consumed %d, data %q, Len %d", total, data, r.Len())
	}
	if n, d, done, err := r.Next(in[total:]); n != 0 || d != nil || !done || err != nil {
		t.Fatalf("Next after done = %d, %q, %t, %v", n, d, done, err)
	}
	// Reset reuses the reader for another body.
	r.Reset(nil)
	if r.Trailers() != nil {
		t.Fatal("trailers survive Reset")
	}
	if n, d, done, err := r.Next([]byte("0\r\n\r\n")); n != 5 || d != nil || !done || err != nil {
		t.Fatalf("after Reset: %d, %q, %t, %v", n, d, done, err)
	}
}

func TestChunkedNoAllocs(t *testing.T) {
	in := []byte("5;ext=1\r\nhello\r\n6\r\n world\r\n0\r\n\r\n")
	var r ChunkedReader
	if a := testing.AllocsPerRun(100, func() {
		r.Reset(nil)
		for off := 0; ; {
			n, _, done, err := r.Next(in[off:])
			if err != nil || done {
				break
			}
			off += n
		}
	}); a != 0 {
		t.Errorf("decoding allocates %v times", a)
	}
}

func TestFixedReader(t *testing.T) {
	var r FixedReader
	if n, d, done, err := r.Next([]byte("GET")); n != 0 || len(d) != 0 || !done || err != nil {
		t.Fatalf("zero value: %d, %q, %t, %v", n, d, done, err)
	}
	r.Reset(5)
	n, d, done, _ := r.Next([]byte("hel"))
	if n != 3 || string(d) != "hel" || done || r.Remaining() != 2 {
		t.Fatalf("first: %d, %q, %t, %d", n, d, done, r.Remaining())
	}
	n, d, done, _ = r.Next([]byte("loGET /"))
	if n != 2 || string(d) != "lo" || !done || r.Remaining() != 0 {
		t.Fatalf("second: %d, %q, %t", n, d, done)
	}
	r.Reset(-1)
	if r.Remaining() != 0 {
		t.Fatal("negative length")
	}
}
