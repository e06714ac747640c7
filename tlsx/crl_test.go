package tlsx_test

import (
	"bytes"
	"crypto/rand"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"io"
	"log/slog"
	"math/big"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// clientPairNamed issues a client certificate named cn and returns it with its
// serial number.
func (p *pki) clientPairNamed(t *testing.T, cn string) (tls.Certificate, *big.Int) {
	t.Helper()
	cf, kf := filepath.Join(p.dir, cn+".pem"), filepath.Join(p.dir, cn+"-key.pem")
	p.issue(t, cf, kf, cn, nil, time.Now().Add(12*time.Hour), true)
	pair, err := tls.LoadX509KeyPair(cf, kf)
	if err != nil {
		t.Fatal(err)
	}
	leaf, err := x509.ParseCertificate(pair.Certificate[0])
	if err != nil {
		t.Fatal(err)
	}
	return pair, leaf.SerialNumber
}

// writeCRL writes a revocation list signed by the CA listing serials.
func (p *pki) writeCRL(t *testing.T, name string, number int64, nextUpdate time.Time, serials ...*big.Int) {
	t.Helper()
	tmpl := &x509.RevocationList{Number: big.NewInt(number), ThisUpdate: time.Now().Add(-time.Hour), NextUpdate: nextUpdate}
	for _, s := range serials {
		tmpl.RevokedCertificateEntries = append(tmpl.RevokedCertificateEntries,
			x509.RevocationListEntry{SerialNumber: s, RevocationTime: time.Now().Add(-time.Minute)})
	}
	der, err := x509.CreateRevocationList(rand.Reader, tmpl, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	writePEM(t, name, "X509 CRL", der)
}

// getWith does one GET over a new connection with cert, sharing cache for
// resumption, and returns the body, whether the session resumed, and the
// error.
func getWith(p *pki, addr string, v uint16, cert tls.Certificate, cache tls.ClientSessionCache) (string, bool, error) {
	tr := &http.Transport{TLSClientConfig: &tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: v, MaxVersion: v,
		Certificates: []tls.Certificate{cert}, ClientSessionCache: cache}, DisableKeepAlives: true}
	defer tr.CloseIdleConnections()
	resp, err := (&http.Client{Timeout: 10 * time.Second, Transport: tr}).Get("https://" + addr + "/")
	if err != nil {
		return "", false, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return string(b), resp.TLS.DidResume, err
}

// TestCRL: a client certificate on the revocation list is refused (TLS 1.2
// and 1.3), logged and counted as revoked_client_certificate; others pass;
// a reload with a new list refuses a newly revoked device, resumed
// sessions included; a bad list on reload keeps the old one.
func TestCRL(t *testing.T) {
	p := newPKI(t)
	good, _ := p.clientPairNamed(t, "dev-good")
	bad, badSerial := p.clientPairNamed(t, "dev-bad")
	later, laterSerial := p.clientPairNamed(t, "dev-later")
	crl := filepath.Join(p.dir, "crl.pem")
	p.writeCRL(t, crl, 1, time.Now().Add(time.Hour), badSerial)
	logs := &syncBuffer{}
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile,
		CRLFile: crl, Logger: testLogger(logs), ReloadInterval: -1})
	caches := map[uint16]tls.ClientSessionCache{}
	for _, ver := range versions {
		caches[ver.v] = tls.NewLRUClientSessionCache(8)
		if body, _, err := getWith(p, s.addr, ver.v, good, nil); err != nil || body != "hello dev-good" {
			t.Fatalf("%s: good device: %q %v", ver.name, body, err)
		}
		if _, _, err := getWith(p, s.addr, ver.v, bad, nil); err == nil {
			t.Fatalf("%s: revoked device accepted", ver.name)
		}
		// dev-later connects, then resumes: its session is cached.
		for i := range 2 {
			body, resumed, err := getWith(p, s.addr, ver.v, later, caches[ver.v])
			if err != nil || body != "hello dev-later" || resumed != (i == 1) {
				t.Fatalf("%s: dev-later connection %d: %q resumed %v %v", ver.name, i, body, resumed, err)
			}
		}
	}
	testutil.Eventually(t, 5*time.Second, "revocations counted and logged", func() bool {
		return metric(t, s.tls, `warren_tls_handshakes_total{result="revoked_client_certificate",version="none"} 2`) &&
			strings.Count(logs.String(), `revoked by \"CN=warren test CA\"`) == 2
	})
	if !metric(t, s.tls, "warren_tls_crl_next_update_seconds 3") { // about 3,600 s
		t.Error("warren_tls_crl_next_update_seconds missing")
	}

	// A new list revokes dev-later: its cached session no longer gets it in.
	p.writeCRL(t, crl, 2, time.Now().Add(time.Hour), badSerial, laterSerial)
	if err := s.tls.Reload(); err != nil {
		t.Fatal(err)
	}
	for _, ver := range versions {
		if _, _, err := getWith(p, s.addr, ver.v, later, caches[ver.v]); err == nil {
			t.Fatalf("%s: dev-later resumed after its revocation", ver.name)
		}
		if body, _, err := getWith(p, s.addr, ver.v, good, nil); err != nil || body != "hello dev-good" {
			t.Fatalf("%s: good device after reload: %q %v", ver.name, body, err)
		}
	}

	// A list that does not parse, or that no client CA signed (another CA
	// of the same name here), is refused
	// on reload; the one in force stays.
	os.WriteFile(crl, []byte("-----BEGIN X509 CRL-----\nbm90IGEgbGlzdA==\n-----END X509 CRL-----\n"), 0o600)
	if err := s.tls.Reload(); err == nil {
		t.Fatal("a garbage CRL was loaded")
	}
	other := newPKI(t)
	other.writeCRL(t, crl, 3, time.Now().Add(time.Hour))
	if err := s.tls.Reload(); err == nil || !strings.Contains(err.Error(), "signature") {
		t.Fatalf("a CRL from another CA: %v", err)
	}
	if _, _, err := getWith(p, s.addr, tls.VersionTLS13, bad, nil); err == nil {
		t.Fatal("revoked device accepted after a bad reload")
	}
}

