package gateway

import (
	"context"
	"encoding/json"
	"errors"
	"net"
	"net/netip"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/mqtt"
)

// The tests of an MQTT device taking over its own session (a client id
// connecting again): the broker closes the old connection (5.0:
// DISCONNECT 0x8E) before the new one's OnConnect, on another goroutine,
// so the gateway sees the old one's OnDisconnect and the new one's
// OnConnect in either order. They run on the portable engine (a goroutine
// per connection), where a test hook can hold one connection's hook while
// the other's runs.

// startPortableMQTT starts a gateway node with MQTT on the portable
// engine, its configuration changed by with (if not nil).
// handoffHub starts a gateway on the portable engine whose hub holds a
// hand-off for wait at most, and subscribes, through its embedded NATS,
// to device's presence events.
func handoffHub(t *testing.T, wait time.Duration, device string) (*Gateway, *Hub, *nats.Conn, *nats.Subscription) {
	t.Helper()
	g := startPortableMQTT(t, func(c *Config) { c.HandoffWait = wait })
	h := g.Hub()
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices." + device + ".presence")
	nc.Flush()
	return g, h, nc, pres
}

func startPortableMQTT(t *testing.T, with func(*Config)) *Gateway {
	t.Helper()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog(), Portable: true})
	cfg := Config{Addr: "127.0.0.1:0", API: "-", MQTT: "127.0.0.1:0", Auth: NewHMACAuth(testSecret),
		Node: "n1", CommandTimeout: 2 * time.Second, Logger: quietLog(), DataDir: t.TempDir()}
	if with != nil {
		with(&cfg)
	}
	g, err := New(e, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	return g
}

// mqConn is a raw MQTT client of version v.
type mqConn struct {
	net.Conn
	v   mqtt.Version
	buf []byte
}

// dialMQTT sends a CONNECT as id with password (clean start) and, when
// wait is set, checks the CONNACK.
func dialMQTT(t *testing.T, addr, id, password string, v mqtt.Version, wait bool) *mqConn {
	t.Helper()
	nc, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { nc.Close() })
	c := &mqConn{Conn: nc, v: v}
	nc.Write(mqtt.AppendConnect(nil, &mqtt.Connect{Version: v, ClientID: []byte(id), CleanStart: true,
		KeepAlive: 60, Username: []byte("u"), Password: []byte(password)}))
	if wait {
		c.connack(t)
	}
	return c
}

// connack checks the CONNACK.
func (c *mqConn) connack(t *testing.T) {
	t.Helper()
	if ca, ok := c.next(t).(*mqtt.Connack); !ok || ca.ReasonCode != mqtt.Success {
		t.Fatalf("CONNACK %+v", ca)
	}
}

// next reads one packet; nil when the connection closes first.
func (c *mqConn) next(t *testing.T) mqtt.Packet {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(5 * time.Second))
	d := mqtt.Decoder{Version: c.v}
	tmp := make([]byte, 1024)
	for {
		if n, p, err := d.Decode(c.buf, nil); err != nil {
			t.Fatal(err)
		} else if n > 0 {
			c.buf = c.buf[n:]
			return p
		}
		k, err := c.Read(tmp)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				t.Fatal("no packet and no close in 5 s")
			}
			return nil
		}
		c.buf = append(c.buf, tmp[:k]...)
	}
}

// closed reads until the connection closes and returns the DISCONNECT
// read first, if any.
func (c *mqConn) closed(t *testing.T) *mqtt.Disconnect {
	t.Helper()
	var d *mqtt.Disconnect
	for {
		p := c.next(t)
		if p == nil {
			return d
		}
		if dd, ok := p.(*mqtt.Disconnect); ok && d == nil {
			cp := *dd
			d = &cp
		}
	}
}

// ping checks that the connection is alive: PINGREQ, PINGRESP.
func (c *mqConn) ping(t *testing.T) {
	t.Helper()
	c.Write(mqtt.Append(nil, c.v, &mqtt.Pingreq{}))
	if p := c.next(t); p == nil {
		t.Fatal("the connection closed; want PINGRESP")
	} else if _, ok := p.(*mqtt.Pingresp); !ok {
		t.Fatalf("got %T, want PINGRESP", p)
	}
}

// presenceOf reads the next presence event (state, reason).
func nextPresence(t *testing.T, sub *nats.Subscription) (state, reason string) {
	t.Helper()
	p := nextPresenceMsg(t, sub)
	return p.State, p.Reason
}

