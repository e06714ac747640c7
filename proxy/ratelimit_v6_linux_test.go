//go:build linux

package proxy

import (
	"io"
	"net"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/netns"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
)

// TestProxyRatePerIPv6Prefix: Config.RatePerIP counts an IPv6 client by its
// /64, so a second address of the same /64 finds the bucket spent, and an
// address of the next /64 has its own.
func TestProxyRatePerIPv6Prefix(t *testing.T) {
	if !netns.Run(t, "2001:db8::1/64", "2001:db8::2/64", "2001:db8:0:1::1/64") {
		return
	}
	clk := testutil.NewFakeClock() // the buckets never refill during the test
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	defer b.Close()
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{b.URL}, Timeout: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p := New(e, cl, Config{RatePerIP: 1, BurstPerIP: 1})
	t.Cleanup(p.Close)
	ln, err := p.Listen("[2001:db8::1]:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func(src string) int {
		t.Helper()
		tr := &http.Transport{DialContext: (&net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}}).DialContext}
		defer tr.CloseIdleConnections()
		resp, err := (&http.Client{Transport: tr, Timeout: 10 * time.Second}).Get("http://" + ln.Addr().String() + "/")
		if err != nil {
			t.Fatalf("GET from %s: %v", src, err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp.StatusCode
	}
	if code := get("2001:db8::1"); code != 200 {
		t.Fatalf("first request of the /64: %d", code)
	}
	if code := get("2001:db8::2"); code != 429 {
		t.Fatalf("a second address of the same /64: %d, want 429 (its bucket is spent)", code)
	}
	if code := get("2001:db8:0:1::1"); code != 200 {
		t.Fatalf("another /64: %d, want 200", code)
	}
}
