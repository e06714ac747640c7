package tlsx

import (
	"crypto/tls"
	"io"
	"net"
	"net/netip"
	"strings"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus/testutil"

	"github.com/warrenhq/warren/engine"
	wtest "github.com/warrenhq/warren/internal/testutil"
)

// TestFlapGuard: more than the threshold of flaps within the window bans
// for the ban's duration; flapping slower than the threshold never bans;
// the ban table is bounded, lifting the ban closest to its end.
func TestFlapGuard(t *testing.T) {
	cfg := Config{BanThreshold: 3, BanWindow: time.Minute, BanDuration: 2 * time.Minute, BanTableSize: 2}.withDefaults()
	g := newFlapGuard(cfg)
	ip := netip.MustParseAddr("192.0.2.1")
	now := time.Unix(1_700_000_000, 0)
	for i := range 3 {
		if g.flap(ip, now) {
			t.Fatalf("flap %d banned", i+1)
		}
	}
	if g.banned(ip, now) {
		t.Fatal("banned at the threshold")
	}
	if !g.flap(ip, now.Add(time.Second)) {
		t.Fatal("flap over the threshold did not ban")
	}
	if !g.banned(ip, now.Add(2*time.Minute)) {
		t.Fatal("ban ended early")
	}
	if g.banned(ip, now.Add(time.Second+2*time.Minute)) {
		t.Fatal("ban did not end")
	}
	if n := g.len(now.Add(time.Hour)); n != 0 {
		t.Fatalf("%d bans left after they ended", n)
	}

	// One flap every 20s is the threshold's rate (3 a minute): never banned.
	slow := netip.MustParseAddr("192.0.2.2")
	for i := range 100 {
		if g.flap(slow, now.Add(time.Duration(i)*20*time.Second)) {
			t.Fatalf("slow flapper banned at flap %d", i+1)
		}
	}

	// A bounded table: a third ban lifts the first.
	t0 := now.Add(2 * time.Hour)
	ips := []netip.Addr{netip.MustParseAddr("198.51.100.1"), netip.MustParseAddr("198.51.100.2"), netip.MustParseAddr("198.51.100.3")}
	for i, a := range ips {
		at := t0.Add(time.Duration(i) * time.Second)
		for range 4 {
			g.flap(a, at)
		}
		if !g.banned(a, at) {
			t.Fatalf("%v not banned", a)
		}
	}
	at := t0.Add(3 * time.Second)
	if g.banned(ips[0], at) || !g.banned(ips[1], at) || !g.banned(ips[2], at) {
		t.Fatalf("table of 2: bans %v %v %v, want the oldest lifted", g.banned(ips[0], at), g.banned(ips[1], at), g.banned(ips[2], at))
	}
	if n := g.len(at); n != 2 {
		t.Fatalf("%d bans held, bound is 2", n)
	}
	// The queue stays bounded when the same IPs are banned again and again.
	for i := range 1000 {
		at := t0.Add(time.Duration(10+i) * time.Second)
		for range 4 {
			g.flap(ips[i%2], at)
		}
	}
	if len(g.queue)-g.head > 2*g.maxBans+1 {
		t.Fatalf("ban queue grew to %d", len(g.queue)-g.head)
	}
}

// banServer is testServer on an engine and a Server sharing a fake clock.
func banServer(t *testing.T, cfg Config) (*Server, string, *wtest.FakeClock) {
	t.Helper()
	clk := wtest.NewFakeClock()
	cfg.Clock = clk
	s, addr, _ := testServerOn(t, "127.0.0.1:0", engine.Config{Clock: clk}, cfg)
	return s, addr, clk
}

// get makes one HTTPS request on a new connection; hold runs between the
// response and the close.
func get(addr string, hold func()) error {
	c, err := tls.Dial("tcp", addr, &tls.Config{InsecureSkipVerify: true})
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(5 * time.Second))
	if _, err := io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n"); err != nil {
		return err
	}
	buf := make([]byte, 256)
	if _, err := c.Read(buf); err != nil {
		return err
	}
	if hold != nil {
		hold()
	}
	return nil
}

