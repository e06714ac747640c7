package proxy

import (
	"bufio"
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
)

// TestProxyRatePerIP checks Config.RatePerIP on the engine's clock: a
// client with a burst of 2 at 1 request a second gets two answers, then a
// 429 rate_limited from the proxy itself on the same keep-alive
// connection (the backend never sees it), and a second later an answer
// again; a request with a body over the limit is answered 429 and its
// connection closed.
func TestProxyRatePerIP(t *testing.T) {
	clk := testutil.NewFakeClock()
	e, err := engine.New(engine.Config{Loops: 1, Clock: clk}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if err := e.Start(""); err != nil {
		t.Fatal(err)
	}
	defer e.Close()
	var seen sync.Map
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		seen.Store(r.URL.Path, true)
		io.WriteString(w, "ok")
	}))
	defer b.Close()
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{b.URL}, Timeout: -1}, Config{RatePerIP: 1, BurstPerIP: 2})
	c, err := net.Dial("tcp", paddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path string) *http.Response {
		t.Helper()
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n\r\n"); err != nil {
			t.Fatal(err)
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatalf("GET %s: %v", path, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for _, path := range []string{"/1", "/2"} {
		if r := get(path); r.StatusCode != 200 {
			t.Fatalf("GET %s: %d; want 200 (within the burst)", path, r.StatusCode)
		}
	}
	r := get("/3")
	if r.StatusCode != 429 || r.Header.Get("X-Warren-Reason") != "rate_limited" || r.Close {
		t.Fatalf("GET /3: %d %q close=%v; want 429 rate_limited on a kept connection", r.StatusCode, r.Header.Get("X-Warren-Reason"), r.Close)
	}
	if _, ok := seen.Load("/3"); ok {
		t.Error("the backend saw the refused request")
	}
	clk.Advance(time.Second)
	if r := get("/4"); r.StatusCode != 200 {
		t.Fatalf("GET /4 a second later: %d; want 200 on the same connection", r.StatusCode)
	}

	// A request with a body, over the limit: 429 and the connection closes
	// (the body is not worth reading).
	if _, err := io.WriteString(c, "POST /5 HTTP/1.1\r\nHost: t\r\nContent-Length: 5\r\n\r\nhello"); err != nil {
		t.Fatal(err)
	}
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 429 || !resp.Close {
		t.Fatalf("POST /5: %d close=%v; want 429 and the connection closed", resp.StatusCode, resp.Close)
	}
	if rest, err := io.ReadAll(br); len(rest) > 0 || err != nil && !strings.Contains(err.Error(), "reset") {
		t.Errorf("after the refused POST: %q, %v; want the connection closed", rest, err)
	}
	if st := p.Stats(); st.RateLimited != 2 {
		t.Errorf("RateLimited %d; want 2", st.RateLimited)
	}
}
