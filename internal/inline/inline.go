// Package inline makes a value and a short run of bytes in one object:
// the bytes follow the value, at offset unsafe.Sizeof of it, so the value
// needs no slice or string header for them (8 to 16 bytes a value) and the
// two share cache lines. The broker's subscriptions (their filters) and
// the gateway's directory records (their device ids) are made this way.
//
// The owner finds the bytes again from the value's address and its own
// length field; New's bytes are exactly the n asked for, and nothing else
// may be stored after the value.
package inline

// MaxBytes is the most bytes New places after a value.
const MaxBytes = 160

// New returns a new H and n bytes right after it in the same object, for
// 0 <= n <= MaxBytes; ok is false for a larger n (use WithString). The
// room after the value is rounded up to 16, 32, 48, 64, 96, 128 or 160
// bytes: with a 32-byte H each is one of the runtime's size classes.
func New[H any](n int) (h *H, tail []byte, ok bool) {
	switch {
	case n < 0:
		return nil, nil, false
	case n <= 16:
		x := new(struct {
			h H
			b [16]byte
		})
		return &x.h, x.b[:n], true
	case n <= 32:
		x := new(struct {
			h H
			b [32]byte
		})
		return &x.h, x.b[:n], true
	case n <= 48:
		x := new(struct {
			h H
			b [48]byte
		})
		return &x.h, x.b[:n], true
	case n <= 64:
		x := new(struct {
			h H
			b [64]byte
		})
		return &x.h, x.b[:n], true
	case n <= 96:
		x := new(struct {
			h H
			b [96]byte
		})
		return &x.h, x.b[:n], true
	case n <= 128:
		x := new(struct {
			h H
			b [128]byte
		})
		return &x.h, x.b[:n], true
	case n <= MaxBytes:
		x := new(struct {
			h H
			b [MaxBytes]byte
		})
		return &x.h, x.b[:n], true
	}
	return nil, nil, false
}

// WithString returns a new H followed in its object by a string header
// set to s, for bytes too long for New. The header sits at offset
// unsafe.Sizeof(H) only when that is a multiple of the pointer size,
// which the caller's type must keep (a size test). s is kept as given:
// copy a view of a buffer first.
func WithString[H any](s string) *H {
	x := new(struct {
		h H
		s string
	})
	x.s = s
	return &x.h
}
