package mqtt

import (
	"bytes"
	"context"
	"fmt"
	"io"
	"net"
	"strconv"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// The broker's closes after a final packet — a 5.0 DISCONNECT with its
// reason, a refused CONNACK — linger (engine.Conn.CloseLinger): a client
// that is still sending must read that packet and a clean end of stream,
// not a reset that throws away what the broker had not sent yet
// (docs/benchmarks.md sections 80 and 86).

// engineKinds are the engine configurations the linger tests run on: the
// event loops and the portable engine.
var engineKinds = []struct {
	name     string
	portable bool
}{{"loops", false}, {"portable", true}}

// lingerEngine is a test engine configuration with linger timeout d (0:
// the default).
func lingerEngine(portable bool, d time.Duration) engine.Config {
	return engine.Config{Loops: 2, TickInterval: 10 * time.Millisecond, Portable: portable,
		LingerTimeout: d, Logger: quietLogger()}
}

// TestLingerTooLarge: a 5.0 client that has 3 MiB of its own messages
// echoed to it, not read yet, then sends a PUBLISH of 64 MiB over the
// broker's 1 MiB limit, writing its body on while it reads, gets every
// echo, the DISCONNECT packet_too_large with its reason string, and a
// clean end of stream.
func TestLingerTooLarge(t *testing.T) {
	const runs, echoes, part = 50, 6, 512 << 10
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBroker(t, Config{}, lingerEngine(k.portable, 0))
			got, clean := 0, 0
			var fails []string
			for i := 0; i < runs; i++ {
				sawDisconnect, err := busyTooLarge(b.addr, "big-"+strconv.Itoa(i), echoes, part)
				if sawDisconnect {
					got++
				}
				if err != nil {
					fails = append(fails, err.Error())
					continue
				}
				clean++
			}
			t.Logf("%s: %d of %d runs read the DISCONNECT 0x95, %d of %d every echo, it and a clean end of stream",
				k.name, got, runs, clean, runs)
			if clean != runs {
				t.Fatalf("%d of %d runs read every echo, the DISCONNECT 0x95 and the end of stream; the others: %q", clean, runs, fails)
			}
			lingers := b.e.Stats().Lingers
			if n := sum(lingers); n < runs {
				// The last connection's linger may still be ending.
				testutil.Eventually(t, 10*time.Second, "every linger counted", func() bool { return sum(b.e.Stats().Lingers) == runs })
			}
		})
	}
}

func sum(v []uint64) (n uint64) {
	for _, x := range v {
		n += x
	}
	return n
}

