package websocket

import (
	"testing"
)

// fuzzConfig derives a Reader configuration from a fuzzer-chosen byte.
func fuzzConfig(mode uint8) readerConfig {
	var c readerConfig
	if mode&1 != 0 {
		c.role = RoleClient
	}
	switch mode >> 1 & 3 {
	case 1:
		c.max = 64
	case 2:
		c.max = 1
	}
	switch mode >> 3 & 3 {
	case 1:
		c.zeroCopy = -1
	case 2:
		c.zeroCopy = 20
	}
	switch mode >> 5 & 3 {
	case 1:
		c.deflate = &DeflateParams{}
	case 2:
		c.deflate = &DeflateParams{ClientNoContextTakeover: true, ServerNoContextTakeover: true}
	}
	return c
}

// FuzzReader feeds arbitrary bytes to a Reader whole, split in two at a
// fuzzer-chosen point, and in small pieces, and requires the same events
// and error from each, plus the invariants checked by feed: no panic,
// consumed within the input, bounded unconsumed input, sticky errors.
func FuzzReader(f *testing.F) {
	d := DeflateParams{}.NewDeflater(RoleClient, 0)
	seeds := [][]byte{
		cf(OpText, true, "hello"),
		cat(cf(OpText, false, "hel"), cf(OpPing, true, "p"), cf(OpContinuation, true, "lo")),
		cat(cf(OpBinary, true, string(make([]byte, 300))), cf(OpClose, true, closePayload(1000, "bye"))),
		cf(OpClose, true, closePayload(1005, "")),
		cf(OpClose, true, "\x03"),
		cf(OpText, true, "\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5"),
		cat(cf(OpText, false, "\xf0\x9f"), cf(OpContinuation, true, "\x98\x80")),
		cf(OpText, true, "\xed\xa0\x80"),
		cfRsv(OpText, true, Rsv1, d.Compress(nil, []byte("Hello, Hello, Hello"))),
		cfRsv(OpText, true, Rsv1, []byte{0xf2, 0x48, 0xcd, 0xc9, 0xc9, 0x07, 0x00}),
		sf(OpText, true, "server"),
		cat(sf(OpBinary, false, "a"), sf(OpContinuation, true, "b")),
		{0x82, 0xff, 0x80, 0, 0, 0, 0, 0, 0, 1},
		{0x82, 0xfe, 0x01, 0x00},
	}
	for i, s := range seeds {
		f.Add(s, uint16(len(s)/2), uint8(i*37))
	}
	f.Fuzz(func(t *testing.T, in []byte, split uint16, mode uint8) {
		if len(in) > 4096 {
			return
		}
		c := fuzzConfig(mode)
		want := feed(c.new(), clone(in))
		if want.err != "" {
			t.Fatalf("whole: %s", want.err)
		}
		k := int(split) % (len(in) + 1)
		if got := feed(c.new(), splitAt(clone(in), k)...); !got.equal(want) {
			t.Fatalf("split at %d:\n got %v\nwant %v", k, got, want)
		}
		var pieces [][]byte
		step := 1 + int(mode)%7
		for i := 0; i < len(in); i += step {
			pieces = append(pieces, in[i:min(i+step, len(in))])
		}
		if got := feed(c.new(), pieces...); !got.equal(want) {
			t.Fatalf("pieces of %d:\n got %v\nwant %v", step, got, want)
		}
	})
}
