package proxy

import (
	"bufio"
	"io"
	"net"
	"os/exec"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// startExpectBackend starts a backend that answers each request head with
// first (interim responses), then reads a 3-byte body and answers 200
// "ok". It never sees the body if the client never sends it.
func startExpectBackend(t *testing.T, first string) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer c.Close()
				c.SetDeadline(time.Now().Add(10 * time.Second))
				br := bufio.NewReader(c)
				for {
					line, err := br.ReadString('\n')
					if err != nil {
						return
					}
					if line == "\r\n" {
						break
					}
				}
				io.WriteString(c, first)
				if _, err := io.ReadFull(br, make([]byte, 3)); err != nil {
					return
				}
				io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok")
			}()
		}
	}()
	return ln.Addr().String()
}

// expectExchange sends a request with "Expect: 100-continue" and waits
// for the 100 Continue before sending its body, as curl does; it returns
// what it read before the 100 (or all it read, when none came) and
// whether the 100 came.
func expectExchange(t *testing.T, addr string) (string, bool) {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	io.WriteString(c, "POST /up HTTP/1.1\r\nHost: a\r\nExpect: 100-continue\r\nContent-Length: 3\r\nConnection: close\r\n\r\n")
	// A client that never gets its 100 stalls until its own expect
	// timeout; this one gives up after 5 s (not a timing assertion: the
	// 100 comes at once or never).
	c.SetDeadline(time.Now().Add(5 * time.Second))
	br := bufio.NewReader(c)
	var got strings.Builder
	for {
		line, err := br.ReadString('\n')
		got.WriteString(line)
		if err != nil {
			return got.String(), false
		}
		if line == "HTTP/1.1 100 Continue\r\n" {
			break
		}
	}
	io.WriteString(c, "abc")
	rest, _ := io.ReadAll(br)
	got.Write(rest)
	return got.String(), true
}

// TestProxyExpectContinueNotBounded: the backend's 100 Continue to a
// request that carried "Expect: 100-continue" always reaches the
// client, however many other interim responses came first and whatever
// Config.MaxInterim and MaxInterimBytes say: dropped, it would leave the
// client waiting for it and the backend waiting for the body.
func TestProxyExpectContinueNotBounded(t *testing.T) {
	e := startEngine(t)
	hint := "HTTP/1.1 103 Early Hints\r\nLink: </a.css>; rel=preload\r\n\r\n"
	for _, tc := range []struct {
		name  string
		first string
		cfg   Config
	}{
		{"after-8-hints", strings.Repeat(hint, 8) + "HTTP/1.1 100 Continue\r\n\r\n", Config{MaxInterim: 8}},
		{"after-big-hint", "HTTP/1.1 103 Early Hints\r\nLink: <" + strings.Repeat("a", 930) + ">\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n",
			Config{MaxInterim: 8, MaxInterimBytes: 1000}},
		{"negative", "HTTP/1.1 100 Continue\r\n\r\n", Config{MaxInterim: -1}},
		{"default", "HTTP/1.1 100 Continue\r\n\r\n", Config{}},
	} {
		t.Run(tc.name, func(t *testing.T) {
			baddr := startExpectBackend(t, tc.first)
			addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{baddr}}, tc.cfg)
			out, ok := expectExchange(t, addr)
			if !ok || !strings.HasSuffix(out, "\r\n\r\nok") {
				t.Fatalf("100 Continue %v: %q", ok, out)
			}
			if s := p.Stats(); s.Interim == 0 {
				t.Fatalf("interim responses counted: %+v", s)
			}
		})
	}
}

// TestProxyInterimDefault: by default (Config.MaxInterim 0) a backend's
// 103 Early Hints and other interim responses are dropped and counted,
// its 100 Continue goes on, and the final response follows.
func TestProxyInterimDefault(t *testing.T) {
	hint := "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n"
	bothPathsProxy(t, func(string) string {
		return hint + "HTTP/1.1 100 Continue\r\n\r\n" + hint + "HTTP/1.1 102 Processing\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}, func(t *testing.T, addr string, be *cannedBackend, p *Proxy) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 100 Continue\r\n") || strings.Contains(out, " 103 ") ||
			strings.Contains(out, " 102 ") || !strings.Contains(out, "\r\nHTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\nok") {
			t.Fatalf("%q", out)
		}
		if s := p.Stats(); s.Interim != 1 || s.InterimDropped != 3 {
			t.Fatalf("interim %d, dropped %d", s.Interim, s.InterimDropped)
		}
	})
}

// pyClient makes two GETs on one keep-alive connection with CPython's
// http.client (what requests and urllib3 use) and prints each status and
// body.
const pyClient = `
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=5)
for _ in range(2):
    c.request("GET", "/x")
    r = c.getresponse()
    print(r.status, r.read().decode())
`

// TestProxyInterimPythonClient: a default proxy in front of a backend
// that sends 103 Early Hints does not break CPython's http.client, which
// takes a 103 for the final response (its status 103, an empty body, and
// the real response read as the next one's).
func TestProxyInterimPythonClient(t *testing.T) {
	py, err := exec.LookPath("python3")
	if err != nil {
		t.Skip("no python3")
	}
	bothPaths(t, func(string) string {
		return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nfinal"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out, err := exec.Command(py, "-c", pyClient, addr).CombinedOutput()
		if err != nil || string(out) != "200 final\n200 final\n" {
			t.Fatalf("python http.client: %v\n%s", err, out)
		}
	})
}

// TestProxyInterimHTTP10NotCounted: an HTTP/1.0 client gets no interim
// response, and they are counted neither as passed on nor as dropped, on
// the listener and on a Forward route alike.
func TestProxyInterimHTTP10NotCounted(t *testing.T) {
	bothPathsProxy(t, func(string) string {
		return "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\n\r\nHTTP/1.1 100 Continue\r\n\r\n" +
			"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}, func(t *testing.T, addr string, be *cannedBackend, p *Proxy) {
		out := rawExchange(t, addr, "GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.0 200 ") || !strings.HasSuffix(out, "\r\n\r\nok") {
			t.Fatalf("%q", out)
		}
		if s := p.Stats(); s.Interim != 0 || s.InterimDropped != 0 {
			t.Fatalf("interim %d, dropped %d", s.Interim, s.InterimDropped)
		}
	})
}

// TestProxyNoInventedContentType: a backend response without a
// Content-Type reaches the client without one, on the listener and on a
// Forward route (whose http1 server would otherwise add its default
// text/plain), with a length or chunked; one with a Content-Type keeps it.
func TestProxyNoInventedContentType(t *testing.T) {
	bothPaths(t, func(head string) string {
		switch {
		case strings.HasPrefix(head, "GET /chunked "):
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\n\r\n"
		case strings.HasPrefix(head, "GET /typed "):
			return "HTTP/1.1 200 OK\r\nContent-Type: image/png\r\nContent-Length: 2\r\n\r\nok"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		for _, path := range []string{"/length", "/chunked"} {
			out := rawExchange(t, addr, "GET "+path+" HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 200 ") || strings.Contains(strings.ToLower(out), "content-type") {
				t.Fatalf("%s: %q", path, out)
			}
		}
		out := rawExchange(t, addr, "GET /typed HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if strings.Count(out, "Content-Type") != 1 || !strings.Contains(out, "\r\nContent-Type: image/png\r\n") {
			t.Fatalf("typed: %q", out)
		}
	})
}
