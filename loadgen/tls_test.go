package loadgen_test

import (
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/loadgen"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// TestHTTPS: an https:// and a wss:// run against a warren TLS listener, verifying the
// server with -ca, and with -insecure; an untrusted server fails every
// connect.
func TestHTTPS(t *testing.T) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	caFile := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)

	e := testutil.StartEngine(t, engine.Config{})
	ts, err := tlsx.New(tlsx.Config{Certificate: &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key}, RatePerIP: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("hello") }))
	r.Handle("GET /ws", websocket.New(websocket.Config{Inline: true}, websocket.Echo).Handler())
	hs, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := hs.ListenWrapped("127.0.0.1:0", ts.Handler)
	if err != nil {
		t.Fatal(err)
	}
	url := "https://" + ln.Addr().String() + "/"
	wss := "wss://" + ln.Addr().String() + "/ws"
	for _, cfg := range []loadgen.Config{{URL: url, CAFile: caFile}, {URL: url, Insecure: true}, {URL: wss, CAFile: caFile}} {
		cfg.Conns, cfg.Duration = 4, 500*time.Millisecond
		rep, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests == 0 || rep.Connects != 4 {
			t.Fatalf("%+v: %d requests, %d opened, errors %v", cfg, rep.Requests, rep.Connects, rep.Errors)
		}
	}
	rep, err := loadgen.Run(context.Background(), loadgen.Config{URL: url, Conns: 2, Duration: 300 * time.Millisecond})
	if err == nil && rep.Requests > 0 {
		t.Fatalf("untrusted server: %d requests", rep.Requests)
	}
}

// testCA issues certificates for the client-certificate tests.
type testCA struct {
	cert *x509.Certificate
	key  *ecdsa.PrivateKey
	file string
	pool *x509.CertPool
}

func newTestCA(t *testing.T) *testCA {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "loadgen test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	ca := &testCA{key: key, file: filepath.Join(t.TempDir(), "ca.pem"), pool: x509.NewCertPool()}
	ca.cert, _ = x509.ParseCertificate(der)
	ca.pool.AddCert(ca.cert)
	os.WriteFile(ca.file, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return ca
}

// issue returns a certificate signed by the CA, with its PEM files.
func (ca *testCA) issue(t *testing.T, cn string, client bool) (tls.Certificate, string, string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
		tmpl.DNSNames = []string{"localhost"}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, ca.cert, &key.PublicKey, ca.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile := filepath.Join(dir, cn+".pem"), filepath.Join(dir, cn+"-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	pair, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return pair, certFile, keyFile
}

// TestClientCertificate: https:// and wss:// runs present -cert/-key to a
// mutual-TLS listener, which sees their identity; without a certificate
// every connect fails.
func TestClientCertificate(t *testing.T) {
	ca := newTestCA(t)
	srvPair, _, _ := ca.issue(t, "localhost", false)
	_, certFile, keyFile := ca.issue(t, "load-client-1", true)

	e := testutil.StartEngine(t, engine.Config{})
	ts, err := tlsx.New(tlsx.Config{Certificate: &srvPair, ClientCAs: ca.pool, RatePerIP: -1, BanThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	var mu sync.Mutex
	ids := map[string]int{}
	seen := func(c *engine.Conn) {
		mu.Lock()
		ids[tlsx.Identity(c)]++
		mu.Unlock()
	}
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) { seen(c.Conn()); c.WriteString("hello") }))
	r.Handle("GET /ws", websocket.New(websocket.Config{Inline: true}, websocket.HandlerFuncs{
		Open:    func(c *websocket.Conn) { seen(c.Engine()) },
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) { c.WriteMessage(op, data) },
	}).Handler())
	hs, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := hs.ListenWrapped("127.0.0.1:0", ts.Handler)
	if err != nil {
		t.Fatal(err)
	}
	for _, u := range []string{"https://" + ln.Addr().String() + "/", "wss://" + ln.Addr().String() + "/ws"} {
		mu.Lock()
		clear(ids)
		mu.Unlock()
		cfg := loadgen.Config{URL: u, CAFile: ca.file, CertFile: certFile, KeyFile: keyFile, Conns: 3, Duration: 300 * time.Millisecond}
		rep, err := loadgen.Run(context.Background(), cfg)
		if err != nil {
			t.Fatal(err)
		}
		if rep.Requests == 0 || rep.Connects != 3 {
			t.Fatalf("%s: %d requests, %d opened, errors %v", u, rep.Requests, rep.Connects, rep.Errors)
		}
		mu.Lock()
		if len(ids) != 1 || ids["load-client-1"] == 0 {
			t.Fatalf("%s: identities seen %v, want load-client-1", u, ids)
		}
		mu.Unlock()

		rep, err = loadgen.Run(context.Background(), loadgen.Config{URL: u, CAFile: ca.file, Conns: 2, Duration: 300 * time.Millisecond})
		// TLS 1.3 clients finish their handshake before the server refuses
		// the missing certificate, so a connect may count; no request may.
		if err == nil && (rep.Requests > 0 || rep.TotalErrors() == 0) {
			t.Fatalf("%s without a client certificate: %d requests, errors %v", u, rep.Requests, rep.Errors)
		}
	}
	if _, err := loadgen.Run(context.Background(), loadgen.Config{URL: "https://" + ln.Addr().String() + "/", CertFile: certFile,
		KeyFile: filepath.Join(t.TempDir(), "missing.pem"), Conns: 1, Duration: 100 * time.Millisecond}); err == nil {
		t.Fatal("a missing key file was accepted")
	}
}
