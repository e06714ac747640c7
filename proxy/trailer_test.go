package proxy

import (
	"bufio"
	"io"
	"net"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
)

// trailerBackend records the trailer section of each chunked request it
// reads and answers it 200 "ok".
type trailerBackend struct {
	addr string
	mu   sync.Mutex
	got  []string
}

func startTrailerBackend(t *testing.T) *trailerBackend {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	b := &trailerBackend{addr: ln.Addr().String()}
	done := make(chan struct{})
	t.Cleanup(func() { ln.Close(); <-done })
	go func() {
		defer close(done)
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go b.serve(c)
		}
	}()
	return b
}

func (b *trailerBackend) serve(c net.Conn) {
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	br := bufio.NewReader(c)
	for {
		chunked := false
		for {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			if line == "\r\n" {
				break
			}
			if k, v, _ := strings.Cut(line, ":"); strings.EqualFold(k, "transfer-encoding") && strings.Contains(v, "chunked") {
				chunked = true
			}
		}
		var tr strings.Builder
		for chunked {
			line, err := br.ReadString('\n')
			if err != nil {
				return
			}
			n, err := strconv.ParseInt(strings.TrimSpace(line), 16, 64)
			if err != nil {
				return
			}
			if n > 0 {
				if _, err := io.CopyN(io.Discard, br, n+2); err != nil {
					return
				}
				continue
			}
			for {
				line, err := br.ReadString('\n')
				if err != nil {
					return
				}
				if line == "\r\n" {
					break
				}
				tr.WriteString(line)
			}
			break
		}
		b.mu.Lock()
		b.got = append(b.got, tr.String())
		b.mu.Unlock()
		if _, err := io.WriteString(c, "HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"); err != nil {
			return
		}
	}
}

// trailers returns the trailer sections read so far.
func (b *trailerBackend) trailers() []string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return append([]string(nil), b.got...)
}

// requestTrailerPaths runs check against the proxy's listener and a
// Forward route in front of a trailerBackend.
func requestTrailerPaths(t *testing.T, check func(t *testing.T, addr string, be *trailerBackend)) {
	e := startEngine(t)
	t.Run("listener", func(t *testing.T) {
		be := startTrailerBackend(t)
		addr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
		check(t, addr, be)
	})
	t.Run("forward", func(t *testing.T) {
		be := startTrailerBackend(t)
		addr, _ := startForward(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
		check(t, addr, be)
	})
}

// TestProxyTrailerConnectionOptions: a trailer field named by the head's
// Connection header is hop-by-hop and removed (RFC 9110 §7.6.1), from a
// request's trailer section and from a response's, on the listener and
// on a Forward route, whether the section comes whole or split; the
// other fields go on.
func TestProxyTrailerConnectionOptions(t *testing.T) {
	requestTrailerPaths(t, func(t *testing.T, addr string, be *trailerBackend) {
		head := "POST /up HTTP/1.1\r\nHost: a\r\nConnection: X-Secret, x-other\r\nX-Secret: head\r\nTransfer-Encoding: chunked\r\n\r\n"
		for i, parts := range [][]string{
			{head + "3\r\nabc\r\n0\r\nX-Secret: t\r\nX-Sum: 7\r\nX-Other: o\r\n\r\n"},
			{head + "3\r\nabc\r\n0\r\nX-Secr", "et: t\r\nX-Sum: 7\r\nX-Other: o\r\n\r\n"},
		} {
			parts[len(parts)-1] += "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n"
			out := rawExchange(t, addr, parts...)
			if strings.Count(out, "HTTP/1.1 200 OK") != 2 {
				t.Fatalf("case %d: %q", i, out)
			}
			got := be.trailers()
			if len(got) != 2*(i+1) || got[2*i] != "X-Sum: 7\r\n" {
				t.Fatalf("case %d: backend got trailer sections %q", i, got)
			}
		}
	})
	bothPaths(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Secret: hop\r\nX-Sum: 7\r\n\r\n"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasSuffix(out, "\r\n0\r\nX-Sum: 7\r\n\r\n") || strings.Contains(out, "X-Secret") {
			t.Fatalf("%q", out)
		}
	})
}

// controlTrailers are fields that change framing, routing,
// authentication, caching or content handling, or that the proxy sets
// itself, sent in a trailer section.
const controlTrailers = "Host: evil\r\nX-Forwarded-For: 6.6.6.6\r\nx-forwarded-proto: https\r\nForwarded: for=6.6.6.6\r\n" +
	"Via: 1.1 evil\r\nAuthorization: Basic eDp5\r\nCookie: a=b\r\nSet-Cookie: a=b\r\nContent-Type: text/evil\r\n" +
	"Content-Encoding: gzip\r\nContent-Range: bytes 0-1/2\r\nCache-Control: no-store\r\nIf-Match: *\r\nRange: bytes=0-\r\n" +
	"Expect: 100-continue\r\nMax-Forwards: 0\r\nLocation: /evil\r\nRetry-After: 1\r\nWWW-Authenticate: Basic\r\nAge: 1\r\n" +
	"Date: Mon, 07 Dec 2026 00:00:00 GMT\r\nExpires: 0\r\nVary: *\r\nPragma: no-cache\r\nWarning: 1\r\n"

