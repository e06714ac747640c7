package upstreamtls_test

import (
	"bufio"
	"context"
	"crypto/ecdsa"
	"crypto/elliptic"
	"crypto/rand"
	"crypto/sha1"
	"crypto/tls"
	"crypto/x509"
	"crypto/x509/pkix"
	"encoding/base64"
	"encoding/pem"
	"io"
	"log"
	"math/big"
	"net"
	"net/http"
	"net/http/httptest"
	"os"
	"path/filepath"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// startEngine starts an engine without a listener for a test, drained at
// its end.
func startEngine(t testing.TB) *engine.Engine { return testutil.StartDrainedEngine(t) }

// writePEM writes the certificate in PEM to a file in dir.
func writePEM(t testing.TB, dir, name, typ string, der []byte) string {
	t.Helper()
	p := filepath.Join(dir, name)
	if err := os.WriteFile(p, pem.EncodeToMemory(&pem.Block{Type: typ, Bytes: der}), 0o600); err != nil {
		t.Fatal(err)
	}
	return p
}

// tlsBackend starts an httptest TLS server with cfg (nil: defaults) and
// returns it and a CA file that verifies it.
func tlsBackend(t testing.TB, cfg *tls.Config, h http.Handler, opt ...func(*http.Server)) (*httptest.Server, string) {
	t.Helper()
	srv := httptest.NewUnstartedServer(h)
	srv.TLS = cfg
	for _, o := range opt {
		o(srv.Config)
	}
	srv.StartTLS()
	t.Cleanup(srv.Close)
	return srv, writePEM(t, t.TempDir(), "ca.pem", "CERTIFICATE", srv.Certificate().Raw)
}

func newCluster(t testing.TB, e *engine.Engine, cfg upstream.ClusterConfig, tcfg upstreamtls.Config) (*upstream.Cluster, *upstreamtls.Dialer) {
	t.Helper()
	d, err := upstreamtls.New(tcfg)
	if err != nil {
		t.Fatal(err)
	}
	cfg.DialTLS = d.Handler
	cl, err := upstream.NewCluster(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	return cl, d
}

func get(t testing.TB, cl *upstream.Cluster, path string) (*upstream.Response, error) {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	head := upstream.AppendRequestHead(nil, "GET", path, "backend", nil, -1, false)
	return cl.RoundTrip(ctx, &upstream.Request{Method: "GET", Head: head}, 0)
}

// TestHTTPSVersions: GETs to https backends on TLS 1.2 and 1.3, verified
// against the backend's CA, the connection kept alive between them.
func TestHTTPSVersions(t *testing.T) {
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		t.Run(tls.VersionName(v), func(t *testing.T) {
			var conns atomic.Int64
			srv, ca := tlsBackend(t, &tls.Config{MinVersion: v, MaxVersion: v}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
				if r.TLS == nil || r.TLS.Version != v {
					w.WriteHeader(500)
					return
				}
				io.WriteString(w, "hello "+r.URL.Path+" "+r.TLS.ServerName)
			}), func(s *http.Server) {
				s.ConnState = func(c net.Conn, s http.ConnState) {
					if s == http.StateNew {
						conns.Add(1)
					}
				}
				s.ErrorLog = log.New(io.Discard, "", 0)
			})
			e := startEngine(t)
			cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}, Pool: upstream.PoolConfig{MaxConnsPerHost: 1}},
				upstreamtls.Config{CAFile: ca})
			for i := range 5 {
				resp, err := get(t, cl, "/x")
				if err != nil {
					t.Fatal(i, err)
				}
				// An IP literal: no SNI is sent, and the certificate is
				// verified against its IP SANs.
				if resp.Status != 200 || string(resp.Body) != "hello /x " {
					t.Fatalf("%d: %d %q", i, resp.Status, resp.Body)
				}
			}
			if n := conns.Load(); n != 1 {
				t.Errorf("backend saw %d connections, want 1 (keep-alive)", n)
			}
			st := cl.Stats()
			if st.TLSHandshakes != 1 || st.TLSHandshakeFail != 0 {
				t.Errorf("handshakes %d ok %d failed, want 1 and 0", st.TLSHandshakes, st.TLSHandshakeFail)
			}
		})
	}
}

