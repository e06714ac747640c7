package tlsx

import (
	"crypto/tls"
	"net"
	"testing"
)

// BenchmarkHandshake times full TLS 1.3 handshakes (ECDHE X25519, ECDSA
// P-256, no resumption) against a Server on a real loopback socket; the
// client's half runs in the same process, so read the profile, not the
// time, for the server's share.
func BenchmarkHandshake(b *testing.B) {
	s, addr, pool := testServer(b, Config{RatePerIP: -1, Rate: -1})
	_ = s
	cfg := &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13}
	b.ReportAllocs()
	for b.Loop() {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			b.Fatal(err)
		}
		tc := tls.Client(nc, cfg)
		if err := tc.Handshake(); err != nil {
			b.Fatal(err)
		}
		nc.Close()
	}
}
