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
