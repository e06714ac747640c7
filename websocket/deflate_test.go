package websocket

import (
	"bytes"
	"errors"
	"math/rand/v2"
	"strings"
	"testing"
)

// RFC 7692 §7.2.3 examples, each decompressing to "Hello".
var rfc7692Hello = []struct {
	name string
	data []byte
}{
	{"7.2.3.1 one compressed block", []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}},
	{"7.2.3.3 no compression", []byte{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}},
	{"7.2.3.4 BFINAL set", []byte{0xf3, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00, 0x00}},
	{"7.2.3.5 two blocks", []byte{0xf2, 0x48, 0x05, 0x00, 0x00, 0x00, 0xff, 0xff, 0xca, 0xc9, 0xc9, 0x07, 0x00}},
}

func TestInflateRFCExamples(t *testing.T) {
	for _, tc := range rfc7692Hello {
		for _, p := range []DeflateParams{{}, {ClientNoContextTakeover: true}} {
			f := p.NewInflater(RoleServer)
			for range 3 {
				got, err := f.Decompress(nil, tc.data, 100)
				if err != nil || string(got) != "Hello" {
					t.Errorf("%s (%v): %q, %v", tc.name, p, got, err)
				}
			}
		}
	}
}

// TestInflateSharedWindow is RFC 7692 §7.2.3.2: the second "Hello" refers
// back into the first message.
func TestInflateSharedWindow(t *testing.T) {
	first := []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}
	second := []byte{0xf2, 0x00, 0x11, 0x00, 0x00}
	f := DeflateParams{}.NewInflater(RoleServer)
	for i, msg := range [][]byte{first, second} {
		got, err := f.Decompress([]byte("x"), msg, 100)
		if err != nil || string(got) != "xHello" {
			t.Fatalf("message %d: %q, %v", i, got, err)
		}
	}
	// Without context takeover the back-reference is invalid.
	f = DeflateParams{ClientNoContextTakeover: true}.NewInflater(RoleServer)
	if _, err := f.Decompress(nil, first, 100); err != nil {
		t.Fatal(err)
	}
	var ce *CloseError
	if _, err := f.Decompress(nil, second, 100); !errors.As(err, &ce) || ce.Code != CloseInvalidPayload {
		t.Fatalf("second message without context: %v, want 1007", err)
	}
}

func TestDeflateHello(t *testing.T) {
	// At level 9 the output is RFC 7692 §7.2.3.1 byte for byte, and the
	// second message is §7.2.3.2's back-reference into the first.
	d := DeflateParams{}.NewDeflater(RoleServer, 9)
	if got, want := d.Compress(nil, []byte("Hello")), []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}; !bytes.Equal(got, want) {
		t.Errorf("level 9: Hello compresses to % x, want % x", got, want)
	}
	second := d.Compress(nil, []byte("Hello"))
	f := DeflateParams{}.NewInflater(RoleClient)
	for _, c := range [][]byte{{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}, second} {
		if out, err := f.Decompress(nil, c, 5); err != nil || string(out) != "Hello" {
			t.Errorf("% x decompresses to %q, %v", c, out, err)
		}
	}
	// At the default level 1 a tiny message becomes a stored block, which
	// is §7.2.3.3 byte for byte.
	d = DeflateParams{}.NewDeflater(RoleServer, 0)
	if got, want := d.Compress(nil, []byte("Hello")), []byte{0x00, 0x05, 0x00, 0xfa, 0xff, 0x48, 0x65, 0x6c, 0x6c, 0x6f, 0x00}; !bytes.Equal(got, want) {
		t.Errorf("level 1: Hello compresses to % x, want % x", got, want)
	}
	// An empty message compresses to a single 0x00 byte (RFC 7692 §7.2.3.6).
	if got := d.Compress(nil, nil); !bytes.Equal(got, []byte{0x00}) {
		t.Errorf("empty message compresses to % x, want 00", got)
	}
}

