package websocket

import (
	"bytes"
	"errors"
	"fmt"
	"testing"
)

// testMask is the masking key of frames built by the tests.
var testMask = [4]byte{0x37, 0xfa, 0x21, 0x3d}

// cf returns a masked client frame.
func cf(op Opcode, fin bool, payload string) []byte {
	return AppendMaskedFrame(nil, op, fin, testMask, []byte(payload))
}

// cfRsv returns a masked client frame with reserved bits rsv.
func cfRsv(op Opcode, fin bool, rsv byte, payload []byte) []byte {
	b := AppendMaskedFrame(nil, op, fin, testMask, payload)
	b[0] |= rsv
	return b
}

// sf returns an unmasked server frame.
func sf(op Opcode, fin bool, payload string) []byte {
	return AppendFrame(nil, op, fin, []byte(payload))
}

// closePayload returns a Close payload with code and reason.
func closePayload(code uint16, reason string) string {
	return string([]byte{byte(code >> 8), byte(code)}) + reason
}

// cat concatenates frames.
func cat(frames ...[]byte) []byte { return bytes.Join(frames, nil) }

// rec is a copied Event.
type rec struct {
	Op      Opcode
	Payload string
	Code    uint16
}

func (r rec) String() string { return fmt.Sprintf("%v(%d)%q", r.Op, r.Code, r.Payload) }

// result is what a Reader made of a whole stream: its events, then the
// close code of its error (0 for none).
type result struct {
	events []rec
	code   uint16
	err    string // non-protocol failure of the harness
}

func (r result) String() string {
	return fmt.Sprintf("events=%v code=%d %s", r.events, r.code, r.err)
}

func (r result) equal(o result) bool {
	if r.code != o.code || r.err != o.err || len(r.events) != len(o.events) {
		return false
	}
	for i := range r.events {
		if r.events[i] != o.events[i] {
			return false
		}
	}
	return true
}

// feed plays the engine: it presents chunks one after another to r, each
// time as a fresh buffer holding the unconsumed input followed by the new
// chunk, and scribbles over the old buffer so that a Reader that kept a
// reference to consumed input is caught. It checks the consumed counts and
// the bound on unconsumed input.
func feed(r *Reader, chunks ...[]byte) result {
	var res result
	var buf []byte
	for _, c := range chunks {
		nb := make([]byte, 0, len(buf)+len(c))
		nb = append(append(nb, buf...), c...)
		for i := range buf {
			buf[i] = 0xee
		}
		buf = nb
		for {
			n, ev, err := r.Next(buf)
			if n < 0 || n > len(buf) {
				res.err = fmt.Sprintf("consumed %d of %d", n, len(buf))
				return res
			}
			buf = buf[n:]
			if err != nil {
				var ce *CloseError
				if !errors.As(err, &ce) {
					res.err = "not a CloseError: " + err.Error()
					return res
				}
				res.code = ce.Code
				// The error is sticky.
				if _, _, err2 := r.Next(buf); err2 != err {
					res.err = "error not sticky"
				}
				return res
			}
			if ev.Op == OpContinuation {
				if ev.Payload != nil || ev.Code != 0 {
					res.err = "empty event with fields"
					return res
				}
				bound := max(r.zeroCopyLimit(), MaxHeaderLen+MaxControlPayload)
				if int64(len(buf)) > bound {
					res.err = fmt.Sprintf("%d bytes left unconsumed, bound %d", len(buf), bound)
					return res
				}
				break
			}
			res.events = append(res.events, rec{ev.Op, string(ev.Payload), ev.Code})
		}
	}
	return res
}

// splitAt returns in cut at k.
func splitAt(in []byte, k int) [][]byte { return [][]byte{in[:k], in[k:]} }

// bytewise returns in as one-byte chunks.
func bytewise(in []byte) [][]byte {
	out := make([][]byte, len(in))
	for i := range in {
		out[i] = in[i : i+1]
	}
	return out
}

// clone returns a copy of b, for inputs the Reader unmasks in place.
func clone(b []byte) []byte { return append([]byte(nil), b...) }

// readerConfig builds a fresh Reader for one feeding.
type readerConfig struct {
	role     Role
	max      int
	zeroCopy int
	deflate  *DeflateParams // non-nil: attach an Inflater
	pool     BufferPool
}

func (c readerConfig) new() *Reader {
	r := &Reader{Role: c.role, MaxMessageSize: c.max, ZeroCopyLimit: c.zeroCopy, Pool: c.pool}
	if c.deflate != nil {
		r.Inflater = c.deflate.NewInflater(c.role)
	}
	return r
}

// checkSplits feeds in whole, split at every byte boundary and byte by
// byte, under the default and the always-copy ZeroCopyLimit, and requires
// the same result from all of them. It returns the whole-feed result.
func checkSplits(t *testing.T, c readerConfig, in []byte) result {
	t.Helper()
	want := feed(c.new(), clone(in))
	if want.err != "" {
		t.Fatalf("whole: %s", want.err)
	}
	for _, zc := range []int{c.zeroCopy, -1, 7} {
		cc := c
		cc.zeroCopy = zc
		for k := 0; k <= len(in); k++ {
			if got := feed(cc.new(), splitAt(clone(in), k)...); !got.equal(want) {
				t.Fatalf("ZeroCopyLimit %d split at %d:\n got %v\nwant %v", zc, k, got, want)
			}
		}
		if got := feed(cc.new(), bytewise(clone(in))...); !got.equal(want) {
			t.Fatalf("ZeroCopyLimit %d byte by byte:\n got %v\nwant %v", zc, got, want)
		}
	}
	return want
}

// checkingPool is a BufferPool that tracks lent buffers.
type checkingPool struct {
	t    testing.TB
	out  map[*byte]bool
	gets int
}

func newCheckingPool(t testing.TB) *checkingPool {
	return &checkingPool{t: t, out: map[*byte]bool{}}
}

func (p *checkingPool) Get(size int) []byte {
	b := make([]byte, 0, size)
	p.out[&b[:1][0]] = true
	p.gets++
	return b
}

func (p *checkingPool) Put(b []byte) {
	if len(b) != 0 {
		p.t.Errorf("Put with length %d", len(b))
	}
	k := &b[:1][0]
	if !p.out[k] {
		p.t.Errorf("Put of a buffer not lent or already returned")
	}
	delete(p.out, k)
	full := b[:cap(b)]
	for i := range full {
		full[i] = 0xdd // catch use after Put
	}
}