// nextPresenceMsg is nextPresence's whole event.
func nextPresenceMsg(t *testing.T, sub *nats.Subscription) presenceMsg {
	t.Helper()
	m, err := sub.NextMsg(5 * time.Second)
	if err != nil {
		t.Fatalf("presence: %v", err)
	}
	var p presenceMsg
	if err := json.Unmarshal(m.Data, &p); err != nil {
		t.Fatal(err)
	}
	return p
}

// hookSteps lets a test wait, in one connection's hook, for a step of
// another's: steps are closed channels by name, made on first use.
type hookSteps struct {
	t  *testing.T
	mu sync.Mutex
	ch map[string]chan struct{}
}

func newHookSteps(t *testing.T) *hookSteps {
	return &hookSteps{t: t, ch: map[string]chan struct{}{}}
}

func (h *hookSteps) get(name string) chan struct{} {
	h.mu.Lock()
	defer h.mu.Unlock()
	c := h.ch[name]
	if c == nil {
		c = make(chan struct{})
		h.ch[name] = c
	}
	return c
}

// done marks step name done (once).
func (h *hookSteps) done(name string) {
	c := h.get(name)
	h.mu.Lock()
	defer h.mu.Unlock()
	select {
	case <-c:
	default:
		close(c)
	}
}

// wait waits for step name, at most 5 s (the test fails then; the
// connection's hook goes on, so that nothing hangs).
func (h *hookSteps) wait(name string) {
	select {
	case <-h.get(name):
	case <-time.After(5 * time.Second):
		h.t.Errorf("step %q did not come in 5 s", name)
	}
}

// setHook installs the test hook of g's MQTT devices.
func setHook(g *Gateway, fn func(event string, c *mqtt.Client)) { g.mq.testHook.Store(&fn) }

// TestMQTTSelfTakeover: a device connected over MQTT connects again with
// the same client id. Whichever of the old connection's OnDisconnect and
// the new one's OnConnect the gateway sees first, the replacement is
// counted once (warren_gateway_sessions_replaced_total), presence says
// online, online — no offline while the new connection is live — and the
// hub holds the new connection; when that one closes, the device is
// offline (disconnected) and the hub holds nothing.
func TestMQTTSelfTakeover(t *testing.T) {
	for _, v := range []mqtt.Version{mqtt.Version311, mqtt.Version5} {
		for _, order := range []string{"old-first", "new-first"} {
			t.Run(v.String()+"/"+order, func(t *testing.T) {
				g := startPortableMQTT(t, nil)
				// The hooks hold a connection for as long as the test needs: the
				// hand-off's bound must not end it meanwhile (not the 1 s default).
				g.Hub().handoffWait.Store(int64(time.Hour))
				nc := natsConn(t, g)
				pres, _ := nc.SubscribeSync("devices.dev-t.presence")
				nc.Flush()
				steps := newHookSteps(t)
				var first atomic.Pointer[mqtt.Client]
				var connects atomic.Int32
				setHook(g, func(ev string, c *mqtt.Client) {
					old := c == first.Load()
					switch ev {
					case "connect":
						if connects.Add(1) == 1 {
							first.Store(c)
						} else if order == "old-first" {
							steps.wait("old disconnected") // the old OnDisconnect first
						}
					case "connected":
						if !old {
							steps.done("new connected")
						}
					case "disconnect":
						if old && order == "new-first" {
							steps.wait("new connected") // the new OnConnect first
						}
					case "disconnected":
						if old {
							steps.done("old disconnected")
						}
					}
				})
				tok := token(t, "dev-t")
				a := dialMQTT(t, g.MQTTAddr(), "dev-t", tok, v, true)
				if st, _ := nextPresence(t, pres); st != "online" {
					t.Fatalf("first event %s", st)
				}
				b := dialMQTT(t, g.MQTTAddr(), "dev-t", tok, mqtt.Version5, true)
				d := a.closed(t)
				if v == mqtt.Version5 && (d == nil || d.ReasonCode != mqtt.SessionTakenOver) {
					t.Fatalf("old connection's DISCONNECT %+v", d)
				}
				steps.wait("old disconnected")
				steps.wait("new connected")
				if st, why := nextPresence(t, pres); st != "online" {
					t.Fatalf("second event %s %s, want online", st, why)
				}
				b.ping(t)
				h := g.Hub()
				if n := h.m.replaced.Load(); n != 1 {
					t.Errorf("sessions replaced %d, want 1", n)
				}
				if s := h.Local("dev-t"); s == nil {
					t.Fatal("the hub holds no session of the device")
				} else if l := s.Transport().(*mqttLink); l.client.Load() == first.Load() || s.gone() {
					t.Fatal("the hub holds the old connection")
				}
				if n := h.LocalCount(); n != 1 {
					t.Errorf("devices online %d, want 1", n)
				}
				b.Write(mqtt.Append(nil, mqtt.Version5, &mqtt.Disconnect{}))
				b.closed(t)
				if st, why := nextPresence(t, pres); st != "offline" || why != ReasonDisconnected {
					t.Fatalf("third event %s %s, want offline disconnected", st, why)
				}
				if s := h.Local("dev-t"); s != nil || h.LocalCount() != 0 {
					t.Fatalf("after the close: %v, %d online", s, h.LocalCount())
				}
				if n := h.m.replaced.Load(); n != 1 {
					t.Errorf("sessions replaced %d at the end, want 1", n)
				}
			})
		}
	}
}

