package proxy

import (
	"bytes"
	"fmt"
	"io"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// startForward serves a Forward route (every path, as warren serve
// -upstream does) on an http1 server and returns its address.
func startForward(t *testing.T, e *engine.Engine, ccfg upstream.ClusterConfig, pcfg Config) (string, *Proxy) {
	t.Helper()
	cl, err := upstream.NewCluster(e, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p := New(e, cl, pcfg)
	t.Cleanup(p.Close)
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), p
}

// bothPaths runs check against the proxy's own listener and a Forward
// route, each in front of a backend that answers with respond.
func bothPaths(t *testing.T, respond func(head string) string, check func(t *testing.T, addr string, be *cannedBackend)) {
	bothPathsProxy(t, respond, func(t *testing.T, addr string, be *cannedBackend, _ *Proxy) { check(t, addr, be) })
}

// bothPathsProxy is bothPaths with the proxy given to check.
func bothPathsProxy(t *testing.T, respond func(head string) string, check func(t *testing.T, addr string, be *cannedBackend, p *Proxy)) {
	bothPathsConfig(t, Config{}, respond, check)
}

// bothPathsConfig is bothPathsProxy with the proxy's Config.
func bothPathsConfig(t *testing.T, pcfg Config, respond func(head string) string, check func(t *testing.T, addr string, be *cannedBackend, p *Proxy)) {
	e := startEngine(t)
	t.Run("listener", func(t *testing.T) {
		be := startCannedBackend(t, respond)
		addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, pcfg)
		check(t, addr, be, p)
	})
	t.Run("forward", func(t *testing.T) {
		be := startCannedBackend(t, respond)
		addr, p := startForward(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, pcfg)
		check(t, addr, be, p)
	})
}

// TestProxyTransferCodingRefused: a backend body in a transfer coding
// other than chunked ("gzip, chunked", or gzip to the close) is answered
// 502 bad_response, as nginx ("upstream sent unknown Transfer-Encoding")
// and Envoy answer it: re-chunked without its coding, the client would get
// gzip bytes it is not told about, and an HTTP/1.0 client may not be sent
// a Transfer-Encoding at all. A request in such a coding is refused with
// 501 before it reaches the backend, as by nginx and Envoy.
func TestProxyTransferCodingRefused(t *testing.T) {
	for _, te := range []string{"gzip, chunked", "gzip"} {
		bothPaths(t, func(head string) string {
			if te == "gzip" {
				return "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip\r\nConnection: close\r\n\r\n\x1f\x8b\x08\x00"
			}
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: " + te + "\r\n\r\n4\r\n\x1f\x8b\x08\x00\r\n0\r\n\r\n"
		}, func(t *testing.T, addr string, be *cannedBackend) {
			for _, v := range []string{"1.1", "1.0"} {
				out := rawExchange(t, addr, "GET /x HTTP/"+v+"\r\nHost: a\r\nConnection: close\r\n\r\n")
				if !strings.HasPrefix(out, "HTTP/1.") || !strings.HasPrefix(out[8:], " 502 ") || !strings.Contains(out, "X-Warren-Reason: bad_response\r\n") ||
					strings.Contains(out, "\x1f\x8b") {
					t.Fatalf("%s, HTTP/%s: got %q", te, v, out)
				}
			}
			n := len(be.seen())
			out := rawExchange(t, addr, "POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: gzip, chunked\r\n\r\n1\r\nz\r\n0\r\n\r\n")
			if !strings.HasPrefix(out, "HTTP/1.1 501 ") || len(be.seen()) != n {
				t.Fatalf("request in gzip, chunked: %q, backend saw %d more", out, len(be.seen())-n)
			}
		})
	}
	// HEAD: no body, whatever the coding; the 200 goes on.
	bothPaths(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: gzip, chunked\r\n\r\n"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out := rawExchange(t, addr, "HEAD /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") {
			t.Fatalf("HEAD: got %q", out)
		}
	})
}

