package http1

import (
	"errors"
	"strings"
	"testing"
)

// refSkipName and refSkipValue are the byte-at-a-time scans that skipName
// and skipValue must agree with.
func refSkipName(in []byte, i int) int {
	for i < len(in) && isToken[in[i]] {
		i++
	}
	return i
}

func refSkipValue(in []byte, i int) int {
	for i < len(in) && isValue[in[i]] {
		i++
	}
	return i
}

// TestSkipWordBoundaries puts every byte value at every position of the
// first three words after every start offset of a name and of a value, and
// checks the word-at-a-time scans against the byte-at-a-time ones.
func TestSkipWordBoundaries(t *testing.T) {
	name := []byte("X-Forwarded-For-Content-Type-Length-Ab")
	value := []byte("text/html; charset=utf-8, \x80\xff gzip ~ 100")
	for _, tc := range []struct {
		what      string
		base      []byte
		skip, ref func([]byte, int) int
	}{
		{"name", name, skipName, refSkipName},
		{"value", value, skipValue, refSkipValue},
	} {
		buf := make([]byte, len(tc.base))
		for c := 0; c < 256; c++ {
			for start := 0; start < 8; start++ {
				for pos := start; pos < start+24 && pos < len(buf); pos++ {
					for end := pos + 1; end <= len(buf); end += 7 {
						copy(buf, tc.base)
						buf[pos] = byte(c)
						in := buf[:end]
						if got, want := tc.skip(in, start), tc.ref(in, start); got != want {
							t.Fatalf("%s %q from %d: got %d, want %d", tc.what, in, start, got, want)
						}
					}
				}
			}
		}
	}
}

// TestParseFieldBytesAtWordBoundaries parses a request whose field name or
// value has one byte replaced, at each offset of the first words, by each
// byte value, and checks that it is accepted exactly when the byte belongs
// there.
func TestParseFieldBytesAtWordBoundaries(t *testing.T) {
	const (
		pre  = "GET / HTTP/1.1\r\nHost: a\r\n"
		name = "Abcdefgh-Ijklmnop-Q"
		val  = "abcdefghijklmnopqrstuvwx"
	)
	for c := 0; c < 256; c++ {
		for pos := 0; pos < len(name); pos++ {
			if c == '\n' && pos == 0 || c == ':' && pos > 0 {
				continue // an empty line ends the section; a colon the name
			}
			n := []byte(name)
			n[pos] = byte(c)
			in := pre + string(n) + ": v\r\n\r\n"
			var p Parser
			var req Request
			_, err := p.Parse([]byte(in), &req, nil)
			if ok := isToken[c]; ok != (err == nil) {
				t.Fatalf("name byte %#x at %d: err %v", c, pos, err)
			}
			if err == nil && string(req.Headers()[1].Name) != string(n) {
				t.Fatalf("name byte %#x at %d: name %q", c, pos, req.Headers()[1].Name)
			}
		}
		for pos := 0; pos < len(val); pos++ {
			v := []byte(val)
			v[pos] = byte(c)
			in := pre + "N: " + string(v) + "\r\n\r\n"
			var p Parser
			var req Request
			_, err := p.Parse([]byte(in), &req, nil)
			want := isValue[c]
			if c == '\r' && pos < len(val)-1 {
				want = false // a bare CR
			}
			if c == '\n' {
				// A bare LF ends the line; the rest is a field line
				// without a colon unless it is empty.
				want = pos == len(val)-1
			}
			if want != (err == nil) {
				t.Fatalf("value byte %#x at %d: err %v", c, pos, err)
			}
			if err != nil && !errors.Is(err, ErrBadHeaderValue) && !errors.Is(err, ErrBareCR) &&
				!errors.Is(err, ErrBadHeaderName) && !errors.Is(err, ErrObsFold) {
				t.Fatalf("value byte %#x at %d: unexpected err %v", c, pos, err)
			}
		}
	}
}

// TestLowerIs checks lowerIs and the word-at-a-time lowerIsLong against a
// byte-at-a-time reference for the literals the parsers use, with every
// byte value at every position of the input.
func TestLowerIs(t *testing.T) {
	ref := func(b []byte, s string) bool {
		for i := 0; i < len(s); i++ {
			c := b[i]
			if c >= 'A' && c <= 'Z' {
				c += 'a' - 'A'
			}
			if c != s[i] {
				return false
			}
		}
		return true
	}
	for _, s := range []string{"te", "via", "host", "close", "expect", "upgrade", "trailer", "keep-alive",
		"connection", "100-continue", "content-length", "transfer-encoding", "x-forwarded-proto", "proxy-authorization"} {
		up := []byte(strings.ToUpper(s))
		for pos := range len(s) {
			for c := 0; c < 256; c++ {
				for _, base := range [][]byte{[]byte(s), up} {
					b := append([]byte(nil), base...)
					b[pos] = byte(c)
					b = append(b, "xyz"...) // lowerIs looks at b[:len(s)] only
					if got, want := lowerIs(b, s), ref(b, s); got != want {
						t.Fatalf("lowerIs(%q, %q) = %v, want %v", b, s, got, want)
					}
					if len(s) < 8 {
						continue
					}
					if got, want := lowerIsLong(b, s), ref(b, s); got != want {
						t.Fatalf("lowerIsLong(%q, %q) = %v, want %v", b, s, got, want)
					}
				}
			}
		}
	}
}

