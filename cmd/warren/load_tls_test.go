//go:build !windows

package main

import (
	"bytes"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/json"
	"encoding/pem"
	"math/big"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenhq/warren/loadgen"
)

// clientCert writes a self-signed client certificate (its own CA, for
// -tls-client-ca) and its key.
func clientCert(t *testing.T, cn string) (certFile, keyFile string) {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign, IsCA: true, BasicConstraintsValid: true,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	dir := t.TempDir()
	certFile, keyFile = filepath.Join(dir, "client.pem"), filepath.Join(dir, "client-key.pem")
	os.WriteFile(certFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	os.WriteFile(keyFile, pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder}), 0o600)
	return certFile, keyFile
}

// TestLoadClientCert: warren load -cert/-key against warren echo with
// -tls-client-ca, over https:// and wss://; without -cert no request
// passes.
func TestLoadClientCert(t *testing.T) {
	bin := buildWarren(t)
	cert, key, _ := testCert(t)
	ccert, ckey := clientCert(t, "load-1")
	_, addr, _ := startWarren(t, bin, "echo", "-addr", "127.0.0.1:0", "-admin", "", "-tls-cert", cert, "-tls-key", key,
		"-tls-client-ca", ccert, "-tls-ban-threshold", "-1")
	for _, u := range []string{"https://" + addr + "/", "wss://" + addr + "/ws"} {
		for _, withCert := range []bool{true, false} {
			jsonPath := filepath.Join(t.TempDir(), "report.json")
			args := []string{"load", "-url", u, "-ca", cert, "-conns", "2", "-duration", "300ms", "-timeout", "3s",
				"-json", jsonPath, "-quiet"}
			if withCert {
				args = append(args, "-cert", ccert, "-key", ckey)
			}
			var stdout, stderr bytes.Buffer
			code := run(args, &stdout, &stderr)
			b, _ := os.ReadFile(jsonPath)
			var rep loadgen.Report
			json.Unmarshal(b, &rep)
			if withCert && (code != 0 || rep.Requests == 0 || rep.TotalErrors() != 0) {
				t.Fatalf("%s with -cert: exit %d, report %s\n%s", u, code, b, &stderr)
			}
			if !withCert && rep.Requests != 0 {
				t.Fatalf("%s without -cert: %d requests passed", u, rep.Requests)
			}
		}
	}
}
