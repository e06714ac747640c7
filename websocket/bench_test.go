package websocket

import (
	"bytes"
	"fmt"
	"runtime"
	"strings"
	"testing"
)

// benchNext reads frame over and over; each iteration restores the masked
// input, which Next unmasks in place.
func benchNext(b *testing.B, r *Reader, frame []byte) {
	in := clone(frame)
	b.SetBytes(int64(len(frame)))
	b.ReportAllocs()
	b.ResetTimer()
	for range b.N {
		copy(in, frame)
		for off := 0; off < len(in); {
			n, ev, err := r.Next(in[off:])
			if err != nil || n == 0 && ev.Op == 0 {
				b.Fatalf("Next = %d, %v, %v", n, ev.Op, err)
			}
			off += n
		}
	}
}

func BenchmarkReaderNext(b *testing.B) {
	text := strings.Repeat("abcdefgh", 16) // 128 bytes
	b.Run("text-128B", func(b *testing.B) {
		benchNext(b, &Reader{}, cf(OpText, true, text))
	})
	b.Run("binary-128B", func(b *testing.B) {
		benchNext(b, &Reader{}, cf(OpBinary, true, text))
	})
	b.Run("text-16KiB", func(b *testing.B) {
		benchNext(b, &Reader{}, cf(OpText, true, strings.Repeat(text, 128)))
	})
	b.Run("fragmented-4x32B-pooled", func(b *testing.B) {
		frames := cat(cf(OpText, false, text[:32]), cf(OpContinuation, false, text[32:64]),
			cf(OpContinuation, false, text[64:96]), cf(OpContinuation, true, text[96:]))
		benchNext(b, &Reader{Pool: &slicePool{}}, frames)
	})
	b.Run("compressed-1KiB-no-context", func(b *testing.B) {
		p := DeflateParams{ClientNoContextTakeover: true}
		msg := strings.Repeat("Hello, world! ", 73)
		c := p.NewDeflater(RoleClient, 0).Compress(nil, []byte(msg))
		benchNext(b, &Reader{Inflater: p.NewInflater(RoleServer), Pool: &slicePool{}}, cfRsv(OpText, true, Rsv1, c))
	})
}

// slicePool is a one-slot BufferPool, enough to show the Reader does not
// allocate when its pool does not.
type slicePool struct{ free [][]byte }

func (p *slicePool) Get(size int) []byte {
	for i, b := range p.free {
		if cap(b) >= size {
			p.free = append(p.free[:i], p.free[i+1:]...)
			return b
		}
	}
	return make([]byte, 0, size)
}

func (p *slicePool) Put(b []byte) { p.free = append(p.free, b) }

func TestReaderNextDoesNotAllocate(t *testing.T) {
	frame := cf(OpText, true, strings.Repeat("abcdefgh", 16))
	in := clone(frame)
	var r Reader
	allocs := testing.AllocsPerRun(100, func() {
		copy(in, frame)
		if _, ev, err := r.Next(in); err != nil || ev.Op != OpText {
			t.Fatal(ev.Op, err)
		}
	})
	if allocs != 0 {
		t.Fatalf("Next of a 128-byte text frame allocates %v times", allocs)
	}
}

func BenchmarkAppendFrame(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 128)
	dst := make([]byte, 0, 256)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for range b.N {
		dst = AppendFrame(dst[:0], OpText, true, payload)
	}
}

func BenchmarkAppendMaskedFrame(b *testing.B) {
	payload := bytes.Repeat([]byte("x"), 128)
	dst := make([]byte, 0, 256)
	b.SetBytes(int64(len(payload)))
	b.ReportAllocs()
	for range b.N {
		dst = AppendMaskedFrame(dst[:0], OpText, true, testMask, payload)
	}
}