// TestCRLWatch: a changed list file is picked up without SIGHUP, and a
// list past its NextUpdate stays in force, with a warning and a negative
// staleness gauge.
func TestCRLWatch(t *testing.T) {
	p := newPKI(t)
	dev, serial := p.clientPairNamed(t, "dev-1")
	crl := filepath.Join(p.dir, "crl.pem")
	p.writeCRL(t, crl, 1, time.Now().Add(-time.Minute)) // stale, empty
	logs := &syncBuffer{}
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile,
		CRLFile: crl, Logger: testLogger(logs), ReloadInterval: 20 * time.Millisecond})
	if !strings.Contains(logs.String(), "past its next update") || !metric(t, s.tls, "warren_tls_crl_next_update_seconds -") {
		t.Fatalf("stale list not reported:\n%s", logs)
	}
	if _, _, err := getWith(p, s.addr, tls.VersionTLS13, dev, nil); err != nil {
		t.Fatal(err)
	}
	ctx, cancel := contextWithCancel()
	defer cancel()
	go s.tls.Watch(ctx)
	time.Sleep(20 * time.Millisecond) // a file system's modification times can be coarse
	p.writeCRL(t, crl, 2, time.Now().Add(-time.Minute), serial)
	now := time.Now().Add(time.Second)
	os.Chtimes(crl, now, now)
	testutil.Eventually(t, 5*time.Second, "the new list in force", func() bool {
		_, _, err := getWith(p, s.addr, tls.VersionTLS13, dev, nil)
		return err != nil
	})
}

// TestCRLConfig: a CRLFile needs the client CA file whose CAs sign it; a
// file with no list is refused at start.
func TestCRLConfig(t *testing.T) {
	p := newPKI(t)
	crl := filepath.Join(p.dir, "crl.pem")
	p.writeCRL(t, crl, 1, time.Now().Add(time.Hour))
	if _, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, CRLFile: crl}); !errors.Is(err, tlsx.ErrCRLWithoutCAFile) {
		t.Fatalf("CRLFile without ClientCAFile: %v", err)
	}
	if _, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, CRLFile: p.caFile}); err == nil ||
		!strings.Contains(err.Error(), "no revocation list") {
		t.Fatalf("a file without a list: %v", err)
	}
	// DER is read too; Config.CRLs stands in for the file.
	der, err := x509.CreateRevocationList(rand.Reader, &x509.RevocationList{Number: big.NewInt(1), ThisUpdate: time.Now(),
		NextUpdate: time.Now().Add(time.Hour)}, p.ca, p.caKey)
	if err != nil {
		t.Fatal(err)
	}
	os.WriteFile(crl, der, 0o600)
	srv, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, CRLFile: crl})
	if err != nil {
		t.Fatalf("DER list: %v", err)
	}
	srv.Close()
}

