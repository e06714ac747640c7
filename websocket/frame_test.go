package websocket

import (
	"bytes"
	"errors"
	"testing"
	"unicode/utf8"
)

func TestParseHeader(t *testing.T) {
	for _, h := range []FrameHeader{
		{Fin: true, Op: OpText, Length: 0},
		{Fin: false, Op: OpBinary, Length: 125},
		{Fin: true, Op: OpBinary, Length: 126},
		{Fin: true, Op: OpBinary, Length: 0xffff},
		{Fin: true, Op: OpBinary, Length: 0x10000},
		{Fin: true, Op: OpBinary, Length: 1<<63 - 1},
		{Fin: true, Op: OpPing, Masked: true, Mask: testMask, Length: 5},
		{Fin: true, Op: OpText, Rsv: Rsv1 | Rsv3, Masked: true, Mask: testMask, Length: 300},
		{Fin: true, Op: OpText, Masked: true, Mask: testMask, Length: 70000},
	} {
		enc := AppendHeader(nil, h)
		if len(enc) != HeaderLen(h) {
			t.Errorf("%+v: encoded %d bytes, HeaderLen %d", h, len(enc), HeaderLen(h))
		}
		for k := range len(enc) {
			if got, n, err := ParseHeader(enc[:k]); n != 0 || err != nil || got != (FrameHeader{}) {
				t.Errorf("%+v: prefix of %d bytes: %+v, %d, %v", h, k, got, n, err)
			}
		}
		got, n, err := ParseHeader(append(enc, 0xaa))
		if err != nil || n != len(enc) || got != h {
			t.Errorf("ParseHeader(%x) = %+v, %d, %v; want %+v, %d", enc, got, n, err, h, len(enc))
		}
	}
}

func TestParseHeaderNonMinimalAndMSB(t *testing.T) {
	// A 5-byte payload with a 64-bit length is accepted.
	h, n, err := ParseHeader([]byte{0x82, 127, 0, 0, 0, 0, 0, 0, 0, 5})
	if err != nil || n != 10 || h.Length != 5 {
		t.Fatalf("non-minimal: %+v, %d, %v", h, n, err)
	}
	_, n, err = ParseHeader([]byte{0x82, 127, 0x80, 0, 0, 0, 0, 0, 0, 0})
	var ce *CloseError
	if n != 0 || !errors.As(err, &ce) || ce.Code != CloseProtocolError {
		t.Fatalf("MSB set: %d, %v", n, err)
	}
}

func TestAppendFrame(t *testing.T) {
	got := AppendFrame([]byte("x"), OpText, true, []byte("Hello"))
	// RFC 6455 §5.7: a single-frame unmasked text message.
	if want := []byte("x\x81\x05\x48\x65\x6c\x6c\x6f"); !bytes.Equal(got, want) {
		t.Fatalf("AppendFrame = %x, want %x", got, want)
	}
	got = AppendMaskedFrame(nil, OpText, true, [4]byte{0x37, 0xfa, 0x21, 0x3d}, []byte("Hello"))
	// RFC 6455 §5.7: a single-frame masked text message.
	if want := []byte("\x81\x85\x37\xfa\x21\x3d\x7f\x9f\x4d\x51\x58"); !bytes.Equal(got, want) {
		t.Fatalf("AppendMaskedFrame = %x, want %x", got, want)
	}
	got = AppendFrame(nil, OpText, false, []byte("Hel"))
	if want := []byte("\x01\x03\x48\x65\x6c"); !bytes.Equal(got, want) {
		t.Fatalf("fragment = %x, want %x", got, want)
	}
}

func TestAppendClose(t *testing.T) {
	if got, want := AppendClose(nil, CloseNormal, "bye"), []byte("\x88\x05\x03\xe8bye"); !bytes.Equal(got, want) {
		t.Fatalf("AppendClose = %x, want %x", got, want)
	}
	if got := AppendClose(nil, CloseNoStatus, "ignored"); !bytes.Equal(got, []byte{0x88, 0}) {
		t.Fatalf("AppendClose(1005) = %x, want empty close", got)
	}
	long := bytes.Repeat([]byte("é"), 100) // 200 bytes
	p := AppendClosePayload(nil, CloseGoingAway, string(long))
	if len(p) > MaxControlPayload || len(p) < MaxControlPayload-1 || !utf8.Valid(p[2:]) {
		t.Fatalf("long reason cut to %d bytes, valid=%v", len(p), utf8.Valid(p[2:]))
	}
}

func TestValidCloseCode(t *testing.T) {
	for code := range 1 << 16 {
		want := code >= 1000 && code <= 1003 || code >= 1007 && code <= 1014 || code >= 3000 && code <= 4999
		if got := ValidCloseCode(uint16(code)); got != want {
			t.Errorf("ValidCloseCode(%d) = %v", code, got)
		}
	}
}

func TestOpcodeString(t *testing.T) {
	for op, want := range map[Opcode]string{OpContinuation: "continuation", OpText: "text", OpBinary: "binary",
		OpClose: "close", OpPing: "ping", OpPong: "pong", 0xb: "opcode(0xb)"} {
		if got := op.String(); got != want {
			t.Errorf("%d: %q, want %q", op, got, want)
		}
	}
	if RoleServer.String() != "server" || RoleClient.String() != "client" {
		t.Error("Role.String")
	}
}

func maskNaive(key [4]byte, pos int, b []byte) int {
	for i := range b {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}

func TestMaskBytes(t *testing.T) {
	key := [4]byte{1, 2, 3, 4}
	src := make([]byte, 1100)
	for i := range src {
		src[i] = byte(i * 7)
	}
	for n := 0; n <= len(src); n += 1 + n/16 {
		for pos := range 8 {
			for off := range 3 {
				a := clone(src[off : off+n])
				b := clone(a)
				pa := MaskBytes(key, pos, a)
				pb := maskNaive(key, pos, b)
				if pa != pb || !bytes.Equal(a, b) {
					t.Fatalf("n=%d pos=%d off=%d: mismatch", n, pos, off)
				}
			}
		}
	}
	// Unmasking in pieces equals unmasking at once.
	a := clone(src)
	MaskBytes(key, 0, a)
	b := clone(src)
	pos := 0
	for i := 0; i < len(b); i += 37 {
		pos = MaskBytes(key, pos, b[i:min(i+37, len(b))])
	}
	if !bytes.Equal(a, b) {
		t.Fatal("piecewise masking differs")
	}
}

func TestNewMask(t *testing.T) {
	seen := map[[4]byte]bool{}
	for range 100 {
		seen[NewMask()] = true
	}
	if len(seen) < 90 {
		t.Fatalf("only %d distinct masks in 100", len(seen))
	}
}
