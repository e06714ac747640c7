//go:build !windows

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestServeUpstreamHeadLimits: warren serve -upstream takes warren proxy's
// response head and interim flags under the same names: a backend head
// over -max-response-header-bytes or -max-response-headers gets 502, and
// -max-interim 1 passes one of a Go backend's two 103 Early Hints on,
// -max-interim-bytes shorter than one head passes none (by default none).
func TestServeUpstreamHeadLimits(t *testing.T) {
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("X-Big", strings.Repeat("b", 6000))
		case "/many":
			for i := range 40 {
				w.Header().Set("X-F"+strconv.Itoa(i), "v")
			}
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(103)
			w.WriteHeader(103)
		}
		io.WriteString(w, "ok")
	}))
	defer b.Close()
	raw := func(addr, req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(10 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	get := func(path string) string { return "GET " + path + " HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n" }

	n := startServe(t, "uplim", t.TempDir(), "-upstream", b.URL,
		"-max-response-header-bytes", "4096", "-max-response-headers", "30", "-max-interim", "1")
	for path, want := range map[string]string{"/big": "HTTP/1.1 502 ", "/many": "HTTP/1.1 502 ", "/ok": "HTTP/1.1 200 "} {
		if got := raw(n.addr, get(path)); !strings.HasPrefix(got, want) {
			t.Fatalf("%s: got %.200q, want %q", path, got, want)
		}
	}
	got := raw(n.addr, get("/hints"))
	if !strings.HasPrefix(got, "HTTP/1.1 103 ") || strings.Count(got, " 103 ") != 1 || !strings.Contains(got, "HTTP/1.1 200 ") {
		t.Fatalf("hints with -max-interim 1: %q", got)
	}

	// -max-interim-bytes under -max-interim: a 103 head is longer than
	// 10 bytes, so neither goes on although two would be allowed.
	ib := startServe(t, "upib", t.TempDir(), "-upstream", b.URL, "-max-interim", "2", "-max-interim-bytes", "10")
	if got := raw(ib.addr, get("/hints")); !strings.HasPrefix(got, "HTTP/1.1 200 ") || strings.Contains(got, " 103 ") {
		t.Fatalf("hints with -max-interim 2 -max-interim-bytes 10: %q", got)
	}

	// The defaults: the same heads pass (64 KiB, 100 fields), no 103.
	d := startServe(t, "updef", t.TempDir(), "-upstream", b.URL)
	for _, path := range []string{"/big", "/many"} {
		if got := raw(d.addr, get(path)); !strings.HasPrefix(got, "HTTP/1.1 200 ") {
			t.Fatalf("%s with the defaults: %.200q", path, got)
		}
	}
	if got := raw(d.addr, get("/hints")); !strings.HasPrefix(got, "HTTP/1.1 200 ") || strings.Contains(got, " 103 ") {
		t.Fatalf("hints with the defaults: %q", got)
	}
}

// TestServeUpstreamFlagsNeedUpstream: the response head and interim flags
// bound the -upstream proxy alone; without -upstream they are a usage
// error (exit 2), as -route-limit is, rather than silently ignored.
func TestServeUpstreamFlagsNeedUpstream(t *testing.T) {
	for _, args := range [][]string{
		{"-max-response-header-bytes", "4096"},
		{"-max-response-headers", "30"},
		{"-max-interim", "1"},
		{"-max-interim-bytes", "100"},
	} {
		var out, errb strings.Builder
		if code := run(append([]string{"serve"}, args...), &out, &errb); code != 2 ||
			!strings.Contains(errb.String(), args[0]+" needs -upstream") {
			t.Fatalf("%v: exit %d, %q", args, code, errb.String())
		}
	}
}
