package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
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
	spilled := &pconn{p: p}
	var ps http1.Parser
	many := "GET / HTTP/1.1\r\nHost: x\r\n" + strings.Repeat("X-F: v\r\n", 40) + "\r\n"
	if _, err := ps.Parse([]byte(many), &spilled.req, &http1.Limits{MaxHeaders: 100}); err != nil {
		t.Fatal(err)
	}
	spilled.req.Reset()
	for _, big := range []*pconn{{p: p, head: make([]byte, 0, pcSmallBuf+1)},
		{p: p, rhead: make([]byte, 0, pcSmallBuf+1)}, {p: p, rtrail: make([]byte, 0, pcSmallBuf+1)},
		{p: p, reqOpts: make(hopNames, 0, pcSmallBuf+1)}, {p: p, respOpts: make(hopNames, 0, pcSmallBuf+1)},
		spilled, {p: p, chunkedRead: true}} {
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

// TestPCFreeListSkipsChunkedReader: a pconn that read a chunked request
// body keeps its chunk reader's trailer buffer (up to MaxHeaderBytes), so
// it goes to the pool, not a free list (review rv-upx2b); one that served
// a plain GET goes on its loop's list. Both on keep-alive connections: a
// pconn is released when its connection goes back to idle.
func TestPCFreeListSkipsChunkedReader(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Loops: 1}) // one loop: the POSTs take the GET's pconn
	be := okBackend(t)
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	if len(p.pcFree) == 0 {
		t.Skip("no event loops: no free lists")
	}
	// listed counts the listed pconns, and those that read a chunked body.
	listed := func() (n, chunked int) {
		for i := range p.pcFree {
			p.pcFree[i].mu.Lock()
			for _, pc := range p.pcFree[i].pcs {
				n++
				if pc.chunkedRead {
					chunked++
				}
			}
			p.pcFree[i].mu.Unlock()
		}
		return
	}
	exchange := func(req string) {
		t.Helper()
		c, err := net.Dial("tcp", paddr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		resp, err := http.ReadResponse(bufio.NewReader(c), nil)
		if err != nil {
			t.Fatal(err)
		}
		io.ReadAll(resp.Body)
		if resp.StatusCode != 200 {
			t.Fatalf("%d", resp.StatusCode)
		}
		// The pconn is released on the client's loop once the response is
		// done (backToIdle), before this connection closes.
		deadline := time.Now().Add(10 * time.Second)
		for n, _ := listed(); n == 0 && !strings.HasPrefix(req, "POST"); n, _ = listed() {
			if time.Now().After(deadline) {
				t.Fatal("the GET's pconn never went on a free list")
			}
			time.Sleep(5 * time.Millisecond)
		}
	}
	exchange("GET /g HTTP/1.1\r\nHost: a\r\n\r\n")
	for range 3 {
		exchange("POST /c HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-T: " + strings.Repeat("t", 6000) + "\r\n\r\n")
	}
	time.Sleep(100 * time.Millisecond) // the POSTs' releases
	// The first POST took the GET's pconn off the list; after reading a
	// chunked body it goes to the pool, so the list stays empty.
	if n, chunked := listed(); n != 0 || chunked != 0 {
		t.Fatalf("%d pconns on the free list (%d that read a chunked body), want none", n, chunked)
	}
}
