package mqtt

import (
	"context"
	"slices"
	"sync"
	"testing"
	"time"

	"github.com/gorilla/websocket"

	"github.com/warrenhq/warren/internal/testutil"
)

// kickRecorder is the kick tests' OnPublish hook: it records every
// PUBLISH's topic and disconnects the client on topic "kick".
type kickRecorder struct {
	mu   sync.Mutex
	seen []string
}

func (kr *kickRecorder) hooks() Hooks {
	return Hooks{OnPublish: func(c *Client, m *Message) (bool, ReasonCode) {
		kr.mu.Lock()
		kr.seen = append(kr.seen, m.Topic)
		kr.mu.Unlock()
		if m.Topic == "kick" {
			c.Disconnect(AdministrativeAction, "kicked")
		}
		return true, Success
	}}
}

// check asserts what the kick tests expect once the publisher, which
// sent t/a, kick, t/b and t/c (packet ids 1–4), has been kicked: no
// PUBACK for 3 or 4 among acks, and for a marker published after it has
// gone, the subscriber gets t/a, then the marker, nothing between, and
// the hook saw t/a, kick and the marker only.
func (kr *kickRecorder) check(t *testing.T, b *broker, sub *client, acks []uint16) {
	t.Helper()
	if slices.Contains(acks, 3) || slices.Contains(acks, 4) {
		t.Errorf("PUBACKs after the kick: %v", acks)
	}
	m := connectOK(t, b.addr, Version5, "marker")
	m.pub("t/z", "z", QoS0, 0, false)
	var got []string
	for len(got) == 0 || got[len(got)-1] != "t/z" {
		got = append(got, sub.expectPublish().Topic)
	}
	if !slices.Equal(got, []string{"t/a", "t/z"}) {
		t.Errorf("routed %v, want [t/a t/z]", got)
	}
	kr.mu.Lock()
	defer kr.mu.Unlock()
	if !slices.Equal(kr.seen, []string{"t/a", "kick", "t/z"}) {
		t.Errorf("OnPublish saw %v, want [t/a kick t/z]", kr.seen)
	}
}

// TestKickFromOnPublish: a client that Hooks.OnPublish disconnects (a
// limit, a revoked credential) has nothing more of its input handled: the
// PUBLISHes that came in the same read after the one that kicked it are
// neither given to the hook nor routed nor acknowledged. Both engines,
// both protocol levels; the four PUBLISHes go in one write.
func TestKickFromOnPublish(t *testing.T) {
	for _, k := range engineKinds {
		for _, v := range []Version{Version311, Version5} {
			t.Run(k.name+"/"+v.String(), func(t *testing.T) {
				kr := &kickRecorder{}
				cfg := Config{Hooks: kr.hooks()}
				b := startBroker(t, cfg, lingerEngine(k.portable, 0))
				sub := connectOK(t, b.addr, Version5, "sub")
				sub.subscribe(1, QoS0, "t/#")

				p := connectOK(t, b.addr, v, "pub")
				var out []byte
				for i, topic := range []string{"t/a", "kick", "t/b", "t/c"} {
					out = Append(out, v, &Publish{Topic: []byte(topic), Payload: []byte("x"), QoS: QoS1, PacketID: uint16(i + 1)})
				}
				p.raw(out)
				var acks []uint16
				for {
					pk, err := p.nextErr(5 * time.Second)
					if err != nil {
						break
					}
					if a, ok := pk.(*Ack); ok && a.Kind == TypePuback {
						acks = append(acks, a.PacketID)
					}
				}
				kr.check(t, b, sub, acks)
			})
		}
	}
}

// TestClientCurrent: Client.Current is true for the connection holding
// its client id's session, false once another connection took it over
// and once it has closed, and false on a Client the application made.
func TestClientCurrent(t *testing.T) {
	clients := make(chan *Client, 2)
	b := startBroker(t, Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) { clients <- c }}})
	a := connectOK(t, b.addr, Version5, "dev")
	ca := <-clients
	if !ca.Current() {
		t.Fatal("the first connection is not current")
	}
	bc := connectOK(t, b.addr, Version311, "dev")
	cb := <-clients
	if d := a.closed(); d == nil || d.ReasonCode != SessionTakenOver {
		t.Fatalf("taken over: %+v", d)
	}
	if ca.Current() || !cb.Current() {
		t.Fatalf("after the takeover: first %v, second %v", ca.Current(), cb.Current())
	}
	bc.send(&Disconnect{})
	bc.closed()
	testutil.Eventually(t, 5*time.Second, "the second connection not current", func() bool { return !cb.Current() })
	if (&Client{ID: "dev"}).Current() {
		t.Fatal("an application's Client is current")
	}
}

