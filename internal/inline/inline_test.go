package inline

import (
	"testing"
	"unsafe"
)

type rec struct {
	a, b uint64
	n    uint16
	_    [14]byte
}

// The bytes follow the value at its size, exactly n of them, for every n
// up to MaxBytes; past it New refuses and WithString's header follows the
// value.
func TestNew(t *testing.T) {
	for n := 0; n <= MaxBytes+1; n++ {
		h, b, ok := New[rec](n)
		if n > MaxBytes {
			if ok {
				t.Fatalf("n %d: ok past MaxBytes", n)
			}
			continue
		}
		if !ok || len(b) != n {
			t.Fatalf("n %d: ok %v, %d bytes", n, ok, len(b))
		}
		if n > 0 && unsafe.Pointer(&b[0]) != unsafe.Add(unsafe.Pointer(h), unsafe.Sizeof(rec{})) {
			t.Fatalf("n %d: the bytes do not follow the value", n)
		}
		for i := range b {
			b[i] = byte(i)
		}
		h.a, h.b, h.n = ^uint64(0), ^uint64(0), 0xffff // writes to the value leave the bytes alone
		for i := range b {
			if b[i] != byte(i) {
				t.Fatalf("n %d: byte %d changed", n, i)
			}
		}
	}
	if _, _, ok := New[rec](-1); ok {
		t.Fatal("ok for a negative length")
	}
	h := WithString[rec]("a long run of bytes")
	if s := *(*string)(unsafe.Add(unsafe.Pointer(h), unsafe.Sizeof(rec{}))); s != "a long run of bytes" {
		t.Fatalf("string after the value: %q", s)
	}
}

// One object per value, in the size class its room was rounded to.
func TestNewAllocs(t *testing.T) {
	for _, n := range []int{0, 16, 17, 96, 160} {
		if a := testing.AllocsPerRun(100, func() { New[rec](n) }); a != 1 {
			t.Errorf("n %d: %v allocations, want 1", n, a)
		}
	}
}