// TestMQTTHandoffExpires: a client that is not the device (a service)
// takes the device's client id, so no new connection of the device
// attaches: the handed-off session is dropped at the hand-off's bound,
// the device announced offline (replaced), counted once as replaced and
// in handoffs_expired_total, and the hub holds nothing of it. Closing the
// hub with a hand-off under way stops its timer, drops the session and
// announces the device offline (shutdown).
func TestMQTTHandoffExpires(t *testing.T) {
	g, h, nc, pres := handoffHub(t, 50*time.Millisecond, "dev-e")
	a := dialMQTT(t, g.MQTTAddr(), "dev-e", token(t, "dev-e"), mqtt.Version5, true)
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatalf("first event %s", st)
	}
	svc, err := IssueToken(testSecret, "svc-1", RoleService, time.Hour, time.Now())
	if err != nil {
		t.Fatal(err)
	}
	dialMQTT(t, g.MQTTAddr(), "dev-e", svc, mqtt.Version5, true)
	if d := a.closed(t); d == nil || d.ReasonCode != mqtt.SessionTakenOver {
		t.Fatalf("device's DISCONNECT %+v", d)
	}
	if st, why := nextPresence(t, pres); st != "offline" || why != ReasonReplaced {
		t.Fatalf("second event %s %s, want offline replaced", st, why)
	}
	if h.Local("dev-e") != nil || h.LocalCount() != 0 {
		t.Fatal("the hub still holds the device")
	}
	if r, x := h.m.replaced.Load(), h.m.handoffsExpired.Load(); r != 1 || x != 1 {
		t.Fatalf("replaced %d, hand-offs expired %d; want 1, 1", r, x)
	}
	h.hoMu.Lock()
	left := len(h.handoffs)
	h.hoMu.Unlock()
	if left != 0 {
		t.Fatalf("%d hand-offs left", left)
	}

	// A hand-off the hub's Close ends: its timer is stopped, the device
	// dropped and announced offline.
	h.handoffWait.Store(int64(time.Hour))
	presF, _ := nc.SubscribeSync("devices.dev-f.presence")
	nc.Flush()
	dialMQTT(t, g.MQTTAddr(), "dev-f", token(t, "dev-f"), mqtt.Version311, true)
	testutil.Eventually(t, 5*time.Second, "dev-f online", func() bool { return h.Local("dev-f") != nil })
	dialMQTT(t, g.MQTTAddr(), "dev-f", svc, mqtt.Version5, true)
	var timer *time.Timer
	testutil.Eventually(t, 5*time.Second, "dev-f handed off", func() bool {
		h.hoMu.Lock()
		defer h.hoMu.Unlock()
		for s, tm := range h.handoffs {
			if s.Device == "dev-f" {
				timer = tm
			}
		}
		return timer != nil
	})
	if st, _ := nextPresence(t, presF); st != "online" {
		t.Fatalf("dev-f's first event %s", st)
	}
	h.Close()
	if timer.Stop() {
		t.Fatal("the hand-off's timer was still running after Close")
	}
	h.hoMu.Lock()
	kept := h.handoffs != nil
	h.hoMu.Unlock()
	if kept {
		t.Fatal("hand-offs kept after Close")
	}
	if st, why := nextPresence(t, presF); st != "offline" || why != ReasonShutdown {
		t.Fatalf("dev-f's event at Close %s %s, want offline shutdown", st, why)
	}
	if h.Local("dev-f") != nil || h.Lookup("dev-f") != nil || h.LocalCount() != 0 {
		t.Fatal("the hub still holds dev-f after Close")
	}
}

