package mqtt

import (
	"encoding/binary"
	"errors"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// rawUntilClosed reads whatever the server sends until it closes the
// connection (within 5 s), and returns the packets' first bytes and
// lengths: the test decides what may have come.
func (c *client) rawUntilClosed() []byte {
	c.t.Helper()
	c.c.SetReadDeadline(time.Now().Add(5 * time.Second))
	got, err := io.ReadAll(c.c)
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		c.t.Fatalf("the server did not close the connection (read %x)", got)
	}
	return append(c.buf, got...)
}

// [MQTT-3.1.4-1]: in 3.1.1 the server closes the connection without a
// CONNACK when the CONNECT does not conform to section 3.1 — 3.1.1 has no
// return code for a malformed CONNECT (0x03, server unavailable, would
// send the client back later with the same packet).
func TestMalformedConnect311NoConnack(t *testing.T) {
	b := startBroker(t, Config{})
	ok := AppendConnect(nil, &Connect{Version: Version311, ClientID: []byte("x"), CleanStart: true, KeepAlive: 60})
	const flagsAt = 9 // fixed header 2, "MQTT" 6, level 1
	if ok[flagsAt] != 0x02 {
		t.Fatalf("CONNECT flags at %d: %x", flagsAt, ok)
	}
	withFlags := func(f byte) []byte {
		p := append([]byte(nil), ok...)
		p[flagsAt] = f
		return p
	}
	badUTF8 := AppendConnect(nil, &Connect{Version: Version311, ClientID: []byte{0xff, 0xfe}, CleanStart: true})
	passwordOnly := AppendConnect(nil, &Connect{Version: Version311, ClientID: []byte("x"), CleanStart: true})
	passwordOnly[1] += 4
	passwordOnly[flagsAt] |= 0x40
	passwordOnly = binary.BigEndian.AppendUint16(passwordOnly, 2)
	passwordOnly = append(passwordOnly, "pw"...)
	for name, p := range map[string][]byte{
		"reserved flag":              withFlags(0x03),
		"will QoS without will flag": withFlags(0x02 | 0x08),
		"will retain without will":   withFlags(0x02 | 0x20),
		"password without user name": passwordOnly,
		"client id not UTF-8":        badUTF8,
	} {
		c := dial(t, b.addr, Version311)
		c.raw(p)
		if got := c.rawUntilClosed(); len(got) != 0 {
			t.Errorf("%s: the server sent %x before closing, want nothing", name, got)
		}
	}
	// What 3.1.1 has a return code for still gets its CONNACK: an
	// unsupported protocol level (0x01), an empty client id with clean
	// session 0 (0x02, [MQTT-3.1.3-8]).
	c := dial(t, b.addr, Version311)
	lvl := append([]byte(nil), ok...)
	lvl[8] = 6
	c.raw(lvl)
	if ca, isCA := c.next().(*Connack); !isCA || ca.ReasonCode != UnsupportedProtocolVersion {
		t.Fatalf("level 6: %v", ca)
	}
	c = dial(t, b.addr, Version311)
	if ca := c.connect(&Connect{CleanStart: false}); ca.ReasonCode != ClientIdentifierNotValid {
		t.Fatalf("empty id, clean session 0: %v", ca.ReasonCode)
	}
	// 5.0 may answer a malformed CONNECT with CONNACK 0x81 [MQTT-3.1.4-2].
	c = dial(t, b.addr, Version5)
	p5 := AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("x"), CleanStart: true})
	p5[flagsAt] |= 0x01
	c.raw(p5)
	if ca, isCA := c.next().(*Connack); !isCA || ca.ReasonCode != MalformedPacket {
		t.Fatalf("5.0 reserved flag: %v", ca)
	}
	connectOK(t, b.addr, Version311, "still-serving")
}

