//go:build !race

package mqtt

import (
	"io"
	"testing"
	"time"
)

// TestDecodeAllocs checks that the common packets decode without
// allocating once the Scratch exists.
func TestDecodeAllocs(t *testing.T) {
	props := &Publish{QoS: 1, Topic: []byte("t"), PacketID: 1, Props: Properties{
		MessageExpiry: 60, User: []UserProperty{{[]byte("k"), []byte("v")}}, SubscriptionIDs: []uint32{3}}}
	for _, c := range []struct {
		name string
		v    Version
		in   []byte
	}{
		{"publish 3.1.1", Version311, benchPublish(Version311)},
		{"publish 5.0", Version5, benchPublish(Version5)},
		{"publish 5.0 properties", Version5, AppendPublish(nil, Version5, props)},
		{"puback 3.1.1", Version311, AppendPuback(nil, Version311, 1, Success)},
		{"puback 5.0", Version5, AppendAck(nil, Version5, &Ack{Kind: TypePuback, PacketID: 1, ReasonCode: QuotaExceeded,
			Props: Properties{ReasonString: []byte("full")}})},
		{"pubrel 5.0", Version5, AppendPubrel(nil, Version5, 1, Success)},
		{"pingreq", Version311, AppendPingreq(nil)},
		{"disconnect 5.0", Version5, AppendDisconnect(nil, Version5, &Disconnect{ReasonCode: SessionTakenOver})},
		{"subscribe 5.0", Version5, AppendSubscribe(nil, Version5, &Subscribe{PacketID: 1,
			Filters: []Subscription{{Filter: []byte("a/#")}, {Filter: []byte("b")}}})},
	} {
		d := Decoder{Version: c.v}
		d.Decode(c.in, nil) // allocates the Scratch and grows its slices
		if a := testing.AllocsPerRun(100, func() { d.Decode(c.in, nil) }); a != 0 {
			t.Errorf("%s: %v allocations per decode", c.name, a)
		}
	}
}

func TestEncodeAllocs(t *testing.T) {
	buf := make([]byte, 0, 1024)
	p := &Publish{QoS: 1, Topic: []byte("t"), PacketID: 1, Payload: []byte("x"), Props: fullProps(publishProps)}
	if a := testing.AllocsPerRun(100, func() {
		buf = AppendPublish(buf[:0], Version5, p)
		buf = AppendPuback(buf, Version5, 1, Success)
		buf = AppendPingresp(buf)
	}); a != 0 {
		t.Errorf("%v allocations per encode", a)
	}
}

func TestTrieLookupAllocs(t *testing.T) {
	var tr Trie[int]
	for _, f := range []string{"a/+", "a/#", "#", "+/b", "a/b"} {
		tr.Insert(f, "k", 1)
	}
	hits := 0
	fn := func(string, int) bool { hits++; return true }
	if a := testing.AllocsPerRun(100, func() { tr.Lookup("a/b", fn) }); a != 0 {
		t.Errorf("%v allocations per lookup", a)
	}
}