func BenchmarkMaskBytes(b *testing.B) {
	for _, n := range []int{16, 128, 1024, 16 << 10, 1 << 20} {
		buf := make([]byte, n)
		b.Run(fmt.Sprint(n), func(b *testing.B) {
			b.SetBytes(int64(n))
			for range b.N {
				MaskBytes(testMask, 1, buf)
			}
		})
	}
}

func BenchmarkDeflate(b *testing.B) {
	msg := []byte(strings.Repeat("Hello, world! The quick brown fox. ", 30)) // ~1 KiB
	for _, p := range []DeflateParams{{}, {ServerNoContextTakeover: true, ClientNoContextTakeover: true}} {
		name := "context-takeover"
		if p.ServerNoContextTakeover {
			name = "no-context-takeover"
		}
		b.Run("compress/"+name, func(b *testing.B) {
			d := p.NewDeflater(RoleServer, 0)
			dst := make([]byte, 0, 2048)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for range b.N {
				dst = d.Compress(dst[:0], msg)
			}
		})
		b.Run("decompress/"+name, func(b *testing.B) {
			// A stream of consecutive messages, so that with context
			// takeover each one refers back into the previous ones.
			d := p.NewDeflater(RoleClient, 0)
			var stream [][]byte
			for range 256 {
				stream = append(stream, d.Compress(nil, msg))
			}
			f := p.NewInflater(RoleServer)
			dst := make([]byte, 0, 2048)
			b.SetBytes(int64(len(msg)))
			b.ReportAllocs()
			for i := range b.N {
				if i%len(stream) == 0 {
					f.Reset()
				}
				var err error
				if dst, err = f.Decompress(dst[:0], stream[i%len(stream)], -1); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkDeflateMemoryPerConn measures the heap one connection's
// compression state holds while idle after one message in each direction:
// a server Deflater and Inflater per connection, 200 connections.
func BenchmarkDeflateMemoryPerConn(b *testing.B) {
	msg := []byte(strings.Repeat("Hello, world! The quick brown fox. ", 30))
	for _, tc := range []struct {
		name string
		p    DeflateParams
	}{
		{"context-takeover", DeflateParams{}},
		{"server-no-context-takeover", DeflateParams{ServerNoContextTakeover: true}},
		{"no-context-takeover", DeflateParams{ServerNoContextTakeover: true, ClientNoContextTakeover: true}},
	} {
		b.Run(tc.name, func(b *testing.B) {
			const conns = 200
			c := tc.p.NewDeflater(RoleClient, 0).Compress(nil, msg)
			var deflaters []*Deflater
			var inflaters []*Inflater
			var perConn, deflate, inflate float64
			for range b.N {
				deflaters, inflaters = deflaters[:0], inflaters[:0]
				before := heapInUse()
				for range conns {
					d, f := tc.p.NewDeflater(RoleServer, 0), tc.p.NewInflater(RoleServer)
					d.Compress(nil, msg)
					deflaters = append(deflaters, d)
					inflaters = append(inflaters, f)
				}
				mid := heapInUse()
				for _, f := range inflaters {
					if _, err := f.Decompress(nil, c, -1); err != nil {
						b.Fatal(err)
					}
				}
				after := heapInUse()
				deflate = float64(mid-before) / conns
				inflate = float64(after-mid) / conns
				perConn = float64(after-before) / conns
				for i := range deflaters {
					deflaters[i].Reset()
					inflaters[i].Reset()
				}
			}
			b.ReportMetric(perConn, "B/conn")
			b.ReportMetric(deflate, "deflate-B/conn")
			b.ReportMetric(inflate, "inflate-B/conn")
			runtime.KeepAlive(deflaters)
			runtime.KeepAlive(inflaters)
		})
	}
}

// heapInUse returns the live heap after a full collection. The pools are
// emptied too, so only state reachable from connections counts.
func heapInUse() int64 {
	runtime.GC()
	runtime.GC()
	var m runtime.MemStats
	runtime.ReadMemStats(&m)
	return int64(m.HeapAlloc)
}