// busyTooLarge runs one connection of TestLingerTooLarge. It reports
// whether the DISCONNECT 0x95 arrived, and an error unless everything
// did, then a clean end of stream.
func busyTooLarge(addr, id string, echoes, part int) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	rd := &rawReader{c: c, dec: Decoder{Version: Version5}}
	c.Write(Append(nil, Version5, &Connect{Version: Version5, ClientID: []byte(id), CleanStart: true}))
	if p, err := rd.next(); err != nil {
		return false, fmt.Errorf("CONNACK: %v", err)
	} else if ca, ok := p.(*Connack); !ok || ca.ReasonCode != Success {
		return false, fmt.Errorf("CONNACK: %s", show(p))
	}
	c.Write(Append(nil, Version5, &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("echo/" + id)}}}))
	if p, err := rd.next(); err != nil {
		return false, fmt.Errorf("SUBACK: %v", err)
	} else if _, ok := p.(*Suback); !ok {
		return false, fmt.Errorf("SUBACK: %s", show(p))
	}
	go func() {
		body := bytes.Repeat([]byte("e"), part)
		for i := 0; i < echoes; i++ {
			if _, err := c.Write(Append(nil, Version5, &Publish{Topic: []byte("echo/" + id), Payload: body})); err != nil {
				return
			}
		}
		c.Write(appendHeader(nil, 0x30, 64<<20)) // a PUBLISH of 64 MiB, over the limit
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1024; i++ { // its body, until the broker stops taking it
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	for i := 0; i < echoes; i++ {
		p, err := rd.next()
		if err != nil {
			return false, fmt.Errorf("echo %d: %v", i, err)
		}
		if pb, ok := p.(*Publish); !ok || len(pb.Payload) != part {
			return false, fmt.Errorf("echo %d: %s", i, show(p))
		}
	}
	p, err := rd.next()
	if err != nil {
		return false, fmt.Errorf("DISCONNECT: %v", err)
	}
	d, ok := p.(*Disconnect)
	if !ok || d.ReasonCode != PacketTooLarge || string(d.Props.ReasonString) != errTooLarge.Msg {
		return false, fmt.Errorf("DISCONNECT: %s", show(p))
	}
	if p, err := rd.next(); err != io.EOF {
		return true, fmt.Errorf("after the DISCONNECT: %v %s", err, show(p))
	}
	return true, nil
}

// rawReader decodes a raw connection's packets, for tests that cannot
// fail a testing.T from their goroutine.
type rawReader struct {
	c   net.Conn
	dec Decoder
	buf []byte
	tmp [64 << 10]byte
}

// next returns the next packet, valid until the next call, or the read
// error (io.EOF at a clean end of stream).
func (r *rawReader) next() (Packet, error) {
	for {
		n, p, err := r.dec.Decode(r.buf, nil)
		if err != nil {
			return nil, err
		}
		if n > 0 {
			r.buf = r.buf[n:]
			return p, nil
		}
		k, err := r.c.Read(r.tmp[:])
		if k > 0 {
			r.buf = append(r.buf, r.tmp[:k]...)
			continue
		}
		if err != nil {
			return nil, err
		}
	}
}

// TestLingerRefusedConnect: a CONNECT refused by Authenticate (0x86, 0x87)
// while the client sends on gets its CONNACK with the reason string, then
// a clean end of stream, and the broker counts a linger.
func TestLingerRefusedConnect(t *testing.T) {
	const runs = 50
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Hooks: Hooks{Authenticate: func(ci *ConnectInfo) (any, ReasonCode, string) {
				if string(ci.Password) == "good" {
					return nil, Success, ""
				}
				if ci.HasUsername {
					return nil, NotAuthorized, "not this one"
				}
				return nil, BadUserNameOrPassword, "bad password"
			}}}
			b := startBroker(t, cfg, lingerEngine(k.portable, 0))
			got, clean := 0, 0
			var fails []string
			for i := 0; i < runs; i++ {
				sawConnack, err := busyRefused(b.addr, i%2 == 1)
				if sawConnack {
					got++
				}
				if err != nil {
					fails = append(fails, err.Error())
					continue
				}
				clean++
			}
			t.Logf("%s: %d of %d runs read the CONNACK, %d of %d it and a clean end of stream", k.name, got, runs, clean, runs)
			if clean != runs {
				t.Fatalf("%d of %d runs read the CONNACK and the end of stream; the others: %q", clean, runs, fails)
			}
			testutil.Eventually(t, 10*time.Second, "every linger counted", func() bool { return sum(b.e.Stats().Lingers) == runs })
		})
	}
}

// busyRefused runs one connection of TestLingerRefusedConnect: a CONNECT
// with a bad password (withUser: a user name too, refused 0x87) followed
// at once by 4 MiB of PUBLISH packets, written on while the answer is read.
func busyRefused(addr string, withUser bool) (bool, error) {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return false, err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	want, reason := BadUserNameOrPassword, "bad password"
	cp := &Connect{Version: Version5, ClientID: []byte("refused"), CleanStart: true, HasPassword: true, Password: []byte("bad")}
	if withUser {
		cp.HasUsername, cp.Username = true, []byte("someone")
		want, reason = NotAuthorized, "not this one"
	}
	go func() {
		pub := Append(nil, Version5, &Publish{Topic: []byte("t"), Payload: make([]byte, 60<<10)})
		if _, err := c.Write(Append(nil, Version5, cp)); err != nil {
			return
		}
		for i := 0; i < 64; i++ {
			if _, err := c.Write(pub); err != nil {
				return
			}
		}
	}()
	rd := &rawReader{c: c, dec: Decoder{Version: Version5}}
	p, err := rd.next()
	if err != nil {
		return false, fmt.Errorf("CONNACK: %v", err)
	}
	ca, ok := p.(*Connack)
	if !ok || ca.ReasonCode != want || string(ca.Props.ReasonString) != reason {
		return false, fmt.Errorf("CONNACK: %s", show(p))
	}
	if p, err := rd.next(); err != io.EOF {
		return true, fmt.Errorf("after the CONNACK: %v %s", err, show(p))
	}
	return true, nil
}