// TestProxyHeadContentLength: a response to HEAD keeps the backend's
// Content-Length, the length a GET would have had (RFC 9110 §9.3.2; nginx,
// HAProxy and Envoy pass it on), with no body, and the connection serves
// the next request; a HEAD answered without a length (a GET would be
// chunked, and Transfer-Encoding overrides a Content-Length beside it)
// gets none, not a "Content-Length: 0" that says the resource is
// empty. Checked with Go's HTTP client too.
func TestProxyHeadContentLength(t *testing.T) {
	bothPaths(t, func(head string) string {
		switch {
		case strings.HasPrefix(head, "HEAD /chunked "):
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nContent-Length: 99\r\nContent-Type: text/html\r\n\r\n"
		case strings.HasPrefix(head, "HEAD "):
			return "HTTP/1.1 200 OK\r\nContent-Length: 1234\r\nContent-Type: application/json\r\n\r\n"
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out := rawExchange(t, addr, "HEAD /x HTTP/1.1\r\nHost: a\r\n\r\n", "GET /y HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		first, rest, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.HasPrefix(first, "HTTP/1.1 200 ") || !strings.Contains(first, "\r\nContent-Length: 1234") ||
			!strings.Contains(first, "\r\nContent-Type: application/json") || !strings.HasPrefix(rest, "HTTP/1.1 200 ") ||
			!strings.HasSuffix(rest, "\r\n\r\nok") {
			t.Fatalf("HEAD then GET: %q", out)
		}
		out = rawExchange(t, addr, "HEAD /chunked HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		lower := strings.ToLower(out)
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || strings.Contains(lower, "content-length") ||
			strings.Contains(lower, "transfer-encoding") || !strings.HasSuffix(out, "\r\n\r\n") {
			t.Fatalf("HEAD of a chunked resource: %q", out)
		}
		resp, err := http.Head("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		resp.Body.Close()
		if resp.ContentLength != 1234 {
			t.Fatalf("net/http client: Content-Length %d", resp.ContentLength)
		}
		// Python's http.client on one keep-alive connection: HEAD reads
		// no body whatever the length says, so a stray body byte would
		// break the GET after it.
		py, err := exec.LookPath("python3")
		if err != nil {
			return
		}
		script := `
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], timeout=5)
c.request("HEAD", "/x"); r = c.getresponse(); r.read()
print(r.status, r.getheader("Content-Length"), end=" ")
c.request("GET", "/y"); r = c.getresponse()
print(r.status, r.read().decode())
`
		pout, err := exec.Command(py, "-c", script, addr).CombinedOutput()
		if err != nil || strings.TrimSpace(string(pout)) != "200 1234 200 ok" {
			t.Fatalf("python http.client: %v: %s", err, pout)
		}
	})
}

// TestProxyInterimResponses: a backend's 103 Early Hints reach an
// HTTP/1.1 client ahead of the final response (RFC 9110 §15.2: a proxy
// forwards 1xx; RFC 8297), with the fields the backend sent but its
// hop-by-hop ones, and Via, when Config.MaxInterim opts in; an HTTP/1.0
// client gets none; past Config.MaxInterim (8 here) a backend's flood of
// them is dropped and counted, and the final response still goes on.
func TestProxyInterimResponses(t *testing.T) {
	const maxInterim = 8
	hints := "HTTP/1.1 103 Early Hints\r\nLink: </s.css>; rel=preload\r\nConnection: X-Hop\r\nX-Hop: 1\r\n\r\n"
	final := "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	bothPathsConfig(t, Config{MaxInterim: maxInterim}, func(head string) string {
		if strings.HasPrefix(head, "GET /flood ") {
			return strings.Repeat(hints, 12) + final
		}
		return hints + hints + final
	}, func(t *testing.T, addr string, be *cannedBackend, p *Proxy) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if n := strings.Count(out, "HTTP/1.1 103 Early Hints\r\n"); n != 2 || !strings.HasPrefix(out, "HTTP/1.1 103 ") ||
			strings.Count(out, "\r\nLink: </s.css>; rel=preload\r\n") != 2 || strings.Contains(out, "X-Hop") ||
			!strings.Contains(out, "\r\nHTTP/1.1 200 OK\r\n") || !strings.HasSuffix(out, "\r\n\r\nok") {
			t.Fatalf("HTTP/1.1: %q", out)
		}
		interim, _, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.Contains(interim, "\r\nVia: 1.1 warren") {
			t.Fatalf("no Via on the interim response: %q", interim)
		}
		out = rawExchange(t, addr, "GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
		if !strings.HasPrefix(out, "HTTP/1.0 200 ") || strings.Contains(out, " 103 ") {
			t.Fatalf("HTTP/1.0: %q", out)
		}
		before := p.Stats()
		out = rawExchange(t, addr, "GET /flood HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if n := strings.Count(out, " 103 Early Hints\r\n"); n != maxInterim || !strings.HasSuffix(out, "\r\n\r\nok") {
			t.Fatalf("flood: %d interim responses passed on: %q", n, out)
		}
		after := p.Stats()
		if d := after.InterimDropped - before.InterimDropped; d != 12-maxInterim {
			t.Fatalf("dropped %d, want %d", d, 12-maxInterim)
		}
		if d := after.Interim - before.Interim; d != maxInterim {
			t.Fatalf("passed on %d, want %d", d, maxInterim)
		}
	})
}

// TestProxyInterimBytes: Config.MaxInterimBytes bounds the interim heads
// passed on per request; the one over it is dropped, the final response
// goes on.
func TestProxyInterimBytes(t *testing.T) {
	e := startEngine(t)
	big := "HTTP/1.1 103 Early Hints\r\nLink: <" + strings.Repeat("a", 600) + ">\r\n\r\n"
	be := startCannedBackend(t, func(string) string { return big + big + "HTTP/1.1 204 No Content\r\n\r\n" })
	addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{MaxInterim: 8, MaxInterimBytes: 1000})
	out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if n := strings.Count(out, " 103 "); n != 1 || !strings.Contains(out, "HTTP/1.1 204 ") {
		t.Fatalf("%d interim responses: %q", n, out)
	}
	if s := p.Stats(); s.InterimDropped != 1 || s.Interim != 1 {
		t.Fatalf("interim %d, dropped %d", s.Interim, s.InterimDropped)
	}
}

// TestProxyExpectContinueCurl: curl sends a large POST with "Expect:
// 100-continue" and waits for 100 Continue before its body; the Go
// backend's 100 reaches it through the proxy (curl's verbose log shows
// it), and the body arrives whole.
func TestProxyExpectContinueCurl(t *testing.T) {
	curl, err := exec.LookPath("curl")
	if err != nil {
		t.Skip("no curl")
	}
	e := startEngine(t)
	baddr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n, _ := io.Copy(io.Discard, r.Body)
		fmt.Fprintf(w, "got %d", n)
	}))
	addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{baddr}}, Config{})
	body := filepath.Join(t.TempDir(), "body")
	if err := os.WriteFile(body, bytes.Repeat([]byte("x"), 100000), 0o600); err != nil {
		t.Fatal(err)
	}
	out, err := exec.Command(curl, "-sv", "--max-time", "20", "--expect100-timeout", "15", "-H", "Expect: 100-continue",
		"--data-binary", "@"+body, "http://"+addr+"/up").CombinedOutput()
	if err != nil || !strings.Contains(string(out), "< HTTP/1.1 100 Continue") || !strings.Contains(string(out), "got 100000") {
		t.Fatalf("curl: %v\n%s", err, out)
	}
	if p.Stats().Interim != 1 {
		t.Fatalf("interim responses counted: %d", p.Stats().Interim)
	}
}

