package tlsx_test

import (
	"crypto/tls"
	"fmt"
	"net"
	"runtime"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/tlsx"
)

// stallConn passes the client's first flight (the ClientHello) and holds
// every later write until stop closes: the server's handshake waits for the
// client's Finished on its worker.
type stallConn struct {
	net.Conn
	writes  int
	stop    chan struct{}
	stalled chan struct{} // if set, closed when the client holds its second flight
}

func (c *stallConn) Write(p []byte) (int, error) {
	c.writes++
	if c.writes > 1 {
		if c.writes == 2 && c.stalled != nil {
			close(c.stalled) // the server's worker sent its flight and waits
		}
		<-c.stop
		return 0, net.ErrClosed
	}
	return c.Conn.Write(p)
}

// waitWorkers waits (5 s at most) until the Server runs want handshake
// workers, by its warren_tls_handshake_workers gauge.
func waitWorkers(t *testing.T, s *tlsx.Server, want int) {
	t.Helper()
	line := fmt.Sprintf("warren_tls_handshake_workers %d\n", want)
	for deadline := time.Now().Add(5 * time.Second); !metric(t, s, line); {
		if time.Now().After(deadline) {
			t.Fatalf("not %d handshake workers after 5s: %s", want, gauges(t, s))
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestHandshakeWorkersGrowAndShrink: GOMAXPROCS workers stay; handshakes
// that hold theirs (clients that never send their Finished) get more, up
// to Config.HandshakeWorkers, while others still complete; the extra ones
// end after tlsx.WorkerIdle once the stalled handshakes are gone.
func TestHandshakeWorkersGrowAndShrink(t *testing.T) {
	p := newPKI(t)
	const max = 12
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, HandshakeWorkers: max,
		RatePerIP: -1, BanThreshold: -1, FlightTimeout: -1})
	resident := min(max, runtime.GOMAXPROCS(0))
	waitWorkers(t, s.tls, resident)

	stalled := min(max-1, resident+4)
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns []net.Conn
	for range stalled {
		raw, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, raw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tls.Client(&stallConn{Conn: raw, stop: stop}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}).Handshake()
		}()
	}
	waitWorkers(t, s.tls, stalled)
	// One more handshake gets a worker of its own and completes.
	c := httpsClient(p, tls.VersionTLS13, nil)
	if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
		t.Fatalf("beside the stalled handshakes: %q", got)
	}
	c.CloseIdleConnections()

	close(stop)
	for _, raw := range conns {
		raw.Close()
	}
	wg.Wait()
	waitWorkers(t, s.tls, resident)
	if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
		t.Fatalf("after the shrink: %q", got)
	}
}

// TestHandshakeWorkersBound: stalled handshakes never get more than
// Config.HandshakeWorkers workers; the rest wait in the queue.
func TestHandshakeWorkersBound(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, HandshakeWorkers: 3,
		RatePerIP: -1, BanThreshold: -1, FlightTimeout: -1})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns []net.Conn
	for range 6 {
		raw, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, raw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tls.Client(&stallConn{Conn: raw, stop: stop}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}).Handshake()
		}()
	}
	waitWorkers(t, s.tls, 3)
	for deadline := time.Now().Add(5 * time.Second); !metric(t, s.tls, "warren_tls_handshake_queue_depth 3\n"); {
		if time.Now().After(deadline) {
			t.Fatal("3 handshakes not queued after 5s")
		}
		time.Sleep(10 * time.Millisecond)
	}
	time.Sleep(50 * time.Millisecond)
	waitWorkers(t, s.tls, 3)
	close(stop)
	for _, raw := range conns {
		raw.Close()
	}
	wg.Wait()
}

