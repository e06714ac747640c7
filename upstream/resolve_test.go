package upstream

import (
	"context"
	"errors"
	"net"
	"net/http"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// fakeDNS replaces the cluster's lookups for a test: answer gives the
// addresses for a name and the lookup's number (1-based, over every
// name); the real lookup is back when the test ends (after its clusters
// close, as the cleanup is registered first).
type fakeDNS struct {
	calls  atomic.Int64
	mu     sync.Mutex
	answer func(ctx context.Context, host string, n int64) ([]netip.Addr, error)
}

func useFakeDNS(t *testing.T, answer func(ctx context.Context, host string, n int64) ([]netip.Addr, error)) *fakeDNS {
	t.Helper()
	d := &fakeDNS{answer: answer}
	old := lookupNetIP
	lookupNetIP = func(ctx context.Context, host string) ([]netip.Addr, error) {
		n := d.calls.Add(1)
		d.mu.Lock()
		f := d.answer
		d.mu.Unlock()
		return f(ctx, host, n)
	}
	t.Cleanup(func() { lookupNetIP = old })
	return d
}

func (d *fakeDNS) set(answer func(ctx context.Context, host string, n int64) ([]netip.Addr, error)) {
	d.mu.Lock()
	d.answer = answer
	d.mu.Unlock()
}

func addrs(s ...string) []netip.Addr {
	out := make([]netip.Addr, len(s))
	for i, a := range s {
		out[i] = netip.MustParseAddr(a)
	}
	return out
}

// TestClusterReresolveRotation: a DNS server that rotates the same
// answers (A B, then B A) does not move the host off its address, so its
// connection is kept; a failed lookup keeps the address too; an answer
// without the address moves the host to the new one, whose connections
// replace the old.
func TestClusterReresolveRotation(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(hello))
	_, port, _ := net.SplitHostPort(b.addr)
	dns := useFakeDNS(t, func(_ context.Context, host string, n int64) ([]netip.Addr, error) {
		if host != "backend.test" {
			return nil, errors.New("no such host")
		}
		if n%2 == 1 {
			return addrs("127.0.0.1", "127.0.0.3"), nil
		}
		return addrs("127.0.0.3", "127.0.0.1"), nil
	})
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	const interval = time.Second
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{"backend.test:" + port}, ResolveInterval: interval,
		Timeout: -1, OutlierOff: true})
	hp := c.hosts[0]
	if got := hp.addr.Load().String(); got != "127.0.0.1:"+port {
		t.Fatalf("resolved to %s", got)
	}
	// rounds waits for n more lookups, moving the clock a resolve
	// interval on at a time (the maintenance goroutine ticks on its own).
	rounds := func(n int64) {
		t.Helper()
		want := dns.calls.Load() + n
		testutil.Eventually(t, 0, "re-resolutions", func() bool {
			if dns.calls.Load() >= want {
				return true
			}
			clk.Advance(interval)
			time.Sleep(20 * time.Millisecond)
			return false
		})
	}
	for i := range 8 {
		if _, err := get(t, c, "/"); err != nil {
			t.Fatalf("request %d: %v", i, err)
		}
		rounds(1)
	}
	if _, err := get(t, c, "/"); err != nil {
		t.Fatal(err)
	}
	if got, gen := hp.addr.Load().String(), hp.gen.Load(); got != "127.0.0.1:"+port || gen != 0 {
		t.Errorf("after rotated answers: address %s, generation %d; want 127.0.0.1:%s, 0", got, gen, port)
	}
	if n := b.accepted.Load(); n != 1 {
		t.Errorf("the backend saw %d connections for 9 requests across rotated answers; want 1", n)
	}

	// A failed lookup keeps the address.
	dns.set(func(context.Context, string, int64) ([]netip.Addr, error) { return nil, errors.New("servfail") })
	rounds(2)
	if got, gen := hp.addr.Load().String(), hp.gen.Load(); got != "127.0.0.1:"+port || gen != 0 {
		t.Errorf("after failed lookups: address %s, generation %d", got, gen)
	}

	// An answer without the address moves the host: to a second
	// backend on 127.0.0.2 (on the same port), when one can listen there.
	ln, err := net.Listen("tcp", net.JoinHostPort("127.0.0.2", port))
	if err != nil {
		t.Skipf("no second loopback address to move to: %v", err)
	}
	var moved atomic.Int64
	srv := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		moved.Add(1)
		hello(w, r)
	})}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	dns.set(func(context.Context, string, int64) ([]netip.Addr, error) {
		return addrs("::1", "127.0.0.2"), nil // the IPv4 one is preferred
	})
	rounds(1)
	testutil.Eventually(t, 0, "the new address", func() bool { return hp.gen.Load() == 1 })
	if got := hp.addr.Load().String(); got != "127.0.0.2:"+port {
		t.Fatalf("moved to %s; want 127.0.0.2:%s", got, port)
	}
	if _, idle, _ := hp.counts(); idle != 0 {
		t.Errorf("%d idle connections to the old address kept", idle)
	}
	if r, err := get(t, c, "/"); err != nil || r.Status != 200 || moved.Load() != 1 {
		t.Fatalf("request after the move: %v, the new backend saw %d", err, moved.Load())
	}
}

// TestClusterResolveOffMaintenance: a DNS server that stops answering
// holds neither health checks nor the maintenance loop: checks go on
// every interval while a lookup hangs, one re-resolution round runs at
// a time, and Close ends the hanging lookup rather than wait for it.
func TestClusterResolveOffMaintenance(t *testing.T) {
	b := startBackend(t, http.HandlerFunc(hello))
	_, port, _ := net.SplitHostPort(b.addr)
	var hanging, ended atomic.Int64
	dns := useFakeDNS(t, func(ctx context.Context, host string, n int64) ([]netip.Addr, error) {
		return addrs("127.0.0.1"), nil
	})
	e := startEngine(t)
	c, err := NewCluster(e, ClusterConfig{Hosts: []string{"a.test:" + port, "b.test:" + port},
		ResolveInterval: 100 * time.Millisecond, OutlierOff: true,
		Health: HealthConfig{Interval: 50 * time.Millisecond, Jitter: -1}})
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	dns.set(func(ctx context.Context, host string, n int64) ([]netip.Addr, error) {
		hanging.Add(1)
		defer ended.Add(1)
		<-ctx.Done() // silent: the lookup's own timeout, or Close
		return nil, ctx.Err()
	})
	checks := func() uint64 {
		st := c.Stats()
		return st.Hosts[0].HealthOK + st.Hosts[1].HealthOK
	}
	testutil.Eventually(t, 0, "a hanging lookup", func() bool { return hanging.Load() > 0 })
	before := checks()
	// The lookup hangs for resolveTimeout (5 s) per host: the checks
	// must go on well within it.
	testutil.Eventually(t, resolveTimeout-time.Second, "health checks while a lookup hangs", func() bool {
		return checks() >= before+10
	})
	if n := hanging.Load(); n != 1 {
		t.Errorf("%d lookups in flight or done while the first hangs; want one round at a time", n)
	}
	closed := make(chan struct{})
	go func() { c.Close(); close(closed) }()
	select {
	case <-closed:
	case <-time.After(resolveTimeout - time.Second):
		t.Fatal("Close waited for the hanging lookup")
	}
	if h, e := hanging.Load(), ended.Load(); h != e {
		t.Errorf("%d lookups started, %d ended after Close", h, e)
	}
}
