//go:build linux

package tlsx

import (
	"crypto/tls"
	"net"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/netns"
)

// TestPerIPRateIPv6Prefix: the per-IP handshake bucket counts an IPv6
// client by its /64, so a second address of the same /64 finds the bucket
// empty and another /64 has its own.
func TestPerIPRateIPv6Prefix(t *testing.T) {
	if !netns.Run(t, "2001:db8::1/64", "2001:db8::2/64", "2001:db8:0:1::1/64") {
		return
	}
	s, addr, pool := testServerOn(t, "[2001:db8::1]:0", engine.Config{}, Config{RatePerIP: 0.001, BurstPerIP: 1})
	dial := func(src string) error {
		d := &net.Dialer{LocalAddr: &net.TCPAddr{IP: net.ParseIP(src)}, Timeout: 5 * time.Second}
		c, err := tls.DialWithDialer(d, "tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err == nil {
			c.Close()
		}
		return err
	}
	if err := dial("2001:db8::1"); err != nil {
		t.Fatalf("first handshake of the /64: %v", err)
	}
	if err := dial("2001:db8::2"); err == nil {
		t.Fatal("a second address of the same /64 got a handshake from an empty per-IP bucket")
	}
	if err := dial("2001:db8:0:1::1"); err != nil {
		t.Fatalf("another /64: %v", err)
	}
	if got := testutil.ToFloat64(s.m.refused.WithLabelValues(BoundPerIP)); got != 1 {
		t.Fatalf("per_ip refusals: %v", got)
	}
}