// TestBanFlapping: a client that keeps sending garbage, or keeps closing
// right after its handshake, is refused before any TLS work once over the
// threshold, until the ban ends (fake time, real sockets); connections that
// live past BanLifetime do not count.
func TestBanFlapping(t *testing.T) {
	t.Run("garbage", func(t *testing.T) {
		s, addr, clk := banServer(t, Config{BanThreshold: 3, RatePerIP: -1})
		for i := range 4 {
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			nc.Write([]byte("\x00\x01 not tls at all"))
			closed(t, nc, 5*time.Second)
			nc.Close()
			_ = i
		}
		if got := testutil.ToFloat64(s.m.flaps); got != 4 {
			t.Fatalf("short connections counted: %v, want 4", got)
		}
		if err := get(addr, nil); err == nil {
			t.Fatal("banned client admitted")
		}
		if got := testutil.ToFloat64(s.m.refused.WithLabelValues(BoundBanned)); got != 1 {
			t.Fatalf("banned refusals: %v", got)
		}
		if got := testutil.ToFloat64(s.m.bans); got != 1 {
			t.Fatalf("bans: %v", got)
		}
		clk.Advance(DefaultBanDuration + time.Second)
		if err := get(addr, nil); err != nil {
			t.Fatalf("after the ban: %v", err)
		}
	})
	t.Run("short-lived", func(t *testing.T) {
		s, addr, clk := banServer(t, Config{BanThreshold: 3, RatePerIP: -1})
		// Connections living past BanLifetime are not counted.
		for range 5 {
			if err := get(addr, func() { clk.Advance(DefaultBanLifetime + time.Second) }); err != nil {
				t.Fatal(err)
			}
		}
		// Four that close at once are, after their close is seen.
		for i := range 4 {
			if err := get(addr, nil); err != nil {
				t.Fatalf("connection %d: %v", i, err)
			}
			wtest.Eventually(t, 5*time.Second, "the close counted", func() bool {
				return testutil.ToFloat64(s.m.flaps) == float64(i+1)
			})
		}
		if err := get(addr, nil); err == nil {
			t.Fatal("flapping client admitted")
		}
		if got := testutil.ToFloat64(s.m.refused.WithLabelValues(BoundBanned)); got != 1 {
			t.Fatalf("banned refusals: %v", got)
		}
	})
	t.Run("off", func(t *testing.T) {
		s, addr, _ := banServer(t, Config{BanThreshold: -1, RatePerIP: -1})
		for range 10 {
			if err := get(addr, nil); err != nil {
				t.Fatal(err)
			}
		}
		if s.flaps != nil || testutil.ToFloat64(s.m.refused.WithLabelValues(BoundBanned)) != 0 {
			t.Fatal("bans with BanThreshold -1")
		}
	})
}

// zeroRand is a rand source of zeros: two Go clients with it send the
// same ClientHello random.
type zeroRand struct{}

func (zeroRand) Read(p []byte) (int, error) { clear(p); return len(p), nil }

// TestSharedConfigRandom: handshakes share their listener's Config, the
// key log dispatched by ClientHello random; a handshake whose random is
// already in progress gets a Config of its own and still works, and the
// registry is empty once they are done.
func TestSharedConfigRandom(t *testing.T) {
	s, addr, pool := testServer(t, Config{RatePerIP: -1, BanThreshold: -1})
	// A: a ClientHello with the zero random, then silence (it stays
	// registered while its handshake waits).
	a, b := net.Pipe()
	go tls.Client(a, &tls.Config{InsecureSkipVerify: true, Rand: zeroRand{}}).Handshake()
	var h [5]byte
	io.ReadFull(b, h[:])
	body := make([]byte, int(h[3])<<8|int(h[4]))
	io.ReadFull(b, body)
	a.Close()
	b.Close()
	stalled, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	defer stalled.Close()
	stalled.Write(append(h[:], body...))
	wtest.Eventually(t, 5*time.Second, "the stalled handshake registered", func() bool {
		n := 0
		s.byRandom.Range(func(any, any) bool { n++; return true })
		return n == 1
	})
	for _, v := range []uint16{tls.VersionTLS12, tls.VersionTLS13} {
		// B: the same random, while A is in progress.
		c, err := tls.Dial("tcp", addr, &tls.Config{RootCAs: pool, ServerName: "localhost", Rand: zeroRand{}, MinVersion: v, MaxVersion: v})
		if err != nil {
			t.Fatalf("%x: same random as a handshake in progress: %v", v, err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET / HTTP/1.1\r\nHost: x\r\n\r\n")
		buf := make([]byte, 256)
		n, err := c.Read(buf)
		if err != nil || !strings.Contains(string(buf[:n]), "hello") {
			t.Fatalf("%x: %q %v", v, buf[:n], err)
		}
		c.Close()
		// C: a fresh random, on the shared Config.
		if err := get(addr, nil); err != nil {
			t.Fatalf("%x: %v", v, err)
		}
	}
	stalled.Close()
	wtest.Eventually(t, 5*time.Second, "the registry emptied", func() bool {
		n := 0
		s.byRandom.Range(func(any, any) bool { n++; return true })
		return n == 0
	})
}
