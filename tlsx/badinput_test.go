package tlsx

import (
	"bytes"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/binary"
	"errors"
	"io"
	"math/big"
	"net"
	"os"
	"strings"
	"syscall"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	wtest "github.com/warrenhq/warren/internal/testutil"
)

// selfSigned returns a certificate for 127.0.0.1 and a pool trusting it.
func selfSigned(t testing.TB) (*tls.Certificate, *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(7), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}

// testServer is a TLS listener in front of an HTTP "hello".
func testServer(t testing.TB, cfg Config) (*Server, string, *x509.CertPool) {
	t.Helper()
	return testServerOn(t, "127.0.0.1:0", engine.Config{}, cfg)
}

// testServerOn is testServer listening on addr, its engine made with ecfg.
func testServerOn(t testing.TB, addr string, ecfg engine.Config, cfg Config) (*Server, string, *x509.CertPool) {
	t.Helper()
	cert, pool := selfSigned(t)
	if cfg.Certificate == nil {
		cfg.Certificate = cert
	}
	e := wtest.StartEngine(t, ecfg)
	s, err := New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("hello") }))
	hs, err := http1.NewServer(e, http1.Config{}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen(e, addr, hs.Handler())
	if err != nil {
		t.Fatal(err)
	}
	return s, ln.Addr().String(), pool
}

// oneRecord hands a reader one TLS record at most per Read, so the Go
// client's tls.Conn reads nothing past the handshake.
type oneRecord struct {
	net.Conn
	left int
	hdr  []byte
}

func (o *oneRecord) Read(p []byte) (int, error) {
	if o.left == 0 {
		var h [5]byte
		if _, err := io.ReadFull(o.Conn, h[:]); err != nil {
			return 0, err
		}
		o.hdr = h[:]
		o.left = int(binary.BigEndian.Uint16(h[3:]))
	}
	if o.hdr != nil {
		n := copy(p, o.hdr)
		o.hdr = o.hdr[n:]
		if len(o.hdr) == 0 {
			o.hdr = nil
		}
		return n, nil
	}
	n, err := o.Conn.Read(p[:min(len(p), o.left)])
	o.left -= n
	return n, err
}

// rawClient is a TLS 1.3 client whose records after the handshake are
// warren's own record layer, so a test can send what no real client would.
type rawClient struct {
	nc net.Conn
	r  *recordLayer
}

type clientKeys struct{ c, s []byte }

func (k *clientKeys) Write(p []byte) (int, error) {
	f := strings.Fields(string(p))
	if len(f) == 3 {
		b := make([]byte, len(f[2])/2)
		for i := range b {
			var v byte
			for _, ch := range f[2][2*i : 2*i+2] {
				v <<= 4
				switch {
				case ch >= '0' && ch <= '9':
					v |= byte(ch - '0')
				default:
					v |= byte(ch-'a') + 10
				}
			}
			b[i] = v
		}
		switch f[0] {
		case "CLIENT_TRAFFIC_SECRET_0":
			k.c = b
		case "SERVER_TRAFFIC_SECRET_0":
			k.s = b
		}
	}
	return len(p), nil
}

func dialRaw(t *testing.T, addr string, pool *x509.CertPool) *rawClient {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	keys := &clientKeys{}
	tc := tls.Client(&oneRecord{Conn: nc}, &tls.Config{RootCAs: pool, ServerName: "localhost", MinVersion: tls.VersionTLS13,
		KeyLogWriter: keys})
	if err := tc.Handshake(); err != nil {
		t.Fatal(err)
	}
	suite := suiteByID(tc.ConnectionState().CipherSuite)
	r := &recordLayer{suite: suite, client: true}
	r.in.set(suite, keys.s)
	r.out.set(suite, keys.c)
	return &rawClient{nc: nc, r: r}
}

func (rc *rawClient) send(t *testing.T, ctype byte, p []byte) {
	t.Helper()
	b, err := rc.r.sealRecord(nil, &rc.r.out, ctype, p)
	if err != nil {
		t.Fatal(err)
	}
	rc.raw(t, b)
}