// TestHubCloseHandoff: Hub.Close with a session handed off drops it from
// its shard and the directory and announces the device offline
// (shutdown), counted in disconnects_total{reason="shutdown"}.
func TestHubCloseHandoff(t *testing.T) {
	_, h, _, pres := handoffHub(t, time.Hour, "dev-x")
	var s Session
	h.attachIf(&s, Identity{Device: "dev-x", Role: RoleDevice}, &fakeLink{}, nil)
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatal(st)
	}
	h.handOff(&s)
	h.Close()
	if st, why := nextPresence(t, pres); st != "offline" || why != ReasonShutdown {
		t.Fatalf("event at Close %s %s, want offline shutdown", st, why)
	}
	if h.Local("dev-x") != nil || h.Lookup("dev-x") != nil || h.LocalCount() != 0 {
		t.Fatalf("after Close: Local %v, Lookup %v, %d online", h.Local("dev-x"), h.Lookup("dev-x"), h.LocalCount())
	}
	h.m.mu.Lock()
	n := h.m.disconnects[ReasonShutdown]
	h.m.mu.Unlock()
	if n != 1 {
		t.Fatalf("disconnects shutdown %d, want 1", n)
	}
}

// TestMQTTShutdownDuringHandoff: a graceful Shutdown with an MQTT
// hand-off under way (the device's client id taken by a service, the
// hand-off's bound far off) announces the device offline: the engine
// drains before the bound, and the hub's Close ends the hand-off.
func TestMQTTShutdownDuringHandoff(t *testing.T) {
	ns := runNATS(t, server.RANDOM_PORT)
	url := "nats://" + ns.Addr().String()
	g := startPortableMQTT(t, func(c *Config) { c.Bus = BusConfig{URLs: []string{url}} })
	h := g.Hub()
	h.handoffWait.Store(int64(time.Hour))
	nc, err := nats.Connect(url)
	if err != nil {
		t.Fatal(err)
	}
	defer nc.Close()
	pres, _ := nc.SubscribeSync("devices.dev-s.presence")
	nc.Flush()
	a := dialMQTT(t, g.MQTTAddr(), "dev-s", token(t, "dev-s"), mqtt.Version5, true)
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatalf("first event %s", st)
	}
	svc, _ := IssueToken(testSecret, "svc-1", RoleService, time.Hour, time.Now())
	sc := dialMQTT(t, g.MQTTAddr(), "dev-s", svc, mqtt.Version5, true)
	a.closed(t)
	a.Close()
	done := make(chan struct{})
	go func() {
		// A client that leaves when told to (DISCONNECT 0x8B).
		defer close(done)
		buf := make([]byte, 512)
		sc.SetReadDeadline(time.Now().Add(10 * time.Second))
		sc.Read(buf)
		sc.Close()
	}()
	defer func() { <-done }()
	testutil.Eventually(t, 5*time.Second, "handed off", func() bool {
		h.hoMu.Lock()
		defer h.hoMu.Unlock()
		return len(h.handoffs) == 1
	})
	ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
	defer cancel()
	g.Shutdown(ctx)
	if st, why := nextPresence(t, pres); st != "offline" || why != ReasonShutdown {
		t.Fatalf("event at the shutdown %s %s, want offline shutdown", st, why)
	}
}

// fakeLink is a Transport for hub tests: it records its close.
type fakeLink struct {
	name   string
	closed atomic.Pointer[string]
}

func (f *fakeLink) Protocol() string              { return "fake" }
func (f *fakeLink) Remote() netip.AddrPort        { return netip.AddrPort{} }
func (f *fakeLink) SendCommand(cmd Command) error { return nil }
func (f *fakeLink) Close(reason string)           { f.closed.CompareAndSwap(nil, &reason) }
func (f *fakeLink) PauseRead()                    {}
func (f *fakeLink) ResumeRead()                   {}

