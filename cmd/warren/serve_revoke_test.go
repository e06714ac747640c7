//go:build !windows

package main

import (
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"math/big"
	"strings"
	"syscall"
	"testing"
	"time"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// crl writes a revocation list of the CA listing certs over
// devices.crl and returns its file.
func (p *servePKI) crl(t *testing.T, number int64, certs ...tls.Certificate) string {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: time.Now().Add(time.Hour)}
	for _, c := range certs {
		leaf, err := x509.ParseCertificate(c.Certificate[0])
		if err != nil {
			t.Fatal(err)
		}
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: leaf.SerialNumber, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.caCert, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	return p.write(t, "devices.crl", "X509 CRL", der)
}

// TestServeCertRevoked: a device connected with a client certificate that
// a revocation list reloaded on SIGHUP names is closed — over wss with
// close code 4003 certificate_revoked, over mqtts (Eclipse Paho, MQTT
// 3.1.1) by closing its connection — and counted in
// warren_gateway_disconnects_total; a device whose certificate the list
// does not name stays and answers commands; the revoked certificate's next
// handshake is refused.
func TestServeCertRevoked(t *testing.T) {
	p := newServePKI(t)
	data := t.TempDir()
	_, _, keep := p.client(t, "dev-keep")
	_, _, gone := p.client(t, "dev-gone")
	_, _, mqGone := p.client(t, "mq-gone")
	crl := p.crl(t, 1)
	n := startServePorts(t, "revoke", data, 2, func(ports []string) []string {
		return []string{"-tls-cert", p.cert, "-tls-key", p.key, "-tls-client-ca", p.ca, "-tls-crl", crl,
			"-tls-addr", ports[0], "-mqtts", ports[1], "-tls-reload-interval", "-1s"}
	})
	tlsAddr, mqtts := n.ports[0], n.ports[1]

	devs := map[string]*wsDevice{}
	for id, cert := range map[string]tls.Certificate{"dev-keep": keep, "dev-gone": gone} {
		d, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{cert}, "", tls.VersionTLS13)
		if err != nil {
			t.Fatalf("%s: %v %v", id, err, resp)
		}
		d.id = id
		t.Cleanup(func() { d.c.Close() })
		d.answer()
		n.waitDevice(t, 10*time.Second, id, "revoke")
		devs[id] = d
	}
	lost := make(chan error, 1)
	o := paho.NewClientOptions().AddBroker("ssl://" + mqtts).SetClientID("mq-gone").SetAutoReconnect(false).
		SetTLSConfig(&tls.Config{RootCAs: p.pool, ServerName: "localhost", Certificates: []tls.Certificate{mqGone}}).
		SetConnectionLostHandler(func(_ paho.Client, err error) { lost <- err })
	mc := paho.NewClient(o)
	if tok := mc.Connect(); !tok.WaitTimeout(10*time.Second) || tok.Error() != nil {
		t.Fatalf("mqtts with a certificate: %v", tok.Error())
	}
	t.Cleanup(func() { mc.Disconnect(0) })
	n.waitDevice(t, 10*time.Second, "mq-gone", "revoke")

	p.crl(t, 2, gone, mqGone) // over the same file
	n.cmd.Process.Signal(syscall.SIGHUP)
	if ce := devs["dev-gone"].waitClosed(t); ce.Code != 4003 || ce.Text != "certificate_revoked" {
		t.Errorf("revoked wss device closed with %d %q; want 4003 certificate_revoked", ce.Code, ce.Text)
	}
	select {
	case <-lost:
	case <-time.After(10 * time.Second):
		t.Error("revoked mqtts device still connected")
	}
	if code, m := n.command(t, "dev-keep", `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
		t.Errorf("device not revoked: %d %v", code, m)
	}
	eventually(t, 10*time.Second, "the revocations counted", func() bool {
		return strings.Contains(fetchText(t, "http://"+n.admin+"/metrics"), `warren_gateway_disconnects_total{reason="certificate_revoked"} 2`)
	})
	if _, _, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{gone}, "", tls.VersionTLS13); err == nil {
		t.Error("the revoked certificate connected again")
	}
}