func testMessages() [][]byte {
	rng := rand.New(rand.NewPCG(1, 2))
	msgs := [][]byte{nil, []byte("Hello"), []byte("Hello")}
	for _, n := range []int{1, 100, 4000, 70000} {
		text := make([]byte, n)
		words := strings.Fields("the quick brown fox jumps over the lazy dog κόσμε 😀")
		for i := 0; i < n; {
			i += copy(text[i:], words[rng.IntN(len(words))]+" ")
		}
		random := make([]byte, n)
		for i := range random {
			random[i] = byte(rng.Uint32())
		}
		msgs = append(msgs, text, random)
	}
	return msgs
}

func TestDeflateRoundTrip(t *testing.T) {
	params := []DeflateParams{
		{},
		{ServerNoContextTakeover: true, ClientNoContextTakeover: true},
		{ServerNoContextTakeover: true},
		{ServerMaxWindowBits: 8, ClientMaxWindowBits: 10},
		{ServerMaxWindowBits: 12, ServerNoContextTakeover: true},
	}
	for _, p := range params {
		for _, level := range []int{0, -2, 9} {
			for _, role := range []Role{RoleServer, RoleClient} {
				peer := RoleClient
				if role == RoleClient {
					peer = RoleServer
				}
				d := p.NewDeflater(role, level)
				f := p.NewInflater(peer)
				for i, m := range testMessages() {
					c := d.Compress([]byte("prefix"), m)
					if !bytes.HasPrefix(c, []byte("prefix")) {
						t.Fatal("prefix lost")
					}
					out, err := f.Decompress([]byte("pre"), c[6:], len(m))
					if err != nil || !bytes.Equal(out[3:], m) || string(out[:3]) != "pre" {
						t.Fatalf("%v level %d %v message %d (%d bytes): err %v, equal %v",
							p, level, role, i, len(m), err, bytes.Equal(out[3:], m))
					}
				}
				d.Reset()
				f.Reset()
			}
		}
	}
}

func TestDeflateContextTakeoverCompressesBetter(t *testing.T) {
	msg := []byte(strings.Repeat("a fairly long message that repeats exactly. ", 5))
	ctx := DeflateParams{}.NewDeflater(RoleServer, 0)
	noCtx := DeflateParams{ServerNoContextTakeover: true}.NewDeflater(RoleServer, 0)
	ctx.Compress(nil, msg)
	a, b := len(ctx.Compress(nil, msg)), len(noCtx.Compress(nil, msg))
	if a >= b {
		t.Fatalf("second message with context %d bytes, without %d", a, b)
	}
}

func TestDeflaterAppendFrame(t *testing.T) {
	for _, n := range []int{0, 5, 120, 200, 70000} {
		msg := bytes.Repeat([]byte("ab"), n/2)
		for _, masked := range []bool{false, true} {
			p := DeflateParams{}
			d := p.NewDeflater(RoleServer, 0)
			var frame []byte
			role := RoleClient
			if masked {
				frame = d.AppendMaskedFrame([]byte("xyz"), OpBinary, testMask, msg)
				role = RoleServer
			} else {
				frame = d.AppendFrame([]byte("xyz"), OpBinary, msg)
			}
			if string(frame[:3]) != "xyz" {
				t.Fatal("prefix lost")
			}
			r := &Reader{Role: role, Inflater: p.NewInflater(role)}
			n, ev, err := r.Next(frame[3:])
			if err != nil || n != len(frame)-3 || ev.Op != OpBinary || !bytes.Equal(ev.Payload, msg) {
				t.Fatalf("n=%d masked=%v: Next = %d, %v, %v", len(msg), masked, n, ev.Op, err)
			}
		}
	}
}

func TestInflateErrors(t *testing.T) {
	var ce *CloseError
	f := DeflateParams{}.NewInflater(RoleServer)
	zeros := DeflateParams{}.NewDeflater(RoleClient, 0).Compress(nil, make([]byte, 10<<20))
	if _, err := f.Decompress(nil, zeros, 1<<20); !errors.As(err, &ce) || ce.Code != CloseMessageTooBig {
		t.Fatalf("bomb: %v", err)
	}
	for _, bad := range [][]byte{{0xff}, {0x07}, {0xf2, 0x48, 0xcd}, {0x00, 0x05, 0x00, 0x00, 0x00}} {
		f := DeflateParams{ClientNoContextTakeover: true}.NewInflater(RoleServer)
		if out, err := f.Decompress(nil, bad, 100); !errors.As(err, &ce) || ce.Code != CloseInvalidPayload {
			t.Errorf("% x: %q, %v; want 1007", bad, out, err)
		}
	}
}

