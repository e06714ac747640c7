//go:build !windows

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"regexp"
	"testing"
	"time"
)

// testCert writes a self-signed certificate for 127.0.0.1 and its key as
// PEM files, made at test time.
func testCert(t *testing.T) (certFile, keyFile string, pool *x509.CertPool) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "localhost"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "cert.pem"), filepath.Join(dir, "key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	leaf, _ := x509.ParseCertificate(der)
	pool = x509.NewCertPool()
	pool.AddCert(leaf)
	return certFile, keyFile, pool
}

// TestEchoTLS: warren echo -tls-cert/-tls-key serves its routes over TLS
// (1.2 and 1.3), and -proto tcp echoes over TLS.
func TestEchoTLS(t *testing.T) {
	bin := buildWarren(t)
	cert, key, pool := testCert(t)
	_, addr, _ := startWarren(t, bin, "echo", "-addr", "127.0.0.1:0", "-admin", "", "-tls-cert", cert, "-tls-key", key)
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}}}
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" || resp.TLS.Version != v {
			t.Fatalf("GET /: %q over %x", b, resp.TLS.Version)
		}
		body := bytes.Repeat([]byte("x"), 1<<20)
		resp, err = c.Post("https://"+addr+"/upload", "application/octet-stream", bytes.NewReader(body))
		if err != nil {
			t.Fatal(err)
		}
		b, _ = io.ReadAll(resp.Body)
		resp.Body.Close()
		if !bytes.HasPrefix(b, []byte("1048576 ")) {
			t.Fatalf("upload: %q", b)
		}
	}
	_, tcpAddr, _ := startWarren(t, bin, "echo", "-proto", "tcp", "-addr", "127.0.0.1:0", "-admin", "", "-tls-cert", cert, "-tls-key", key, "-tls-min-version", "1.3")
	conn, err := tls.Dial("tcp", tcpAddr, &tls.Config{RootCAs: pool})
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(5 * time.Second))
	conn.Write([]byte("ping over tls"))
	got := make([]byte, 13)
	if _, err := io.ReadFull(conn, got); err != nil || string(got) != "ping over tls" {
		t.Fatalf("tcp echo: %q %v", got, err)
	}
	if _, err := tls.Dial("tcp", tcpAddr, &tls.Config{RootCAs: pool, MaxVersion: tls.VersionTLS12}); err == nil {
		t.Fatal("TLS 1.2 accepted with -tls-min-version 1.3")
	}
}

// TestProxyTLS: warren proxy -tls-cert serves its clients over TLS on
// -listen (TLS 1.2 and 1.3) and forwards to a plain backend.
func TestProxyTLS(t *testing.T) {
	bin := buildWarren(t)
	cert, key, pool := testCert(t)
	// The backend says what X-Forwarded-Proto it got: https, from the TLS
	// listener.
	hb := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
		io.WriteString(w, "hello")
	}))
	t.Cleanup(hb.Close)
	backend := hb.Listener.Addr().String()
	p := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "", "-upstream", "http://"+backend,
		"-tls-cert", cert, "-tls-key", key)
	p.waitOutput(t, 20*time.Second, "warren proxy listening")
	addr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(p.out.String())[1]
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		c := &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v}}}
		resp, err := c.Get("https://" + addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(b) != "hello" || resp.TLS.Version != v || resp.Header.Get("Via") != "1.1 warren" ||
			resp.Header.Get("X-Seen-Proto") != "https" {
			t.Fatalf("GET / through the proxy: %q over %x, via %q, X-Forwarded-Proto %q", b, resp.TLS.Version,
				resp.Header.Get("Via"), resp.Header.Get("X-Seen-Proto"))
		}
	}
}