// floodedClient is a 5.0 client subscribed to its own topic, which
// another client has sent echoes messages of part bytes it has not read
// (they wait in the broker's queue and the sockets), and which sends
// QoS 0 messages to nobody on until its connection fails or stop is
// closed. Its reader is returned unused.
func floodedClient(t *testing.T, b *broker, id string, echoes, part int, stop <-chan struct{}) (net.Conn, *rawReader) {
	t.Helper()
	c, err := net.Dial("tcp", b.addr)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { c.Close() })
	rd := &rawReader{c: c, dec: Decoder{Version: Version5}}
	c.Write(Append(nil, Version5, &Connect{Version: Version5, ClientID: []byte(id), CleanStart: true}))
	if p, err := rd.next(); err != nil {
		t.Fatalf("CONNACK: %v", err)
	} else if ca, ok := p.(*Connack); !ok || ca.ReasonCode != Success {
		t.Fatalf("CONNACK: %s", show(p))
	}
	c.Write(Append(nil, Version5, &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("to/" + id)}}}))
	if p, err := rd.next(); err != nil {
		t.Fatalf("SUBACK: %v", err)
	} else if _, ok := p.(*Suback); !ok {
		t.Fatalf("SUBACK: %s", show(p))
	}
	sender := connectOK(t, b.addr, Version5, id+"-sender")
	body := string(bytes.Repeat([]byte("f"), part))
	for i := 0; i < echoes; i++ {
		sender.pub("to/"+id, body, QoS0, 0, false)
	}
	// The broker has routed them once the sender's PINGREQ is answered.
	sender.send(&Pingreq{})
	if _, ok := sender.next().(*Pingresp); !ok {
		t.Fatal("expected PINGRESP")
	}
	junk := Append(nil, Version5, &Publish{Topic: []byte("nobody"), Payload: make([]byte, 16<<10)})
	go func() {
		for i := 0; i < 1<<12; i++ {
			select {
			case <-stop:
				return
			default:
			}
			if _, err := c.Write(junk); err != nil {
				return
			}
		}
	}()
	return c, rd
}

// stalledLinger is the linger timeout of the tests with a floodedClient:
// past the engine's LingerBytes its unsent junk stalls, and its close
// (FIN) waits behind it, so the linger ends at this bound (bytes). One
// second, not less: at 300 ms a loaded machine (load 5.7) once reset the
// connection before the client had read the echoes queued ahead of the
// DISCONNECT (TestLingerTakeover/portable, "message 5: EOF").
const stalledLinger = time.Second

// unlimited is cfg without the publish rate bounds, which a floodedClient
// passes.
func unlimited(cfg Config) Config {
	cfg.PublishRate, cfg.PublishBytesRate = -1, -1
	return cfg
}

// readFlooded reads what a floodedClient was sent: every echo, then a
// DISCONNECT with code, then a clean end of stream.
func readFlooded(rd *rawReader, echoes, part int, code ReasonCode) error {
	rd.c.SetReadDeadline(time.Now().Add(20 * time.Second))
	for i := 0; i < echoes; i++ {
		p, err := rd.next()
		if err != nil {
			return fmt.Errorf("message %d: %v", i, err)
		}
		if pb, ok := p.(*Publish); !ok || len(pb.Payload) != part {
			return fmt.Errorf("message %d: %s", i, show(p))
		}
	}
	p, err := rd.next()
	if err != nil {
		return fmt.Errorf("DISCONNECT: %v", err)
	}
	if d, ok := p.(*Disconnect); !ok || d.ReasonCode != code {
		return fmt.Errorf("DISCONNECT: %s", show(p))
	}
	if p, err := rd.next(); err != io.EOF {
		return fmt.Errorf("after the DISCONNECT: %v %s", err, show(p))
	}
	return nil
}

// TestLingerTakeover: a 5.0 client whose session another connection takes
// over, while it sends on and has 3 MiB unread, reads them, the
// DISCONNECT session_taken_over and a clean end of stream.
func TestLingerTakeover(t *testing.T) {
	const echoes, part = 6, 512 << 10
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBroker(t, unlimited(Config{}), lingerEngine(k.portable, stalledLinger))
			stop := make(chan struct{})
			defer close(stop)
			c, rd := floodedClient(t, b, "dev", echoes, part, stop)
			connectOK(t, b.addr, Version5, "dev")
			err := readFlooded(rd, echoes, part, SessionTakenOver)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if n := b.Stats().Takeovers; n != 1 {
				t.Fatalf("takeovers %d, want 1", n)
			}
			testutil.Eventually(t, 10*time.Second, "the linger counted", func() bool { return sum(b.e.Stats().Lingers) == 1 })
		})
	}
}

