// Package pool provides size-classed byte buffers shared by a process.
//
// Get(n) returns a slice of length n whose capacity is the smallest class
// (powers of two from 256 B to 4 MiB) that fits; Put returns it. Requests
// above the largest class are allocated and left to the garbage collector.
// All functions are safe for concurrent use.
package pool

import (
	"math/bits"
	"sync"
	"unsafe"
)

const (
	minShift = 8  // 256 B
	maxShift = 22 // 4 MiB
	classes  = maxShift - minShift + 1
)

// MaxSize is the largest size that is pooled.
const MaxSize = 1 << maxShift

var pools [classes]sync.Pool

func class(n int) int {
	if n <= 1<<minShift {
		return 0
	}
	return bits.Len(uint(n-1)) - minShift
}

// Get returns a buffer of length n from the pool.
func Get(n int) []byte {
	if n > MaxSize {
		return make([]byte, n)
	}
	c := class(n)
	if p, _ := pools[c].Get().(unsafe.Pointer); p != nil {
		return unsafe.Slice((*byte)(p), 1<<(c+minShift))[:n]
	}
	return make([]byte, n, 1<<(c+minShift))
}

// Put returns b to the pool. Buffers whose capacity is not exactly a class
// size (not obtained from Get) are dropped. b must not be used afterwards.
func Put(b []byte) {
	c := cap(b)
	if c < 1<<minShift || c > MaxSize || c&(c-1) != 0 {
		return
	}
	// Storing the array pointer (pointer-shaped, so boxing it allocates
	// nothing) rather than a *[]byte keeps Put allocation-free.
	pools[bits.Len(uint(c))-1-minShift].Put(unsafe.Pointer(unsafe.SliceData(b[:c])))
}

// Grow returns a buffer holding b's contents with room for at least extra more
// bytes, taking a larger buffer from the pool and returning b when needed.
func Grow(b []byte, extra int) []byte {
	need := len(b) + extra
	if need <= cap(b) {
		return b
	}
	nb := Get(need)[:len(b)]
	copy(nb, b)
	Put(b)
	return nb
}