func (rc *rawClient) raw(t *testing.T, b []byte) {
	t.Helper()
	if _, err := rc.nc.Write(b); err != nil {
		t.Fatal(err)
	}
}

// read returns the plaintext the server sends until it closes or d passes,
// and the record layer's error (an alert from the server, close_notify).
func (rc *rawClient) read(d time.Duration) ([]byte, error) {
	rc.nc.SetReadDeadline(time.Now().Add(d))
	var plain []byte
	buf := make([]byte, 64<<10)
	for {
		n, err := rc.nc.Read(buf)
		if n > 0 {
			p, oerr := rc.r.Open(nil, buf[:n])
			plain = append(plain, p...)
			rc.r.OpenDone()
			if oerr != nil {
				return plain, oerr
			}
		}
		if err != nil {
			return plain, err
		}
	}
}

func (rc *rawClient) get(t *testing.T) string {
	t.Helper()
	rc.send(t, typeAppData, []byte("GET / HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n"))
	plain, _ := rc.read(5 * time.Second)
	return string(plain)
}

// wantAlert reads until the server's alert and checks it.
func (rc *rawClient) wantAlert(t *testing.T, desc uint8) {
	t.Helper()
	_, err := rc.read(5 * time.Second)
	var pa *peerAlertError
	if !errors.As(err, &pa) || pa.desc != desc {
		t.Fatalf("got %v, want alert %s", err, alertName(desc))
	}
	// Then the connection closes.
	rc.nc.SetReadDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.Copy(io.Discard, rc.nc); err != nil {
		t.Fatalf("after the alert: %v", err)
	}
}

// TestRecordLayerFaults: after a real handshake, what no real client
// sends gets the right alert and a typed close, counted.
func TestRecordLayerFaults(t *testing.T) {
	s, addr, pool := testServer(t, Config{})
	t.Run("ok", func(t *testing.T) {
		if got := dialRaw(t, addr, pool).get(t); !strings.HasSuffix(got, "hello") {
			t.Fatalf("response %q", got)
		}
	})
	t.Run("key_update_requested", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		before := rc.r.in.secret
		rc.send(t, typeHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1})
		rc.r.out.update(rc.r.suite)
		// The server answers with its own KeyUpdate before the response;
		// the client's record layer follows it (or fails on the MAC).
		if got := rc.get(t); !strings.HasSuffix(got, "hello") {
			t.Fatalf("response %q", got)
		}
		if before == rc.r.in.secret {
			t.Fatal("the server did not update its keys")
		}
	})
	t.Run("bad_mac", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		b, _ := rc.r.sealRecord(nil, &rc.r.out, typeAppData, []byte("GET / HTTP/1.1\r\n\r\n"))
		b[len(b)-1] ^= 1
		rc.raw(t, b)
		rc.wantAlert(t, alertBadRecordMAC)
	})
	t.Run("oversized", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		rc.raw(t, append([]byte{typeAppData, 3, 3, (maxCiphertext + 1) >> 8, (maxCiphertext + 1) & 0xff}, make([]byte, 100)...))
		rc.wantAlert(t, alertRecordOverflow)
	})
	t.Run("renegotiation", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		rc.send(t, typeHandshake, []byte{1, 0, 0, 4, 3, 3, 0, 0})
		rc.wantAlert(t, alertUnexpectedMessage)
	})
	t.Run("plaintext_record", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		rc.raw(t, []byte{typeHandshake, 3, 3, 0, 4, 1, 0, 0, 0})
		rc.wantAlert(t, alertUnexpectedMessage)
	})
	t.Run("close_notify", func(t *testing.T) {
		rc := dialRaw(t, addr, pool)
		rc.send(t, typeAlert, []byte{1, alertCloseNotify})
		_, err := rc.read(5 * time.Second)
		if !errors.Is(err, io.EOF) {
			t.Fatalf("got %v, want the server's close_notify", err)
		}
	})
	for _, reason := range []string{"tls_bad_record_mac", "tls_record_overflow", "tls_renegotiation_refused"} {
		wtest.Eventually(t, 5*time.Second, reason+" counted", func() bool {
			return testutil.ToFloat64(s.m.records.WithLabelValues(reason)) >= 1
		})
	}
	if testutil.ToFloat64(s.m.keyUpdates) != 1 {
		t.Fatalf("key updates counted: %v", testutil.ToFloat64(s.m.keyUpdates))
	}
}