// TestLingerDisconnect: Client.Disconnect on a 5.0 client that sends on
// and has 3 MiB unread: it reads them, the DISCONNECT and a clean end of
// stream.
func TestLingerDisconnect(t *testing.T) {
	const echoes, part = 6, 512 << 10
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			var target atomic.Pointer[Client]
			cfg := Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) {
				if c.ID == "dev" {
					target.Store(c)
				}
			}}}
			b := startBroker(t, unlimited(cfg), lingerEngine(k.portable, stalledLinger))
			stop := make(chan struct{})
			defer close(stop)
			c, rd := floodedClient(t, b, "dev", echoes, part, stop)
			target.Load().Disconnect(AdministrativeAction, "go away")
			err := readFlooded(rd, echoes, part, AdministrativeAction)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			testutil.Eventually(t, 10*time.Second, "the linger counted", func() bool { return sum(b.e.Stats().Lingers) == 1 })
		})
	}
}

// TestLingerDrain: the engine's shutdown says goodbye to a 5.0 client
// that sends on and has 3 MiB unread: it reads them, the DISCONNECT
// server_shutting_down and a clean end of stream, and the shutdown ends
// once the lingers have (before, the portable engine waited for the client
// to be quiet, which it never was, until the shutdown's deadline).
func TestLingerDrain(t *testing.T) {
	const echoes, part = 6, 512 << 10
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBroker(t, unlimited(Config{}), lingerEngine(k.portable, stalledLinger))
			stop := make(chan struct{})
			defer close(stop)
			c, rd := floodedClient(t, b, "dev", echoes, part, stop)
			done := make(chan error, 1)
			go func() {
				ctx, cancel := context.WithTimeout(context.Background(), 20*time.Second)
				defer cancel()
				done <- b.e.Shutdown(ctx)
			}()
			// The other clients (the senders) are idle: the engine closes
			// them at once. This one waits to be read.
			err := readFlooded(rd, echoes, part, ServerShuttingDown)
			c.Close()
			if err != nil {
				t.Fatal(err)
			}
			if err := <-done; err != nil {
				t.Fatalf("shutdown: %v", err)
			}
			// Both 5.0 clients lingered: the flooded one and its idle
			// sender, which got the DISCONNECT too.
			if n := sum(b.e.Stats().Lingers); n != 2 {
				t.Fatalf("lingers %v, want 2", b.e.Stats().Lingers)
			}
		})
	}
}

