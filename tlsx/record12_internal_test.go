package tlsx

import (
	"bytes"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"hash"
	"io"
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	wtest "github.com/warrenhq/warren/internal/testutil"
)

// tapConn keeps what a TLS client wrote and read during its handshake,
// one record per Read (oneRecord), so the test can find both randoms.
type tapConn struct {
	oneRecord
	mu           sync.Mutex
	wrote, reads []byte
}

func (c *tapConn) Read(p []byte) (int, error) {
	n, err := c.oneRecord.Read(p)
	c.mu.Lock()
	c.reads = append(c.reads, p[:n]...)
	c.mu.Unlock()
	return n, err
}

func (c *tapConn) Write(p []byte) (int, error) {
	c.mu.Lock()
	c.wrote = append(c.wrote, p...)
	c.mu.Unlock()
	return c.oneRecord.Conn.Write(p)
}

// masterLog catches a TLS 1.2 key log line.
type masterLog struct{ master []byte }

func (m *masterLog) Write(p []byte) (int, error) {
	f := strings.Fields(string(p))
	if len(f) == 3 && f[0] == "CLIENT_RANDOM" {
		m.master = make([]byte, len(f[2])/2)
		for i := range m.master {
			var v byte
			for _, ch := range f[2][2*i : 2*i+2] {
				v <<= 4
				if ch >= '0' && ch <= '9' {
					v |= byte(ch - '0')
				} else {
					v |= byte(ch-'a') + 10
				}
			}
			m.master[i] = v
		}
	}
	return len(p), nil
}

// TestPRF12: the TLS 1.2 PRF here agrees with crypto/tls's, checked
// through ExportKeyingMaterial (RFC 5705: the PRF of the master secret over
// the client and server randoms) on real handshakes, SHA-256 and SHA-384.
func TestPRF12(t *testing.T) {
	cert, pool := selfSigned(t)
	for _, c := range []struct {
		suite uint16
		h     func() hash.Hash
	}{
		{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, sha256.New},
		{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, sha512.New384},
	} {
		a, b := net.Pipe()
		go func() {
			s := tls.Server(b, &tls.Config{Certificates: []tls.Certificate{*cert}, MaxVersion: tls.VersionTLS12})
			s.Handshake()
			io.Copy(io.Discard, s)
		}()
		tap := &tapConn{oneRecord: oneRecord{Conn: a}}
		ml := &masterLog{}
		tc := tls.Client(tap, &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
			CipherSuites: []uint16{c.suite}, KeyLogWriter: ml})
		if err := tc.Handshake(); err != nil {
			t.Fatal(err)
		}
		cs := tc.ConnectionState()
		want, err := cs.ExportKeyingMaterial("EXPERIMENTAL warren", nil, 100)
		if err != nil {
			t.Fatal(err)
		}
		seed := append(append([]byte(nil), clientRandom(tap.wrote)...), serverRandom(tap.reads)...)
		if got := prf12(c.h, ml.master, "EXPERIMENTAL warren", seed, 100); !bytes.Equal(got, want) {
			t.Fatalf("%s: PRF\n got %x\nwant %x", tls.CipherSuiteName(c.suite), got, want)
		}
		tc.Close()
		a.Close()
	}
}

// rawClient12 is a TLS 1.2 client whose records after the handshake are
// warren's own record layer, so a test can send what no real client would.
func dialRaw12(t *testing.T, addr string, pool *x509.CertPool, suite uint16) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	tap := &tapConn{oneRecord: oneRecord{Conn: nc}}
	ml := &masterLog{}
	tc := tls.Client(tap, &tls.Config{RootCAs: pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{suite}, KeyLogWriter: ml})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	s := suite12ByID(suite)
	ck, sk, civ, siv := keyBlock12(s, ml.master, clientRandom(tap.wrote), serverRandom(tap.reads))
	r := &recordLayer{suite: s, client: true}
	r.in.set12(sk, siv)
	r.out.set12(ck, civ)
	if !r.opensFinished(r.out, lastRecord(tap.wrote)) || !r.opensFinished(r.in, lastRecord(tap.reads)) {
		t.Fatal("the derived keys do not open the Finished records")
	}
	r.in.seq, r.out.seq = 1, 1
	return &rawClient{nc: nc, r: r}
}

