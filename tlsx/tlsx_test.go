package tlsx_test

import (
	"bytes"
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"net/http"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"
	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/common/expfmt"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

var versions = []struct {
	name string
	v    uint16
}{{"tls12", tls.VersionTLS12}, {"tls13", tls.VersionTLS13}}

func engines() []struct {
	name string
	cfg  engine.Config
} {
	return []struct {
		name string
		cfg  engine.Config
	}{{"loops", engine.Config{}}, {"portable", engine.Config{Portable: true}}}
}

func httpsClient(p *pki, v uint16, cert *tls.Certificate, suites ...uint16) *http.Client {
	tc := &tls.Config{RootCAs: p.pool, MinVersion: v, MaxVersion: v, ServerName: "localhost", CipherSuites: suites}
	if cert != nil {
		tc.Certificates = []tls.Certificate{*cert}
	}
	return &http.Client{Timeout: 10 * time.Second, Transport: &http.Transport{TLSClientConfig: tc, ForceAttemptHTTP2: false}}
}

func get(t *testing.T, c *http.Client, url string) string {
	t.Helper()
	resp, err := c.Get(url)
	if err != nil {
		t.Fatalf("GET %s: %v", url, err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	if resp.TLS == nil {
		t.Fatal("not TLS")
	}
	return string(b)
}

// TestGoClient: Go's net/http over crypto/tls, both versions, both
// engines, keep-alive, a handler on the worker pool, and a large body
// (many records each way).
func TestGoClient(t *testing.T) {
	p := newPKI(t)
	for _, en := range engines() {
		for _, ver := range versions {
			t.Run(en.name+"/"+ver.name, func(t *testing.T) {
				s := startServer(t, en.cfg, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
				c := httpsClient(p, ver.v, nil)
				for i := range 3 {
					if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
						t.Fatalf("request %d: %q", i, got)
					}
				}
				if got := get(t, c, "https://"+s.addr+"/slow"); got != "slow" {
					t.Fatalf("slow: %q", got)
				}
				big := bytes.Repeat([]byte("0123456789abcdef"), 5000) // 80 KB: several records
				resp, err := c.Post("https://"+s.addr+"/echo", "application/octet-stream", bytes.NewReader(big))
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if !bytes.Equal(b, big) {
					t.Fatalf("echo: got %d bytes, want %d", len(b), len(big))
				}
			})
		}
	}
}

// TestCipherSuites: every TLS 1.2 ECDHE AEAD suite, ECDSA and RSA, on
// warren's record layer, with a request each way and an 80 KB body (many
// records each way). (TLS 1.3 suites cannot be chosen in crypto/tls's
// client; the other clients, openssl and curl, cover them in
// interop_test.go.)
func TestCipherSuites(t *testing.T) {
	p := newPKI(t)
	rsaCert, rsaKey := p.issueRSA(t)
	for _, c := range []struct {
		name      string
		cert, key string
		suites    []uint16
	}{
		{"ecdsa", p.certFile, p.keyFile, []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256}},
		{"rsa", rsaCert, rsaKey, []uint16{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256}},
	} {
		s := startServer(t, engine.Config{}, tlsx.Config{CertFile: c.cert, KeyFile: c.key})
		for _, suite := range c.suites {
			t.Run(tls.CipherSuiteName(suite), func(t *testing.T) {
				cl := httpsClient(p, tls.VersionTLS12, nil, suite)
				for range 2 {
					if got := get(t, cl, "https://"+s.addr+"/"); got != "hello " {
						t.Fatalf("%q", got)
					}
				}
				postEcho(t, cl, "https://"+s.addr+"/echo")
			})
		}
		onWarrenLayer12(t, s.tls, len(c.suites))
	}
}

// postEcho posts 80 KB and checks they come back.
func postEcho(t *testing.T, c *http.Client, url string) {
	t.Helper()
	big := bytes.Repeat([]byte("0123456789abcdef"), 5000)
	resp, err := c.Post(url, "application/octet-stream", bytes.NewReader(big))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if !bytes.Equal(b, big) {
		t.Fatalf("echo: got %d bytes, want %d", len(b), len(big))
	}
}

// TestResumption12: a Go client with a session cache resumes its TLS 1.2
// session (the server sends its Finished first then), and the resumed
// connection runs on warren's record layer too, with data both ways; so
// does a TLS 1.3 resumption.
func TestResumption12(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			cache := tls.NewLRUClientSessionCache(8)
			for i, suite := range []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256,
				tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256} {
				tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: ver.v, MaxVersion: ver.v,
					CipherSuites: []uint16{suite}, ClientSessionCache: cache}}
				cl := &http.Client{Timeout: 10 * time.Second, Transport: tr}
				resp, err := cl.Get("https://" + s.addr + "/")
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if string(b) != "hello " {
					t.Fatalf("connection %d: %q", i, b)
				}
				if resumed := resp.TLS.DidResume; resumed != (i > 0) {
					t.Fatalf("connection %d: DidResume %v", i, resumed)
				}
				postEcho(t, cl, "https://"+s.addr+"/echo")
				tr.CloseIdleConnections()
			}
		})
	}
	onWarrenLayer12(t, s.tls, 3)
}