// TestCopyToLeavesNoStaleSpill: CopyTo into a Request whose spill held a
// longer head leaves no view of that head past the copy's fields.
func TestCopyToLeavesNoStaleSpill(t *testing.T) {
	for _, short := range []int{35, 3} {
		var dst, src Request
		long := "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(40) + "\r\n"
		head := "GET / HTTP/1.1\r\nHost: b\r\n" + manyHeaders(short) + "\r\n"
		var p Parser
		if _, err := p.Parse([]byte(long), &dst, nil); err != nil {
			t.Fatal(err)
		}
		if _, err := p.Parse([]byte(head), &src, nil); err != nil {
			t.Fatal(err)
		}
		src.CopyTo(&dst, nil)
		if len(dst.Headers()) != short+1 {
			t.Fatalf("short %d: copy has %d fields", short, len(dst.Headers()))
		}
		for i, h := range dst.spill[len(dst.spill):cap(dst.spill)] {
			if h.Name != nil || h.Value != nil {
				t.Fatalf("short %d: spill[%d] past the copy holds %q", short, len(dst.spill)+i, h.Name)
			}
		}
	}
}

// TestParseContentLength checks parseContentLength, with its fast path for
// a short run of digits, against the general path alone, on edge cases and
// on every string of up to four bytes from a small alphabet, and on
// lengths around int64's limit.
func TestParseContentLength(t *testing.T) {
	general := parseContentLengthList
	in := []string{"", "0", "5", "00012", "123456789012345678", "1234567890123456789",
		"9223372036854775807", "9223372036854775808", "99999999999999999999", "5, 5", "5,6", " 5", "5 ",
		"+5", "-1", "1a", "1 2", ","}
	const alphabet = "09, a"
	var gen func(prefix string, depth int)
	gen = func(prefix string, depth int) {
		in = append(in, prefix)
		if depth == 4 {
			return
		}
		for _, c := range alphabet {
			gen(prefix+string(c), depth+1)
		}
	}
	gen("", 0)
	for _, s := range in {
		n, ok := parseContentLength([]byte(s))
		wn, wok := general([]byte(s))
		if n != wn || ok != wok {
			t.Fatalf("parseContentLength(%q) = %d, %v; want %d, %v", s, n, ok, wn, wok)
		}
	}
}

// TestHeadersAfterIncompleteParse: after Parse reports an incomplete head
// or an error part-way through the fields, Header and Headers find no
// field (the table is kept only with the whole head), as before it
// existed, instead of slicing a head that was never recorded (review
// rv-upx2's probe).
func TestHeadersAfterIncompleteParse(t *testing.T) {
	for _, in := range []string{
		"HTTP/1.1 200 OK\r\nX-A: 1\r\nX-B: 2\r\n",
		"HTTP/1.1 200 OK\r\nX-A: 1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n",
	} {
		var p ResponseParser
		var resp Response
		n, err := p.Parse([]byte(in), "GET", &resp, nil)
		if n != 0 {
			t.Fatalf("%q: Parse = %d, %v", in, n, err)
		}
		if v := resp.Header("x-a"); v != nil {
			t.Fatalf("%q: Header(x-a) = %q after (0, %v)", in, v, err)
		}
		for h := range resp.Headers() {
			t.Fatalf("%q: Headers yielded %q after (0, %v)", in, h.Name, err)
		}
	}
}

// TestCopyToAliasedSpill: CopyTo into a plain copy of the source, whose
// spill shares the source's array, keeps every field of both (review
// rv-upx2's probe).
func TestCopyToAliasedSpill(t *testing.T) {
	head := "GET / HTTP/1.1\r\nHost: a\r\n" + manyHeaders(40) + "\r\n"
	var p Parser
	var a Request
	if _, err := p.Parse([]byte(head), &a, nil); err != nil {
		t.Fatal(err)
	}
	want := string(a.Headers()[40].Name)
	c := a // shares a's spill
	a.CopyTo(&c, nil)
	if hs := c.Headers(); len(hs) != 41 || string(hs[40].Name) != want {
		t.Fatalf("copy has %d fields, last %q; want 41, %q", len(hs), hs[len(hs)-1].Name, want)
	}
	if hs := a.Headers(); string(hs[40].Name) != want {
		t.Fatalf("source lost its fields: last %q", hs[40].Name)
	}
	// The copy shares no memory with a: a's next parse leaves it whole
	// (review rv-upx2b).
	other := "GET / HTTP/1.1\r\nHost: b\r\n" + strings.ReplaceAll(manyHeaders(40), "X-Header", "Other-Hd") + "\r\n"
	p.Reset()
	if _, err := p.Parse([]byte(other), &a, nil); err != nil {
		t.Fatal(err)
	}
	if hs := c.Headers(); string(hs[40].Name) != want || &hs[40] == &a.Headers()[40] {
		t.Fatalf("after the source's next parse the copy's last field is %q (want %q); shared %v", hs[40].Name, want, &hs[40] == &a.Headers()[40])
	}
}