// syncBuffer is a log destination safe for concurrent use.
type syncBuffer struct {
	mu  sync.Mutex
	buf bytes.Buffer
}

func (b *syncBuffer) Write(p []byte) (int, error) {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.Write(p)
}

func (b *syncBuffer) String() string {
	b.mu.Lock()
	defer b.mu.Unlock()
	return b.buf.String()
}

func testLogger(w io.Writer) *slog.Logger { return slog.New(slog.NewTextHandler(w, nil)) }

// openEcho echoes what it reads and hands each connection, once its
// handshake is done, to opened.
type openEcho struct{ opened chan *engine.Conn }

func (h *openEcho) OnOpen(c *engine.Conn) { h.opened <- c }

func (h *openEcho) OnData(c *engine.Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

// TestRevokedAfterHandshake: a revocation list loaded after a device's
// handshake reaches its established connection: Server.Revoked reports it
// (TLS 1.2 and 1.3) and not the others, and OnRevocationReload runs on
// each reload with lists, so that the owner closes it; an unregistered
// function runs no more.
func TestRevokedAfterHandshake(t *testing.T) {
	p := newPKI(t)
	keep, _ := p.clientPairNamed(t, "dev-keep")
	gone, goneSerial := p.clientPairNamed(t, "dev-gone")
	crl := filepath.Join(p.dir, "crl.pem")
	p.writeCRL(t, crl, 1, time.Now().Add(time.Hour))
	e := testutil.StartEngine(t, engine.Config{})
	s, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ClientCAFile: p.caFile, CRLFile: crl,
		ReloadInterval: -1, Logger: testLogger(io.Discard)})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(s.Close)
	h := &openEcho{opened: make(chan *engine.Conn, 8)}
	ln, err := s.Listen(e, "127.0.0.1:0", h)
	if err != nil {
		t.Fatal(err)
	}
	type dev struct {
		name   string
		client *tls.Conn
		server *engine.Conn
	}
	var devs []dev
	for _, ver := range versions {
		for _, d := range []struct {
			name string
			cert tls.Certificate
		}{{"dev-keep", keep}, {"dev-gone", gone}} {
			c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: p.pool, ServerName: "localhost",
				MinVersion: ver.v, MaxVersion: ver.v, Certificates: []tls.Certificate{d.cert}})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(func() { c.Close() })
			echo(t, c, "hello")
			var sc *engine.Conn
			select {
			case sc = <-h.opened:
			case <-time.After(5 * time.Second):
				t.Fatal("no connection opened")
			}
			devs = append(devs, dev{ver.name + "/" + d.name, c, sc})
		}
	}
	for _, d := range devs {
		if s.Revoked(d.server) {
			t.Errorf("%s revoked before any list names it", d.name)
		}
	}
	calls := 0
	remove := s.OnRevocationReload(func() {
		calls++
		for _, d := range devs {
			if s.Revoked(d.server) {
				d.server.Close()
			}
		}
	})
	p.writeCRL(t, crl, 2, time.Now().Add(time.Hour), goneSerial)
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Fatalf("OnRevocationReload ran %d times; want 1", calls)
	}
	for _, d := range devs {
		if want := strings.HasSuffix(d.name, "dev-gone"); s.Revoked(d.server) != want {
			t.Errorf("%s: Revoked %v; want %v", d.name, !want, want)
		}
		if strings.HasSuffix(d.name, "dev-gone") {
			d.client.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, err := d.client.Read(make([]byte, 1)); err == nil {
				t.Errorf("%s: still open after its revocation", d.name)
			}
		} else {
			echo(t, d.client, "still here")
		}
	}
	remove()
	if err := s.Reload(); err != nil {
		t.Fatal(err)
	}
	if calls != 1 {
		t.Errorf("an unregistered function ran (%d calls)", calls)
	}
}

// echo writes msg on c and reads it back.
func echo(t *testing.T, c *tls.Conn, msg string) {
	t.Helper()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := c.Write([]byte(msg)); err != nil {
		t.Fatal(err)
	}
	buf := make([]byte, len(msg))
	if _, err := io.ReadFull(c, buf); err != nil || string(buf) != msg {
		t.Fatalf("echo: %q %v", buf, err)
	}
}