// [MQTT-3.3.4-6]: a PUBLISH from a client must not carry a Subscription
// Identifier; the server treats one as a protocol error (DISCONNECT 0x82)
// and does not route the message.
func TestPublishSubscriptionIDFromClient(t *testing.T) {
	b := startBroker(t, Config{})
	sub := connectOK(t, b.addr, Version5, "sub")
	sub.subscribe(1, QoS0, "sid/#")
	c := connectOK(t, b.addr, Version5, "pub")
	c.send(&Publish{Topic: []byte("sid/a"), Payload: []byte("x"), Props: Properties{SubscriptionIDs: []uint32{5}}})
	if d := c.closed(); d == nil || d.ReasonCode != ProtocolError {
		t.Fatalf("PUBLISH with a subscription identifier: DISCONNECT %+v", d)
	}
	b.Publish(&Message{Topic: "sid/b", Payload: []byte("after")})
	if got := sub.expectPublish(); got.Topic != "sid/b" {
		t.Fatalf("the refused message was routed: %+v", got)
	}
}

// [MQTT-3.1.2-25] and the reason string's rules in CONNACK and DISCONNECT
// (5.0 3.2.2.3.7, 3.14.2.2.3): the server sends nothing larger than the
// client's Maximum Packet Size, and leaves out the reason string rather.
func TestDiagnosticsFitMaximumPacketSize(t *testing.T) {
	long := strings.Repeat("r", 200)
	b := startBroker(t, Config{Hooks: Hooks{Authenticate: func(ci *ConnectInfo) (any, ReasonCode, string) {
		if ci.ClientID == "refused" {
			return nil, NotAuthorized, long
		}
		return nil, Success, ""
	}}})
	const mps = 16
	// A DISCONNECT with a reason string (an unknown topic alias).
	c := dial(t, b.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("small"), CleanStart: true, Props: Properties{MaximumPacketSize: mps}}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	c.send(&Publish{Props: Properties{TopicAlias: 3}})
	got := c.rawUntilClosed()
	if len(got) == 0 || len(got) > mps || got[0] != byte(TypeDisconnect)<<4 {
		t.Fatalf("DISCONNECT for a client taking %d bytes: %x", mps, got)
	}
	var dec Decoder
	dec.Version = Version5
	if _, p, err := dec.Decode(got, nil); err != nil || p.(*Disconnect).ReasonCode != ProtocolError {
		t.Fatalf("DISCONNECT %x: %v %v", got, p, err)
	}
	// A refused CONNECT's CONNACK.
	c = dial(t, b.addr, Version5)
	c.send(&Connect{Version: Version5, ClientID: []byte("refused"), CleanStart: true, Props: Properties{MaximumPacketSize: mps}})
	got = c.rawUntilClosed()
	if len(got) == 0 || len(got) > mps || got[0] != byte(TypeConnack)<<4 {
		t.Fatalf("CONNACK for a client taking %d bytes: %x", mps, got)
	}
	if _, p, err := dec.Decode(got, nil); err != nil || p.(*Connack).ReasonCode != NotAuthorized {
		t.Fatalf("CONNACK %x: %v %v", got, p, err)
	}
	// Without the limit the reason string goes along.
	c = dial(t, b.addr, Version5)
	if ca := c.connect(&Connect{ClientID: []byte("refused"), CleanStart: true}); string(ca.Props.ReasonString) != long {
		t.Fatalf("CONNACK without a limit: reason %q", ca.Props.ReasonString)
	}
}

// Keep-alive over WebSocket, a client that is quiet both ways: it gets
// DISCONNECT 0x8D and a close frame, as a busy one does
// (TestWebSocketKeepAlive) and as a TCP client gets the DISCONNECT; the
// engine's idle timer, which closes without either, is only a backstop
// behind the sweeper.
func TestWebSocketKeepAliveQuiet(t *testing.T) {
	b := startBroker(t, Config{SweepInterval: time.Second})
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(websocket.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("quiet"), CleanStart: true, KeepAlive: 1}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	if got := readWS(t, ws, Version5); got != "disconnect" {
		t.Fatalf("quiet WebSocket client got %s", got)
	}
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, 1008) {
		t.Fatalf("close: %v", err)
	}
	b.waitStats(t, "keep-alive counted", func(s Stats) bool { return s.KeepAliveTimeouts == 1 })
}
