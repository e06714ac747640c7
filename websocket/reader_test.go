package websocket

import (
	"bytes"
	"fmt"
	"strings"
	"testing"
)

type readerCase struct {
	name string
	cfg  readerConfig
	in   []byte
	want []rec
	code uint16 // close code of the expected error, 0 for none
}

func readerCases() []readerCase {
	long := strings.Repeat("x", 300)
	// A header declaring 1 MiB + 1 bytes, with no payload.
	bigLen := cat([]byte{0x82, 0x80 | 127, 0, 0, 0, 0, 0, 0x10, 0, 1}, testMask[:])
	ctx := &DeflateParams{}
	cases := []readerCase{
		{name: "text", in: cf(OpText, true, "hello"), want: []rec{{OpText, "hello", 0}}},
		{name: "binary", in: cf(OpBinary, true, "\x00\xff"), want: []rec{{OpBinary, "\x00\xff", 0}}},
		{name: "empty text", in: cf(OpText, true, ""), want: []rec{{OpText, "", 0}}},
		{name: "16-bit length", in: cf(OpText, true, long), want: []rec{{OpText, long, 0}}},
		{name: "two messages", in: cat(cf(OpText, true, "a"), cf(OpBinary, true, "b")),
			want: []rec{{OpText, "a", 0}, {OpBinary, "b", 0}}},
		{name: "fragmented with interleaved control frames",
			in: cat(cf(OpText, false, "hel"), cf(OpPing, true, "p"), cf(OpContinuation, false, ""),
				cf(OpPong, true, "q"), cf(OpContinuation, true, "lo")),
			want: []rec{{OpPing, "p", 0}, {OpPong, "q", 0}, {OpText, "hello", 0}}},
		{name: "fragmented binary", in: cat(cf(OpBinary, false, "ab"), cf(OpContinuation, true, "cd")),
			want: []rec{{OpBinary, "abcd", 0}}},
		{name: "ping 125", in: cf(OpPing, true, strings.Repeat("p", 125)), want: []rec{{OpPing, strings.Repeat("p", 125), 0}}},
		{name: "empty close", in: cf(OpClose, true, ""), want: []rec{{OpClose, "", CloseNoStatus}}},
		{name: "close with reason", in: cf(OpClose, true, closePayload(1000, "bye")), want: []rec{{OpClose, "bye", 1000}}},
		{name: "input after close discarded", in: cat(cf(OpClose, true, closePayload(1001, "")), cf(OpText, true, "x"), []byte{0xff, 0xff}),
			want: []rec{{OpClose, "", 1001}}},
		{name: "text with UTF-8 split across fragments",
			in:   cat(cf(OpText, false, "\xce"), cf(OpContinuation, false, "\xba\xe1\xbd"), cf(OpContinuation, true, "\xb9\xcf\x83\xce\xbc\xce\xb5")),
			want: []rec{{OpText, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", 0}}},
		{name: "4-byte code point split in every fragment",
			in:   cat(cf(OpText, false, "\xf0"), cf(OpContinuation, false, "\x9f"), cf(OpContinuation, false, "\x98"), cf(OpContinuation, true, "\x80")),
			want: []rec{{OpText, "😀", 0}}},
		{name: "max message size exact", cfg: readerConfig{max: 4}, in: cat(cf(OpText, false, "ab"), cf(OpContinuation, true, "cd")),
			want: []rec{{OpText, "abcd", 0}}},

		// 1002 protocol errors.
		{name: "unmasked client frame", in: sf(OpText, true, "hi"), code: 1002},
		{name: "RSV1 without extension", in: cfRsv(OpText, true, Rsv1, []byte("hi")), code: 1002},
		{name: "RSV2", in: cfRsv(OpText, true, Rsv2, []byte("hi")), code: 1002},
		{name: "RSV3", in: cfRsv(OpBinary, true, Rsv3, nil), code: 1002},
		{name: "RSV2 with deflate", cfg: readerConfig{deflate: ctx}, in: cfRsv(OpText, true, Rsv2, []byte("hi")), code: 1002},
		{name: "RSV1 on continuation", cfg: readerConfig{deflate: ctx},
			in: cat(cfRsv(OpText, false, Rsv1, nil), cfRsv(OpContinuation, true, Rsv1, []byte{0})), code: 1002},
		{name: "RSV1 on ping", cfg: readerConfig{deflate: ctx}, in: cfRsv(OpPing, true, Rsv1, nil), code: 1002},
		{name: "ping 126", in: cf(OpPing, true, strings.Repeat("p", 126)), code: 1002},
		{name: "close 126", in: cf(OpClose, true, closePayload(1000, strings.Repeat("r", 124))), code: 1002},
		{name: "fragmented ping", in: cf(OpPing, false, ""), code: 1002},
		{name: "fragmented close", in: cf(OpClose, false, ""), code: 1002},
		{name: "continuation first", in: cf(OpContinuation, true, "x"), code: 1002},
		{name: "continuation after complete message", in: cat(cf(OpText, true, "a"), cf(OpContinuation, true, "b")),
			want: []rec{{OpText, "a", 0}}, code: 1002},
		{name: "text during fragmented message", in: cat(cf(OpText, false, "a"), cf(OpText, true, "b")), code: 1002},
		{name: "binary during fragmented message", in: cat(cf(OpBinary, false, "a"), cf(OpBinary, false, "b")), code: 1002},
		{name: "close payload of 1 byte", in: cf(OpClose, true, "\x03"), code: 1002},
		{name: "64-bit length MSB set", in: cat([]byte{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1}, testMask[:]), code: 1002},
		{name: "client role rejects masked frame", cfg: readerConfig{role: RoleClient}, in: cf(OpText, true, "x"), code: 1002},

		// 1007 invalid payload.
		{name: "invalid UTF-8 text", in: cf(OpText, true, "a\xffb"), code: 1007},
		{name: "overlong", in: cf(OpText, true, "\xc0\xaf"), code: 1007},
		{name: "surrogate", in: cf(OpText, true, "\xed\xa0\x80"), code: 1007},
		{name: "above U+10FFFF", in: cf(OpText, true, "\xf4\x90\x80\x80"), code: 1007},
		{name: "invalid UTF-8 in second fragment", in: cat(cf(OpText, false, "ok"), cf(OpContinuation, false, "\xed\xbf\xbf"), cf(OpContinuation, true, "")), code: 1007},
		{name: "invalid UTF-8 across fragments", in: cat(cf(OpText, false, "\xe0"), cf(OpContinuation, true, "\x80\x80")), code: 1007},
		{name: "truncated code point at message end", in: cat(cf(OpText, false, "a"), cf(OpContinuation, true, "\xe2\x82")), code: 1007},
		{name: "truncated code point single frame", in: cf(OpText, true, "\xe2\x82"), code: 1007},
		{name: "invalid UTF-8 close reason", in: cf(OpClose, true, closePayload(1000, "\xff")), code: 1007},
		{name: "binary is not validated", in: cf(OpBinary, true, "\xff"), want: []rec{{OpBinary, "\xff", 0}}},

		// 1009 too big.
		{name: "declared length over default limit, no payload yet", in: bigLen, code: 1009},
		{name: "single frame over limit", cfg: readerConfig{max: 4}, in: cf(OpText, true, "abcde"), code: 1009},
		{name: "fragments over limit", cfg: readerConfig{max: 4}, in: cat(cf(OpText, false, "abc"), cf(OpContinuation, true, "de")), code: 1009},
		{name: "no limit", cfg: readerConfig{max: -1}, in: cf(OpText, true, long), want: []rec{{OpText, long, 0}}},
		{name: "client role", cfg: readerConfig{role: RoleClient}, in: cat(sf(OpText, false, "a"), sf(OpPing, true, ""), sf(OpContinuation, true, "b")),
			want: []rec{{OpPing, "", 0}, {OpText, "ab", 0}}},
	}
	for _, op := range []Opcode{3, 4, 5, 6, 7, 0xb, 0xc, 0xd, 0xe, 0xf} {
		cases = append(cases, readerCase{name: "reserved opcode " + op.String(), in: cf(op, true, ""), code: 1002})
	}
	for _, code := range []uint16{0, 1, 999, 1004, 1005, 1006, 1015, 1016, 1100, 2000, 2999, 5000, 65535} {
		cases = append(cases, readerCase{name: fmt.Sprintf("close code %d", code), in: cf(OpClose, true, closePayload(code, "")), code: 1002})
	}
	for _, code := range []uint16{1000, 1001, 1002, 1003, 1007, 1008, 1009, 1010, 1011, 1012, 1013, 1014, 3000, 3999, 4000, 4999} {
		cases = append(cases, readerCase{name: fmt.Sprintf("close code %d", code), in: cf(OpClose, true, closePayload(code, "é")),
			want: []rec{{OpClose, "é", code}}})
	}
	return cases
}

func TestReader(t *testing.T) {
	for _, tc := range readerCases() {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSplits(t, tc.cfg, tc.in)
			want := result{events: tc.want, code: tc.code}
			if !got.equal(want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
}

func TestReaderZeroCopy(t *testing.T) {
	in := cat(cf(OpText, true, "hello"), cf(OpBinary, true, "x"))
	var r Reader
	n, ev, err := r.Next(in)
	if err != nil || ev.Op != OpText || string(ev.Payload) != "hello" {
		t.Fatalf("Next = %d, %v, %v", n, ev, err)
	}
	if &ev.Payload[0] != &in[2+4] {
		t.Fatal("payload is not a view into the input")
	}
	if !bytes.Equal(in[:n], append([]byte{0x81, 0x85}, append(testMask[:], "hello"...)...)) {
		t.Fatalf("consumed input = %x, want header then unmasked payload", in[:n])
	}
	if !bytes.Equal(in[n:], cf(OpBinary, true, "x")) {
		t.Fatal("unconsumed input was modified")
	}
}

// TestReaderWaitsForSmallFrames checks that a small frame is left
// unconsumed until complete, and a large one is consumed as it arrives.
func TestReaderWaitsForSmallFrames(t *testing.T) {
	small := cf(OpBinary, true, strings.Repeat("s", 100))
	var r Reader
	n, ev, err := r.Next(small[:50])
	if n != 0 || ev.Op != 0 || err != nil {
		t.Fatalf("partial small frame: Next = %d, %v, %v; want 0, no event", n, ev, err)
	}
	large := cf(OpBinary, true, strings.Repeat("L", 20000))
	r = Reader{ZeroCopyLimit: 1000}
	n, ev, err = r.Next(large[:5000])
	if n != 5000 || ev.Op != 0 || err != nil {
		t.Fatalf("partial large frame: Next = %d, %v, %v; want 5000, no event", n, ev, err)
	}
	n, ev, err = r.Next(large[5000:])
	if n != len(large)-5000 || ev.Op != OpBinary || string(ev.Payload) != strings.Repeat("L", 20000) || err != nil {
		t.Fatalf("rest of large frame: Next = %d, %v, %v", n, ev.Op, err)
	}
}

func TestReaderPool(t *testing.T) {
	pool := newCheckingPool(t)
	r := &Reader{Pool: pool, ZeroCopyLimit: -1}
	var in []byte
	var want []rec
	for i := range 20 {
		msg := strings.Repeat(string(rune('a'+i)), 100*i)
		in = append(in, cf(OpText, false, msg[:len(msg)/2])...)
		in = append(in, cf(OpPing, true, "p")...)
		in = append(in, cf(OpContinuation, true, msg[len(msg)/2:])...)
		in = append(in, cf(OpBinary, true, msg)...)
		want = append(want, rec{OpPing, "p", 0}, rec{OpText, msg, 0}, rec{OpBinary, msg, 0})
	}
	got := feed(r, bytewise(in)...)
	if !got.equal(result{events: want}) {
		t.Fatalf("got %v", got)
	}
	if pool.gets == 0 {
		t.Fatal("pool not used")
	}
	r.Reset()
	if len(pool.out) != 0 {
		t.Fatalf("%d buffers not returned after Reset", len(pool.out))
	}
}

// TestReaderBuffersReleasedAfterMessage checks that an idle Reader holds no
// buffer once the event using it has been superseded.
func TestReaderBuffersReleasedAfterMessage(t *testing.T) {
	pool := newCheckingPool(t)
	r := &Reader{Pool: pool}
	in := cat(cf(OpText, false, "ab"), cf(OpContinuation, true, "cd"))
	n, ev, err := r.Next(in)
	if err != nil || string(ev.Payload) != "abcd" || n != len(in) {
		t.Fatalf("Next = %d, %v, %v", n, ev, err)
	}
	if len(pool.out) != 1 {
		t.Fatalf("%d buffers lent while the event is live, want 1", len(pool.out))
	}
	if _, _, err := r.Next(nil); err != nil {
		t.Fatal(err)
	}
	if len(pool.out) != 0 {
		t.Fatalf("%d buffers still lent after the next call", len(pool.out))
	}
}

func TestReaderTrickledLargeFrameIsLinear(t *testing.T) {
	// A 1 MiB frame fed in 1 KiB pieces: each byte must be touched once, so
	// this stays fast; a quadratic Reader would take seconds.
	payload := bytes.Repeat([]byte("0123456789abcdef"), 1<<16)
	in := AppendMaskedFrame(nil, OpBinary, true, testMask, payload)
	var r Reader
	var buf []byte
	var got []byte
	for i := 0; i < len(in); i += 1024 {
		buf = append(buf, in[i:min(i+1024, len(in))]...)
		n, ev, err := r.Next(buf)
		if err != nil {
			t.Fatal(err)
		}
		buf = buf[n:]
		if ev.Op != 0 {
			got = ev.Payload
		}
		if len(buf) > DefaultZeroCopyLimit {
			t.Fatalf("%d bytes unconsumed", len(buf))
		}
	}
	if !bytes.Equal(got, payload) {
		t.Fatal("payload mismatch")
	}
}

func TestReaderReset(t *testing.T) {
	r := &Reader{MaxMessageSize: 10, Role: RoleClient}
	if _, _, err := r.Next(cf(OpText, true, "x")); err == nil {
		t.Fatal("want error for masked server frame")
	}
	r.Reset()
	if r.MaxMessageSize != 10 || r.Role != RoleClient {
		t.Fatal("Reset lost the configuration")
	}
	_, ev, err := r.Next(sf(OpText, true, "x"))
	if err != nil || string(ev.Payload) != "x" {
		t.Fatalf("after Reset: %v, %v", ev, err)
	}
}

func TestReaderCompressed(t *testing.T) {
	msgs := []string{"", "Hello", strings.Repeat("Hello, world! ", 200), "κόσμε"}
	for _, p := range []DeflateParams{{}, {ServerNoContextTakeover: true, ClientNoContextTakeover: true}, {ClientMaxWindowBits: 9}} {
		t.Run(p.String(), func(t *testing.T) {
			d := p.NewDeflater(RoleClient, 0)
			var in []byte
			var want []rec
			for _, m := range msgs {
				in = d.AppendMaskedFrame(in, OpText, testMask, []byte(m))
				want = append(want, rec{OpText, m, 0})
				// The same message fragmented: compress, then split.
				c := d.Compress(nil, []byte(m))
				in = append(in, cfRsv(OpBinary, false, Rsv1, c[:len(c)/2])...)
				in = append(in, cf(OpPing, true, "")...)
				in = append(in, AppendMaskedFrame(nil, OpContinuation, true, testMask, c[len(c)/2:])...)
				want = append(want, rec{OpPing, "", 0}, rec{OpBinary, m, 0})
			}
			got := checkSplits(t, readerConfig{deflate: &p}, in)
			if !got.equal(result{events: want}) {
				t.Fatalf("got %v", got)
			}
		})
	}
}

func TestReaderCompressedErrors(t *testing.T) {
	p := &DeflateParams{}
	d := p.NewDeflater(RoleClient, 0)
	bomb := d.Compress(nil, make([]byte, 1<<20+1))
	if len(bomb) > 2000 {
		t.Fatalf("bomb is %d bytes", len(bomb))
	}
	got := feed(readerConfig{deflate: p}.new(), cfRsv(OpBinary, true, Rsv1, bomb))
	if !got.equal(result{code: 1009}) {
		t.Fatalf("decompression bomb: got %v", got)
	}
	cases := []readerCase{
		{name: "bomb small limit", cfg: readerConfig{deflate: p, max: 100},
			in: cfRsv(OpBinary, true, Rsv1, d.Compress(nil, make([]byte, 101))), code: 1009},
		{name: "exactly at limit", cfg: readerConfig{deflate: &DeflateParams{ClientNoContextTakeover: true}, max: 100},
			in:   cfRsv(OpBinary, true, Rsv1, p.NewDeflater(RoleClient, 0).Compress(nil, make([]byte, 100))),
			want: []rec{{OpBinary, string(make([]byte, 100)), 0}}},
		{name: "no limit", cfg: readerConfig{deflate: p, max: -1},
			in:   cfRsv(OpBinary, true, Rsv1, p.NewDeflater(RoleClient, 0).Compress(nil, make([]byte, 3000))),
			want: []rec{{OpBinary, string(make([]byte, 3000)), 0}}},
		{name: "corrupt", cfg: readerConfig{deflate: p}, in: cfRsv(OpBinary, true, Rsv1, []byte{0xff, 0xff, 0xff}), code: 1007},
		{name: "invalid UTF-8 after inflate", cfg: readerConfig{deflate: p},
			in: cfRsv(OpText, true, Rsv1, p.NewDeflater(RoleClient, 0).Compress(nil, []byte("a\xff"))), code: 1007},
	}
	for _, tc := range cases {
		t.Run(tc.name, func(t *testing.T) {
			got := checkSplits(t, tc.cfg, tc.in)
			if want := (result{events: tc.want, code: tc.code}); !got.equal(want) {
				t.Fatalf("got %v\nwant %v", got, want)
			}
		})
	}
}