// TestProxyResponseTrailers: a chunked response's trailer fields reach an
// HTTP/1.1 client (raw, and Go's client reads them as Trailer), with the
// Trailer field announcing them, and without the hop-by-hop ones; an
// HTTP/1.0 client gets the body alone.
func TestProxyResponseTrailers(t *testing.T) {
	bothPaths(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nTrailer: X-Checksum\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Checksum: sha-1\r\nKeep-Alive: timeout=5\r\nGrpc-Status: 0\r\n\r\n"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		head, body, _ := strings.Cut(out, "\r\n\r\n")
		if !strings.Contains(head, "\r\nTrailer: X-Checksum\r\n") || !strings.HasSuffix(body, "0\r\nX-Checksum: sha-1\r\nGrpc-Status: 0\r\n\r\n") ||
			strings.Contains(body, "Keep-Alive") {
			t.Fatalf("HTTP/1.1: %q", out)
		}
		resp, err := http.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "abc" || resp.Trailer.Get("X-Checksum") != "sha-1" || resp.Trailer.Get("Grpc-Status") != "0" ||
			resp.Trailer.Get("Keep-Alive") != "" {
			t.Fatalf("net/http: %q, trailer %v", b, resp.Trailer)
		}
		out = rawExchange(t, addr, "GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
		head, body, _ = strings.Cut(out, "\r\n\r\n")
		if body != "abc" || strings.Contains(head, "Trailer") {
			t.Fatalf("HTTP/1.0: %q", out)
		}
	})
}

// TestProxyRequestTrailers: a chunked request's trailer fields reach the
// backend, from the proxy's listener and from a Forward route (which sends
// the collected body chunked again, with them) (Go's server reads them as Request.Trailer, its keys declared
// by the Trailer field, which goes on too), but the hop-by-hop ones, whether the trailer section comes whole
// or split across reads.
func TestProxyRequestTrailers(t *testing.T) {
	e := startEngine(t)
	baddr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		fmt.Fprintf(w, "%s sum=%q ka=%q declared=%v", b, r.Trailer.Get("X-Sum"), r.Trailer.Get("Keep-Alive"), len(r.Trailer) > 0)
	}))
	laddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{baddr}}, Config{})
	faddr, _ := startForward(t, e, upstream.ClusterConfig{Hosts: []string{baddr}}, Config{})
	checkRequestTrailers(t, laddr, true)
	// A Forward route sends a body without trailer fields with a
	// Content-Length, and no Trailer field.
	checkRequestTrailers(t, faddr, false)
}