// TestHubAttachIfRace: a takeover landing around a connection's "is it
// still current?" check does not let the older, superseded connection
// replace the newer, live one. The check runs under the device's shard
// lock (asserted: the lock is held while it runs), so a takeover's
// attach lands either before it — the older connection is refused — or
// after the older one's attach, which it then replaces. Both are forced
// here: the newer connection attaches from the hub's test hook as the
// older one's attach begins, or from the check itself, as it answers
// "still current" (its attach started then, held at the shard's lock).
func TestHubAttachIfRace(t *testing.T) {
	g := startPortableMQTT(t, nil)
	h := g.Hub()
	ident := Identity{Device: "dev-r", Role: RoleDevice}
	sh := &h.shards[h.shardOf("dev-r")]
	// locked asserts that the check runs under the device's shard lock.
	locked := func() {
		if sh.mu.TryLock() {
			sh.mu.Unlock()
			t.Error("the check ran without the device's shard lock")
		}
	}

	t.Run("before", func(t *testing.T) {
		first, second, third := &fakeLink{name: "first"}, &fakeLink{name: "second"}, &fakeLink{name: "third"}
		var s1, s2, s3 Session
		if !h.attachIf(&s1, ident, first, nil) {
			t.Fatal("first attach refused")
		}
		var secondCurrent atomic.Bool
		secondCurrent.Store(true)
		hook := func(s *Session) {
			if s == &s2 {
				// The third connection takes the second's place at the
				// transport and attaches, right as the second's attach
				// begins.
				secondCurrent.Store(false)
				if !h.attachIf(&s3, ident, third, func() bool { locked(); return true }) {
					t.Error("third attach refused")
				}
			}
		}
		h.testAttach.Store(&hook)
		if h.attachIf(&s2, ident, second, func() bool { locked(); return secondCurrent.Load() }) {
			t.Error("the superseded second connection was attached")
		}
		h.testAttach.Store(nil)
		if h.Local("dev-r") != &s3 {
			t.Fatal("the hub does not hold the third connection")
		}
		if r := third.closed.Load(); r != nil {
			t.Fatalf("the live third connection was closed: %s", *r)
		}
		if r := first.closed.Load(); r == nil || *r != ReasonReplaced {
			t.Fatal("the first connection was not closed as replaced")
		}
		if n := h.m.replaced.Load(); n != 2 {
			t.Fatalf("replaced %d, want 2", n)
		}
		if n := h.LocalCount(); n != 1 {
			t.Fatalf("online %d, want 1", n)
		}
		h.Disconnect(&s3, ReasonDisconnected)
		if h.Local("dev-r") != nil || h.LocalCount() != 0 {
			t.Fatal("the device is still online with every connection closed")
		}
	})

	t.Run("after", func(t *testing.T) {
		second, third := &fakeLink{name: "second"}, &fakeLink{name: "third"}
		var s2, s3 Session
		replaced := h.m.replaced.Load()
		started := make(chan struct{})
		hook := func(s *Session) {
			if s == &s3 {
				close(started)
			}
		}
		h.testAttach.Store(&hook)
		thirdDone := make(chan bool)
		if !h.attachIf(&s2, ident, second, func() bool {
			locked()
			// The third connection takes the second's place right after
			// this check: its attach starts and reaches the shard's lock.
			go func() { thirdDone <- h.attachIf(&s3, ident, third, func() bool { locked(); return true }) }()
			<-started
			return true
		}) {
			t.Error("the second connection, current at its check, was refused")
		}
		if !<-thirdDone {
			t.Error("third attach refused")
		}
		h.testAttach.Store(nil)
		if h.Local("dev-r") != &s3 {
			t.Fatal("the hub does not hold the third connection")
		}
		if r := third.closed.Load(); r != nil {
			t.Fatalf("the live third connection was closed: %s", *r)
		}
		if r := second.closed.Load(); r == nil || *r != ReasonReplaced {
			t.Fatal("the second connection was not closed as replaced")
		}
		if n := h.m.replaced.Load() - replaced; n != 1 {
			t.Fatalf("replaced %d, want 1", n)
		}
		h.Disconnect(&s3, ReasonDisconnected)
		if h.Local("dev-r") != nil || h.LocalCount() != 0 {
			t.Fatal("the device is still online with every connection closed")
		}
	})
}