// TestKickFromOnPublishWebSocket is TestKickFromOnPublish over
// WebSocket, the four PUBLISHes in one message: the kicking hook ends the
// message's handling (feedWS), and the rest is neither routed nor
// acknowledged.
func TestKickFromOnPublishWebSocket(t *testing.T) {
	kr := &kickRecorder{}
	cfg := Config{Hooks: kr.hooks()}
	b := startBroker(t, cfg)
	sub := connectOK(t, b.addr, Version5, "sub")
	sub.subscribe(1, QoS0, "t/#")
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(websocket.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("pub"), CleanStart: true}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	var out []byte
	for i, topic := range []string{"t/a", "kick", "t/b", "t/c"} {
		out = Append(out, Version5, &Publish{Topic: []byte(topic), Payload: []byte("x"), QoS: QoS1, PacketID: uint16(i + 1)})
	}
	ws.WriteMessage(websocket.BinaryMessage, out)
	var in []byte
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	for {
		_, data, err := ws.ReadMessage()
		if err != nil {
			break
		}
		in = append(in, data...)
	}
	var acks []uint16
	d := Decoder{Version: Version5}
	for len(in) > 0 {
		n, p, err := d.Decode(in, nil)
		if err != nil || n == 0 {
			t.Fatalf("decoding the server's packets: %v", err)
		}
		if a, ok := p.(*Ack); ok && a.Kind == TypePuback {
			acks = append(acks, a.PacketID)
		}
		in = in[n:]
	}
	kr.check(t, b, sub, acks)
}

// TestKickBeatsDrain: a 5.0 client kicked as the engine's drain reaches
// it (Hooks.OnDrain disconnects it with administrative_action: the kick
// is posted to the loop, the drain runs on) gets the kick's DISCONNECT,
// not the drain's server_shutting_down, and the shutdown ends.
func TestKickBeatsDrain(t *testing.T) {
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Hooks: Hooks{OnDrain: func(c *Client) bool {
				c.Disconnect(AdministrativeAction, "kicked")
				return false
			}}}
			shutdownExpectingKick(t, k.portable, cfg)
		})
	}
}

// TestGoingAwayAfterKick: a 5.0 client held by Hooks.OnDrain, told to go
// away (Client.GoingAway, posted to its loop) and then kicked
// (Client.Disconnect with administrative_action, its DISCONNECT posted
// after) gets the kick's DISCONNECT only: GoingAway, run first, finds
// the client kicked and leaves the goodbye to the kick, and the shutdown
// ends.
func TestGoingAwayAfterKick(t *testing.T) {
	for _, k := range engineKinds {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Hooks: Hooks{OnDrain: func(c *Client) bool {
				c.GoingAway()
				c.Disconnect(AdministrativeAction, "kicked")
				return true
			}}}
			shutdownExpectingKick(t, k.portable, cfg)
		})
	}
}

// shutdownExpectingKick starts a broker with cfg, whose OnDrain kicks the
// client, connects a 5.0 client and shuts the engine down: the client's
// first DISCONNECT (its goodbye; the client then leaves, which the
// lingering close waits for) must be the kick's administrative_action,
// and the shutdown must end.
func shutdownExpectingKick(t *testing.T, portable bool, cfg Config) {
	t.Helper()
	b := startBroker(t, cfg, lingerEngine(portable, 0))
	c := connectOK(t, b.addr, Version5, "dev")
	done := make(chan error, 1)
	go func() {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		done <- b.e.Shutdown(ctx)
	}()
	var d *Disconnect
	for d == nil {
		pk, err := c.nextErr(5 * time.Second)
		if err != nil {
			t.Fatalf("no DISCONNECT: %v", err)
		}
		d, _ = pk.(*Disconnect)
	}
	c.c.Close()
	if d.ReasonCode != AdministrativeAction {
		t.Errorf("DISCONNECT %v, want %v", d.ReasonCode, AdministrativeAction)
	}
	if err := <-done; err != nil {
		t.Fatalf("shutdown: %v", err)
	}
}