// TestUnknownCA: a backend whose certificate chains to a CA not trusted
// fails the handshake: a connect failure, and the proxy answers 502 with
// the reason header.
func TestUnknownCA(t *testing.T) {
	srv, _ := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	other, _ := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {}))
	_ = other
	e := startEngine(t)
	// The system roots do not know httptest's certificate.
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}, Retry: upstream.RetryPolicy{MaxRetries: -1}}, upstreamtls.Config{})
	_, err := get(t, cl, "/")
	var ue *upstream.Error
	if err == nil || !errorsAs(err, &ue) || ue.Failure != upstream.FailConnect {
		t.Fatalf("err %v, want a connect failure", err)
	}
	st := cl.Stats()
	if st.TLSHandshakeFail == 0 || st.CxConnectFail == 0 {
		t.Errorf("handshake failures %d, connect failures %d: want both counted", st.TLSHandshakeFail, st.CxConnectFail)
	}
	p := proxy.New(e, cl, proxy.Config{})
	t.Cleanup(p.Close)
	ln, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	resp, err := http.Get("http://" + ln.Addr().String() + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get("X-Warren-Reason") != "connect_failure" {
		t.Fatalf("%d %q, want 502 connect_failure", resp.StatusCode, resp.Header.Get("X-Warren-Reason"))
	}
}

func errorsAs(err error, ue **upstream.Error) bool {
	for err != nil {
		if e, ok := err.(*upstream.Error); ok {
			*ue = e
			return true
		}
		u, ok := err.(interface{ Unwrap() error })
		if !ok {
			return false
		}
		err = u.Unwrap()
	}
	return false
}

// TestInsecure: -upstream-insecure connects to a backend no root verifies.
func TestInsecure(t *testing.T) {
	srv, _ := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") }))
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}}, upstreamtls.Config{Insecure: true})
	resp, err := get(t, cl, "/")
	if err != nil || resp.Status != 200 {
		t.Fatal(resp, err)
	}
}

// TestServerNameOverride: the certificate of httptest names example.com;
// with the override it is verified (and sent as SNI) for that name.
func TestServerNameOverride(t *testing.T) {
	srv, ca := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, r.TLS.ServerName) }))
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}}, upstreamtls.Config{CAFile: ca, ServerName: "example.com"})
	resp, err := get(t, cl, "/")
	if err != nil || resp.Status != 200 || string(resp.Body) != "example.com" {
		t.Fatal(resp, err)
	}
	cl2, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}, Retry: upstream.RetryPolicy{MaxRetries: -1}},
		upstreamtls.Config{CAFile: ca, ServerName: "wrong.example.org"})
	if _, err := get(t, cl2, "/"); err == nil {
		t.Fatal("a name the certificate does not carry was accepted")
	}
}

// clientCert makes a CA and a client certificate it signed, in files.
func clientCert(t testing.TB) (caPool *x509.CertPool, certFile, keyFile string) {
	t.Helper()
	dir := t.TempDir()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test client CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	key, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "warren-proxy"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageClientAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &key.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(key)
	caPool = x509.NewCertPool()
	caPool.AddCert(caCert)
	return caPool, writePEM(t, dir, "client.pem", "CERTIFICATE", der), writePEM(t, dir, "client.key", "PRIVATE KEY", kder)
}

// TestMutualTLS: a backend that requires a client certificate accepts
// the configured one and refuses a cluster without one.
func TestMutualTLS(t *testing.T) {
	pool, cert, key := clientCert(t)
	srv, ca := tlsBackend(t, &tls.Config{ClientAuth: tls.RequireAndVerifyClientCert, ClientCAs: pool},
		http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			io.WriteString(w, r.TLS.PeerCertificates[0].Subject.CommonName)
		}))
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}}, upstreamtls.Config{CAFile: ca, CertFile: cert, KeyFile: key})
	resp, err := get(t, cl, "/")
	if err != nil || resp.Status != 200 || string(resp.Body) != "warren-proxy" {
		t.Fatal(resp, err)
	}
	bare, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}, Retry: upstream.RetryPolicy{MaxRetries: -1}}, upstreamtls.Config{CAFile: ca})
	if resp, err := get(t, bare, "/"); err == nil {
		t.Fatalf("no client certificate, yet %d", resp.Status)
	}
}

