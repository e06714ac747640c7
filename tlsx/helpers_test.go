package tlsx_test

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/rsa"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"math/big"
	"net"
	"net/url"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// pki is a throwaway CA with a server and a client certificate, made at
// test time and written as PEM files.
type pki struct {
	dir                   string
	ca                    *x509.Certificate
	caKey                 *ecdsa.PrivateKey
	caFile                string
	certFile, keyFile     string
	clientCert, clientKey string
	pool                  *x509.CertPool
	clientPair            tls.Certificate
	serverNotAfter        time.Time
}

func newPKI(t testing.TB) *pki {
	t.Helper()
	dir := t.TempDir()
	p := &pki{dir: dir}
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warren test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(24 * time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign,
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p.ca, _ = x509.ParseCertificate(der)
	p.caKey = key
	p.caFile = filepath.Join(dir, "ca.pem")
	writePEM(t, p.caFile, "CERTIFICATE", der)
	p.pool = x509.NewCertPool()
	p.pool.AddCert(p.ca)
	p.certFile, p.keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	p.serverNotAfter = time.Now().Add(12 * time.Hour)
	p.issue(t, p.certFile, p.keyFile, "localhost", nil, p.serverNotAfter, false)
	p.clientCert, p.clientKey = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	u, _ := url.Parse("urn:device:dev-42")
	p.issue(t, p.clientCert, p.clientKey, "device-cn-7", []*url.URL{u}, time.Now().Add(12*time.Hour), true)
	p.clientPair, err = tls.LoadX509KeyPair(p.clientCert, p.clientKey)
	if err != nil {
		t.Fatal(err)
	}
	return p
}

// issue writes a certificate signed by the CA and its key.
func (p *pki) issue(t testing.TB, certFile, keyFile, cn string, uris []*url.URL, notAfter time.Time, client bool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{
		SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: notAfter,
		KeyUsage: x509.KeyUsageDigitalSignature, URIs: uris,
	}
	if client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}
	} else {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.DNSNames = []string{"localhost"}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, err := x509.MarshalECPrivateKey(key)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, keyFile, "EC PRIVATE KEY", kder)
	writePEM(t, certFile, "CERTIFICATE", der)
}

// issueRSA writes an RSA server certificate for localhost signed by the
// CA, and its key (for the ECDHE-RSA suites), and returns their files.
func (p *pki) issueRSA(t testing.TB) (certFile, keyFile string) {
	t.Helper()
	key, err := rsa.GenerateKey(rand.Reader, 2048)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{
		SerialNumber: big.NewInt(99), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(12 * time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageKeyEncipherment, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	certFile, keyFile = filepath.Join(p.dir, "rsa.pem"), filepath.Join(p.dir, "rsa-key.pem")
	writePEM(t, keyFile, "RSA PRIVATE KEY", x509.MarshalPKCS1PrivateKey(key))
	writePEM(t, certFile, "CERTIFICATE", der)
	return certFile, keyFile
}

// layers returns how many connections the Server put on warren's record
// layer and on crypto/tls's, for TLS version v ("1.2", "1.3").
func layers(t *testing.T, s *tlsx.Server, v string) (warren, cryptoTLS int) {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		if mf.GetName() != "warren_tls_record_layers_total" {
			continue
		}
		for _, m := range mf.GetMetric() {
			var ver, layer string
			for _, l := range m.GetLabel() {
				switch l.GetName() {
				case "version":
					ver = l.GetValue()
				case "layer":
					layer = l.GetValue()
				}
			}
			if ver != v {
				continue
			}
			switch layer {
			case tlsx.LayerWarren:
				warren += int(m.GetCounter().GetValue())
			case tlsx.LayerCryptoTLS:
				cryptoTLS += int(m.GetCounter().GetValue())
			}
		}
	}
	return warren, cryptoTLS
}

// onWarrenLayer12 fails t unless the Server has put want TLS 1.2
// connections (at least, for want < 0: at least one) on warren's record
// layer and none on crypto/tls's.
func onWarrenLayer12(t *testing.T, s *tlsx.Server, want int) {
	t.Helper()
	w, c := layers(t, s, "1.2")
	if c != 0 || w == 0 || (want > 0 && w != want) {
		t.Fatalf("TLS 1.2 connections: %d on warren's record layer (want %d), %d on crypto/tls's (want 0)", w, want, c)
	}
}

func writePEM(t testing.TB, name, typ string, der []byte) {
	t.Helper()
	tmp := name + ".tmp"
	if err := os.WriteFile(tmp, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	if err := os.Rename(tmp, name); err != nil {
		t.Fatal(err)
	}
}

// server is a TLS listener in front of an HTTP router with a WebSocket
// echo at /ws and "hello" at /, on a fresh engine.
type server struct {
	e    *engine.Engine
	tls  *tlsx.Server
	addr string
}

func startServer(t testing.TB, ecfg engine.Config, cfg tlsx.Config) *server {
	t.Helper()
	e := testutil.StartEngine(t, ecfg)
	srv, err := tlsx.New(cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(srv.Close)
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) {
		c.WriteString("hello " + tlsx.Identity(c.Conn()))
	}))
	r.HandleFunc("GET /slow", func(c *http1.Ctx) { // on the worker pool
		time.Sleep(5 * time.Millisecond)
		c.WriteString("slow")
	})
	r.Handle("POST /echo", http1.InlineFunc(func(c *http1.Ctx) {
		c.Write(c.Body())
	}))
	r.Handle("GET /ws", ws.Handler())
	hs, err := http1.NewServer(e, http1.Config{}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := hs.ListenWrapped("127.0.0.1:0", srv.Handler)
	if err != nil {
		t.Fatal(err)
	}
	return &server{e: e, tls: srv, addr: ln.Addr().String()}
}

// exampleCert is a self-signed certificate for the examples.
func exampleCert() (*tls.Certificate, *x509.CertPool) {
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "example"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, _ := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	leaf, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(leaf)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: leaf}, pool
}