// TestRecordLayer12: after a real TLS 1.2 handshake, warren's record layer
// talks to one built from the client's own key log, on every AEAD suite;
// what no real client sends gets the right alert and a typed close,
// counted.
func TestRecordLayer12(t *testing.T) {
	s, addr, pool := testServer(t, Config{})
	for _, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
		tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256} {
		t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
			if got := dialRaw12(t, addr, pool, suite).get(t); !strings.HasSuffix(got, "hello") {
				t.Fatalf("response %q", got)
			}
		})
	}
	const suite = tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
	t.Run("split_records", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256)
		var b []byte
		for _, part := range []string{"GET / HTTP/1.1\r\n", "Host: x\r\n", "Connection: close\r\n\r\n"} {
			b, _ = rc.r.sealRecord(b, &rc.r.out, typeAppData, []byte(part))
		}
		for len(b) > 0 { // a byte at a time
			rc.raw(t, b[:1])
			b = b[1:]
		}
		if plain, _ := rc.read(5 * time.Second); !strings.HasSuffix(string(plain), "hello") {
			t.Fatalf("response %q", plain)
		}
	})
	t.Run("warning_ignored", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeAlert, []byte{1, alertUserCanceled})
		rc.send(t, typeAlert, []byte{1, alertNoRenegotiation})
		if got := rc.get(t); !strings.HasSuffix(got, "hello") {
			t.Fatalf("response %q", got)
		}
	})
	t.Run("bad_mac", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		b, _ := rc.r.sealRecord(nil, &rc.r.out, typeAppData, []byte("GET / HTTP/1.1\r\n\r\n"))
		b[len(b)-1] ^= 1
		rc.raw(t, b)
		rc.wantAlert(t, alertBadRecordMAC)
	})
	t.Run("oversized", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.raw(t, append([]byte{typeAppData, 3, 3, (maxCiphertext12 + 1) >> 8, (maxCiphertext12 + 1) & 0xff}, make([]byte, 100)...))
		rc.wantAlert(t, alertRecordOverflow)
	})
	t.Run("oversized_plaintext", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeAppData, make([]byte, maxPlaintext+1))
		rc.wantAlert(t, alertRecordOverflow)
	})
	t.Run("client_hello", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeHandshake, []byte{hsClientHello, 0, 0, 4, 3, 3, 0, 0})
		rc.wantWarning12(t, alertNoRenegotiation)
	})
	t.Run("hello_request", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeHandshake, []byte{hsHelloRequest, 0, 0, 0})
		rc.wantWarning12(t, alertNoRenegotiation)
	})
	t.Run("other_handshake", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeHandshake, []byte{hsFinished, 0, 0, 12, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12})
		rc.wantAlert(t, alertUnexpectedMessage)
	})
	t.Run("change_cipher_spec", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.raw(t, []byte{typeChangeCipherSpec, 3, 3, 0, 1, 1})
		rc.wantAlert(t, alertUnexpectedMessage)
	})
	t.Run("plaintext_client_hello", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.raw(t, []byte{typeHandshake, 3, 1, 0, 4, 1, 0, 0, 0})
		rc.wantWarning12(t, alertNoRenegotiation)
	})
	t.Run("peer_alert", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeAlert, []byte{2, alertHandshakeFailure})
		if _, err := rc.read(5 * time.Second); !errors.Is(err, io.EOF) {
			t.Fatalf("after a fatal alert: %v, want the connection closed", err)
		}
	})
	t.Run("close_notify", func(t *testing.T) {
		rc := dialRaw12(t, addr, pool, suite)
		rc.send(t, typeAlert, []byte{1, alertCloseNotify})
		_, err := rc.read(5 * time.Second)
		var cn closeNotifyError
		if !errors.As(err, &cn) {
			t.Fatalf("got %v, want the server's close_notify", err)
		}
	})
	for _, reason := range []string{"tls_bad_record_mac", "tls_record_overflow", "tls_renegotiation_refused",
		"tls_unexpected_message", "tls_peer_alert_handshake_failure"} {
		wtest.Eventually(t, 5*time.Second, reason+" counted", func() bool {
			return testutil.ToFloat64(s.m.records.WithLabelValues(reason)) >= 1
		})
	}
	if n := testutil.ToFloat64(s.m.layers.WithLabelValues("1.2", LayerCryptoTLS)); n != 0 {
		t.Fatalf("%v TLS 1.2 connections on crypto/tls's record layer", n)
	}
}

// wantWarning12 reads until the server closes and checks that its last
// record was the warning alert desc (no_renegotiation is a warning, which
// the record layer itself would skip).
func (rc *rawClient) wantWarning12(t *testing.T, desc uint8) {
	t.Helper()
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	b, err := io.ReadAll(rc.nc)
	if err != nil {
		t.Fatalf("waiting for the close: %v", err)
	}
	var last []byte
	for len(b) >= recordHeaderLen {
		n := recordHeaderLen + (int(b[3])<<8 | int(b[4]))
		if n > len(b) {
			t.Fatalf("a partial record at the end")
		}
		a, _ := rc.r.in.cipher(rc.r.suite)
		ctype, content, err := rc.r.open12(a, b[:recordHeaderLen], b[recordHeaderLen:n], new(scratch))
		if err != nil {
			t.Fatal(err)
		}
		rc.r.in.seq++
		last = append([]byte{ctype}, content...)
		b = b[n:]
	}
	if !bytes.Equal(last, []byte{typeAlert, 1, desc}) {
		t.Fatalf("last record %x, want a warning alert %s", last, alertName(desc))
	}
}
