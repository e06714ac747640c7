package loadgen

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"io"
	"log/slog"
	"math/big"
	"net"
	"os"
	"path/filepath"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// devPKI is a CA that signs the gateway's certificate and one
// certificate per device, written into a directory as dev-<n>.pem
// (certificate and key in one file), as -cert-dir wants them.
type devPKI struct {
	ca     *x509.Certificate
	key    *ecdsa.PrivateKey
	caFile string
	pool   *x509.CertPool
}

func newDevPKI(t *testing.T) *devPKI {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "devices CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		IsCA: true, BasicConstraintsValid: true, KeyUsage: x509.KeyUsageCertSign}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &key.PublicKey, key)
	if err != nil {
		t.Fatal(err)
	}
	p := &devPKI{key: key, caFile: filepath.Join(t.TempDir(), "ca.pem"), pool: x509.NewCertPool()}
	p.ca, _ = x509.ParseCertificate(der)
	p.pool.AddCert(p.ca)
	os.WriteFile(p.caFile, pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}), 0o600)
	return p
}

// issue returns the PEM of a certificate for cn and its key, in one block
// list.
func (p *devPKI) issue(t *testing.T, cn string, client bool) []byte {
	t.Helper()
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	serial, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	tmpl := &x509.Certificate{SerialNumber: serial, Subject: pkix.Name{CommonName: cn},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), KeyUsage: x509.KeyUsageDigitalSignature,
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}}
	if !client {
		tmpl.ExtKeyUsage = []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}
		tmpl.IPAddresses = []net.IP{net.IPv4(127, 0, 0, 1)}
	}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.ca, &key.PublicKey, p.key)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return append(pem.EncodeToMemory(&pem.Block{Type: "CERTIFICATE", Bytes: der}),
		pem.EncodeToMemory(&pem.Block{Type: "EC PRIVATE KEY", Bytes: kder})...)
}

// TestDevicesOverWSS: the devices scenario over wss:// against a gateway
// with mutual TLS, each device presenting its own certificate from
// CertDir (the gateway checks that a token names the certificate's
// device); without certificates no device gets in.
func TestDevicesOverWSS(t *testing.T) {
	p := newDevPKI(t)
	srvPEM := p.issue(t, "gateway", false)
	srvFile := filepath.Join(t.TempDir(), "server.pem")
	os.WriteFile(srvFile, srvPEM, 0o600)
	ts, err := tlsx.New(tlsx.Config{CertFile: srvFile, KeyFile: srvFile, ClientCAFile: p.caFile, RatePerIP: -1, BanThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "-", Auth: gateway.NewHMACAuth(devSecret),
		Node: "n1", Bus: gateway.BusConfig{}, Logger: quiet, DataDir: t.TempDir(), TLS: ts, TLSAddr: "127.0.0.1:0"})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)

	const n = 6
	dir := t.TempDir()
	for i := range n {
		os.WriteFile(filepath.Join(dir, DeviceID(i)+".pem"), p.issue(t, DeviceID(i), true), 0o600)
	}
	cfg := Config{URL: "wss://" + g.TLSAddr() + "/v1/connect", Conns: n, Duration: 500 * time.Millisecond, RPS: 60,
		Timeout: 5 * time.Second, Loops: 2, Scenario: ScenarioDevices, CAFile: p.caFile, CertDir: dir,
		Devices: DeviceConfig{JWTSecret: devSecret, Grace: time.Second}}
	rep := run(t, cfg)
	if rep.Connects != n || rep.ConnsFailed != 0 || rep.TotalErrors() != 0 || rep.Devices == nil || rep.Devices.TelemetrySent == 0 {
		t.Fatalf("per-device certificates: connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}

	cfg.CertDir = ""
	cfg.Duration = 200 * time.Millisecond
	rep = run(t, cfg)
	if rep.Connects != 0 || rep.ConnsFailed == 0 {
		t.Fatalf("no certificates: connects %d failed %d", rep.Connects, rep.ConnsFailed)
	}
}

// TestDevicesOverMQTTS: the devices scenario over mqtts:// against a
// gateway with mutual TLS (ALPN mqtt), each device presenting its own
// certificate from CertDir beside its token; with another device's
// certificate in its place no device gets in.
func TestDevicesOverMQTTS(t *testing.T) {
	p := newDevPKI(t)
	srvFile := filepath.Join(t.TempDir(), "server.pem")
	os.WriteFile(srvFile, p.issue(t, "gateway", false), 0o600)
	ts, err := tlsx.New(tlsx.Config{CertFile: srvFile, KeyFile: srvFile, ClientCAFile: p.caFile, RatePerIP: -1, BanThreshold: -1})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", MQTTS: "127.0.0.1:0",
		Auth: gateway.NewHMACAuth(devSecret), Node: "n1", Bus: gateway.BusConfig{}, Logger: quiet, DataDir: t.TempDir(),
		TLS: ts})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)

	const n = 6
	dir := t.TempDir()
	for i := range n {
		os.WriteFile(filepath.Join(dir, DeviceID(i)+".pem"), p.issue(t, DeviceID(i), true), 0o600)
	}
	cfg := Config{URL: "mqtts://" + g.MQTTSAddr(), Conns: n, Duration: 500 * time.Millisecond, RPS: 60,
		Timeout: 5 * time.Second, Loops: 2, Scenario: ScenarioDevices, CAFile: p.caFile, CertDir: dir,
		Devices: DeviceConfig{JWTSecret: devSecret, Grace: time.Second, MQTT: MQTTDeviceConfig{Version: 5}}}
	rep := run(t, cfg)
	if rep.Protocol != "mqtt" || rep.Connects != n || rep.ConnsFailed != 0 || rep.TotalErrors() != 0 ||
		rep.Devices == nil || rep.Devices.TelemetrySent == 0 {
		t.Fatalf("per-device certificates: connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}

	// Every device presents dev-1's certificate: only dev-1 may be
	// itself; the gateway refuses the others' CONNECT.
	other := t.TempDir()
	for i := range n {
		os.WriteFile(filepath.Join(other, DeviceID(i)+".pem"), p.issue(t, DeviceID(0), true), 0o600)
	}
	cfg.CertDir = other
	cfg.Duration = 200 * time.Millisecond
	rep = run(t, cfg)
	if rep.Connects != 1 || rep.ConnsFailed != n-1 || rep.Errors[KindBadStatus.String()] != n-1 {
		t.Fatalf("one certificate for all: connects %d failed %d errors %v", rep.Connects, rep.ConnsFailed, rep.Errors)
	}
}