// TestResumption: with one request per connection, every connection
// after the first resumes the TLS 1.2 session (seen on the backend).
func TestResumption(t *testing.T) {
	var resumed, full atomic.Int64
	srv, ca := tlsBackend(t, &tls.Config{MaxVersion: tls.VersionTLS12}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.TLS.DidResume {
			resumed.Add(1)
		} else {
			full.Add(1)
		}
		io.WriteString(w, "ok")
	}))
	e := startEngine(t)
	cl, d := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL},
		Pool: upstream.PoolConfig{MaxConnsPerHost: 1, MaxRequestsPerConn: 1}}, upstreamtls.Config{CAFile: ca})
	for i := range 4 {
		if resp, err := get(t, cl, "/"); err != nil || resp.Status != 200 {
			t.Fatal(i, resp, err)
		}
	}
	if full.Load() != 1 || resumed.Load() != 3 {
		t.Errorf("backend: %d full, %d resumed handshakes; want 1 and 3", full.Load(), resumed.Load())
	}
	if s := d.Stats(); s.Full != 1 || s.Resumed != 3 {
		t.Errorf("dialer: %+v, want 1 full and 3 resumed", s)
	}
}

// TestMixedHosts: an http and an https host in one cluster both serve.
func TestMixedHosts(t *testing.T) {
	srv, ca := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "tls") }))
	plain := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "plain") }))
	t.Cleanup(plain.Close)
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL, plain.URL}, Balancer: upstream.BalanceRoundRobin},
		upstreamtls.Config{CAFile: ca})
	seen := map[string]bool{}
	for range 6 {
		resp, err := get(t, cl, "/")
		if err != nil {
			t.Fatal(err)
		}
		seen[string(resp.Body)] = true
	}
	if !seen["tls"] || !seen["plain"] {
		t.Fatalf("answers %v, want both hosts", seen)
	}
	if _, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{srv.URL}}); err == nil {
		t.Fatal("an https host without DialTLS was accepted")
	}
}

// TestHealthCheckTLS: active HTTP checks go over TLS.
func TestHealthCheckTLS(t *testing.T) {
	var checks atomic.Int64
	srv, ca := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && r.TLS != nil {
			checks.Add(1)
		}
	}))
	e := startEngine(t)
	newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL},
		Health: upstream.HealthConfig{Interval: 20 * time.Millisecond, Path: "/healthz"}}, upstreamtls.Config{CAFile: ca})
	deadline := time.Now().Add(5 * time.Second)
	for checks.Load() < 2 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if checks.Load() < 2 {
		t.Fatalf("%d health checks over TLS", checks.Load())
	}
}

// TestWebSocketOverTLS: an upgrade through the proxy to a TLS backend,
// then bytes both ways on the upgraded connection.
func TestWebSocketOverTLS(t *testing.T) {
	srv, ca := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if !strings.EqualFold(r.Header.Get("Upgrade"), "websocket") {
			w.WriteHeader(400)
			return
		}
		sum := sha1.Sum([]byte(r.Header.Get("Sec-WebSocket-Key") + "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"))
		c, brw, err := http.NewResponseController(w).Hijack()
		if err != nil {
			return
		}
		defer c.Close()
		brw.WriteString("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Accept: " +
			base64.StdEncoding.EncodeToString(sum[:]) + "\r\n\r\n")
		brw.Flush()
		buf := make([]byte, 4096)
		for {
			n, err := brw.Read(buf)
			if n > 0 {
				c.Write(buf[:n]) // echo the raw bytes
			}
			if err != nil {
				return
			}
		}
	}))
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{srv.URL}}, upstreamtls.Config{CAFile: ca})
	p := proxy.New(e, cl, proxy.Config{})
	t.Cleanup(p.Close)
	ln, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	c, err := net.Dial("tcp", ln.Addr().String())
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(c, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n")
	br := bufio.NewReader(c)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 101 {
		t.Fatalf("status %d", resp.StatusCode)
	}
	for _, msg := range []string{"ping", strings.Repeat("x", 20000)} {
		io.WriteString(c, msg)
		got := make([]byte, len(msg))
		if _, err := io.ReadFull(br, got); err != nil || string(got) != msg {
			t.Fatalf("echo: %v (%d bytes)", err, len(got))
		}
	}
}

