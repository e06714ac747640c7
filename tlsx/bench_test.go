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
	s, addr, pool := testServer(b, Config{RatePerIP: -1, Rate: -1, BanThreshold: -1})
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

// BenchmarkRecord seals a 1 KiB application-data record and opens it
// again, per suite and version, with the AEADs built per burst (as an
// idle-cheap connection does) or kept (Config.KeepCiphers).
func BenchmarkRecord(b *testing.B) {
	key := make([]byte, 48)
	for _, s := range []*cipherSuite{suiteByID(tls.TLS_AES_128_GCM_SHA256), suiteByID(tls.TLS_CHACHA20_POLY1305_SHA256),
		suite12ByID(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), suite12ByID(tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)} {
		for _, keep := range []bool{false, true} {
			name := tls.CipherSuiteName(s.id)
			if keep {
				name += "/keep"
			}
			b.Run(name, func(b *testing.B) {
				w, r := &recordLayer{suite: s, keep: keep}, &recordLayer{suite: s, keep: keep}
				if s.v12 {
					w.out.set12(key[:s.keyLen], key[:s.fixedIV])
					r.in.set12(key[:s.keyLen], key[:s.fixedIV])
				} else {
					w.out.set(s, key[:32])
					r.in.set(s, key[:32])
				}
				p := [][]byte{make([]byte, 1024)}
				b.SetBytes(1024)
				b.ReportAllocs()
				for b.Loop() {
					out, err := w.Seal(p, 1024)
					if err != nil {
						b.Fatal(err)
					}
					if plain, err := r.Open(nil, out); err != nil || len(plain) != 1024 {
						b.Fatal(err, len(plain))
					}
					r.OpenDone()
					w.Release(out)
				}
			})
		}
	}
}
