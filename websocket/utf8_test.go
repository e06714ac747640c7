package websocket

import (
	"testing"
	"unicode/utf8"
)

var utf8Cases = []struct {
	s     string
	valid bool
}{
	{"", true},
	{"hello, world", true},
	{"\x00\x7f", true},
	{"\xc2\x80\xdf\xbf", true},                             // U+0080, U+07FF
	{"\xe0\xa0\x80\xef\xbf\xbf", true},                     // U+0800, U+FFFF
	{"\xf0\x90\x80\x80\xf4\x8f\xbf\xbf", true},             // U+10000, U+10FFFF
	{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5", true}, // κόσμε
	{"\xed\x9f\xbf\xee\x80\x80", true},                     // U+D7FF, U+E000
	{"a\x80", false},                                       // lone continuation
	{"\xbf", false},
	{"\xc0\x80", false},                 // overlong NUL
	{"\xc1\xbf", false},                 // overlong
	{"\xe0\x80\x80", false},             // overlong 3-byte
	{"\xe0\x9f\xbf", false},             // overlong 3-byte
	{"\xf0\x80\x80\x80", false},         // overlong 4-byte
	{"\xf0\x8f\xbf\xbf", false},         // overlong 4-byte
	{"\xed\xa0\x80", false},             // U+D800
	{"\xed\xbf\xbf", false},             // U+DFFF
	{"\xed\xa0\x80\xed\xb0\x80", false}, // surrogate pair
	{"\xf4\x90\x80\x80", false},         // U+110000
	{"\xf5\x80\x80\x80", false},
	{"\xf8\x88\x80\x80\x80", false}, // 5-byte form
	{"\xfe", false},
	{"\xff", false},
	{"\xc2", false},           // truncated
	{"\xe2\x82", false},       // truncated
	{"\xf0\x9f\x98", false},   // truncated
	{"ok\xf0\x9f\x98", false}, // truncated after ASCII
	{"\xc2\xc2\x80", false},
	{"\xe2\x82\xac\x80", false}, // extra continuation
	{"\xce\xba\xe1\xbd\xb9\xcf\x83\xce\xbc\xce\xb5\xed\xa0\x80edited", false},
}

// validatePieces feeds s to a validator in the pieces cut at cuts.
func validatePieces(s string, cuts ...int) bool {
	var v utf8Validator
	prev := 0
	for _, c := range append(cuts, len(s)) {
		if !v.feed([]byte(s[prev:c])) {
			return false
		}
		prev = c
	}
	return v.complete()
}

func TestUTF8Validator(t *testing.T) {
	for _, tc := range utf8Cases {
		if utf8.ValidString(tc.s) != tc.valid {
			t.Fatalf("bad case %q", tc.s)
		}
		for i := 0; i <= len(tc.s); i++ {
			for j := i; j <= len(tc.s); j++ {
				if got := validatePieces(tc.s, i, j); got != tc.valid {
					t.Errorf("%q cut at %d and %d: %v, want %v", tc.s, i, j, got, tc.valid)
				}
			}
		}
		cuts := make([]int, len(tc.s))
		for i := range cuts {
			cuts[i] = i
		}
		if got := validatePieces(tc.s, cuts...); got != tc.valid {
			t.Errorf("%q byte by byte: %v, want %v", tc.s, got, tc.valid)
		}
	}
}

// TestUTF8FailFast checks that an invalid byte is reported when it
// arrives, not at the end of the message.
func TestUTF8FailFast(t *testing.T) {
	for _, bad := range []string{"\xe0\x80", "\xed\xa0", "\xf4\x90", "\xc0", "\xf5", "\x80"} {
		var v utf8Validator
		if !v.feed([]byte("ok")) || v.feed([]byte(bad)) {
			t.Errorf("%q: not rejected on arrival", bad)
		}
	}
}

func FuzzUTF8Validator(f *testing.F) {
	for _, tc := range utf8Cases {
		f.Add([]byte(tc.s), uint8(1), uint8(2))
	}
	f.Fuzz(func(t *testing.T, b []byte, c1, c2 uint8) {
		i, j := int(c1), int(c2)
		if i > len(b) {
			i = len(b)
		}
		if j < i || j > len(b) {
			j = len(b)
		}
		if got, want := validatePieces(string(b), i, j), utf8.Valid(b); got != want {
			t.Fatalf("%q cut at %d,%d: %v, utf8.Valid %v", b, i, j, got, want)
		}
	})
}