// TestMutualTLS: with a client CA the identity comes from the CN, or from
// the SAN URI with IdentityURIPrefix; no certificate is refused.
func TestMutualTLS(t *testing.T) {
	p := newPKI(t)
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
			if got := get(t, httpsClient(p, ver.v, &p.clientPair), "https://"+s.addr+"/"); got != "hello device-cn-7" {
				t.Fatalf("CN identity: %q", got)
			}
			if _, err := httpsClient(p, ver.v, nil).Get("https://" + s.addr + "/"); err == nil {
				t.Fatal("no client certificate accepted")
			}
			s2 := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile,
				IdentityURIPrefix: tlsx.DefaultIdentityURIScheme})
			if got := get(t, httpsClient(p, ver.v, &p.clientPair), "https://"+s2.addr+"/"); got != "hello dev-42" {
				t.Fatalf("URI identity: %q", got)
			}
		})
	}
}

// TestWebSocketOverTLS: an upgrade over TLS hands the connection to the
// WebSocket handler, which keeps writing through the record layer.
func TestWebSocketOverTLS(t *testing.T) {
	p := newPKI(t)
	for _, ver := range versions {
		t.Run(ver.name, func(t *testing.T) {
			s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
			d := gorilla.Dialer{TLSClientConfig: &tls.Config{RootCAs: p.pool, MinVersion: ver.v, MaxVersion: ver.v}, HandshakeTimeout: 5 * time.Second}
			ws, _, err := d.Dial("wss://"+s.addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer ws.Close()
			for i := range 20 {
				msg := strings.Repeat(fmt.Sprint(i), 1+i*1000)
				if err := ws.WriteMessage(gorilla.TextMessage, []byte(msg)); err != nil {
					t.Fatal(err)
				}
				_, got, err := ws.ReadMessage()
				if err != nil {
					t.Fatal(err)
				}
				if string(got) != msg {
					t.Fatalf("message %d: %d bytes back, want %d", i, len(got), len(msg))
				}
			}
		})
	}
}

// TestExpiredClientCertificate: an expired client certificate is refused,
// logged and counted as bad_client_certificate.
func TestExpiredClientCertificate(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile})
	old, oldKey := p.dir+"/old.pem", p.dir+"/old-key.pem"
	p.issue(t, old, oldKey, "expired-device", nil, time.Now().Add(-time.Minute), true)
	pair, err := tls.LoadX509KeyPair(old, oldKey)
	if err != nil {
		t.Fatal(err)
	}
	if _, err := httpsClient(p, tls.VersionTLS13, &pair).Get("https://" + s.addr + "/"); err == nil {
		t.Fatal("expired client certificate accepted")
	}
	testutil.Eventually(t, 5*time.Second, "bad_client_certificate counted", func() bool {
		return metric(t, s.tls, `warren_tls_handshakes_total{result="bad_client_certificate",version="none"} 1`)
	})
}

// metric reports whether the Server's exposition contains line.
func metric(t *testing.T, s *tlsx.Server, line string) bool {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(s.Collector())
	var b strings.Builder
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, mf := range mfs {
		expfmt.MetricFamilyToText(&b, mf)
	}
	return strings.Contains(b.String(), line)
}

// TestMaxVersion12: a server with MaxVersion TLS 1.2 serves clients that
// offer TLS 1.3 over TLS 1.2, on warren's record layer, resumption
// included; a MaxVersion below MinVersion is refused.
func TestMaxVersion12(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, MaxVersion: tls.VersionTLS12})
	cache := tls.NewLRUClientSessionCache(8)
	for i := range 2 {
		tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost", ClientSessionCache: cache}}
		cl := &http.Client{Timeout: 10 * time.Second, Transport: tr}
		resp, err := cl.Get("https://" + s.addr + "/")
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if resp.TLS.Version != tls.VersionTLS12 || resp.TLS.DidResume != (i == 1) {
			t.Fatalf("connection %d: version %#x, resumed %v", i, resp.TLS.Version, resp.TLS.DidResume)
		}
		postEcho(t, cl, "https://"+s.addr+"/echo")
		tr.CloseIdleConnections()
	}
	onWarrenLayer12(t, s.tls, 2)
	if _, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: tls.VersionTLS13, MaxVersion: tls.VersionTLS12}); !errors.Is(err, tlsx.ErrBadVersion) {
		t.Fatalf("MinVersion above MaxVersion: %v", err)
	}
}
