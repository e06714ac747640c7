package tlsx_test

import (
	"crypto/tls"
	"fmt"
	"net/http"
	"net/http/httptest"
	"net/netip"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// getter sends one GET on open and collects the response.
type getter struct {
	mu     sync.Mutex
	got    strings.Builder
	layer  string // the record layer's type, seen at OnOpen
	closed chan engine.CloseReason
}

func (g *getter) Inline() bool { return true }
func (g *getter) OnOpen(c *engine.Conn) {
	g.mu.Lock()
	g.layer = fmt.Sprintf("%T", c.Transform())
	g.mu.Unlock()
	c.Write([]byte("GET / HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n"))
}
func (g *getter) OnData(c *engine.Conn, in []byte) int {
	g.mu.Lock()
	g.got.Write(in)
	g.mu.Unlock()
	return len(in)
}
func (g *getter) OnClose(c *engine.Conn, r engine.CloseReason, err error) { g.closed <- r }

func dialGet(t *testing.T, e *engine.Engine, cl *tlsx.Client, addr string) string {
	t.Helper()
	got, _ := dialGetLayer(t, e, cl, addr)
	return got
}

// dialGetLayer is dialGet that also says which record layer the client
// connection ran on.
func dialGetLayer(t *testing.T, e *engine.Engine, cl *tlsx.Client, addr string) (string, string) {
	t.Helper()
	g := &getter{closed: make(chan engine.CloseReason, 1)}
	if _, err := e.DialHandler(netip.MustParseAddrPort(addr), netip.Addr{}, cl.Handler(g)); err != nil {
		t.Fatal(err)
	}
	select {
	case <-g.closed:
	case <-time.After(10 * time.Second):
		t.Fatal("no close")
	}
	g.mu.Lock()
	defer g.mu.Unlock()
	return g.got.String(), g.layer
}

// TestClient: the engine-side client against warren's server and against
// Go's net/http TLS server, both versions, on warren's record layer; a TLS
// 1.2 CBC suite (which the Server does not offer, net/http does) keeps
// crypto/tls's.
func TestClient(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile})
	gosrv := httptest.NewUnstartedServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("hello from net/http")) }))
	cert, _ := tls.LoadX509KeyPair(p.certFile, p.keyFile)
	var resumed atomic.Int32
	gosrv.TLS = &tls.Config{Certificates: []tls.Certificate{cert}, VerifyConnection: func(cs tls.ConnectionState) error {
		if cs.DidResume {
			resumed.Add(1)
		}
		return nil
	}}
	gosrv.StartTLS()
	defer gosrv.Close()
	e := testutil.StartEngine(t, engine.Config{})
	const ours, theirs = "*tlsx.recordLayer", "*tlsx.conn12"
	for _, v := range versions {
		cl := tlsx.NewClient(&tls.Config{RootCAs: p.pool, ServerName: "localhost", MinVersion: v.v, MaxVersion: v.v}, 4, 5*time.Second)
		if got, layer := dialGetLayer(t, e, cl, s.addr); !strings.HasSuffix(got, "\r\n\r\nhello ") || layer != ours {
			t.Fatalf("%s warren: %q on %s", v.name, got, layer)
		}
		if got, layer := dialGetLayer(t, e, cl, strings.TrimPrefix(gosrv.URL, "https://")); !strings.HasSuffix(got, "hello from net/http") || layer != ours {
			t.Fatalf("%s net/http: %q on %s", v.name, got, layer)
		}
	}
	// TLS 1.2 resumption through the Client's session cache, against
	// warren and net/http: full handshake, then resumed, both on warren's
	// record layer.
	cache := tls.NewLRUClientSessionCache(8)
	res := tlsx.NewClient(&tls.Config{RootCAs: p.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12, ClientSessionCache: cache}, 1, 5*time.Second)
	for _, addr := range []string{s.addr, strings.TrimPrefix(gosrv.URL, "https://")} {
		for i := range 2 {
			if got, layer := dialGetLayer(t, e, res, addr); !strings.Contains(got, "hello") || layer != ours {
				t.Fatalf("resumption %d against %s: %q on %s", i, addr, got, layer)
			}
		}
	}
	if n := resumed.Load(); n != 1 {
		t.Fatalf("net/http saw %d resumed handshakes, want 1", n)
	}
	cbc := tlsx.NewClient(&tls.Config{RootCAs: p.pool, ServerName: "localhost", MaxVersion: tls.VersionTLS12,
		CipherSuites: []uint16{tls.TLS_ECDHE_ECDSA_WITH_AES_128_CBC_SHA}}, 1, 5*time.Second)
	if got, layer := dialGetLayer(t, e, cbc, strings.TrimPrefix(gosrv.URL, "https://")); !strings.HasSuffix(got, "hello from net/http") || layer != theirs {
		t.Fatalf("CBC suite: %q on %s", got, layer)
	}
	// A certificate the client does not trust: the handshake fails and
	// the wrapped handler hears of the close.
	bad := tlsx.NewClient(&tls.Config{ServerName: "localhost"}, 1, 5*time.Second)
	if got := dialGet(t, e, bad, s.addr); got != "" {
		t.Fatalf("untrusted server answered %q", got)
	}
}

// TestClientConnectRefused: a dial whose connect fails ends in the inner
// handler's OnClose with an I/O error, as it does without TLS.
func TestClientConnectRefused(t *testing.T) {
	addr := testutil.RefusedAddr(t)
	e := testutil.StartEngine(t, engine.Config{})
	g := &getter{closed: make(chan engine.CloseReason, 1)}
	if _, err := e.DialHandler(netip.MustParseAddrPort(addr), netip.Addr{}, tlsx.NewClient(&tls.Config{}, 0, 0).Handler(g)); err != nil {
		return // refused at once: as without TLS
	}
	select {
	case r := <-g.closed:
		if r != engine.ReasonIOError {
			t.Fatalf("closed with %v, want %v", r, engine.ReasonIOError)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the inner handler was not told of the failed connect")
	}
}
