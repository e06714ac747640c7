package tlsx_test

import (
	"context"
	"crypto/tls"
	"os"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// servedCN returns the CN of the certificate a new handshake gets.
func servedCN(t *testing.T, p *pki, addr string) string {
	t.Helper()
	c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: p.pool, ServerName: "localhost"})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	return c.ConnectionState().PeerCertificates[0].Subject.CommonName
}

// TestReload: Reload and a change of the files switch new handshakes to
// the new certificate while an established connection keeps working; a bad
// file is refused and the old certificate kept.
func TestReload(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, ReloadInterval: 20 * time.Millisecond})
	if cn := servedCN(t, p, s.addr); cn != "localhost" {
		t.Fatalf("served %q", cn)
	}
	c := httpsClient(p, tls.VersionTLS13, nil)
	if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
		t.Fatal(got)
	}

	// Explicit Reload (what SIGHUP does).
	p.issue(t, p.certFile, p.keyFile, "second", nil, time.Now().Add(time.Hour), false)
	if err := s.tls.Reload(); err != nil {
		t.Fatal(err)
	}
	if cn := servedCN(t, p, s.addr); cn != "second" {
		t.Fatalf("after Reload served %q", cn)
	}
	if got := get(t, c, "https://"+s.addr+"/"); got != "hello " { // the kept-alive connection
		t.Fatal(got)
	}

	// A bad file: refused, the old certificate stays.
	os.WriteFile(p.certFile, []byte("not a certificate"), 0o600)
	if err := s.tls.Reload(); err == nil {
		t.Fatal("bad certificate accepted")
	}
	if cn := servedCN(t, p, s.addr); cn != "second" {
		t.Fatalf("after a bad reload served %q", cn)
	}

	// The file watch.
	ctx, cancel := contextWithCancel()
	defer cancel()
	go s.tls.Watch(ctx)
	p.issue(t, p.certFile, p.keyFile, "third", nil, time.Now().Add(time.Hour), false)
	testutil.Eventually(t, 5*time.Second, "the watch reloads", func() bool { return servedCN(t, p, s.addr) == "third" })
}

func contextWithCancel() (context.Context, context.CancelFunc) {
	return context.WithCancel(context.Background())
}
