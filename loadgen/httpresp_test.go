package loadgen

import (
	"errors"
	"strconv"
	"testing"
)

// The parsing itself is http1.ResponseParser's and is tested there; these
// tests cover what respParser adds: one completion per final response,
// interim responses skipped, 101 refused, and the status and close of the
// last response kept for the handler.

// parsed is what the parser made of a stream.
type parsed struct {
	statuses []uint16
	closes   []bool
	err      error
}

// feed presents the pieces to p the way the engine does: each call gets
// every unconsumed byte followed by the new piece, and the parser is called
// again after each completed response.
func feed(pieces [][]byte) parsed {
	var p respParser
	var out parsed
	var pending []byte
	for _, piece := range pieces {
		pending = append(pending, piece...)
		for {
			n, done, err := p.parse(pending)
			if n < 0 || n > len(pending) {
				out.err = errors.New("consumed out of range")
				return out
			}
			pending = pending[n:]
			if err != nil {
				out.err = err
				return out
			}
			if !done {
				break
			}
			out.statuses = append(out.statuses, p.status)
			out.closes = append(out.closes, p.close)
		}
		pending = append([]byte(nil), pending...) // the engine moves what is left
	}
	if p.eof() {
		out.statuses = append(out.statuses, p.status)
		out.closes = append(out.closes, p.close)
	}
	return out
}

const respStream = "HTTP/1.1 100 Continue\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nContent-Length: 5\r\nContent-Type: text/plain\r\n\r\nhello" +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" +
	"5;ext=1\r\nhello\r\n1A\r\nabcdefghijklmnopqrstuvwxyz\r\n0\r\nX-Trailer: y\r\n\r\n" +
	"HTTP/1.1 204 No Content\r\nContent-Length: 7\r\n\r\n" +
	"HTTP/1.1 404 Not Found\r\ncontent-length: 0\r\nConnection: keep-alive, Close\r\n\r\n" +
	"HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n0\r\n\r\n" +
	"HTTP/1.1 200 OK\nContent-Length: 1\n\nx" +
	"HTTP/1.0 200 OK\r\nConnection: keep-alive\r\nContent-Length: 2\r\n\r\nok" +
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad" +
	"HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body that ends with the connection"

var (
	wantStatuses = []uint16{200, 200, 204, 404, 200, 200, 200, 500, 200}
	wantCloses   = []bool{false, false, false, true, false, false, false, false, true}
)

func checkParsed(t *testing.T, what string, got parsed) {
	t.Helper()
	if got.err != nil {
		t.Fatalf("%s: error %v", what, got.err)
	}
	if len(got.statuses) != len(wantStatuses) {
		t.Fatalf("%s: statuses %v, want %v", what, got.statuses, wantStatuses)
	}
	for i := range wantStatuses {
		if got.statuses[i] != wantStatuses[i] || got.closes[i] != wantCloses[i] {
			t.Fatalf("%s: response %d: status %d close %v, want %d %v", what, i, got.statuses[i], got.closes[i],
				wantStatuses[i], wantCloses[i])
		}
	}
}

func TestRespParser(t *testing.T) {
	b := []byte(respStream)
	checkParsed(t, "whole", feed([][]byte{b}))
	for i := 1; i < len(b); i++ {
		checkParsed(t, "split at "+strconv.Itoa(i), feed([][]byte{b[:i], b[i:]}))
	}
	var bytewise [][]byte
	for i := range b {
		bytewise = append(bytewise, b[i:i+1])
	}
	checkParsed(t, "byte at a time", feed(bytewise))
}

func TestRespParserErrors(t *testing.T) {
	for _, s := range []string{
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"SSH-2.0-OpenSSH\r\n\r\n",
	} {
		if got := feed([][]byte{[]byte(s)}); got.err == nil {
			t.Errorf("%.60q: no error (%+v)", s, got)
		}
	}
	// Bodies are not bounded: the generator drops them.
	s := "HTTP/1.1 200 OK\r\nContent-Length: 99999999999\r\n\r\n"
	if got := feed([][]byte{[]byte(s)}); got.err != nil {
		t.Errorf("%q: %v", s, got.err)
	}
}

func TestRespParserAllocs(t *testing.T) {
	in := []byte(nginxResp + chunkedResp + echoResp)
	var p respParser
	run := func() {
		for used := 0; used < len(in); {
			n, done, err := p.parse(in[used:])
			used += n
			if err != nil || !done {
				t.Fatalf("parse: %d %v %v", n, done, err)
			}
		}
	}
	run() // the first chunked body allocates the http1 ChunkedReader
	p.reset()
	if allocs := testing.AllocsPerRun(100, run); allocs != 0 {
		t.Fatalf("%v allocations per run", allocs)
	}
}
