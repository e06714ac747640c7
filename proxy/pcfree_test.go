package proxy

import (
	"testing"

	"github.com/warrenhq/warren/engine"
)

// TestPCFreeList: a released pconn goes to its loop's free list and the
// next request on that loop takes it back; a list holds at most
// pcFreeMax, and a loop without a list uses the shared pool.
func TestPCFreeList(t *testing.T) {
	p := &Proxy{pcFree: make([]pcFree, 2)}
	c := new(engine.Conn) // not on a loop: Loop() is 0
	pc := p.getPC(c)
	if pc.p != p || pc.c != c {
		t.Fatalf("getPC: pconn of %p on %p", pc.p, pc.c)
	}
	p.putPC(pc, 0)
	if n := len(p.pcFree[0].pcs); n != 1 {
		t.Fatalf("loop 0's free list holds %d after a put", n)
	}
	if again := p.getPC(c); again != pc || len(p.pcFree[0].pcs) != 0 {
		t.Fatalf("getPC on loop 0 = %p; want the released %p", again, pc)
	}
	for range pcFreeMax + 5 {
		p.putPC(&pconn{p: p}, 0)
		p.putPC(&pconn{p: p}, -1)
		p.putPC(&pconn{p: p}, 2)
	}
	if n := len(p.pcFree[0].pcs); n != pcFreeMax {
		t.Fatalf("loop 0's free list holds %d; want at most %d", n, pcFreeMax)
	}
	if n := len(p.pcFree[1].pcs); n != 0 {
		t.Fatalf("loop 1's free list holds %d", n)
	}
	// A pconn with a big buffer, or whose request spilled, goes to the
	// pool instead (review rv-upx2, finding 3).
	for _, big := range []*pconn{{p: p, head: make([]byte, 0, pcSmallBuf+1)},
		{p: p, rhead: make([]byte, 0, pcSmallBuf+1)}, {p: p, rtrail: make([]byte, 0, pcSmallBuf+1)},
		{p: p, spilled: true}} {
		p.putPC(big, 1)
		if n := len(p.pcFree[1].pcs); n != 0 {
			t.Fatalf("a pconn with big buffers went on loop 1's free list")
		}
	}
	p.putPC(&pconn{p: p, head: make([]byte, 0, pcSmallBuf)}, 1)
	if n := len(p.pcFree[1].pcs); n != 1 {
		t.Fatalf("a pconn with small buffers did not go on loop 1's free list")
	}
}
