package mqtt

import (
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
	"os/exec"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenhq/warren/tlsx"
)

// testCert makes a self-signed certificate for 127.0.0.1 and returns it,
// its pool and its PEM.
func testCert(t *testing.T) (*tls.Certificate, *x509.CertPool, []byte) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "127.0.0.1"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)}, IsCA: true, BasicConstraintsValid: true,
		KeyUsage: x509.KeyUsageDigitalSignature | x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	c, _ := x509.ParseCertificate(der)
	pool := x509.NewCertPool()
	pool.AddCert(c)
	return &tls.Certificate{Certificate: [][]byte{der}, PrivateKey: key, Leaf: c}, pool,
		pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der})
}

// MQTT over TLS: the broker's handler wrapped by tlsx, TLS 1.3 and 1.2,
// with Go's crypto/tls client and with mosquitto_pub/sub.
func TestTLS(t *testing.T) {
	cert, pool, pemCert := testCert(t)
	b := startBroker(t, Config{})
	ts, err := tlsx.New(tlsx.Config{Certificate: cert, NextProtos: []string{"mqtt"}, Logger: quietLogger()})
	if err != nil {
		t.Fatal(err)
	}
	defer ts.Close()
	ln, err := b.e.Listen("127.0.0.1:0", ts.Handler(b.Handler()))
	if err != nil {
		t.Fatal(err)
	}
	addr := ln.Addr().String()
	for _, v := range []uint16{tls.VersionTLS13, tls.VersionTLS12} {
		tc, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("TLS %x: %v", v, err)
		}
		c := &client{t: t, c: tc, v: Version5, dec: Decoder{Version: Version5}}
		if ca := c.connect(&Connect{ClientID: []byte("tls"), CleanStart: true}); ca.ReasonCode != Success {
			t.Fatal(ca.ReasonCode)
		}
		c.subscribe(1, QoS1, "tls/#")
		c.pub("tls/x", "secret", QoS1, 2, false)
		var sawPub, sawAck bool
		for !sawPub || !sawAck {
			switch p := c.next().(type) {
			case *Publish:
				sawPub = string(p.Payload) == "secret"
				c.send(&Ack{Kind: TypePuback, PacketID: p.PacketID})
			case *Ack:
				sawAck = p.PacketID == 2
			}
		}
		tc.Close()
	}
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Skip("mosquitto-clients not installed")
	}
	sub, _ := exec.LookPath("mosquitto_sub")
	ca := filepath.Join(t.TempDir(), "ca.pem")
	os.WriteFile(ca, pemCert, 0o644)
	host, port, _ := net.SplitHostPort(addr)
	b.Publish(&Message{Topic: "tls/retained", Payload: []byte("over tls"), Retain: true})
	o, err := exec.Command(sub, "-h", host, "-p", port, "--cafile", ca, "-t", "tls/retained", "-C", "1", "-W", "5").CombinedOutput()
	if err != nil || string(o) != "over tls\n" {
		t.Fatalf("mosquitto_sub over TLS: %v %q", err, o)
	}
	if o, err := exec.Command(pub, "-h", host, "-p", port, "--cafile", ca, "-V", "mqttv5", "-q", "1", "-t", "tls/p", "-m", "x").CombinedOutput(); err != nil {
		t.Fatalf("mosquitto_pub over TLS: %v %s", err, o)
	}
}
