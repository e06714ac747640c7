package mqtt

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/gorilla/websocket"
)

// script is a client's session as one byte stream, and the packet types
// the server answers with, in order.
func script(v Version, id string) ([]byte, []Type) {
	var b []byte
	b = AppendConnect(b, &Connect{Version: v, ClientID: []byte(id), CleanStart: true, KeepAlive: 60,
		Will: &Will{Topic: []byte("w/" + id), Payload: []byte("bye")}})
	b = AppendSubscribe(b, v, &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("s/" + id + "/#"), QoS: 1}}})
	b = AppendPublish(b, v, &Publish{Topic: []byte("s/" + id + "/a"), Payload: []byte("hello"), QoS: 1, PacketID: 2})
	b = AppendPublish(b, v, &Publish{Topic: []byte("elsewhere"), Payload: []byte("q2"), QoS: 2, PacketID: 3})
	b = AppendAck(b, v, &Ack{Kind: TypePubrel, PacketID: 3})
	b = AppendPingreq(b)
	return b, []Type{TypeConnack, TypeSuback, TypePublish, TypePuback, TypePubrec, TypePubcomp, TypePingresp}
}

// checkAnswers reads the answers to script and checks their types (the
// self-delivered PUBLISH and its PUBACK may come in either order).
func checkAnswers(t *testing.T, c *client, want []Type) {
	t.Helper()
	var got []string
	for range want {
		got = append(got, c.next().Type().String())
	}
	g, w := strings.Join(got, " "), ""
	for _, x := range want {
		w += x.String() + " "
	}
	w = strings.TrimSpace(w)
	alt := strings.Replace(w, "publish puback", "puback publish", 1)
	if g != w && g != alt {
		t.Fatalf("answers %q, want %q", g, w)
	}
}

// TestSplitTCP sends a session's bytes split in two at every byte: the
// broker keeps partial packets across reads.
func TestSplitTCP(t *testing.T) {
	b := startBroker(t, Config{})
	for _, v := range versions {
		stream, want := script(v, "split")
		for cut := 1; cut < len(stream); cut++ {
			c := dial(t, b.addr, v)
			c.raw(stream[:cut])
			time.Sleep(time.Millisecond)
			c.raw(stream[cut:])
			checkAnswers(t, c, want)
			c.c.Close()
		}
	}
}

// TestSplitWebSocket sends a session's bytes in two WebSocket messages
// split at every byte, and in one message per byte: MQTT packets may
// straddle messages [MQTT-6.0.0-2].
func TestSplitWebSocket(t *testing.T) {
	b := startBroker(t, Config{})
	for _, v := range versions {
		stream, want := script(v, "wssplit")
		run := func(parts [][]byte) {
			t.Helper()
			ws := dialWS(t, b.wsAddr)
			for _, p := range parts {
				if err := ws.WriteMessage(websocket.BinaryMessage, p); err != nil {
					t.Fatal(err)
				}
			}
			var got []string
			for range want {
				p := readWS(t, ws, v)
				got = append(got, p)
			}
			w := ""
			for _, x := range want {
				w += x.String() + " "
			}
			w = strings.TrimSpace(w)
			g := strings.Join(got, " ")
			if g != w && g != strings.Replace(w, "publish puback", "puback publish", 1) {
				t.Fatalf("answers %q, want %q", g, w)
			}
			ws.Close()
		}
		for cut := 1; cut < len(stream); cut += 7 {
			run([][]byte{stream[:cut], stream[cut:]})
		}
		var bytewise [][]byte
		for i := range stream {
			bytewise = append(bytewise, stream[i:i+1])
		}
		run(bytewise)
	}
}

// dialWS opens MQTT over WebSocket to the broker's /mqtt route.
func dialWS(t testing.TB, addr string) *websocket.Conn {
	t.Helper()
	d := websocket.Dialer{Subprotocols: []string{"mqtt"}}
	ws, resp, err := d.Dial("ws://"+addr+"/mqtt", http.Header{})
	if err != nil {
		t.Fatal(err)
	}
	if resp.Header.Get("Sec-WebSocket-Protocol") != "mqtt" {
		t.Fatalf("subprotocol %q", resp.Header.Get("Sec-WebSocket-Protocol"))
	}
	t.Cleanup(func() {
		ws.Close()
		delete(wsPending, ws) // a later connection may get the same address
	})
	return ws
}

// wsPending holds the bytes of WebSocket messages not decoded yet.
var wsPending = map[*websocket.Conn][]byte{}

// readWS returns the type of the next MQTT packet from ws.
func readWS(t testing.TB, ws *websocket.Conn, v Version) string {
	t.Helper()
	ws.SetReadDeadline(time.Now().Add(5 * time.Second))
	buf := wsPending[ws]
	d := Decoder{Version: v}
	for {
		n, p, err := d.Decode(buf, nil)
		if err != nil {
			t.Fatal(err)
		}
		if n > 0 {
			wsPending[ws] = buf[n:]
			return p.Type().String()
		}
		op, data, err := ws.ReadMessage()
		if err != nil {
			t.Fatalf("read: %v", err)
		}
		if op != websocket.BinaryMessage {
			t.Fatalf("opcode %d", op)
		}
		buf = append(buf, data...)
	}
}

// TestWebSocketText: a text message is a protocol error.
func TestWebSocketText(t *testing.T) {
	b := startBroker(t, Config{})
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(websocket.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("t"), CleanStart: true}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	ws.WriteMessage(websocket.TextMessage, []byte("hello"))
	if got := readWS(t, ws, Version5); got != "disconnect" {
		t.Fatal(got)
	}
	if _, _, err := ws.ReadMessage(); !websocket.IsCloseError(err, 1002) {
		t.Fatalf("close: %v", err)
	}
	b.waitStats(t, "closed", func(s Stats) bool { return s.ConnectionsV5 == 0 && s.ProtocolErrors == 1 })
}

// Keep-alive over WebSocket: a client that keeps receiving but sends
// nothing is closed at 1.5 times its keep-alive with DISCONNECT 0x8D.
func TestWebSocketKeepAlive(t *testing.T) {
	b := startBroker(t, Config{SweepInterval: 100 * time.Millisecond})
	ws := dialWS(t, b.wsAddr)
	ws.WriteMessage(websocket.BinaryMessage, AppendConnect(nil, &Connect{Version: Version5, ClientID: []byte("wska"), CleanStart: true, KeepAlive: 1}))
	if got := readWS(t, ws, Version5); got != "connack" {
		t.Fatal(got)
	}
	ws.WriteMessage(websocket.BinaryMessage, AppendSubscribe(nil, Version5, &Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("ka")}}}))
	start := time.Now()
	stop := make(chan struct{})
	defer close(stop)
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(50 * time.Millisecond):
				b.Publish(&Message{Topic: "ka", Payload: []byte("busy")})
			}
		}
	}()
	for {
		got := readWS(t, ws, Version5)
		if got == "disconnect" {
			break
		}
		if time.Since(start) > 5*time.Second {
			t.Fatalf("not closed for keep-alive: %+v", b.Stats())
		}
	}
	if el := time.Since(start); el < 1400*time.Millisecond {
		t.Fatalf("closed after %v, before 1.5 x keep-alive", el)
	}
	b.waitStats(t, "keep-alive counted", func(s Stats) bool { return s.KeepAliveTimeouts == 1 })
}