// closed reads from nc until the server closes it, within d.
func closed(t *testing.T, nc net.Conn, d time.Duration) []byte {
	t.Helper()
	nc.SetReadDeadline(time.Now().Add(d))
	b, err := io.ReadAll(nc)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		t.Fatalf("still open after %v", d)
	}
	return b
}

// clientHello returns the first record a Go TLS client sends.
func clientHello(t *testing.T) []byte {
	t.Helper()
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{InsecureSkipVerify: true}).Handshake()
	defer a.Close()
	defer b.Close()
	var h [5]byte
	if _, err := io.ReadFull(b, h[:]); err != nil {
		t.Fatal(err)
	}
	body := make([]byte, binary.BigEndian.Uint16(h[3:]))
	if _, err := io.ReadFull(b, body); err != nil {
		t.Fatal(err)
	}
	return append(h[:], body...)
}

// TestHandshakeFaults: garbage, plaintext HTTP, a truncated and a stalled
// handshake, each closed with its reason and counted; the bounds before
// the handshake refuse and count.
func TestHandshakeFaults(t *testing.T) {
	s, addr, _ := testServer(t, Config{HandshakeTimeout: 300 * time.Millisecond, HandshakeWorkers: 1, HandshakeQueue: 1})
	dial := func() net.Conn {
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { nc.Close() })
		return nc
	}
	count := func(res string) float64 { return testutil.ToFloat64(s.m.handshakes.WithLabelValues(res, "none")) }

	nc := dial()
	nc.Write([]byte("\x00\x01garbage garbage garbage"))
	closed(t, nc, 5*time.Second)
	wtest.Eventually(t, 5*time.Second, "not_tls counted", func() bool { return count(ResultNotTLS) == 1 })

	nc = dial()
	nc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
	if got := string(closed(t, nc, 5*time.Second)); !strings.Contains(got, "400 Bad Request") {
		t.Fatalf("plaintext HTTP answered %q", got)
	}

	// A ClientHello cut short, then nothing: the handshake timeout.
	hello := clientHello(t)
	nc = dial()
	nc.Write(hello[:len(hello)/2])
	closed(t, nc, 10*time.Second) // only the timeout closes it
	wtest.Eventually(t, 10*time.Second, "timeout counted", func() bool { return count(ResultTimeout) >= 1 })

	// Whole ClientHellos and no second flight: the one worker waits on the
	// first, the second waits in the queue, the third is refused. On a
	// server of its own whose handshake timeout is long enough for the
	// three steps on a loaded machine: the first handshake must still hold
	// the worker when the third arrives.
	s, addr, _ = testServer(t, Config{HandshakeTimeout: 2 * time.Second, HandshakeWorkers: 1, HandshakeQueue: 1})
	a, b, c := dial(), dial(), dial()
	a.Write(hello)
	// The server's first flight: the worker has the first handshake.
	a.SetReadDeadline(time.Now().Add(10 * time.Second))
	if _, err := a.Read(make([]byte, 1)); err != nil {
		t.Fatalf("no server flight on the first handshake: %v", err)
	}
	b.Write(hello)
	wtest.Eventually(t, 5*time.Second, "second handshake queued", func() bool { return len(s.jobs) == 1 })
	c.Write(hello)
	closed(t, c, 5*time.Second)
	if got := testutil.ToFloat64(s.m.refused.WithLabelValues(BoundQueueFull)); got != 1 {
		t.Fatalf("queue_full refusals: %v", got)
	}
	// The stalled ones time out too.
	closed(t, a, 10*time.Second)
	closed(t, b, 10*time.Second)
}

