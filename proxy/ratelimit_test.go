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
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
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

// TestProxyRouteLimits checks Config.RouteLimits on the engine's clock:
// the longest matching prefix decides, a limit keys by client address or
// by a header (falling back to the address without it), a refusal is a
// 429 with a Retry-After computed from the key's bucket, on a kept
// connection, never seen by the backend, and counted by route and reason.
func TestProxyRouteLimits(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	var backend sync.Map
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		backend.Store(r.URL.Path, true)
		io.WriteString(w, "ok")
	}))
	defer b.Close()
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{b.URL}, Timeout: -1}, Config{RouteLimits: []RouteLimit{
		{Prefix: "/api/", Rate: 1, Burst: 2},
		{Prefix: "/api/slow/", Rate: 0.2, Name: "slow"}, // one per 5 s
		{Prefix: "/dev/", Rate: 1, Header: "X-Device-Id"},
		{Prefix: "", Rate: 1},      // invalid: skipped (logged)
		{Prefix: "/api/", Rate: 5}, // a second /api/: skipped
	}})
	c, err := net.Dial("tcp", paddr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	get := func(path, dev string) *http.Response {
		t.Helper()
		h := ""
		if dev != "" {
			h = "X-Device-Id: " + dev + "\r\n"
		}
		if _, err := io.WriteString(c, "GET "+path+" HTTP/1.1\r\nHost: t\r\n"+h+"\r\n"); err != nil {
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
	want := func(path, dev string, status int, retryAfter string) {
		t.Helper()
		r := get(path, dev)
		if r.StatusCode != status || r.Header.Get("Retry-After") != retryAfter || r.Close {
			t.Fatalf("GET %s (device %q): %d Retry-After %q close=%v; want %d %q on a kept connection",
				path, dev, r.StatusCode, r.Header.Get("Retry-After"), r.Close, status, retryAfter)
		}
		if status == 429 {
			if r.Header.Get("X-Warren-Reason") != "rate_limited" {
				t.Errorf("GET %s: reason %q", path, r.Header.Get("X-Warren-Reason"))
			}
			if _, ok := backend.Load(path); ok {
				t.Errorf("GET %s: the backend saw a refused request", path)
			}
		}
	}
	want("/api/a", "", 200, "")
	want("/api/b", "", 200, "")
	want("/api/c", "", 429, "1")         // burst of 2 used: the next token in 1 s
	want("/api/slow/a", "", 200, "")     // its own bucket (longest prefix)
	want("/api/slow/b", "", 429, "5")    // 0.2/s: the next in 5 s
	want("/other", "", 200, "")          // no limit
	want("/dev/a", "dev-1", 200, "")     // by device
	want("/dev/b", "dev-1", 429, "1")    //
	want("/dev/c", "dev-2", 200, "")     // another device, same address
	want("/dev/d", "", 200, "")          // no header: by address
	want("/dev/e", "", 429, "1")         //
	clk.Advance(1500 * time.Millisecond) // 1.5 tokens back
	want("/api/d", "", 200, "")          //
	want("/api/e", "", 429, "1")         // 0.5 s to go: rounded up
	want("/api/slow/c", "", 429, "4")    // 3.5 s to go: rounded up
	want("/dev/f", "dev-1", 200, "")     //
	st := p.Stats()
	if len(st.Routes) != 3 {
		t.Fatalf("routes %v; want 3 (two invalid skipped)", st.Routes)
	}
	for name, w := range map[string][2]uint64{"/api/": {3, 2}, "slow": {1, 2}, "/dev/": {4, 2}} {
		r := st.Routes[name]
		if r.Allowed != w[0] || r.Refused["rate_limited"] != w[1] {
			t.Errorf("route %s: allowed %d, refused %v; want %d, %d", name, r.Allowed, r.Refused, w[0], w[1])
		}
	}
	if k := st.Routes["/dev/"].Keys; k != 3 {
		t.Errorf("/dev/ holds %d keys; want 3 (two devices, one address)", k)
	}
	if st.RateLimited != 0 || st.Errors != 6 {
		t.Errorf("per-IP refusals %d, errors %d; want 0, 6", st.RateLimited, st.Errors)
	}
}

// TestParseRouteLimit checks the -route-limit syntax both ways.
func TestParseRouteLimit(t *testing.T) {
	rl, err := ParseRouteLimit("/api/=100.5,burst=200,header=X-Device-Id,keys=1000,name=api")
	want := RouteLimit{Prefix: "/api/", Rate: 100.5, Burst: 200, Header: "X-Device-Id", MaxKeys: 1000, Name: "api"}
	if err != nil || rl != want {
		t.Fatalf("got %+v, %v; want %+v", rl, err, want)
	}
	if again, err := ParseRouteLimit(rl.String()); err != nil || again != rl {
		t.Errorf("String %q parses to %+v, %v", rl.String(), again, err)
	}
	for _, bad := range []string{"", "api=1", "/=0", "/=-1", "/=x", "/=1,burst=0", "/=1,keys=-3", "/=1,header=", "/=1,color=red", "/=1,burst", "/=+Inf"} {
		if _, err := ParseRouteLimit(bad); err == nil {
			t.Errorf("ParseRouteLimit(%q) accepted", bad)
		}
	}
	if err := ValidateRouteLimits([]RouteLimit{{Prefix: "/a", Rate: 1}, {Prefix: "/b", Rate: 1, Name: "/a"}}); err == nil {
		t.Error("two routes named /a accepted")
	}
	if err := ValidateRouteLimits([]RouteLimit{{Prefix: "/a", Rate: 1}, {Prefix: "/", Rate: 2}}); err != nil {
		t.Error(err)
	}
}
