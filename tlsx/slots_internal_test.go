package tlsx

import (
	"crypto/tls"
	"fmt"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/testutil"
	dto "github.com/prometheus/client_model/go"

	wtest "github.com/warrenhq/warren/internal/testutil"
)

// gatedConn is a client connection whose writes after the first (the
// ClientHello) wait until open is closed; at closes once the second write
// is waiting, so the server has answered the ClientHello.
type gatedConn struct {
	net.Conn
	open chan struct{}
	at   chan struct{}
	once sync.Once
	n    int
}

func (g *gatedConn) Write(p []byte) (int, error) {
	g.n++
	if g.n > 1 {
		g.once.Do(func() { close(g.at) })
		<-g.open
	}
	return g.Conn.Write(p)
}

// TestNoStallOnQueuedSlot is the stall review found in a slot handed over
// with a queued job (docs/benchmarks.md §52): one CPU slot, one worker. A's
// worker waits for A's client with no slot; B's ClientHello arrives and
// queues; then A's client answers. A's worker must get a slot and finish
// A, then B — not wait, with B holding the only slot in the workers'
// queue, until HandshakeTimeout (here an hour) ends them.
func TestNoStallOnQueuedSlot(t *testing.T) {
	s, addr, _ := testServer(t, Config{HandshakeCPU: 1, HandshakeWorkers: 1, HandshakeTimeout: time.Hour,
		HandshakeNice: -1, FlightTimeout: -1, RatePerIP: -1, Rate: -1, BanThreshold: -1, MinVersion: tls.VersionTLS13})
	ok := func() float64 {
		return testutil.ToFloat64(s.m.handshakes.WithLabelValues(ResultOK, versionName(tls.VersionTLS13)))
	}
	a := &gatedConn{Conn: dialTCP(t, addr), open: make(chan struct{}), at: make(chan struct{})}
	errs := make(chan error, 2)
	go func() { errs <- tls.Client(a, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	select {
	case <-a.at: // A's worker has sent its flight and waits for A's client
	case err := <-errs:
		t.Fatalf("A's handshake ended before its second flight: %v", err)
	}
	b := dialTCP(t, addr)
	go func() { errs <- tls.Client(b, &tls.Config{InsecureSkipVerify: true}).Handshake() }()
	wtest.Eventually(t, 10*time.Second, "B's handshake queued", func() bool { return testutil.ToFloat64(s.m.queue) == 1 })
	close(a.open) // A's client answers
	wtest.Eventually(t, 20*time.Second, "A's and B's handshakes done on the server", func() bool { return ok() == 2 })
	for range 2 {
		if err := <-errs; err != nil {
			t.Fatal(err)
		}
	}
}

// dialTCP opens a TCP connection to addr, closed when the test ends.
func dialTCP(t *testing.T, addr string) net.Conn {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return c
}

// handshakesCounted sums warren_tls_handshakes_total over every label.
func handshakesCounted(s *Server) float64 {
	ch := make(chan prometheus.Metric, 64)
	go func() { s.m.handshakes.Collect(ch); close(ch) }()
	var sum float64
	for m := range ch {
		var pb dto.Metric
		if err := m.Write(&pb); err == nil {
			sum += pb.GetCounter().GetValue()
		}
	}
	return sum
}

// TestClosedBeforeWorker: a handshake whose connection closes while it
// waits for a worker gets no worker turn (crypto/tls never starts on it,
// it never waits for a CPU slot) and is counted once, as aborted.
func TestClosedBeforeWorker(t *testing.T) {
	var starts atomic.Int32
	gate := make(chan struct{})
	hook := func() {
		if starts.Add(1) == 1 {
			<-gate // the first handshake holds its slot and the one worker
		}
	}
	testHookHandshake.Store(&hook)
	defer testHookHandshake.Store(nil)
	var closes atomic.Int32
	closed := func() { closes.Add(1) }
	testHookClosed.Store(&closed)
	defer testHookClosed.Store(nil)
	s, addr, _ := testServer(t, Config{HandshakeCPU: 2, HandshakeWorkers: 1, HandshakeNice: -1, FlightTimeout: -1,
		RatePerIP: -1, Rate: -1, BanThreshold: -1})
	aborted := func() float64 { return testutil.ToFloat64(s.m.handshakes.WithLabelValues(ResultAborted, "none")) }
	queued := func() float64 { return testutil.ToFloat64(s.m.queue) }
	hello := clientHello(t)
	a := dialTCP(t, addr)
	a.Write(hello)
	wtest.Eventually(t, 5*time.Second, "the first handshake on the worker", func() bool { return starts.Load() == 1 })
	b, c := dialTCP(t, addr), dialTCP(t, addr)
	b.Write(hello)
	c.Write(hello)
	wtest.Eventually(t, 5*time.Second, "b and c queued", func() bool { return queued() == 2 })
	b.Close()
	c.Close()
	// The server has seen both closes before the worker is free.
	wtest.Eventually(t, 10*time.Second, "b and c closed on the server", func() bool { return closes.Load() == 2 })
	close(gate) // a computes, then waits for its client without a slot
	wtest.Eventually(t, 5*time.Second, "a waiting for its client", func() bool { return s.cpu.held(2) == 0 })
	a.Close() // a fails on the worker, which then takes b's and c's jobs and drops them
	wtest.Eventually(t, 5*time.Second, "every job taken, no slot held", func() bool {
		return queued() == 0 && s.demand.Load() == 0 && s.cpu.held(2) == 0 && aborted() == 3
	})
	if n := starts.Load(); n != 1 {
		t.Fatalf("%d handshakes began on a worker, want 1 (b and c closed before a worker took them)", n)
	}
	if got := handshakesCounted(s); got != 3 {
		t.Fatalf("%v handshakes counted, want 3 (a, b, c aborted)", got)
	}
}

// slowConn delays each client write after the first by d (a slow client's
// next flight), or closes the connection there instead (a client that
// gives up mid-handshake).
type slowConn struct {
	net.Conn
	d     time.Duration
	quit  bool
	wrote bool
}

func (c *slowConn) Write(p []byte) (int, error) {
	if c.wrote {
		if c.quit {
			c.Conn.Close()
			return 0, net.ErrClosed
		}
		time.Sleep(c.d)
	}
	c.wrote = true
	return c.Conn.Write(p)
}

// TestSlotAccountingStress: many clients at once against one to two CPU
// slots and one to four workers — quick ones, slow ones, ones that close
// after their ClientHello or in the middle of the handshake. Every
// handshake ends and is counted once, and at rest no slot is lost or
// given back twice: the free count is back at HandshakeCPU, nobody
// waiting, nothing queued.
func TestSlotAccountingStress(t *testing.T) {
	clients := 120
	if testing.Short() {
		clients = 40
	}
	hello := clientHello(t)
	for _, tc := range []struct{ cpu, workers int }{{1, 1}, {1, 2}, {1, 4}, {2, 1}, {2, 2}, {2, 4}} {
		t.Run(fmt.Sprintf("cpu%d-workers%d", tc.cpu, tc.workers), func(t *testing.T) {
			s, addr, _ := testServer(t, Config{HandshakeCPU: tc.cpu, HandshakeWorkers: tc.workers, HandshakeNice: -1,
				FlightTimeout: -1, RatePerIP: -1, Rate: -1, BanThreshold: -1})
			var wg sync.WaitGroup
			var ok atomic.Int32
			for i := range clients {
				wg.Add(1)
				go func() {
					defer wg.Done()
					nc, err := net.Dial("tcp", addr)
					if err != nil {
						t.Error(err)
						return
					}
					defer nc.Close()
					switch i % 5 {
					case 0: // its ClientHello, then gone
						nc.Write(hello)
						return
					case 1: // gone in the middle
						tls.Client(&slowConn{Conn: nc, quit: true}, &tls.Config{InsecureSkipVerify: true}).Handshake()
						return
					case 2: // slow
						nc = &slowConn{Conn: nc, d: time.Duration(i%7) * time.Millisecond}
					}
					tc := tls.Client(nc, &tls.Config{InsecureSkipVerify: true})
					if err := tc.Handshake(); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					// A TLS 1.3 client is done before the server: read
					// the server's session ticket, sent after its end.
					tc.SetReadDeadline(time.Now().Add(20 * time.Second))
					tc.Write([]byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n"))
					if _, err := tc.Read(make([]byte, 512)); err != nil {
						t.Errorf("client %d: %v", i, err)
						return
					}
					ok.Add(1)
				}()
			}
			wg.Wait()
			wtest.Eventually(t, 30*time.Second, "every handshake ended and counted", func() bool {
				return handshakesCounted(s) == float64(clients) && s.demand.Load() == 0
			})
			s.cpu.mu.Lock()
			free, waiting := s.cpu.free, len(s.cpu.ready)-s.cpu.head
			s.cpu.mu.Unlock()
			if free != tc.cpu || waiting != 0 || len(s.jobs) != 0 {
				t.Fatalf("at rest: free %d (want %d), waiting %d, queued %d", free, tc.cpu, waiting, len(s.jobs))
			}
			if n := testutil.ToFloat64(s.m.handshakes.WithLabelValues(ResultOK, versionName(tls.VersionTLS13))); n != float64(ok.Load()) {
				t.Fatalf("%v ok on the server, %d clients served", n, ok.Load())
			}
		})
	}
}