func TestNegotiateDeflate(t *testing.T) {
	on := DeflateConfig{Enabled: true}
	cases := []struct {
		cfg    DeflateConfig
		offers []string
		want   string // response, "" for declined
	}{
		{on, []string{"permessage-deflate"}, "permessage-deflate"},
		{on, []string{"permessage-deflate; client_max_window_bits"}, "permessage-deflate"},
		{on, []string{"permessage-deflate; client_max_window_bits=10"}, "permessage-deflate"},
		{on, []string{"Permessage-Deflate; Client_Max_Window_Bits"}, "permessage-deflate"},
		{DeflateConfig{}, []string{"permessage-deflate"}, ""},
		{on, []string{"x-webkit-deflate-frame"}, ""},
		{on, nil, ""},
		{on, []string{""}, ""},
		{on, []string{"permessage-deflate; server_no_context_takeover"}, "permessage-deflate; server_no_context_takeover"},
		{on, []string{"permessage-deflate; client_no_context_takeover"}, "permessage-deflate; client_no_context_takeover"},
		{on, []string{"permessage-deflate; server_max_window_bits=10"}, "permessage-deflate; server_max_window_bits=10"},
		{on, []string{`permessage-deflate; server_max_window_bits="8"`}, "permessage-deflate; server_max_window_bits=8"},
		{on, []string{"permessage-deflate;server_max_window_bits=15;client_max_window_bits=15"}, "permessage-deflate; server_max_window_bits=15"},
		{DeflateConfig{Enabled: true, ServerNoContextTakeover: true, ClientNoContextTakeover: true},
			[]string{"permessage-deflate"}, "permessage-deflate; server_no_context_takeover; client_no_context_takeover"},
		// Invalid offers are ignored; a later valid one is taken.
		{on, []string{"permessage-deflate; server_max_window_bits=7, permessage-deflate; client_no_context_takeover"},
			"permessage-deflate; client_no_context_takeover"},
		{on, []string{"permessage-deflate; server_max_window_bits=16"}, ""},
		{on, []string{"permessage-deflate; server_max_window_bits=08"}, ""},
		{on, []string{"permessage-deflate; server_max_window_bits"}, ""},
		{on, []string{"permessage-deflate; client_max_window_bits=abc"}, ""},
		{on, []string{"permessage-deflate; client_max_window_bits=1"}, ""},
		{on, []string{"permessage-deflate; server_no_context_takeover=1"}, ""},
		{on, []string{"permessage-deflate; client_no_context_takeover; client_no_context_takeover"}, ""},
		{on, []string{"permessage-deflate; unknown"}, ""},
		{on, []string{"permessage-deflate; a; b; c; d; e"}, ""},
		{on, []string{"permessage-deflate; =1"}, ""},
		{on, []string{`foo; bar="a,b;c", permessage-deflate`}, "permessage-deflate"},
		{on, []string{`foo; bar="unterminated, permessage-deflate`}, ""},
		{on, []string{"foo @ bar, permessage-deflate"}, "permessage-deflate"},
		{on, []string{"foo", "permessage-deflate; server_no_context_takeover"}, "permessage-deflate; server_no_context_takeover"},
	}
	for _, tc := range cases {
		var offers [][]byte
		for _, o := range tc.offers {
			offers = append(offers, []byte(o))
		}
		p, ok := NegotiateDeflate(tc.cfg, offers...)
		got := ""
		if ok {
			got = string(p.AppendResponse(nil))
		}
		if got != tc.want {
			t.Errorf("%+v %q: response %q, want %q", tc.cfg, tc.offers, got, tc.want)
		}
	}
}