// TestQoS0RouteAllocs guards the QoS 0 delivery path: a QoS 0 PUBLISH that
// is not retained is routed as a view of its packet (routeMessage), so
// that handling it and writing it to a subscriber allocates nothing — not
// the topic string, the routed message or a payload copy. The publisher's
// conn handles the packet here on the test goroutine, as its loop would.
func TestQoS0RouteAllocs(t *testing.T) {
	b := startBroker(t, Config{PublishRate: -1, PublishBytesRate: -1}) // no rate limit: the conn calls in a burst
	for _, c := range []struct {
		name   string
		v      Version
		filter string
		p      *Publish
		corked bool // the subscriber is the publisher, in its own loop's read
	}{
		{"3.1.1 own topic", Version311, "dev/a/t", &Publish{Topic: []byte("dev/a/t"), Payload: benchPayload}, false},
		{"3.1.1 own topic corked", Version311, "dev/s/t", &Publish{Topic: []byte("dev/s/t"), Payload: benchPayload}, true},
		{"3.1.1 wildcard", Version311, "dev/+/w", &Publish{Topic: []byte("dev/b/w"), Payload: benchPayload}, false},
		{"3.1.1 P/+ in the table", Version311, "dev/e/+", &Publish{Topic: []byte("dev/e/x"), Payload: benchPayload}, false},
		{"5.0 properties", Version5, "dev/c/#", &Publish{Topic: []byte("dev/c/p"), Payload: benchPayload,
			Props: Properties{PayloadFormat: 1, MessageExpiry: 60, ContentType: []byte("text/plain"),
				ResponseTopic: []byte("dev/c/r"), CorrelationData: []byte("id"),
				User: []UserProperty{{[]byte("k"), []byte("v")}}}}, false},
	} {
		t.Run(c.name, func(t *testing.T) {
			id := "alloc-" + c.filter
			cl := connectOK(t, b.addr, c.v, id)
			cl.subscribe(1, QoS1, c.filter)
			// Check one delivery, then discard the rest.
			in := AppendPublish(nil, c.v, c.p)
			p, err := decodeOne(c.v, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			b.mu.RLock()
			sc := b.sessions.Get(id).conn
			b.mu.RUnlock()
			pub := p.(*Publish)
			run := func() { sc.onPublish(pub, len(in), time.Now().UnixNano()) }
			if c.corked {
				run = func() { sc.cork(); sc.onPublish(pub, len(in), time.Now().UnixNano()); sc.uncork() }
			}
			run()
			if got := cl.expectPublish(); got.Topic != string(c.p.Topic) || got.QoS != QoS0 || got.Payload != string(benchPayload) {
				t.Fatalf("delivered %+v", got)
			}
			go io.Copy(io.Discard, cl.c)
			run() // warm the pools
			// The engine's Write may allocate on its own (its area, not
			// this package's): what it costs is allowed, nothing more.
			w := testing.AllocsPerRun(1000, func() { sc.ec.Write(in) })
			out := b.Stats().PublishesOut[QoS0]
			a := testing.AllocsPerRun(1000, run)
			if n := b.Stats().PublishesOut[QoS0] - out; n != 1001 {
				t.Fatalf("%d deliveries, want 1001", n)
			}
			if a > w {
				t.Errorf("%v allocations per QoS 0 delivery (the engine's write: %v)", a, w)
			} else {
				t.Logf("%v allocations per QoS 0 delivery, all the engine's write's", a)
			}
		})
	}
}

// TestQoS1RouteAllocs guards the QoS 1 round trip of a client publishing
// to its own subscription (the publisher's conn handling its PUBLISH and
// then the PUBACK of the delivery, on the test goroutine as its loop
// would): the routed message and its one buffer (topic, payload and
// properties together) are all it allocates — not the topic string, the
// inflight record, the session's flow state (pooled) or the PUBACK.
func TestQoS1RouteAllocs(t *testing.T) {
	b := startBroker(t, Config{PublishRate: -1, PublishBytesRate: -1})
	for _, v := range []Version{Version311, Version5} {
		t.Run(v.String(), func(t *testing.T) {
			id, topic := "alloc-q1-"+v.String(), "dev/q1/"+v.String()
			cl := connectOK(t, b.addr, v, id)
			cl.subscribe(1, QoS1, topic)
			in := AppendPublish(nil, v, &Publish{Topic: []byte(topic), QoS: QoS1, PacketID: 7, Payload: benchPayload})
			p, err := decodeOne(v, in, nil)
			if err != nil {
				t.Fatal(err)
			}
			pub := p.(*Publish)
			b.mu.RLock()
			ss := b.sessions.Get(id)
			b.mu.RUnlock()
			sc := ss.conn
			run := func() {
				sc.cork()
				sc.onPublish(pub, len(in), time.Now().UnixNano())
				sc.uncork()
				ss.mu.Lock()
				if ss.fl == nil || len(ss.fl.inflight) != 1 {
					ss.mu.Unlock()
					t.Fatal("no message in flight")
				}
				pid := ss.fl.inflight[0].id
				ss.mu.Unlock()
				sc.onAck(&Ack{Kind: TypePuback, PacketID: pid})
			}
			run()
			got := cl.expectPublish()
			if got.Topic != topic || got.QoS != QoS1 || got.Payload != string(benchPayload) {
				t.Fatalf("delivered %+v", got)
			}
			go io.Copy(io.Discard, cl.c)
			run() // warm the pools
			w := testing.AllocsPerRun(1000, func() { sc.ec.Write(in) })
			out := b.Stats().PublishesOut[QoS1]
			a := testing.AllocsPerRun(1000, run)
			if n := b.Stats().PublishesOut[QoS1] - out; n != 1001 {
				t.Fatalf("%d deliveries, want 1001", n)
			}
			if st := b.Stats(); st.QueuedMessages != 0 || st.QueuedBytes != 0 {
				t.Fatalf("queued after the acks: %d messages, %d bytes", st.QueuedMessages, st.QueuedBytes)
			}
			if a > w+2 {
				t.Errorf("%v allocations per QoS 1 round trip, want 2 (the engine's write: %v)", a, w)
			} else {
				t.Logf("%v allocations per QoS 1 round trip (the engine's write: %v)", a, w)
			}
		})
	}
}
