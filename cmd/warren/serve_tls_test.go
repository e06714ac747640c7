//go:build !windows

package main

import (
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/pem"
	"fmt"
	"io"
	"math/big"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"syscall"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/nats-io/nats.go"
)

// servePKI is a CA, a server certificate for localhost and 127.0.0.1 it
// signed, and client certificates, as PEM files made at test time.
type servePKI struct {
	dir, ca, cert, key string
	pool               *x509.CertPool
	caCert             *x509.Certificate
	caKey              *ecdsa.PrivateKey
}

func newServePKI(t *testing.T) *servePKI {
	t.Helper()
	p := &servePKI{dir: t.TempDir(), pool: x509.NewCertPool()}
	var err error
	if p.caKey, err = ecdsa.GenerateKey(elliptic.P256(), rand.Reader); err != nil {
		t.Fatal(err)
	}
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "warren test CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		KeyUsage: x509.KeyUsageCertSign | x509.KeyUsageCRLSign | x509.KeyUsageDigitalSignature, IsCA: true, BasicConstraintsValid: true}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, tmpl, &p.caKey.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	p.caCert, _ = x509.ParseCertificate(der)
	p.pool.AddCert(p.caCert)
	p.ca = p.write(t, "ca.pem", "CERTIFICATE", der)
	p.cert, p.key = p.leaf(t, "server", &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	return p
}

func (p *servePKI) write(t *testing.T, name, typ string, der []byte) string {
	t.Helper()
	f := filepath.Join(p.dir, name)
	if err := os.WriteFile(f, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return f
}

// leaf makes a certificate from tmpl signed by the CA and returns its
// certificate and key files.
func (p *servePKI) leaf(t *testing.T, name string, tmpl *x509.Certificate) (string, string) {
	t.Helper()
	key, err := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	if err != nil {
		t.Fatal(err)
	}
	sn, _ := rand.Int(rand.Reader, big.NewInt(1<<62))
	notAfter := tmpl.NotAfter
	tmpl.SerialNumber, tmpl.NotBefore, tmpl.NotAfter = sn, time.Now().Add(-time.Hour), time.Now().Add(time.Hour)
	if !notAfter.IsZero() {
		tmpl.NotAfter = notAfter
	}
	tmpl.KeyUsage = x509.KeyUsageDigitalSignature
	der, err := x509.CreateCertificate(rand.Reader, tmpl, p.caCert, &key.PublicKey, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalECPrivateKey(key)
	return p.write(t, name+".pem", "CERTIFICATE", der), p.write(t, name+".key", "EC PRIVATE KEY", kder)
}

// client makes a client certificate with subject CN cn.
func (p *servePKI) client(t *testing.T, cn string) (certFile, keyFile string, cert tls.Certificate) {
	t.Helper()
	certFile, keyFile = p.leaf(t, "client-"+strings.NewReplacer(" ", "_", "!", "_").Replace(cn),
		&x509.Certificate{Subject: pkix.Name{CommonName: cn}, ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	return certFile, keyFile, cert
}

// dialWSS connects to wss://addr/v1/connect with Go's crypto/tls, the
// client certificate certs (if any) and the token (if any).
func dialWSS(addr string, pool *x509.CertPool, certs []tls.Certificate, token string, version uint16) (*wsDevice, *http.Response, error) {
	d := gorilla.Dialer{HandshakeTimeout: 5 * time.Second, TLSClientConfig: &tls.Config{RootCAs: pool,
		Certificates: certs, ServerName: "localhost", MinVersion: version, MaxVersion: version}}
	h := http.Header{}
	if token != "" {
		h.Set("Authorization", "Bearer "+token)
	}
	c, resp, err := d.Dial("wss://"+addr+"/v1/connect", h)
	if err != nil {
		return nil, resp, err
	}
	return &wsDevice{c: c, closed: make(chan error, 1)}, resp, nil
}

// TestServeTLS: `warren serve -tls-addr -mqtts` with mutual TLS optional:
// wss devices with a token (Go crypto/tls at TLS 1.2 and 1.3, Python
// websockets + ssl), a device with only a client certificate (its id the
// certificate's CN), a token naming another device than the certificate
// refused, a certificate whose CN is no device id refused, and MQTT over
// TLS with mosquitto_pub --cafile (token) and --cert/--key (no password).
func TestServeTLS(t *testing.T) {
	p := newServePKI(t)
	data := t.TempDir()
	n := startServePorts(t, "tls", data, 2, func(ports []string) []string {
		return []string{"-tls-cert", p.cert, "-tls-key", p.key, "-tls-client-ca", p.ca,
			"-tls-client-cert", "optional", "-tls-addr", ports[0], "-mqtts", ports[1]}
	})
	tlsAddr, mqtts := n.ports[0], n.ports[1]
	w := watchNATS(t, n.natsURL(), "devices.>")

	// Token devices over wss, TLS 1.2 and 1.3, no client certificate.
	for _, v := range []struct {
		id  string
		ver uint16
	}{{"tok-12", tls.VersionTLS12}, {"tok-13", tls.VersionTLS13}} {
		d, resp, err := dialWSS(tlsAddr, p.pool, nil, deviceToken(t, data, v.id), v.ver)
		if err != nil {
			t.Fatalf("%s: %v %v", v.id, err, resp)
		}
		d.id = v.id
		t.Cleanup(func() { d.c.Close() })
		d.answer()
		n.waitDevice(t, 10*time.Second, v.id, "tls")
		if code, m := n.command(t, v.id, `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
			t.Errorf("%s command: %d %v", v.id, code, m)
		}
	}

	// A device with only a client certificate: its id is the CN.
	_, _, certDev := p.client(t, "cert-dev")
	d, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{certDev}, "", tls.VersionTLS13)
	if err != nil {
		t.Fatalf("certificate device: %v %v", err, resp)
	}
	d.id = "cert-dev"
	t.Cleanup(func() { d.c.Close() })
	d.answer()
	n.waitDevice(t, 10*time.Second, "cert-dev", "tls")
	if err := d.c.WriteMessage(gorilla.TextMessage, []byte(`{"type":"telemetry","data":{"via":"mtls"}}`)); err != nil {
		t.Fatal(err)
	}
	if m := w.wait(t, 5*time.Second, "devices.cert-dev.telemetry", nil); string(m.Data) != `{"via":"mtls"}` {
		t.Errorf("certificate device telemetry %q", m.Data)
	}
	if code, m := n.command(t, "cert-dev", `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
		t.Errorf("certificate device command: %d %v", code, m)
	}
	// The same certificate with the same device's token: accepted (the
	// token wins), replacing the first connection.
	d2, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{certDev}, deviceToken(t, data, "cert-dev"), tls.VersionTLS12)
	if err != nil {
		t.Fatalf("certificate + matching token: %v %v", err, resp)
	}
	d2.c.Close()
	// ... but a token naming another device is refused.
	if _, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{certDev}, deviceToken(t, data, "other"), tls.VersionTLS13); err == nil ||
		resp == nil || resp.StatusCode != 403 {
		t.Errorf("certificate + another device's token: %v %v, want 403", err, resp)
	}
	// A CN that is no device id is refused.
	_, _, badCert := p.client(t, "not a device!")
	if _, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{badCert}, "", tls.VersionTLS13); err == nil ||
		resp == nil || resp.StatusCode != 403 {
		t.Errorf("certificate with a bad id: %v %v, want 403", err, resp)
	}
	// No certificate and no token: 401.
	if _, resp, err := dialWSS(tlsAddr, p.pool, nil, "", tls.VersionTLS13); err == nil || resp == nil || resp.StatusCode != 401 {
		t.Errorf("no credential: %v %v, want 401", err, resp)
	}

	// Python's websockets over ssl, trusting the test CA.
	if py := pythonWebsocketsOrEmpty(); py != "" {
		t.Setenv("SSL_CERT_FILE", p.ca)
		dev := startProc(t, "device.py", py, "testdata/device.py",
			"wss://localhost:"+portOf(tlsAddr)+"/v1/connect?token="+deviceToken(t, data, "py-dev"),
			`{"type":"telemetry","data":{"py":1}}`)
		dev.waitOutput(t, 10*time.Second, `"event": "open"`)
		if m := w.wait(t, 5*time.Second, "devices.py-dev.telemetry", nil); string(m.Data) != `{"py":1}` {
			t.Errorf("python telemetry %q", m.Data)
		}
		if code, m := n.command(t, "py-dev", `{"name":"bye","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
			t.Errorf("python bye: %d %v", code, m)
		}
		if err := dev.wait(t, 10*time.Second); err != nil {
			t.Errorf("device.py: %v", err)
		}
	} else {
		t.Log("no python3 with websockets: the Python wss device is skipped")
	}

	// MQTT over TLS.
	pub, err := exec.LookPath("mosquitto_pub")
	if err != nil {
		t.Log("no mosquitto_pub: MQTT over TLS is skipped")
		return
	}
	mqPort := portOf(mqtts)
	run := func(args ...string) error {
		base := []string{"-h", "localhost", "-p", mqPort, "--cafile", p.ca, "-q", "1"}
		o, err := exec.Command(pub, append(base, args...)...).CombinedOutput()
		if err != nil {
			return &exec.ExitError{ProcessState: nil, Stderr: o}
		}
		return nil
	}
	// A token as the password, TLS 1.2 and 1.3 with ALPN mqtt.
	if err := run("--tls-version", "tlsv1.2", "-i", "mq-tok", "-u", "dev", "-P", deviceToken(t, data, "mq-tok"),
		"-t", "devices/mq-tok/telemetry", "-m", `{"mq":"tok"}`); err != nil {
		t.Errorf("mosquitto_pub --cafile with a token: %s", err.(*exec.ExitError).Stderr)
	}
	if err := run("--tls-version", "tlsv1.3", "--tls-alpn", "mqtt", "-i", "mq-tok", "-u", "dev", "-P",
		deviceToken(t, data, "mq-tok"), "-t", "devices/mq-tok/telemetry", "-m", `{"mq":"alpn"}`); err != nil {
		t.Errorf("mosquitto_pub --tls-alpn mqtt: %s", err.(*exec.ExitError).Stderr)
	}
	eventually(t, 10*time.Second, "MQTT over TLS telemetry on NATS", func() bool {
		return w.find("devices.mq-tok.telemetry", func(m *nats.Msg) bool { return string(m.Data) == `{"mq":"alpn"}` }) != nil
	})
	// A client certificate and no password: the client id must be the CN.
	certFile, keyFile, _ := p.client(t, "mq-cert")
	if err := run("--cert", certFile, "--key", keyFile, "-i", "mq-cert", "-t", "devices/mq-cert/telemetry",
		"-m", `{"mq":"cert"}`); err != nil {
		t.Errorf("mosquitto_pub --cert/--key: %s", err.(*exec.ExitError).Stderr)
	}
	eventually(t, 10*time.Second, "certificate MQTT telemetry on NATS", func() bool {
		return w.find("devices.mq-cert.telemetry", func(m *nats.Msg) bool { return string(m.Data) == `{"mq":"cert"}` }) != nil
	})
	if err := run("--cert", certFile, "--key", keyFile, "-i", "someone-else", "-t", "devices/someone-else/telemetry",
		"-m", "x"); err == nil {
		t.Error("mosquitto_pub with another client id than the certificate's got through")
	}

	// The admin listener counts the certificate decisions.
	metrics := fetchText(t, "http://"+n.admin+"/metrics")
	for _, want := range []string{`warren_gateway_cert_auth_total{result="cert_mismatch"} 1`,
		`warren_gateway_cert_auth_total{result="cert_bad_id"} 1`, `warren_tls_handshakes_total`} {
		if !strings.Contains(metrics, want) {
			t.Errorf("metrics lack %s", want)
		}
	}
}

func pythonWebsocketsOrEmpty() string {
	for _, py := range []string{"python3", "/usr/bin/python3"} {
		path, err := exec.LookPath(py)
		if err == nil && exec.Command(path, "-c", "import websockets, ssl").Run() == nil {
			return path
		}
	}
	return ""
}

func portOf(addr string) string {
	_, port, _ := net.SplitHostPort(addr)
	return port
}

// fetchText GETs url and returns its body ("" on an error, logged).
func fetchText(t *testing.T, url string) string {
	t.Helper()
	resp, err := apiClient.Get(url)
	if err != nil {
		t.Errorf("GET %s: %v", url, err)
		return ""
	}
	defer resp.Body.Close()
	b, _ := io.ReadAll(resp.Body)
	return string(b)
}

// TestServeTLSPrefork: `warren serve -procs 2 -tls-addr -mqtts`: both
// workers serve the TLS listeners on the shared ports (certificate
// devices over wss land on both), and mqtts answers.
func TestServeTLSPrefork(t *testing.T) {
	p := newServePKI(t)
	data := t.TempDir()
	tlsAddr := "127.0.0.1:0" // port 0: the parent picks one for all workers
	n := startServePorts(t, "tpf", data, 1, func(ports []string) []string {
		return []string{"-procs", "2", "-drain-timeout", "3s", "-tls-cert", p.cert, "-tls-key", p.key,
			"-tls-client-ca", p.ca, "-tls-client-cert", "optional", "-tls-addr", tlsAddr, "-mqtts", ports[0],
			"-tls-reload-interval", "-1s"}
	})
	mqtts := n.ports[0]
	waitWorkers(t, n)
	// The TLS port the workers share is in their log line.
	var shared string
	eventually(t, 10*time.Second, "the workers' TLS address", func() bool {
		for _, line := range strings.Split(n.out.String(), "\n") {
			if i := strings.Index(line, " tls=127.0.0.1:"); i >= 0 && strings.Contains(line, "warren serve listening") {
				shared = strings.Fields(line[i+5:])[0]
				return true
			}
		}
		return false
	})
	perNode := map[string]int{}
	for i := 0; i < 32 && len(perNode) < 2; i++ {
		id := fmt.Sprintf("tpf-%02d", i)
		_, _, cert := p.client(t, id)
		d, resp, err := dialWSS(shared, p.pool, []tls.Certificate{cert}, "", tls.VersionTLS13)
		if err != nil {
			t.Fatalf("%s: %v %v", id, err, resp)
		}
		t.Cleanup(func() { d.c.Close() })
		var node string
		eventually(t, 10*time.Second, id+" in the directory", func() bool {
			code, m := n.device(t, id)
			node, _ = m["node"].(string)
			return code == 200 && node != ""
		})
		perNode[node]++
	}
	if perNode["tpf-0"] == 0 || perNode["tpf-1"] == 0 {
		t.Errorf("certificate devices per worker %v: want both workers", perNode)
	}
	// SIGHUP to the parent reaches every worker: after a new certificate
	// over the files, every new handshake (on either worker) gets it, and
	// the parent lives on.
	serial := func() string {
		c, err := tls.Dial("tcp", shared, &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("tls.Dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	p.leaf(t, "server", &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	n.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the new certificate on 16 handshakes in a row", func() bool {
		for range 16 {
			if serial() == before {
				return false
			}
		}
		return true
	})
	if n.exited() {
		t.Fatalf("the prefork parent died of SIGHUP: %v", n.err)
	}
	if pub, err := exec.LookPath("mosquitto_pub"); err == nil {
		tok := deviceToken(t, data, "tpf-mq")
		if o, err := exec.Command(pub, "-h", "localhost", "-p", portOf(mqtts), "--cafile", p.ca, "-i", "tpf-mq", "-u", "d",
			"-P", tok, "-q", "1", "-t", "devices/tpf-mq/telemetry", "-m", "1").CombinedOutput(); err != nil {
			t.Errorf("mosquitto_pub to the workers' mqtts: %v %s", err, o)
		}
	}
}

// TestServeTLSReload: a new certificate written over -tls-cert/-tls-key
// and SIGHUP: new handshakes get it, a device connected before keeps its
// connection (and takes a command).
func TestServeTLSReload(t *testing.T) {
	p := newServePKI(t)
	data := t.TempDir()
	n := startServePorts(t, "reload", data, 1, func(ports []string) []string {
		return []string{"-tls-cert", p.cert, "-tls-key", p.key, "-tls-addr", ports[0], "-tls-reload-interval", "-1s"}
	})
	tlsAddr := n.ports[0]
	serial := func() string {
		c, err := tls.Dial("tcp", tlsAddr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
		if err != nil {
			t.Fatalf("tls.Dial: %v", err)
		}
		defer c.Close()
		return c.ConnectionState().PeerCertificates[0].SerialNumber.String()
	}
	before := serial()
	d, resp, err := dialWSS(tlsAddr, p.pool, nil, deviceToken(t, data, "kept"), tls.VersionTLS13)
	if err != nil {
		t.Fatalf("device: %v %v", err, resp)
	}
	d.id = "kept"
	t.Cleanup(func() { d.c.Close() })
	d.answer()
	n.waitDevice(t, 10*time.Second, "kept", "reload")

	// A new certificate over the same files (leaf makes a new serial).
	p.leaf(t, "server", &x509.Certificate{Subject: pkix.Name{CommonName: "localhost"},
		DNSNames: []string{"localhost"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}})
	if s := serial(); s != before {
		t.Fatalf("certificate changed before SIGHUP (%s → %s)", before, s) // -tls-reload-interval -1s: no polling
	}
	n.cmd.Process.Signal(syscall.SIGHUP)
	eventually(t, 10*time.Second, "the new certificate after SIGHUP", func() bool { return serial() != before })
	if code, m := n.command(t, "kept", `{"name":"ping","timeout":"5s"}`); code != 200 || m["status"] != "ok" {
		t.Errorf("device connected before the reload: %d %v", code, m)
	}
	if !strings.Contains(fetchText(t, "http://"+n.admin+"/metrics"), `warren_tls_certificate_reloads_total{result="ok"} 1`) {
		t.Error(`metrics lack warren_tls_certificate_reloads_total{result="ok"} 1`)
	}
	n.cmd.Process.Signal(syscall.SIGTERM)
	if err := n.wait(t, 10*time.Second); err != nil {
		t.Errorf("exit after SIGTERM: %v", err)
	}
}

// TestServeTLSFlags: the TLS listeners' flags that cannot work together
// are refused with exit code 2 before anything starts.
func TestServeTLSFlags(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-tls-addr", "127.0.0.1:0"}, "need -tls-cert"},
		{[]string{"-mqtts", "127.0.0.1:0"}, "need -tls-cert"},
		{[]string{"-tls-cert", "c.pem", "-tls-key", "k.pem"}, "without -tls-addr or -mqtts"},
		{[]string{"-tls-cert", "c.pem", "-tls-key", "k.pem", "-mqtts", "127.0.0.1:0", "-mqtt", ""}, "-mqtts needs MQTT"},
		{[]string{"-tls-client-cert", "sometimes"}, "want require or optional"},
	} {
		var out, errb strings.Builder
		if code := run(append([]string{"serve"}, tc.args...), &out, &errb); code != 2 || !strings.Contains(errb.String(), tc.want) {
			t.Errorf("serve %v: exit %d, %q; want 2 and %q", tc.args, code, errb.String(), tc.want)
		}
	}
}

// pahoWSSScript connects to MQTT over wss (/mqtt) with a client
// certificate and no password, as client id argv[5], publishes one QoS 1
// message to devices/<id>/telemetry and prints the CONNACK's result.
const pahoWSSScript = `
import sys, threading
import paho.mqtt.client as mqtt
host, port, ca, cert, key, cid = sys.argv[1], int(sys.argv[2]), sys.argv[3], sys.argv[4], sys.argv[5], sys.argv[6]
res = {}
connected = threading.Event()
def on_connect(c, u, flags, rc, props=None):
    res["rc"] = int(rc) if not hasattr(rc, "value") else rc.value
    connected.set()
c = mqtt.Client(client_id=cid, protocol=mqtt.MQTTv311, transport="websockets")
c.ws_set_options(path="/mqtt")
c.tls_set(ca_certs=ca, certfile=cert, keyfile=key)
c.on_connect = on_connect
c.connect(host, port, keepalive=30)
c.loop_start()
if not connected.wait(10):
    print("no CONNACK"); sys.exit(1)
if res["rc"] != 0:
    print("refused", res["rc"]); sys.exit(2)
c.publish("devices/%s/telemetry" % cid, '{"via":"wss-mqtt"}', qos=1).wait_for_publish(5)
c.disconnect(); c.loop_stop()
print("ok")
`

// TestServeMQTTOverWSSCert: Python paho-mqtt, MQTT over wss at /mqtt on
// -tls-addr with a client certificate and no password: the client id that
// is the certificate's identity connects and publishes to NATS; another
// client id is refused.
func TestServeMQTTOverWSSCert(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import paho.mqtt.client").Run(); err != nil {
		t.Skip("python3-paho-mqtt not installed (scripts/test installs it)")
	}
	p := newServePKI(t)
	data := t.TempDir()
	n := startServePorts(t, "wssmq", data, 1, func(ports []string) []string {
		return []string{"-tls-cert", p.cert, "-tls-key", p.key, "-tls-client-ca", p.ca, "-tls-addr", ports[0]}
	})
	tlsAddr := n.ports[0]
	w := watchNATS(t, n.natsURL(), "devices.>")
	script := filepath.Join(t.TempDir(), "paho_wss.py")
	os.WriteFile(script, []byte(pahoWSSScript), 0o644)
	certFile, keyFile, _ := p.client(t, "wss-mq")
	o, err := exec.Command(py, script, "localhost", portOf(tlsAddr), p.ca, certFile, keyFile, "wss-mq").CombinedOutput()
	if err != nil || strings.TrimSpace(string(o)) != "ok" {
		t.Fatalf("paho over wss with a certificate: %v %s", err, o)
	}
	if m := w.wait(t, 5*time.Second, "devices.wss-mq.telemetry", nil); string(m.Data) != `{"via":"wss-mqtt"}` {
		t.Errorf("telemetry %q", m.Data)
	}
	o, err = exec.Command(py, script, "localhost", portOf(tlsAddr), p.ca, certFile, keyFile, "not-wss-mq").CombinedOutput()
	if err == nil || !strings.Contains(string(o), "refused") {
		t.Errorf("another client id than the certificate's: %v %s", err, o)
	}
}

// TestServeCertExpiry: a device logged in by a certificate that expires
// while it is connected is closed then, like a device whose token expires
// (close 4001, reason token_expired).
func TestServeCertExpiry(t *testing.T) {
	p := newServePKI(t)
	data := t.TempDir()
	n := startServePorts(t, "certexp", data, 1, func(ports []string) []string {
		return []string{"-tls-cert", p.cert, "-tls-key", p.key, "-tls-client-ca", p.ca, "-tls-addr", ports[0]}
	})
	tlsAddr := n.ports[0]
	end := time.Now().Add(3 * time.Second).Truncate(time.Second)
	certFile, keyFile := p.leaf(t, "client-short", &x509.Certificate{Subject: pkix.Name{CommonName: "short-lived"},
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, NotAfter: end})
	cert, err := tls.LoadX509KeyPair(certFile, keyFile)
	if err != nil {
		t.Fatal(err)
	}
	d, resp, err := dialWSS(tlsAddr, p.pool, []tls.Certificate{cert}, "", tls.VersionTLS13)
	if err != nil {
		t.Fatalf("device: %v %v", err, resp)
	}
	d.id = "short-lived"
	t.Cleanup(func() { d.c.Close() })
	d.answer()
	n.waitDevice(t, 10*time.Second, "short-lived", "certexp")
	ce := d.waitClosed(t)
	if ce.Code != 4001 || time.Now().Before(end) {
		t.Errorf("closed with %d %q at %v; want 4001 once the certificate ends at %v", ce.Code, ce.Text, time.Now(), end)
	}
}
