//go:build !windows

package main

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"regexp"
	"strings"
	"testing"
	"time"
)

// TestProxyCommandHeadLimits runs warren proxy with the head limit flags
// set low: a request head over -max-header-bytes gets 431, a response head
// over -max-response-header-bytes 502 bad_response, a request-target over
// -max-uri-bytes 414; -max-interim 1 passes one of a Go backend's two 103
// Early Hints on; /metrics counts each by limit.
func TestProxyCommandHeadLimits(t *testing.T) {
	bin := warrenBinary(t)
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/big":
			w.Header().Set("X-Big", strings.Repeat("b", 6000))
		case "/hints":
			w.Header().Set("Link", "</a.css>; rel=preload")
			w.WriteHeader(103)
			w.WriteHeader(103)
		}
		io.WriteString(w, "ok")
	}))
	defer b.Close()
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0", "-upstream", b.URL,
		"-max-header-bytes", "2048", "-max-headers", "20", "-max-uri-bytes", "512",
		"-max-response-header-bytes", "4096", "-max-response-headers", "30", "-max-interim", "1")
	p.waitOutput(t, 20*time.Second, "admin: listening")
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := p.out.String()
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	adminAddr := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	raw := func(req string) string {
		t.Helper()
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		defer c.Close()
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, req)
		b, _ := io.ReadAll(c)
		return string(b)
	}
	for _, c := range []struct{ req, want string }{
		{"GET / HTTP/1.1\r\nHost: a\r\nX-Big: " + strings.Repeat("a", 3000) + "\r\n\r\n", "HTTP/1.1 431 "},
		{"GET /" + strings.Repeat("u", 600) + " HTTP/1.1\r\nHost: a\r\n\r\n", "HTTP/1.1 414 "},
		{"GET /big HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "HTTP/1.1 502 "},
		{"GET /ok HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n", "HTTP/1.1 200 "},
	} {
		if got := raw(c.req); !strings.HasPrefix(got, c.want) {
			t.Fatalf("%.40q: got %q", c.req, got)
		}
	}
	got := raw("GET /hints HTTP/1.1\r\nHost: a\r\nConnection: close\r\n\r\n")
	if !strings.HasPrefix(got, "HTTP/1.1 103 ") || strings.Count(got, " 103 ") != 1 || !strings.Contains(got, "HTTP/1.1 200 ") {
		t.Fatalf("hints: %q", got)
	}
	resp, err := http.Get("http://" + adminAddr + "/metrics")
	if err != nil {
		t.Fatal(err)
	}
	metrics, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, want := range []string{
		`warren_proxy_head_limit_total{limit="request_header_bytes"} 1`,
		`warren_proxy_head_limit_total{limit="request_uri_bytes"} 1`,
		`warren_proxy_head_limit_total{limit="response_header_bytes"} 1`,
		`warren_proxy_interim_total 1`,
		`warren_proxy_interim_dropped_total 1`,
	} {
		if !strings.Contains(string(metrics), want) {
			t.Errorf("/metrics lacks %s", want)
		}
	}
}
