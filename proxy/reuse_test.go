package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// TestProxyExchangeReuse drives the proxy's reused exchanges
// (upstream.Exchange.Release) hard: keep-alive clients each send their own
// paths and must get their own answers back, while other clients send a
// request and go away at once, so cancels race responses and the reuse of
// their exchanges. Under -race an exchange reused while something still
// held it shows up as a data race or as an answer to another request.
func TestProxyExchangeReuse(t *testing.T) {
	e := startEngine(t)
	baddr, _ := startGoBackend(t, http.HandlerFunc(echoBackend))
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{baddr}, Timeout: 10 * time.Second}, Config{})
	const clients, requests, quitters = 8, 150, 200
	var wg sync.WaitGroup
	var bad atomic.Int64
	var firstErr atomic.Value
	fail := func(err error) {
		bad.Add(1)
		firstErr.CompareAndSwap(nil, err)
	}
	for i := range clients {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", paddr)
			if err != nil {
				fail(err)
				return
			}
			defer conn.Close()
			br := bufio.NewReader(conn)
			for j := range requests {
				path := fmt.Sprintf("/c%d/r%d", i, j)
				fmt.Fprintf(conn, "GET %s HTTP/1.1\r\nHost: t\r\n\r\n", path)
				resp, err := http.ReadResponse(br, nil)
				if err != nil {
					fail(err)
					return
				}
				body, err := io.ReadAll(resp.Body)
				resp.Body.Close()
				if err != nil {
					fail(err)
					return
				}
				if want := "GET " + path + " 0 "; resp.StatusCode != 200 || !strings.HasPrefix(string(body), want) {
					fail(fmt.Errorf("request %s: %d %q", path, resp.StatusCode, body))
					return
				}
			}
		}()
	}
	for i := range quitters {
		wg.Add(1)
		go func() {
			defer wg.Done()
			conn, err := net.Dial("tcp", paddr)
			if err != nil {
				fail(err)
				return
			}
			fmt.Fprintf(conn, "GET /q%d HTTP/1.1\r\nHost: t\r\n\r\n", i)
			if i%2 == 0 {
				conn.Read(make([]byte, 1)) // leave as the answer starts
			}
			conn.Close()
		}()
	}
	wg.Wait()
	if n := bad.Load(); n != 0 {
		t.Fatalf("%d clients failed; first: %v", n, firstErr.Load())
	}
	// Every exchange ended: none is still counted active.
	deadline := time.Now().Add(10 * time.Second)
	for p.Cluster().Stats().RqActive != 0 {
		if time.Now().After(deadline) {
			t.Fatalf("requests still active: %+v", p.Cluster().Stats())
		}
		time.Sleep(5 * time.Millisecond)
	}
}