// TestHandshakeFailureRetried: a host whose certificate does not verify
// fails as a connect failure, so the request is retried on the other host
// and the bad one is ejected by outlier detection.
func TestHandshakeFailureRetried(t *testing.T) {
	good, ca := tlsBackend(t, nil, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "good") }))
	// A certificate from another CA than httptest's.
	_, cert, key := serverCert(t, t.TempDir())
	kp, err := tls.LoadX509KeyPair(cert, key)
	if err != nil {
		t.Fatal(err)
	}
	bad, _ := tlsBackend(t, &tls.Config{Certificates: []tls.Certificate{kp}}, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "bad") }),
		func(s *http.Server) { s.ErrorLog = log.New(io.Discard, "", 0) })
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{good.URL, bad.URL}, Balancer: upstream.BalanceRoundRobin,
		Retry: upstream.RetryPolicy{MaxRetries: 2, On: upstream.RetryOnConnectFailure}}, upstreamtls.Config{CAFile: ca})
	for i := range 20 {
		resp, err := get(t, cl, "/")
		if err != nil || resp.Status != 200 || string(resp.Body) != "good" {
			t.Fatalf("%d: %v %v", i, resp, err)
		}
	}
	st := cl.Stats()
	if st.TLSHandshakeFail == 0 || st.RqRetry == 0 {
		t.Errorf("handshake failures %d, retries %d: want both", st.TLSHandshakeFail, st.RqRetry)
	}
}

// serverCert makes a CA and a server certificate for 127.0.0.1 and
// "backend.test" in dir: the CA's file, the certificate's and the key's.
func serverCert(t testing.TB, dir string) (ca, cert, key string) {
	t.Helper()
	caKey, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	caTmpl := &x509.Certificate{SerialNumber: big.NewInt(1), Subject: pkix.Name{CommonName: "test backend CA"},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour), IsCA: true,
		KeyUsage: x509.KeyUsageCertSign, BasicConstraintsValid: true}
	caDER, err := x509.CreateCertificate(rand.Reader, caTmpl, caTmpl, &caKey.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	caCert, _ := x509.ParseCertificate(caDER)
	k, _ := ecdsa.GenerateKey(elliptic.P256(), rand.Reader)
	tmpl := &x509.Certificate{SerialNumber: big.NewInt(2), Subject: pkix.Name{CommonName: "backend.test"},
		DNSNames: []string{"backend.test"}, IPAddresses: []net.IP{net.IPv4(127, 0, 0, 1)},
		NotBefore: time.Now().Add(-time.Hour), NotAfter: time.Now().Add(time.Hour),
		ExtKeyUsage: []x509.ExtKeyUsage{x509.ExtKeyUsageServerAuth}, KeyUsage: x509.KeyUsageDigitalSignature}
	der, err := x509.CreateCertificate(rand.Reader, tmpl, caCert, &k.PublicKey, caKey)
	if err != nil {
		t.Fatal(err)
	}
	kder, _ := x509.MarshalPKCS8PrivateKey(k)
	return writePEM(t, dir, "ca.pem", "CERTIFICATE", caDER), writePEM(t, dir, "cert.pem", "CERTIFICATE", der),
		writePEM(t, dir, "key.pem", "PRIVATE KEY", kder)
}