// TestPerIPRate: the per-IP bucket refuses before any TLS work.
func TestPerIPRate(t *testing.T) {
	s, addr, pool := testServer(t, Config{RatePerIP: 0.001, BurstPerIP: 2})
	for i := range 2 {
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("connection %d: %v", i, err)
		}
		c.Close()
	}
	if _, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost"}); err == nil {
		t.Fatal("third connection admitted")
	}
	if got := testutil.ToFloat64(s.m.refused.WithLabelValues(BoundPerIP)); got != 1 {
		t.Fatalf("per_ip refusals: %v", got)
	}
}

// FuzzOpen feeds the record layer — TLS 1.3, and TLS 1.2 with an AES-GCM
// and a ChaCha20-Poly1305 suite — arbitrary bytes, in two reads, after
// records sealed with the right keys: no panic, and the good records'
// plaintext comes out whole.
func FuzzOpen(f *testing.F) {
	secret := bytes.Repeat([]byte{7}, 32)
	layer := func(s *cipherSuite) *recordLayer {
		r := &recordLayer{suite: s}
		if s.v12 {
			r.in.set12(secret[:s.keyLen], secret[:s.fixedIV])
			r.out.set12(secret[:s.keyLen], secret[:s.fixedIV])
		} else {
			r.in.set(s, secret)
			r.out.set(s, secret)
		}
		return r
	}
	seal := func(s *cipherSuite, ctype byte, p []byte) []byte {
		w := layer(s)
		b, _ := w.sealRecord(nil, &w.out, ctype, p)
		return b
	}
	suites := []*cipherSuite{suiteByID(tls.TLS_AES_128_GCM_SHA256), suiteByID(tls.TLS_CHACHA20_POLY1305_SHA256),
		suite12ByID(tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256), suite12ByID(tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256)}
	for _, s := range []*cipherSuite{suites[0], suites[2], suites[3]} {
		f.Add(seal(s, typeAppData, []byte("GET / HTTP/1.1\r\n\r\n")), uint16(3))
		f.Add(seal(s, typeAlert, []byte{1, 0}), uint16(0))
		f.Add(append(seal(s, typeAppData, []byte("a")), seal(s, typeAlert, []byte{1, alertUserCanceled})...), uint16(30))
	}
	f.Add(seal(suites[0], typeHandshake, []byte{hsKeyUpdate, 0, 0, 1, 1}), uint16(9))
	f.Add(seal(suites[2], typeHandshake, []byte{hsClientHello, 0, 0, 1, 1}), uint16(9))
	f.Add([]byte{typeAppData, 3, 3, 0xff, 0xff, 1, 2, 3}, uint16(2))
	f.Add([]byte{typeHandshake, 3, 1, 0, 5, 1, 0, 0, 1, 0}, uint16(1))
	f.Add([]byte{typeChangeCipherSpec, 3, 3, 0, 1, 1}, uint16(1))
	f.Fuzz(func(t *testing.T, data []byte, split uint16) {
		for _, s := range suites {
			r := layer(s)
			in := append([]byte(nil), data...)
			k := int(split) % (len(in) + 1)
			p1, err := r.Open(nil, in[:k])
			n1 := len(p1)
			r.OpenDone()
			if err != nil {
				continue
			}
			p2, _ := r.Open(nil, in[k:])
			r.OpenDone()
			if n1+len(p2) > len(data) {
				t.Fatalf("more plaintext (%d) than input (%d)", n1+len(p2), len(data))
			}
		}
	})
}

// TestWatchSIGHUP: a SIGHUP makes Watch reload (the signal channel is
// the test's, so no signal is sent to the process).
func TestWatchSIGHUP(t *testing.T) {
	s, _, _ := testServer(t, Config{})
	hup := make(chan os.Signal, 1)
	ctx, cancel := context.WithCancel(context.Background())
	defer cancel()
	go s.watch(ctx, hup)
	hup <- syscall.SIGHUP
	// Certificate (not files) reloads to itself: counted ok.
	wtest.Eventually(t, 5*time.Second, "reload on SIGHUP", func() bool {
		return testutil.ToFloat64(s.m.reloads.WithLabelValues("ok")) == 1
	})
}