func TestDeflateClientNegotiation(t *testing.T) {
	cfg := DeflateConfig{Enabled: true, ClientNoContextTakeover: true}
	offer := cfg.AppendOffer(nil)
	if string(offer) != "permessage-deflate; client_no_context_takeover; client_max_window_bits" {
		t.Fatalf("offer %q", offer)
	}
	p, ok := NegotiateDeflate(DeflateConfig{Enabled: true, ServerNoContextTakeover: true}, offer)
	if !ok {
		t.Fatal("server declined its own kind of offer")
	}
	got, ok, err := ParseDeflateResponse(p.AppendResponse(nil))
	if err != nil || !ok || got != p {
		t.Fatalf("ParseDeflateResponse = %+v, %v, %v; want %+v", got, ok, err, p)
	}
	for _, tc := range []struct {
		resp string
		ok   bool
		err  bool
	}{
		{"", false, false},
		{"permessage-deflate; client_max_window_bits=9", true, false},
		{"permessage-deflate; server_max_window_bits=9", true, false},
		{"permessage-deflate; client_max_window_bits", false, true},
		{"permessage-deflate; server_no_context_takeover=x", false, true},
		{"permessage-deflate, permessage-deflate", false, true},
		{"permessage-deflate; bogus", false, true},
		{"x-other", false, true},
	} {
		var vals [][]byte
		if tc.resp != "" {
			vals = append(vals, []byte(tc.resp))
		}
		_, ok, err := ParseDeflateResponse(vals...)
		if ok != tc.ok || (err != nil) != tc.err {
			t.Errorf("%q: ok=%v err=%v", tc.resp, ok, err)
		}
	}
}

// TestInflaterIdleHoldsNothing checks that without context takeover a
// codec keeps no compressor or decompressor between messages.
func TestInflaterIdleHoldsNothing(t *testing.T) {
	p := DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true}
	d, f := p.NewDeflater(RoleServer, 0), p.NewInflater(RoleServer)
	c := d.Compress(nil, []byte("Hello"))
	if _, err := f.Decompress(nil, c, -1); err != nil {
		t.Fatal(err)
	}
	if d.st != nil || f.st != nil || f.window != nil {
		t.Fatal("no-context-takeover codec holds state between messages")
	}
	p = DeflateParams{}
	d, f = p.NewDeflater(RoleServer, 0), p.NewInflater(RoleServer)
	c = d.Compress(nil, []byte("Hello"))
	if _, err := f.Decompress(nil, c, -1); err != nil {
		t.Fatal(err)
	}
	if d.st == nil || f.st == nil || len(f.window) != 5 {
		t.Fatal("context-takeover codec dropped its state")
	}
	d.Reset()
	f.Reset()
	if d.st != nil || f.st != nil || f.window != nil {
		t.Fatal("Reset kept state")
	}
}

// FuzzNegotiateDeflate checks that any header value is handled without a
// panic or a hang, and that an accepted offer yields a response the
// client side parses back to the same parameters.
func FuzzNegotiateDeflate(f *testing.F) {
	for _, s := range []string{
		"permessage-deflate",
		"permessage-deflate; client_max_window_bits; server_max_window_bits=10",
		`foo; bar="a,b;c", permessage-deflate; server_no_context_takeover`,
		"permessage-deflate; server_max_window_bits=\"1\\5\", x",
		", ;=\"",
	} {
		f.Add([]byte(s), uint8(0))
	}
	f.Fuzz(func(t *testing.T, offer []byte, flags uint8) {
		cfg := DeflateConfig{Enabled: true, ServerNoContextTakeover: flags&1 != 0, ClientNoContextTakeover: flags&2 != 0}
		p, ok := NegotiateDeflate(cfg, offer)
		ParseDeflateResponse(offer)
		if !ok {
			return
		}
		got, ok, err := ParseDeflateResponse(p.AppendResponse(nil))
		if err != nil || !ok || got != p {
			t.Fatalf("%q: response %q parses to %+v, %v, %v", offer, p.AppendResponse(nil), got, ok, err)
		}
	})
}

func TestDeflaterZeroValue(t *testing.T) {
	var d Deflater
	var f Inflater
	for range 3 {
		out, err := f.Decompress(nil, d.Compress(nil, []byte("Hello")), -1)
		if err != nil || string(out) != "Hello" {
			t.Fatalf("%q, %v", out, err)
		}
	}
	d.Reset()
	f.Reset()
}