// TestLingerTellsAtOnce: the session's end, the will and OnDisconnect
// come when the linger begins, not when it ends: a client refused with
// packet_too_large that keeps its connection open (linger timeout 1 min)
// has its will published, its OnDisconnect run (not taken over), and a
// reconnect with its client id is no takeover.
func TestLingerTellsAtOnce(t *testing.T) {
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			var mu sync.Mutex
			var gone []string
			cfg := Config{Hooks: Hooks{OnDisconnect: func(c *Client, _ engine.CloseReason, code ReasonCode, takenOver bool) {
				mu.Lock()
				gone = append(gone, fmt.Sprintf("%s %v %v", c.ID, code, takenOver))
				mu.Unlock()
			}}}
			b := startBroker(t, cfg, lingerEngine(k.portable, time.Minute))
			watcher := connectOK(t, b.addr, Version5, "watcher")
			watcher.subscribe(1, QoS0, "will/#")

			dev := dial(t, b.addr, Version5)
			ca := dev.connect(&Connect{ClientID: []byte("dev"), CleanStart: true, KeepAlive: 60,
				Will: &Will{Topic: []byte("will/dev"), Payload: []byte("gone")}})
			if ca.ReasonCode != Success {
				t.Fatalf("CONNACK %v", ca.ReasonCode)
			}
			dev.raw(appendHeader(nil, 0x30, 64<<20))
			dev.raw(make([]byte, 64<<10))
			if d, ok := dev.next().(*Disconnect); !ok || d.ReasonCode != PacketTooLarge {
				t.Fatal("expected DISCONNECT packet_too_large")
			}
			if _, err := dev.nextErr(5 * time.Second); err != io.EOF {
				t.Fatalf("after the DISCONNECT: %v", err)
			}
			// dev keeps its side open: the broker lingers, and has let
			// the client go already.
			if w := watcher.expectPublish(); w.Topic != "will/dev" || w.Payload != "gone" {
				t.Fatalf("will %+v", w)
			}
			testutil.Eventually(t, 5*time.Second, "OnDisconnect", func() bool {
				mu.Lock()
				defer mu.Unlock()
				return len(gone) == 1
			})
			if g := gone[0]; g != fmt.Sprintf("dev %v false", PacketTooLarge) {
				t.Fatalf("OnDisconnect %q", g)
			}
			again := dial(t, b.addr, Version5)
			if ca := again.connect(&Connect{ClientID: []byte("dev"), CleanStart: false, KeepAlive: 60}); ca.ReasonCode != Success || ca.SessionPresent {
				t.Fatalf("CONNACK %v, session present %v", ca.ReasonCode, ca.SessionPresent)
			}
			st := b.Stats()
			if st.Takeovers != 0 {
				t.Fatalf("takeovers %d, want 0", st.Takeovers)
			}
			if n := sum(b.e.Stats().Lingers); n != 0 {
				t.Fatalf("lingers ended %d, want 0 while dev keeps its side open", n)
			}
			if s := b.e.Stats().ByState[engine.StateLingering]; s != 1 {
				t.Fatalf("lingering connections %d, want 1", s)
			}
			dev.c.Close()
			testutil.Eventually(t, 10*time.Second, "the linger ends at dev's close", func() bool {
				return b.e.Stats().Lingers[engine.LingerEOF] == 1
			})
			mu.Lock()
			defer mu.Unlock()
			if len(gone) != 1 {
				t.Fatalf("OnDisconnect %q, want once", gone)
			}
		})
	}
}

// TestLingerNotOnNormalClose: a client's own DISCONNECT and a 3.1.1
// protocol error (no packet to send) close plainly: no linger.
func TestLingerNotOnNormalClose(t *testing.T) {
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			b := startBroker(t, Config{}, lingerEngine(k.portable, 0))
			c5 := connectOK(t, b.addr, Version5, "five")
			c5.send(&Disconnect{})
			if d := c5.closed(); d != nil {
				t.Fatalf("DISCONNECT %v after the client's", d.ReasonCode)
			}
			c3 := connectOK(t, b.addr, Version311, "three")
			c3.raw(appendHeader(nil, 0x30, 64<<20))
			c3.closed()
			b.waitStats(t, "both closed", func(s Stats) bool { return s.SessionsOnline == 0 })
			testutil.Eventually(t, 5*time.Second, "the engine closed both", func() bool {
				return b.e.Stats().Active == 0
			})
			if n := sum(b.e.Stats().Lingers); n != 0 {
				t.Fatalf("lingers %v, want none", b.e.Stats().Lingers)
			}
		})
	}
}

// TestLingerWebSocketTooLarge: over WebSocket a packet over the limit still
// gets DISCONNECT packet_too_large, then the close 1008 (the websocket
// closes the connection, lingering unless the client's Close came back),
// and the client's end is settled once.
func TestLingerWebSocketTooLarge(t *testing.T) {
	var gone atomic.Int32
	b := startBroker(t, Config{Hooks: Hooks{OnDisconnect: func(*Client, engine.CloseReason, ReasonCode, bool) { gone.Add(1) }}})
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(gorilla.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("wsbig"), CleanStart: true}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	ws.WriteMessage(gorilla.BinaryMessage, appendHeader(nil, 0x30, 64<<20))
	if got := readWS(t, ws, Version5); got != "disconnect" {
		t.Fatalf("got %s", got)
	}
	if _, _, err := ws.ReadMessage(); !gorilla.IsCloseError(err, 1008) {
		t.Fatalf("close: %v", err)
	}
	b.waitStats(t, "closed", func(s Stats) bool { return s.ConnectionsV5 == 0 && s.ProtocolErrors == 1 })
	testutil.Eventually(t, 5*time.Second, "OnDisconnect", func() bool { return gone.Load() == 1 })
}
