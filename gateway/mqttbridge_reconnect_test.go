package gateway

import (
	"encoding/binary"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

// holeProxy forwards TCP connections to a NATS server; hole makes every
// connection so far stop forwarding without closing it: a half-open link,
// which the server notices only by its own ping check, minutes later.
type holeProxy struct {
	ln    net.Listener
	mu    sync.Mutex
	holes []*atomic.Bool
	conns []net.Conn
}

func newHoleProxy(t *testing.T, dst string) *holeProxy {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &holeProxy{ln: ln}
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			s, err := net.Dial("tcp", dst)
			if err != nil {
				c.Close()
				continue
			}
			h := &atomic.Bool{}
			p.mu.Lock()
			p.holes = append(p.holes, h)
			p.conns = append(p.conns, c, s)
			p.mu.Unlock()
			cp := func(from, to net.Conn) {
				buf := make([]byte, 32<<10)
				for {
					n, err := from.Read(buf)
					if err != nil {
						return
					}
					if !h.Load() {
						to.Write(buf[:n])
					}
				}
			}
			go cp(c, s)
			go cp(s, c)
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		p.mu.Lock()
		defer p.mu.Unlock()
		for _, c := range p.conns {
			c.Close()
		}
	})
	return p
}

func (p *holeProxy) hole() {
	p.mu.Lock()
	defer p.mu.Unlock()
	for _, h := range p.holes {
		h.Store(true)
	}
}

// TestBridgeReconnectStaleConn is the review's scenario: the bridge's
// link to NATS goes half-open, its NATS client reconnects (a 100 ms ping)
// and resends the bridge's subscriptions, while the server still keeps
// the old connection and its subscriptions. Once the bridge has re-formed
// its queue group, every message comes through exactly once; with the
// old group kept, about half went to the dead connection (1,029 of 2,000
// lost at c1c770b).
func TestBridgeReconnectStaleConn(t *testing.T) {
	for _, tc := range []struct {
		name    string
		max     int
		filters []string
		fixed   string
	}{
		{name: "subjects", filters: []string{"devices/+/telemetry", "devices/#"}},
		{name: "over max", max: 1, filters: []string{"devices/+/telemetry", "devices/#"}},
		{name: "fixed", fixed: "devices.>"},
	} {
		t.Run(tc.name, func(t *testing.T) {
			srv, err := server.NewServer(&server.Options{Host: "127.0.0.1", Port: -1, NoLog: true, NoSigs: true})
			if err != nil {
				t.Fatal(err)
			}
			go srv.Start()
			if !srv.ReadyForConnections(5 * time.Second) {
				t.Fatal("nats-server not ready")
			}
			t.Cleanup(srv.Shutdown)
			p := newHoleProxy(t, srv.Addr().String())
			nc, err := nats.Connect("nats://"+p.ln.Addr().String(), nats.PingInterval(100*time.Millisecond),
				nats.MaxPingsOutstanding(2), nats.ReconnectWait(20*time.Millisecond), nats.MaxReconnects(-1))
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(nc.Close)
			// The conn's own handler (the bus's) still runs: the
			// bridge chains its own after it.
			reco := make(chan struct{}, 1)
			nc.SetReconnectHandler(func(*nats.Conn) {
				select {
				case reco <- struct{}{}:
				default:
				}
			})
			rec := newSeqRecorder()
			b := newBridge(nc, rec.take, tc.max, 0, quietLog())
			b.grace = 200 * time.Millisecond
			t.Cleanup(b.close)
			if tc.fixed != "" {
				b.mu.Lock()
				err := b.subscribeAll(tc.fixed)
				b.mu.Unlock()
				if err != nil {
					t.Fatal(err)
				}
			}
			for _, f := range tc.filters {
				b.add(f)
			}
			want := 1
			if tc.fixed == "" && tc.max != 1 {
				want = len(tc.filters)
			}
			waitBridgeSettled(t, b, want)
			pub, err := nats.Connect(srv.ClientURL())
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(pub.Close)

			p.hole()
			select {
			case <-reco:
			case <-time.After(10 * time.Second):
				t.Fatal("no reconnect")
			}
			testutil.Eventually(t, 10*time.Second, "the queue group re-formed", func() bool { return b.reformed.Load() >= 1 })
			waitBridgeSettled(t, b, want)
			if n := srv.NumClients(); n < 3 {
				t.Fatalf("the server has %d clients: it dropped the stale connection, the scenario did not happen", n)
			}
			const n = 2000
			for i := range n {
				var pl [8]byte
				binary.BigEndian.PutUint64(pl[:], uint64(i+1))
				if err := pub.Publish("devices.d1.telemetry", pl[:]); err != nil {
					t.Fatal(err)
				}
			}
			if err := pub.Flush(); err != nil {
				t.Fatal(err)
			}
			// Not settle: a lost message must fail the test with its
			// count, not time it out.
			for deadline := time.Now().Add(5 * time.Second); rec.count() < n && time.Now().Before(deadline); {
				time.Sleep(10 * time.Millisecond)
			}
			settle(t, rec, 0)
			if got := rec.count(); got < n {
				t.Errorf("%d of %d messages lost", n-got, n)
			}
			rec.check(t, func(uint64) bool { return true }, n)
		})
	}
}