func checkRequestTrailers(t *testing.T, addr string, announced bool) {
	t.Helper()
	head := "POST /up HTTP/1.1\r\nHost: a\r\nTrailer: X-Sum\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"
	want := `abc sum="7" ka="" declared=true`
	for i, parts := range [][]string{
		{head + "3\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\n"},                          // whole, nothing to drop
		{head + "3\r\nabc\r\n0\r\nX-Sum: 7\r\nKeep-Alive: 1\r\n\r\n"},         // whole, one to drop
		{head + "3\r\nabc\r\n0\r\nX-Su", "m: 7\r\nKeep-Alive: 1\r\n", "\r\n"}, // split
		{head + "3\r\nabc\r\n0\r\n", "X-Sum: 7\r\n\r", "\n"},                  // split at the end
	} {
		out := rawExchange(t, addr, parts...)
		if !strings.HasPrefix(out, "HTTP/1.1 200 ") || !strings.HasSuffix(out, want) {
			t.Fatalf("case %d: %q", i, out)
		}
	}
	out := rawExchange(t, addr, head+"3\r\nabc\r\n0\r\n\r\n")
	if !strings.HasSuffix(out, fmt.Sprintf(`abc sum="" ka="" declared=%v`, announced)) {
		t.Fatalf("no trailers: %q", out)
	}
}

// TestProxyHeadLimits: requests over the head limits are answered 431 or
// 414 (bad_request), responses over the cluster's response head limits 502
// bad_response, and each is counted by the limit it hit; a trailer
// section over them cuts a response short (its head went on) and is
// counted too.
func TestProxyHeadLimits(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(head string) string {
		switch {
		case strings.HasPrefix(head, "GET /bighead "):
			return "HTTP/1.1 200 OK\r\nX-Big: " + strings.Repeat("b", 3000) + "\r\nContent-Length: 2\r\n\r\nok"
		case strings.HasPrefix(head, "GET /many "):
			return "HTTP/1.1 200 OK\r\n" + strings.Repeat("X-F: 1\r\n", 30) + "Content-Length: 2\r\n\r\nok"
		case strings.HasPrefix(head, "GET /bigtrailer "):
			return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n2\r\nok\r\n0\r\nX-T: " + strings.Repeat("t", 3000) + "\r\n\r\n"
		case strings.HasPrefix(head, "POST "):
			// This backend does not read chunked bodies: no answer
			// before the proxy has read the request's trailer section.
			time.Sleep(300 * time.Millisecond)
		}
		return "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"
	})
	addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}, MaxResponseHeaderBytes: 2048, MaxResponseHeaders: 20,
		Retry: upstream.RetryPolicy{MaxRetries: -1}},
		Config{Limits: http1.Limits{MaxHeaderBytes: 1024, MaxHeaders: 10, MaxURIBytes: 256}})
	for _, c := range []struct {
		req, status, reason, limit string
	}{
		{"GET /x HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 2000) + "\r\n\r\n", "431", "bad_request", "request_header_bytes"},
		{"GET /x HTTP/1.1\r\nHost: a\r\n" + strings.Repeat("X-F: 1\r\n", 12) + "\r\n", "431", "bad_request", "request_headers"},
		{"GET /" + strings.Repeat("u", 300) + " HTTP/1.1\r\nHost: a\r\n\r\n", "414", "bad_request", "request_uri_bytes"},
		{"POST /x HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\n\r\n0\r\nX-T: " + strings.Repeat("t", 2000) + "\r\n\r\n", "431", "bad_request", "request_trailer"},
		{"GET /bighead HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "502", "bad_response", "response_header_bytes"},
		{"GET /many HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "502", "bad_response", "response_headers"},
	} {
		before := p.Stats().HeadLimits[c.limit]
		out := rawExchange(t, addr, c.req)
		if !strings.HasPrefix(out, "HTTP/1.1 "+c.status+" ") || !strings.Contains(out, "X-Warren-Reason: "+c.reason+"\r\n") {
			t.Fatalf("%s: got %q", c.limit, out)
		}
		if n := p.Stats().HeadLimits[c.limit] - before; n != 1 {
			t.Fatalf("%s: counted %d", c.limit, n)
		}
	}
	out := rawExchange(t, addr, "GET /bigtrailer HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(out, "HTTP/1.1 200 ") || strings.HasSuffix(out, "0\r\n\r\n") {
		t.Fatalf("trailer over the limit: %q", out)
	}
	if n := p.Stats().HeadLimits["response_trailer"]; n != 1 {
		t.Fatalf("response_trailer counted %d", n)
	}
}
