package mqtt

import (
	"context"
	"errors"
	"io"
	"log/slog"
	"net"
	"os"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
)

// broker is a Server on a test engine with a TCP listener and an HTTP
// listener serving MQTT over WebSocket at /mqtt.
type broker struct {
	*Server
	e      *engine.Engine
	addr   string // MQTT over TCP
	wsAddr string // HTTP, GET /mqtt
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startBroker starts a broker with cfg on free loopback ports, shut down
// when the test ends.
func startBroker(t testing.TB, cfg Config, ecfg ...engine.Config) *broker {
	t.Helper()
	ec := engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond, Logger: testLogger()}
	if len(ecfg) > 0 {
		ec = ecfg[0]
		if ec.Logger == nil {
			ec.Logger = quietLogger()
		}
	}
	e := testutil.StartEngine(t, ec)
	s := NewServer(cfg)
	ln, err := s.Listen(e, "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	r := http1.NewRouter()
	r.Handle("GET /mqtt", s.WebSocketHandler())
	hs, err := http1.NewServer(e, http1.Config{Logger: quietLogger()}, r)
	if err != nil {
		t.Fatal(err)
	}
	hln, err := hs.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() {
		ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
		defer cancel()
		e.Shutdown(ctx)
		s.Close()
	})
	return &broker{Server: s, e: e, addr: ln.Addr().String(), wsAddr: hln.Addr().String()}
}

// client is a raw MQTT client for tests: it sends what it is told, byte
// for byte, and decodes what comes back with the package's own decoder.
type client struct {
	t   testing.TB
	c   net.Conn
	v   Version
	dec Decoder
	buf []byte
}