// waitBridgeSettled waits until b has no re-form or switch under way and
// its NATS connection holds exactly want subscriptions, all of them in
// b's current queue group.
func waitBridgeSettled(t *testing.T, b *bridge, want int) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, "the bridge's subscriptions settled", func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		if len(b.retiring) != 0 || b.pending != nil {
			return false
		}
		n := 0
		for _, s := range b.order {
			if s.sub == nil || s.sub.Queue != b.group || !s.sub.IsValid() {
				return false
			}
			n++
		}
		if b.all != nil {
			if b.all.Queue != b.group || !b.all.IsValid() {
				return false
			}
			n++
		}
		return n == want && b.nc.NumSubscriptions() == want
	})
}

// TestBridgeReformRaces re-forms the queue group again and again while
// filters come and go, the bridge goes over max and another connection
// publishes on a subject followed throughout: no message of it is lost
// (duplicates are allowed while two groups are there), and once the
// re-forms are done the bridge holds exactly its current set, in its
// current group, and hands each message on exactly once.
func TestBridgeReformRaces(t *testing.T) {
	bus, err := StartBus(BusConfig{Node: "bridge-reform", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	var cur atomic.Pointer[seqRecorder]
	cur.Store(newSeqRecorder())
	b := newBridge(bus.Conn(), func(m *nats.Msg) { cur.Load().take(m) }, 6, 0, quietLog())
	b.grace = 50 * time.Millisecond
	t.Cleanup(b.close)
	pub, err := nats.Connect("", nats.InProcessServer(bus.Embedded()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)

	b.add("t/1")
	waitBridgeSettled(t, b, 1)
	// The server has t.1's subscription before the first message.
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	stop := publisher(t, pub, []string{"t.1"})
	for i := range 40 {
		b.reconnected()
		f := []string{"a/1", "a/2", "a/+", "t/+"}[i%4]
		b.add(f)
		if i%3 == 0 {
			b.reconnected()
		}
		time.Sleep(5 * time.Millisecond)
		if i == 30 {
			for _, f := range []string{"x/1", "x/2", "x/3", "x/4", "x/5", "x/6"} {
				b.add(f) // over max: the switch to > races the re-forms
			}
			b.reconnected()
		}
		if i%2 == 1 {
			b.remove(f)
		}
	}
	published := stop()
	if b.overflowed.Load() != 1 {
		t.Fatal("never over max")
	}
	testutil.Eventually(t, 15*time.Second, "every message at least once", func() bool {
		r := cur.Load()
		r.mu.Lock()
		defer r.mu.Unlock()
		return uint64(len(r.seen)) == published
	})
	r := cur.Load()
	r.mu.Lock()
	for seq := uint64(1); seq <= published; seq++ {
		if r.seen[seq] == 0 {
			t.Errorf("message %d lost", seq)
			break
		}
	}
	r.mu.Unlock()
	waitBridgeSettled(t, b, 1) // ">"

	settle(t, cur.Load(), 0)
	rec := newSeqRecorder()
	cur.Store(rec)
	stop = publisher(t, pub, []string{"t.1", "a.1", "x.3"})
	testutil.Eventually(t, 10*time.Second, "messages after the re-forms", func() bool { return rec.count() >= 1000 })
	published = stop()
	settle(t, rec, int(published))
	rec.check(t, func(uint64) bool { return true }, published)
	t.Logf("%d re-forms completed", b.reformed.Load())
}