// TestProxyTrailerControlFields: request and response trailer sections
// never carry fields that change framing, routing, authentication,
// request or response control or content handling (RFC 9110 §6.5.1:
// net/http's list and more), nor X-Forwarded-*, Forwarded or Via, which
// the proxy sets itself: a backend that merges trailer fields into the
// head would otherwise take a spoofed Host or X-Forwarded-For. Other
// fields go on.
func TestProxyTrailerControlFields(t *testing.T) {
	requestTrailerPaths(t, func(t *testing.T, addr string, be *trailerBackend) {
		out := rawExchange(t, addr, "POST /up HTTP/1.1\r\nHost: a\r\nTransfer-Encoding: chunked\r\nConnection: close\r\n\r\n"+
			"3\r\nabc\r\n0\r\n"+controlTrailers+"X-Sum: 7\r\n\r\n")
		if got := be.trailers(); !strings.HasPrefix(out, "HTTP/1.1 200 ") || len(got) != 1 || got[0] != "X-Sum: 7\r\n" {
			t.Fatalf("backend got trailer sections %q (client %q)", got, out)
		}
	})
	bothPaths(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabc\r\n0\r\n" + controlTrailers + "X-Sum: 7\r\n\r\n"
	}, func(t *testing.T, addr string, be *cannedBackend) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasSuffix(out, "\r\n3\r\nabc\r\n0\r\nX-Sum: 7\r\n\r\n") {
			t.Fatalf("%q", out)
		}
	})
}

// TestProxyTrailersDroppedCounted: each trailer field the proxy does not
// pass on is counted by direction and reason
// (warren_proxy_trailers_dropped_total): hop-by-hop and Connection-named
// fields, control fields, and a response's fields to an HTTP/1.0 client,
// which gets no trailer section; the fields that go on are not counted.
func TestProxyTrailersDroppedCounted(t *testing.T) {
	dropped := func(p *Proxy) map[string]map[string]uint64 { return p.Stats().TrailersDropped }
	want := func(t *testing.T, p *Proxy, dir string, hop, control, none uint64) {
		t.Helper()
		got := dropped(p)[dir]
		if got["hop_by_hop"] != hop || got["control"] != control || got["no_trailer_section"] != none {
			t.Fatalf("%s: dropped %v, want hop_by_hop %d, control %d, no_trailer_section %d", dir, got, hop, control, none)
		}
	}
	t.Run("request", func(t *testing.T) {
		e := startEngine(t)
		for _, start := range []func(*testing.T, *engine.Engine, upstream.ClusterConfig, Config) (string, *Proxy){startProxyT, startForward} {
			be := startTrailerBackend(t)
			addr, p := start(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
			// Connection names X-Secret; Keep-Alive is hop-by-hop; Host and
			// Authorization are control fields; X-Sum goes on.
			out := rawExchange(t, addr, "POST /up HTTP/1.1\r\nHost: a\r\nConnection: X-Secret\r\nTransfer-Encoding: chunked\r\n\r\n"+
				"3\r\nabc\r\n0\r\nX-Secret: s\r\nKeep-Alive: 1\r\nHost: evil\r\nAuthorization: x\r\nX-Sum: 7\r\n\r\n"+
				"GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
			if strings.Count(out, "HTTP/1.1 200 OK") != 2 || be.trailers()[0] != "X-Sum: 7\r\n" {
				t.Fatalf("%q, backend %q", out, be.trailers())
			}
			want(t, p, "request", 2, 2, 0)
			want(t, p, "response", 0, 0, 0)
		}
	})
	bothPathsProxy(t, func(string) string {
		return "HTTP/1.1 200 OK\r\nConnection: X-Secret\r\nTransfer-Encoding: chunked\r\n\r\n" +
			"3\r\nabc\r\n0\r\nX-Secret: hop\r\nContent-Length: 9\r\nX-Sum: 7\r\nGrpc-Status: 0\r\n\r\n"
	}, func(t *testing.T, addr string, be *cannedBackend, p *Proxy) {
		out := rawExchange(t, addr, "GET /x HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
		if !strings.HasSuffix(out, "0\r\nX-Sum: 7\r\nGrpc-Status: 0\r\n\r\n") {
			t.Fatalf("HTTP/1.1: %q", out)
		}
		want(t, p, "response", 1, 1, 0)
		// HTTP/1.0: no trailer section; its four fields are dropped for
		// that.
		out = rawExchange(t, addr, "GET /x HTTP/1.0\r\nHost: a\r\n\r\n")
		if _, body, _ := strings.Cut(out, "\r\n\r\n"); body != "abc" {
			t.Fatalf("HTTP/1.0: %q", out)
		}
		want(t, p, "response", 1, 1, 4)
		want(t, p, "request", 0, 0, 0)
	})
}

// startProxyT is startProxy with startForward's signature.
func startProxyT(t *testing.T, e *engine.Engine, ccfg upstream.ClusterConfig, pcfg Config) (string, *Proxy) {
	return startProxy(t, e, ccfg, pcfg)
}