// dial connects a raw client speaking v to addr.
func dial(t testing.TB, addr string, v Version) *client {
	t.Helper()
	c, err := net.Dial("tcp", addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	return &client{t: t, c: c, v: v, dec: Decoder{Version: v}}
}

// send encodes and sends p.
func (c *client) send(p Packet) {
	c.t.Helper()
	c.raw(Append(nil, c.v, p))
}

// raw sends b as it is.
func (c *client) raw(b []byte) {
	c.t.Helper()
	if _, err := c.c.Write(b); err != nil {
		c.t.Fatalf("write: %v", err)
	}
}

// next returns the next packet from the server, failing the test after
// 5 s. The packet is valid until the next call.
func (c *client) next() Packet {
	c.t.Helper()
	p, err := c.nextErr(5 * time.Second)
	if err != nil {
		c.t.Fatalf("reading a packet: %v", err)
	}
	return p
}

// nextErr returns the next packet or the read error (io.EOF when the
// server closed) within d.
func (c *client) nextErr(d time.Duration) (Packet, error) {
	c.c.SetReadDeadline(time.Now().Add(d))
	for {
		n, p, err := c.dec.Decode(c.buf, nil)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			c.buf = c.buf[n:]
			return p, nil
		}
		var tmp [4096]byte
		k, err := c.c.Read(tmp[:])
		if k > 0 {
			c.buf = append(c.buf, tmp[:k]...)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// quiet asserts that nothing arrives for d.
func (c *client) quiet(d time.Duration) {
	c.t.Helper()
	p, err := c.nextErr(d)
	if err == nil {
		c.t.Fatalf("unexpected packet %T %s", p, show(p))
	}
	var ne net.Error
	if !errors.As(err, &ne) || !ne.Timeout() {
		c.t.Fatalf("expected silence, got %v", err)
	}
}

// closed asserts that the server closes the connection within 5 s,
// returning the DISCONNECT it sent first, if any.
func (c *client) closed() *Disconnect {
	c.t.Helper()
	var d *Disconnect
	for {
		p, err := c.nextErr(5 * time.Second)
		if err != nil {
			var ne net.Error
			if errors.As(err, &ne) && ne.Timeout() {
				c.t.Fatalf("the server did not close the connection")
			}
			if errors.Is(err, io.EOF) || errors.Is(err, net.ErrClosed) || isReset(err) {
				return d
			}
			c.t.Fatalf("read error %v", err)
		}
		if dd, ok := p.(*Disconnect); ok {
			cp := *dd
			d = &cp
		}
	}
}

func isReset(err error) bool {
	var se *os.SyscallError
	return errors.As(err, &se)
}

// connect sends CONNECT and returns the CONNACK.
func (c *client) connect(p *Connect) *Connack {
	c.t.Helper()
	p.Version = c.v
	c.send(p)
	ca, ok := c.next().(*Connack)
	if !ok {
		c.t.Fatalf("expected CONNACK")
	}
	cp := *ca
	return &cp
}

// connectOK connects with client id id and clean start, failing the test
// unless the server accepts.
func connectOK(t testing.TB, addr string, v Version, id string) *client {
	t.Helper()
	c := dial(t, addr, v)
	if ca := c.connect(&Connect{ClientID: []byte(id), CleanStart: true, KeepAlive: 60}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	return c
}

// subscribe subscribes to filters at qos and checks the SUBACK.
func (c *client) subscribe(id uint16, qos QoS, filters ...string) []ReasonCode {
	c.t.Helper()
	s := &Subscribe{PacketID: id}
	for _, f := range filters {
		s.Filters = append(s.Filters, Subscription{Filter: []byte(f), QoS: qos})
	}
	c.send(s)
	sa, ok := c.next().(*Suback)
	if !ok || sa.PacketID != id {
		c.t.Fatalf("expected SUBACK %d", id)
	}
	return append([]ReasonCode(nil), sa.ReasonCodes...)
}

// publication is a received PUBLISH, copied.
type publication struct {
	Topic    string
	Payload  string
	QoS      QoS
	Retain   bool
	Dup      bool
	PacketID uint16
	Props    Properties
}

// expectPublish reads the next packet and checks it is a PUBLISH.
func (c *client) expectPublish() publication {
	c.t.Helper()
	p := c.next()
	pb, ok := p.(*Publish)
	if !ok {
		c.t.Fatalf("expected PUBLISH, got %T %s", p, show(p))
	}
	out := publication{Topic: string(pb.Topic), Payload: string(pb.Payload), QoS: pb.QoS, Retain: pb.Retain,
		Dup: pb.Dup, PacketID: pb.PacketID, Props: pb.Props}
	out.Props.SubscriptionIDs = append([]uint32(nil), pb.Props.SubscriptionIDs...)
	out.Props.CorrelationData = append([]byte(nil), pb.Props.CorrelationData...)
	out.Props.ResponseTopic = append([]byte(nil), pb.Props.ResponseTopic...)
	out.Props.ContentType = append([]byte(nil), pb.Props.ContentType...)
	out.Props.User = nil
	for _, u := range pb.Props.User {
		out.Props.User = append(out.Props.User, UserProperty{append([]byte(nil), u.Key...), append([]byte(nil), u.Value...)})
	}
	return out
}

// expectAck reads the next packet and checks it is an acknowledgement of
// kind for id, returning its reason code.
func (c *client) expectAck(kind Type, id uint16) ReasonCode {
	c.t.Helper()
	p := c.next()
	a, ok := p.(*Ack)
	if !ok || a.Kind != kind || a.PacketID != id {
		c.t.Fatalf("expected %v %d, got %T %s", kind, id, p, show(p))
	}
	return a.ReasonCode
}

// pub sends a PUBLISH.
func (c *client) pub(topic, payload string, qos QoS, id uint16, retain bool) {
	c.t.Helper()
	c.send(&Publish{Topic: []byte(topic), Payload: []byte(payload), QoS: qos, PacketID: id, Retain: retain})
}

// waitStats polls the broker's stats until cond holds.
func (b *broker) waitStats(t testing.TB, what string, cond func(Stats) bool) {
	t.Helper()
	testutil.Eventually(t, 10*time.Second, what, func() bool { return cond(b.Stats()) })
}

// testLogger logs to stderr with WARREN_TEST_LOG=1, else discards.
func testLogger() *slog.Logger {
	if os.Getenv("WARREN_TEST_LOG") == "1" {
		return slog.New(slog.NewTextHandler(os.Stderr, nil))
	}
	return quietLogger()
}

// offline reports whether client id has a session and no connection.
func offline(b *broker, id string) bool {
	b.mu.RLock()
	ss := b.sessions.Get(id)
	b.mu.RUnlock()
	if ss == nil {
		return false
	}
	ss.mu.Lock()
	defer ss.mu.Unlock()
	return ss.conn == nil
}