// TestMQTTChainTakeover: a device connects three times in quick
// succession; the second connection's OnConnect is held until the third
// has attached (the third took the second over meanwhile). The second is
// not registered over the third: the third stays connected and the
// device's, and once it closes the device is offline with nothing held.
func TestMQTTChainTakeover(t *testing.T) {
	g := startPortableMQTT(t, nil)
	h := g.Hub()
	h.handoffWait.Store(int64(time.Hour)) // no hand-off ends by its bound while a hook holds a connection
	steps := newHookSteps(t)
	var connects atomic.Int32
	setHook(g, func(ev string, c *mqtt.Client) {
		switch ev {
		case "connect":
			if connects.Add(1) == 2 {
				steps.done("second in OnConnect")
				steps.wait("third connected")
			}
		case "connected":
			if connects.Load() == 3 {
				steps.done("third connected")
			}
		}
	})
	tok := token(t, "dev-c")
	a := dialMQTT(t, g.MQTTAddr(), "dev-c", tok, mqtt.Version5, true)
	testutil.Eventually(t, 5*time.Second, "first attached", func() bool { return h.Local("dev-c") != nil })
	b := dialMQTT(t, g.MQTTAddr(), "dev-c", tok, mqtt.Version5, false)
	steps.wait("second in OnConnect")
	c := dialMQTT(t, g.MQTTAddr(), "dev-c", tok, mqtt.Version5, true)
	a.closed(t)
	b.closed(t)
	c.ping(t)
	s := h.Local("dev-c")
	if s == nil || s.gone() {
		t.Fatal("the hub does not hold the third connection")
	}
	if cl := s.Transport().(*mqttLink).client.Load(); cl == nil || !cl.Current() {
		t.Fatal("the hub holds a connection that is not the broker's current one")
	}
	if n := h.m.replaced.Load(); n != 2 {
		t.Errorf("replaced %d, want 2", n)
	}
	c.Write(mqtt.Append(nil, mqtt.Version5, &mqtt.Disconnect{}))
	c.closed(t)
	testutil.Eventually(t, 5*time.Second, "dev-c offline", func() bool { return h.Local("dev-c") == nil && h.LocalCount() == 0 })
}

// TestMQTTHandoffCommand: a command sent while the device is between its
// old MQTT connection and the new one (the old one's OnDisconnect has
// handed the session off, the new one's OnConnect is held) fails at once
// as offline, counted in commands_total{outcome="offline"} (a service's
// NATS request is answered {"error":"offline"}), rather than going to the
// closed connection and waiting out its timeout; once the
// new connection has attached, commands reach it.
func TestMQTTHandoffCommand(t *testing.T) {
	g := startPortableMQTT(t, nil)
	h := g.Hub()
	h.handoffWait.Store(int64(time.Hour)) // no hand-off ends by its bound while a hook holds a connection
	steps := newHookSteps(t)
	var first atomic.Pointer[mqtt.Client]
	var connects atomic.Int32
	setHook(g, func(ev string, c *mqtt.Client) {
		switch ev {
		case "connect":
			if connects.Add(1) == 1 {
				first.Store(c)
			} else {
				steps.done("new in OnConnect")
				steps.wait("command sent")
			}
		case "disconnected":
			if c == first.Load() {
				steps.done("old disconnected")
			}
		}
	})
	tok := token(t, "dev-h")
	a := dialMQTT(t, g.MQTTAddr(), "dev-h", tok, mqtt.Version5, true)
	testutil.Eventually(t, 5*time.Second, "first attached", func() bool { return h.Local("dev-h") != nil })
	b := dialMQTT(t, g.MQTTAddr(), "dev-h", tok, mqtt.Version5, false)
	steps.wait("new in OnConnect")
	a.closed(t)
	steps.wait("old disconnected")
	_, err := h.Command(context.Background(), "dev-h", "reboot", nil, 3*time.Second)
	// A service's NATS request is answered at once too.
	nc := natsConn(t, g)
	m, rerr := nc.Request("devices.dev-h.commands.reboot", nil, 3*time.Second)
	steps.done("command sent")
	if !errors.Is(err, ErrOffline) {
		t.Fatalf("command in the hand-off: %v, want %v", err, ErrOffline)
	}
	if rerr != nil {
		t.Fatalf("service's request in the hand-off: %v", rerr)
	}
	var r nodeReply
	if json.Unmarshal(m.Data, &r) != nil || r.Error != "offline" {
		t.Fatalf("service's request in the hand-off answered %s", m.Data)
	}
	h.m.mu.Lock()
	offline := h.m.commands["offline"]
	h.m.mu.Unlock()
	if offline != 1 {
		t.Fatalf("commands offline %d, want 1", offline)
	}

	// The new connection attached: a command reaches it and its ack
	// comes back.
	b.connack(t)
	b.Write(mqtt.Append(nil, mqtt.Version5, &mqtt.Subscribe{PacketID: 1,
		Filters: []mqtt.Subscription{{Filter: []byte("devices/dev-h/commands/#"), QoS: mqtt.QoS1}}}))
	if _, ok := b.next(t).(*mqtt.Suback); !ok {
		t.Fatal("no SUBACK")
	}
	testutil.Eventually(t, 5*time.Second, "new attached", func() bool {
		s := h.Local("dev-h")
		return s != nil && !s.gone()
	})
	type result struct {
		a   Ack
		err error
	}
	done := make(chan result, 1)
	h.CommandAsync(context.Background(), "dev-h", "reboot", nil, 5*time.Second, func(a Ack, err error) { done <- result{a, err} })
	p, ok := b.next(t).(*mqtt.Publish)
	if !ok {
		t.Fatal("no command PUBLISH")
	}
	var cmd mqttCommand
	if err := json.Unmarshal(p.Payload, &cmd); err != nil {
		t.Fatal(err)
	}
	b.Write(mqtt.Append(nil, mqtt.Version5, &mqtt.Publish{Topic: []byte("devices/dev-h/acks/" + cmd.ID),
		Payload: []byte(`{"status":"ok"}`)}))
	if r := <-done; r.err != nil || r.a.Status != "ok" {
		t.Fatalf("command after the hand-off: %+v %v", r.a, r.err)
	}
}

