package tlsx_test

import (
	"crypto/tls"
	"errors"
	"fmt"
	"io"
	"log"
	"math/big"
	"net/http"
	"net/netip"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/tlsx"
)

// raw is a protocol handler that answers each read with "pong" on the loop.
type raw struct{}

func (raw) OnData(c *engine.Conn, in []byte) int { c.Write([]byte("pong")); return len(in) }
func (raw) Inline() bool                         { return true }

// Example serves HTTPS: the HTTP server's handler is wrapped by a TLS
// Server, so each connection is handshaken on the TLS workers and then
// served by HTTP, which reads and writes plain bytes.
func Example() {
	cert, pool := exampleCert()
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()

	ts, err := tlsx.New(tlsx.Config{Certificate: cert})
	if err != nil {
		log.Fatal(err)
	}
	defer ts.Close()
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) {
		st := tlsx.State(c.Conn())
		fmt.Fprintf(c, "hello over %s", tls.VersionName(st.Version))
	}))
	hs, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := hs.ListenWrapped("127.0.0.1:0", ts.Handler)
	if err != nil {
		log.Fatal(err)
	}

	client := &http.Client{Timeout: 5 * time.Second, Transport: &http.Transport{TLSClientConfig: &tls.Config{RootCAs: pool}}}
	resp, err := client.Get("https://" + ln.Addr().String() + "/")
	if err != nil {
		log.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	fmt.Println(string(b))
	// Output: hello over TLS 1.3
}

// ExampleServer_HandlerALPN serves two protocols on one TLS port, chosen
// by ALPN.
func ExampleServer_HandlerALPN() {
	cert, pool := exampleCert()
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	ts, _ := tlsx.New(tlsx.Config{Certificate: cert})
	defer ts.Close()
	ln, _ := e.Listen("127.0.0.1:0", ts.HandlerALPN(map[string]engine.Handler{"mqtt": raw{}}, raw{}))

	c, err := tls.Dial("tcp", ln.Addr().String(), &tls.Config{RootCAs: pool, NextProtos: []string{"mqtt"}})
	if err != nil {
		log.Fatal(err)
	}
	defer c.Close()
	c.Write([]byte("ping"))
	b := make([]byte, 4)
	io.ReadFull(c, b)
	fmt.Println(c.ConnectionState().NegotiatedProtocol, string(b))
	// Output: mqtt pong
}

// oneShot writes "ping" when its connection opens (after the TLS
// handshake) and prints the first answer.
type oneShot struct{ done chan string }

func (oneShot) Inline() bool            { return true }
func (o oneShot) OnOpen(c *engine.Conn) { c.Write([]byte("ping")) }
func (o oneShot) OnData(c *engine.Conn, in []byte) int {
	o.done <- string(in)
	c.Close()
	return len(in)
}

// ExampleClient dials a TLS connection on an engine: the handshake runs on
// the Client's goroutines, then the handler speaks plain bytes.
func ExampleClient() {
	cert, pool := exampleCert()
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	ts, _ := tlsx.New(tlsx.Config{Certificate: cert})
	defer ts.Close()
	ln, _ := e.Listen("127.0.0.1:0", ts.Handler(raw{}))

	cl := tlsx.NewClient(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1"}, 0, 5*time.Second)
	o := oneShot{done: make(chan string, 1)}
	if _, err := e.DialHandler(netip.MustParseAddrPort(ln.Addr().String()), netip.Addr{}, cl.Handler(o)); err != nil {
		log.Fatal(err)
	}
	select {
	case got := <-o.done:
		fmt.Println(got)
	case <-time.After(5 * time.Second):
		fmt.Println("no answer")
	}
	// Output: pong
}

// ExampleHandshakeConn picks a client certificate per connection: the
// server asks for one (mutual TLS), and the Client's GetClientCertificate
// finds the dialled connection behind the handshake.
func ExampleHandshakeConn() {
	cert, pool := exampleCert()
	e, _ := engine.New(engine.Config{Loops: 1}, nil)
	e.Start("")
	defer e.Close()
	ts, _ := tlsx.New(tlsx.Config{Certificate: cert, ClientCAs: pool, ClientAuth: tls.RequireAnyClientCert})
	defer ts.Close()
	ln, _ := e.Listen("127.0.0.1:0", ts.Handler(raw{}))

	asked := make(chan bool, 1)
	cl := tlsx.NewClient(&tls.Config{RootCAs: pool, ServerName: "127.0.0.1",
		GetClientCertificate: func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
			c := tlsx.HandshakeConn(cri.Context()) // the connection being handshaken
			asked <- c != nil
			return cert, nil // in practice: the certificate of whatever c stands for
		}}, 0, 5*time.Second)
	o := oneShot{done: make(chan string, 1)}
	if _, err := e.DialHandler(netip.MustParseAddrPort(ln.Addr().String()), netip.Addr{}, cl.Handler(o)); err != nil {
		log.Fatal(err)
	}
	select {
	case got := <-o.done:
		fmt.Println(<-asked, got)
	case <-time.After(5 * time.Second):
		fmt.Println("no answer")
	}
	// Output: true pong
}

