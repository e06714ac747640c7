package loadgen

import (
	"bytes"
	"errors"
	"strconv"
	"strings"
	"testing"
)

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
	"HTTP/1.1 500 Internal Server Error\r\nContent-Length: 3\r\n\r\nbad"

var (
	wantStatuses = []uint16{200, 200, 204, 404, 200, 200, 200, 500}
	wantCloses   = []bool{false, false, false, true, false, false, false, false}
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

func TestRespParserWhole(t *testing.T) {
	checkParsed(t, "whole", feed([][]byte{[]byte(respStream)}))
}

func TestRespParserSplitEveryByte(t *testing.T) {
	b := []byte(respStream)
	for i := 1; i < len(b); i++ {
		checkParsed(t, "split at "+strconv.Itoa(i), feed([][]byte{b[:i], b[i:]}))
	}
	var bytewise [][]byte
	for i := range b {
		bytewise = append(bytewise, b[i:i+1])
	}
	checkParsed(t, "byte at a time", feed(bytewise))
}

func TestRespParserUntilEOF(t *testing.T) {
	s := "HTTP/1.1 200 OK\r\nContent-Type: text/plain\r\n\r\nsome body that ends with the connection"
	got := feed([][]byte{[]byte(s)})
	if got.err != nil || len(got.statuses) != 1 || !got.closes[0] {
		t.Fatalf("%+v", got)
	}
}

func TestRespParserErrors(t *testing.T) {
	for _, s := range []string{
		"HTTP/2 200 OK\r\n\r\n",
		"HTTP/1.1 2x0 OK\r\n\r\n",
		"HTTP/1.1 200OK\r\n\r\n",
		"SSH-2.0-OpenSSH\r\n\r\n",
		"HTTP/1.1 200 OK\r\nno colon here\r\n\r\n",
		"HTTP/1.1 200 OK\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\nx",
		"HTTP/1.1 200 OK\r\nContent-Length: -1\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n5\nhello\r\n0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nhiXX0\r\n\r\n",
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\nfffffffffffffffff\r\n",
		"HTTP/1.1 101 Switching Protocols\r\n\r\n",
		"HTTP/1.1 200 OK\r\nX: " + strings.Repeat("a", maxHeadBytes+10),
		"HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n" + strings.Repeat("1", maxLineBytes+10),
	} {
		if got := feed([][]byte{[]byte(s)}); got.err == nil {
			t.Errorf("%.60q: no error (%+v)", s, got)
		}
	}
}

// TestRespParserLinear checks that a head trickled in byte by byte is
// scanned once, not once per byte.
func TestRespParserLinear(t *testing.T) {
	head := "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-Pad: 0123456789\r\n", 2000) + "Content-Length: 0\r\n\r\n"
	var p respParser
	var pending []byte
	scanned := 0
	for i := range len(head) {
		pending = append(pending, head[i])
		before := int(p.scan)
		n, done, err := p.parse(pending)
		if err != nil {
			t.Fatal(err)
		}
		scanned += len(pending) - before
		if done {
			if n != len(head) {
				t.Fatalf("consumed %d of %d", n, len(head))
			}
			if scanned > 4*len(head) {
				t.Fatalf("scanned %d bytes for a %d-byte head", scanned, len(head))
			}
			return
		}
	}
	t.Fatal("not done")
}

func FuzzRespParser(f *testing.F) {
	f.Add([]byte(respStream), 7)
	f.Add([]byte("HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n\r\n"), 1)
	f.Add([]byte("HTTP/1.1 200 OK\r\n\r\nrest"), 3)
	f.Fuzz(func(t *testing.T, b []byte, split int) {
		whole := feed([][]byte{b})
		if split <= 0 || split >= len(b) {
			return
		}
		parts := feed([][]byte{b[:split], b[split:]})
		if parts.err != nil && whole.err == nil {
			// A split may only fail where the whole stream fails (limits
			// apply to what is buffered, which a split never increases).
			t.Fatalf("split at %d: %v, whole: %v", split, parts.err, whole.err)
		}
		if whole.err == nil && !bytes.Equal(u16s(whole.statuses), u16s(parts.statuses)) {
			t.Fatalf("split at %d: %v, whole: %v", split, parts.statuses, whole.statuses)
		}
	})
}

func u16s(v []uint16) []byte {
	var b []byte
	for _, x := range v {
		b = append(b, byte(x>>8), byte(x))
	}
	return b
}
