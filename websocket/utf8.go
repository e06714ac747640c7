package websocket

import "unicode/utf8"

// utf8Validator checks UTF-8 fed in arbitrary pieces. A piece may end in
// the middle of a multi-byte sequence; the validator remembers how many
// continuation bytes are still due and which range the next one must fall
// in, so it rejects overlong encodings, surrogates and code points above
// U+10FFFF as soon as the offending byte arrives, exactly like utf8.Valid
// on the concatenation. The zero value is ready and expects a new message.
type utf8Validator struct {
	need   uint8 // continuation bytes still due for the current sequence
	lo, hi uint8 // range allowed for the next continuation byte
}

// complete reports whether the input fed so far ends on a sequence
// boundary.
func (v *utf8Validator) complete() bool { return v.need == 0 }

// reset prepares v for a new message.
func (v *utf8Validator) reset() { *v = utf8Validator{} }

// feed validates p as the continuation of the input fed so far. It returns
// false as soon as the input cannot be the prefix of valid UTF-8.
func (v *utf8Validator) feed(p []byte) bool {
	// Finish a sequence left incomplete by the previous piece.
	for v.need > 0 {
		if len(p) == 0 {
			return true
		}
		if c := p[0]; c < v.lo || c > v.hi {
			return false
		}
		p = p[1:]
		v.need--
		v.lo, v.hi = 0x80, 0xbf
	}
	// Find the start of the last sequence; if it is incomplete, validate
	// everything before it in bulk and keep its state.
	j := len(p) - 1
	for k := 0; k < 3 && j > 0 && p[j]&0xc0 == 0x80; k++ {
		j--
	}
	if j < 0 {
		return true
	}
	size, lo, hi := leadInfo(p[j])
	if size == 0 {
		if p[j] < 0x80 || p[j]&0xc0 == 0x80 {
			// ASCII or a stray continuation byte: no incomplete tail.
			return utf8.Valid(p)
		}
		return false
	}
	if len(p)-j >= size {
		return utf8.Valid(p)
	}
	if !utf8.Valid(p[:j]) {
		return false
	}
	v.need = uint8(size - 1)
	v.lo, v.hi = lo, hi
	for _, c := range p[j+1:] {
		if c < v.lo || c > v.hi {
			return false
		}
		v.need--
		v.lo, v.hi = 0x80, 0xbf
	}
	return true
}

// leadInfo returns the length of the sequence that lead byte c starts and
// the range of its first continuation byte, or size 0 if c is ASCII or
// cannot start a multi-byte sequence.
func leadInfo(c byte) (size int, lo, hi byte) {
	switch {
	case c >= 0xc2 && c <= 0xdf:
		return 2, 0x80, 0xbf
	case c == 0xe0:
		return 3, 0xa0, 0xbf // no overlong 3-byte forms
	case c == 0xed:
		return 3, 0x80, 0x9f // no surrogates U+D800..U+DFFF
	case c >= 0xe1 && c <= 0xef:
		return 3, 0x80, 0xbf
	case c == 0xf0:
		return 4, 0x90, 0xbf // no overlong 4-byte forms
	case c >= 0xf1 && c <= 0xf3:
		return 4, 0x80, 0xbf
	case c == 0xf4:
		return 4, 0x80, 0x8f // nothing above U+10FFFF
	}
	return 0, 0, 0
}