// ExampleConfig_handshakePool sets the handshake pool's bounds for a
// gateway that expects reconnect storms (docs/benchmarks.md §26): 256
// handshakes in progress (each waiting for its client costs memory, not
// CPU), one computing at a time so the event loops keep the rest of the
// CPU, 3 s for each of a client's turns so slow clients let their workers
// go, and no change to the garbage collector's target during a burst nor
// a collection after it, for a process that runs its own GC policy.
func ExampleConfig_handshakePool() {
	cert, _ := exampleCert()
	s, err := tlsx.New(tlsx.Config{Certificate: cert, HandshakeWorkers: 256, HandshakeCPU: 1,
		FlightTimeout: 3 * time.Second, HandshakeQueue: 4096, BurstGCPercent: -1, CollectAfter: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("handshakes computing at most:", 1)
	// Output: handshakes computing at most: 1
}

// ExampleConfig_handshakeNice: on Linux the handshake workers compute on
// threads at nice 10 by default (DefaultHandshakeNice), so that the kernel
// runs the event loops and the command path first; 19 lowers them further,
// and a process that keeps its own thread priorities and GOMAXPROCS turns
// it off with a negative value.
func ExampleConfig_handshakeNice() {
	cert, _ := exampleCert()
	s, err := tlsx.New(tlsx.Config{Certificate: cert, HandshakeNice: -1})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer s.Close()
	fmt.Println("default nice value:", tlsx.DefaultHandshakeNice, "spare Ps held for:", tlsx.SpareLinger)
	// Output: default nice value: 10 spare Ps held for: 5s
}

// ExampleRevokedError: with revocation lists (Config.CRLFile, or CRLs
// whose signatures the caller checked), a listed client certificate fails
// its handshake; the Server logs a *RevokedError and counts the handshake
// as revoked_client_certificate. A caller that checks a handshake error of
// its own tells it apart with errors.Is and errors.As.
func ExampleRevokedError() {
	var err error = &tlsx.RevokedError{Subject: "CN=dev-7", Serial: big.NewInt(0x2a), Issuer: "CN=devices CA",
		RevokedAt: time.Date(2026, 12, 1, 0, 0, 0, 0, time.UTC)}
	var re *tlsx.RevokedError
	fmt.Println(errors.Is(err, tlsx.ErrRevoked), errors.As(err, &re) && re.Serial.Int64() == 42)
	fmt.Println(err)
	// Output:
	// true true
	// tlsx: certificate "CN=dev-7" (serial 2A) revoked by "CN=devices CA" at 2026-12-01T00:00:00Z
}

// ExampleServer_OnRevocationReload closes the established connections of
// devices whose certificate a reloaded revocation list names: the
// handshake refuses them from then on, and the sweep reaches those that
// connected before. conns stands for the owner's own record of its
// connections (warren serve's gateway walks its device sessions).
func ExampleServer_OnRevocationReload() {
	ts, err := tlsx.New(tlsx.Config{CertFile: "server.pem", KeyFile: "server-key.pem",
		ClientCAFile: "devices-ca.pem", CRLFile: "devices.crl"})
	if err != nil {
		log.Print(err) // no such files here
		return
	}
	defer ts.Close()
	var conns []*engine.Conn
	remove := ts.OnRevocationReload(func() {
		for _, c := range conns {
			if ts.Revoked(c) {
				c.CloseWithReason(engine.ReasonLocal)
			}
		}
	})
	defer remove()
}