// TestMQTTReasonBeatsTakeover: the hub closes a device's connection for
// a reason of its own (token_expired here: the reason stored, as
// mqttLink.Close stores it, the close on its way) and the device
// reconnects with its client id before that close has settled, so the
// broker takes the old connection over. The hub's reason stands: the
// device is announced offline token_expired, then online with its new
// connection — not handed off as if it had merely reconnected. The new
// connection's OnConnect is held until the old one's OnDisconnect has
// run (the other order replaces the old session, no offline between),
// which orders the events here; the hub itself does not order them.
func TestMQTTReasonBeatsTakeover(t *testing.T) {
	g := startPortableMQTT(t, nil)
	h := g.Hub()
	h.handoffWait.Store(int64(time.Hour)) // no hand-off ends by its bound while a hook holds a connection
	steps := newHookSteps(t)
	var first atomic.Pointer[mqtt.Client]
	var connects atomic.Int32
	setHook(g, func(ev string, c *mqtt.Client) {
		switch ev {
		case "connect":
			if connects.Add(1) == 1 {
				first.Store(c)
			} else {
				steps.wait("old disconnected")
			}
		case "disconnected":
			if c == first.Load() {
				steps.done("old disconnected")
			}
		}
	})
	nc := natsConn(t, g)
	pres, _ := nc.SubscribeSync("devices.dev-r.presence")
	nc.Flush()
	tok := token(t, "dev-r")
	a := dialMQTT(t, g.MQTTAddr(), "dev-r", tok, mqtt.Version311, true)
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatalf("first event %s", st)
	}
	r := ReasonTokenExpired
	h.Local("dev-r").Transport().(*mqttLink).reason.CompareAndSwap(nil, &r)
	b := dialMQTT(t, g.MQTTAddr(), "dev-r", tok, mqtt.Version311, true)
	a.closed(t)
	if st, why := nextPresence(t, pres); st != "offline" || why != ReasonTokenExpired {
		t.Fatalf("second event %s %q, want offline token_expired", st, why)
	}
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatalf("third event %s, want online", st)
	}
	b.ping(t)
	if s := h.Local("dev-r"); s == nil || s.gone() || h.LocalCount() != 1 {
		t.Fatal("the hub does not hold the device's new connection")
	}
}