// TestFlightTimeout: with one handshake worker, a client that sends its
// ClientHello and then nothing holds the worker only for FlightTimeout
// (not HandshakeTimeout, a minute here): the handshake queued behind it
// then completes, and the stalled one is counted as flight_timeout. A
// client whose second flight comes in time is not touched by it (the
// queued handshake's own flight).
func TestFlightTimeout(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, HandshakeWorkers: 1,
		HandshakeTimeout: time.Minute, FlightTimeout: time.Second, RatePerIP: -1, BanThreshold: -1})
	stop := make(chan struct{})
	defer close(stop)
	raw, err := net.Dial("tcp", s.addr)
	if err != nil {
		t.Fatal(err)
	}
	defer raw.Close()
	stalled := make(chan struct{})
	go tls.Client(&stallConn{Conn: raw, stop: stop, stalled: stalled}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}).Handshake()
	select {
	case <-stalled:
	case <-time.After(10 * time.Second):
		t.Fatal("the stalled client never got the server's flight")
	}
	c := httpsClient(p, tls.VersionTLS13, nil)
	if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
		t.Fatalf("behind a stalled handshake: %q", got)
	}
	c.CloseIdleConnections()
	for deadline := time.Now().Add(5 * time.Second); !metric(t, s.tls, `warren_tls_handshakes_total{result="flight_timeout",version="none"} 1`+"\n"); {
		if time.Now().After(deadline) {
			t.Fatal("the stalled handshake not counted as flight_timeout")
		}
		time.Sleep(10 * time.Millisecond)
	}
	if !metric(t, s.tls, `warren_tls_handshakes_total{result="ok",version="1.3"} 1`+"\n") {
		t.Fatal("the queued handshake not counted ok")
	}
}

// TestHandshakeCPU: with one CPU slot, handshakes waiting for their
// clients (stalled before their Finished) hold none, so another handshake
// still computes and completes; the slot is free once all are done.
func TestHandshakeCPU(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, HandshakeCPU: 1,
		RatePerIP: -1, BanThreshold: -1, FlightTimeout: -1})
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var conns []net.Conn
	for range 4 {
		raw, err := net.Dial("tcp", s.addr)
		if err != nil {
			t.Fatal(err)
		}
		conns = append(conns, raw)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tls.Client(&stallConn{Conn: raw, stop: stop}, &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}).Handshake()
		}()
	}
	waitWorkers(t, s.tls, max(4, runtime.GOMAXPROCS(0)))
	for _, v := range versions {
		c := httpsClient(p, v.v, nil)
		for i := range 3 {
			if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
				t.Fatalf("%s request %d beside 4 stalled handshakes: %q", v.name, i, got)
			}
		}
		c.CloseIdleConnections()
	}
	close(stop)
	for _, raw := range conns {
		raw.Close()
	}
	wg.Wait()
	for deadline := time.Now().Add(5 * time.Second); !metric(t, s.tls, "warren_tls_handshakes_computing 0\n"); {
		if time.Now().After(deadline) {
			t.Fatal("a CPU slot still held 5s after every handshake ended")
		}
		time.Sleep(10 * time.Millisecond)
	}
}

// TestCollectAfter: a second after the last of CollectAfter handshakes,
// one garbage collection runs (counted); none without new handshakes.
func TestCollectAfter(t *testing.T) {
	p := newPKI(t)
	s := startServer(t, engine.Config{}, tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, CollectAfter: 3,
		RatePerIP: -1, BanThreshold: -1})
	c := httpsClient(p, tls.VersionTLS13, nil)
	for range 3 {
		if got := get(t, c, "https://"+s.addr+"/"); got != "hello " {
			t.Fatal(got)
		}
		c.CloseIdleConnections()
	}
	if metric(t, s.tls, "warren_tls_collections_total 1\n") {
		t.Fatal("collected before a quiet second")
	}
	for deadline := time.Now().Add(5 * time.Second); !metric(t, s.tls, "warren_tls_collections_total 1\n"); {
		if time.Now().After(deadline) {
			t.Fatal("no collection 5s after 3 handshakes")
		}
		time.Sleep(20 * time.Millisecond)
	}
	time.Sleep(tlsx.WorkerIdle + 200*time.Millisecond)
	if !metric(t, s.tls, "warren_tls_collections_total 1\n") {
		t.Fatal("collected again without handshakes")
	}
	// Fewer than CollectAfter since: none.
	get(t, c, "https://"+s.addr+"/")
	time.Sleep(tlsx.WorkerIdle + 200*time.Millisecond)
	if !metric(t, s.tls, "warren_tls_collections_total 1\n") {
		t.Fatal("collected after 1 handshake of 3")
	}
}

// gauges returns the Server's worker, queue and CPU-slot gauges.
func gauges(t *testing.T, s *tlsx.Server) string {
	var out []string
	for _, name := range []string{"warren_tls_handshake_workers", "warren_tls_handshake_queue_depth", "warren_tls_handshakes_computing"} {
		for n := range 300 {
			if metric(t, s, fmt.Sprintf("%s %d\n", name, n)) {
				out = append(out, fmt.Sprintf("%s %d", name, n))
				break
			}
		}
	}
	return strings.Join(out, ", ")
}