// TestHandoffExpiryThenAttach: a hand-off's bound passes just as a new
// connection of the device attaches — forced here by attaching it from
// the hub's test hook after the expiry dropped the old session and before
// its offline event. The events then come out of the sessions' order (the
// new session online, then the old one offline): applied by session, as
// docs/gateway.md tells consumers to, they leave the device online with
// its new session, and so does the hub's own directory; the expiry is
// counted in disconnects_total{reason="replaced"} and
// handoffs_expired_total.
func TestHandoffExpiryThenAttach(t *testing.T) {
	_, h, _, pres := handoffHub(t, time.Millisecond, "dev-o")
	ident := Identity{Device: "dev-o", Role: RoleDevice}
	var s1, s2 Session
	h.attachIf(&s1, ident, &fakeLink{}, nil)
	first := nextPresenceMsg(t, pres)
	if first.State != "online" {
		t.Fatalf("first event %s", first.State)
	}
	attached := make(chan struct{})
	hook := func(s *Session) {
		if s == &s1 {
			h.attachIf(&s2, ident, &fakeLink{}, nil)
			close(attached)
		}
	}
	h.testExpired.Store(&hook)
	h.handOff(&s1)
	<-attached
	h.testExpired.Store(nil)
	// The consumer's rule: online makes the event's session the device's;
	// offline removes the device only if it names that session.
	cur := first.Session
	var offline presenceMsg
	for range 2 {
		p := nextPresenceMsg(t, pres)
		switch {
		case p.State == "online":
			cur = p.Session
		case p.State == "offline" && p.Session == cur:
			cur = ""
		}
		if p.State == "offline" {
			offline = p
		}
	}
	if offline.Reason != ReasonReplaced || offline.Session != first.Session {
		t.Fatalf("offline event %+v, want the first session's, replaced", offline)
	}
	if cur == "" || cur == first.Session {
		t.Fatalf("by session the device is %q, want online with its new session", cur)
	}
	// (The offline event goes out after the drop: the counts are done.)
	if h.Local("dev-o") != &s2 || h.LocalCount() != 1 || h.Lookup("dev-o") == nil {
		t.Fatal("the hub does not hold the new session")
	}
	testutil.Eventually(t, 5*time.Second, "the expiry counted in handoffs_expired_total and disconnects_total{reason=\"replaced\"}", func() bool {
		h.m.mu.Lock()
		n := h.m.disconnects[ReasonReplaced]
		h.m.mu.Unlock()
		return n == 1 && h.m.handoffsExpired.Load() == 1
	})
}

// TestHubCloseWaitsExpiry: a hand-off timer that fired as the hub closes
// runs its expiry in its own goroutine, which drops the session before
// Close can (Close then has nothing to drop). Close waits for that
// expiry, whose offline event goes out before the bus closes: held here
// in the expiry's hook until Close reached its wait, Close must not have
// returned. (Without the wait, the hook sees Close return: the gateway
// would close the bus under the event.)
func TestHubCloseWaitsExpiry(t *testing.T) {
	_, h, _, pres := handoffHub(t, time.Millisecond, "dev-w")
	var s Session
	h.attachIf(&s, Identity{Device: "dev-w", Role: RoleDevice}, &fakeLink{}, nil)
	if st, _ := nextPresence(t, pres); st != "online" {
		t.Fatal(st)
	}
	closeDone := make(chan struct{})
	waiting := make(chan struct{})
	early := make(chan bool, 1)
	wait := func() { close(waiting) }
	h.testCloseWait.Store(&wait)
	hook := func(*Session) {
		go func() {
			defer close(closeDone)
			h.Close()
		}()
		select {
		case <-waiting:
			early <- false
		case <-closeDone:
			early <- true
		}
	}
	h.testExpired.Store(&hook)
	h.handOff(&s)
	if <-early {
		t.Fatal("Close returned while a hand-off's expiry was still running")
	}
	<-closeDone
	if st, why := nextPresence(t, pres); st != "offline" || why != ReasonReplaced {
		t.Fatalf("event %s %s, want offline replaced", st, why)
	}
	if h.LocalCount() != 0 || h.Local("dev-w") != nil {
		t.Fatal("the session is left")
	}
}

// TestHandoffWaitConfig: Config.HandoffWait (warren serve's -handoff-wait)
// is the hub's hand-off bound, and zero means DefaultHandoffWait.
func TestHandoffWaitConfig(t *testing.T) {
	for _, tc := range []struct {
		set, want time.Duration
	}{{0, DefaultHandoffWait}, {-time.Second, DefaultHandoffWait}, {250 * time.Millisecond, 250 * time.Millisecond}, {time.Hour, time.Hour}} {
		g := startPortableMQTT(t, func(c *Config) { c.HandoffWait = tc.set })
		if got := time.Duration(g.Hub().handoffWait.Load()); got != tc.want {
			t.Errorf("HandoffWait %v: the hub's bound is %v, want %v", tc.set, got, tc.want)
		}
	}
}
