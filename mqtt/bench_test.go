package mqtt

import (
	"fmt"
	"io"
	"strconv"
	"testing"
	"time"
)

var benchPayload = make([]byte, 64)

func benchPublish(v Version) []byte {
	p := &Publish{QoS: 1, Topic: []byte("devices/dev-123456/telemetry"), PacketID: 42, Payload: benchPayload}
	return AppendPublish(nil, v, p)
}

func benchDecode(b *testing.B, v Version, in []byte) {
	d := Decoder{Version: v}
	b.SetBytes(int64(len(in)))
	b.ReportAllocs()
	for b.Loop() {
		if n, _, err := d.Decode(in, nil); n != len(in) || err != nil {
			b.Fatal(n, err)
		}
	}
}

func BenchmarkDecodePublish(b *testing.B) {
	for _, v := range []Version{Version311, Version5} {
		b.Run(v.String(), func(b *testing.B) { benchDecode(b, v, benchPublish(v)) })
	}
	b.Run("5.0-props", func(b *testing.B) {
		p := &Publish{QoS: 1, Topic: []byte("devices/dev-123456/telemetry"), PacketID: 42, Payload: benchPayload,
			Props: Properties{MessageExpiry: 60, ContentType: []byte("application/json"),
				User: []UserProperty{{[]byte("trace"), []byte("abc")}}}}
		benchDecode(b, Version5, AppendPublish(nil, Version5, p))
	})
}

func BenchmarkDecodePuback(b *testing.B) {
	benchDecode(b, Version311, AppendPuback(nil, Version311, 42, Success))
}

func BenchmarkDecodePingreq(b *testing.B) {
	benchDecode(b, Version311, AppendPingreq(nil))
}

func BenchmarkEncodePublish(b *testing.B) {
	for _, v := range []Version{Version311, Version5} {
		b.Run(v.String(), func(b *testing.B) {
			p := &Publish{QoS: 1, Topic: []byte("devices/dev-123456/telemetry"), PacketID: 42, Payload: benchPayload}
			buf := make([]byte, 0, 256)
			b.SetBytes(int64(len(AppendPublish(nil, v, p))))
			b.ReportAllocs()
			for b.Loop() {
				buf = AppendPublish(buf[:0], v, p)
			}
		})
	}
}

func BenchmarkEncodePuback(b *testing.B) {
	buf := make([]byte, 0, 16)
	b.ReportAllocs()
	for b.Loop() {
		buf = AppendPuback(buf[:0], Version5, 42, Success)
	}
}

func BenchmarkMatch(b *testing.B) {
	b.ReportAllocs()
	for b.Loop() {
		if !Match("devices/+/telemetry/#", "devices/dev-123456/telemetry/temp") {
			b.Fatal("no match")
		}
	}
}

// BenchmarkTrieLookup looks up a topic among 100k device subscriptions
// (devices/<id>/cmd/#) plus a few wildcard ones.
func BenchmarkTrieLookup(b *testing.B) {
	var tr Trie[int]
	const n = 100_000
	for i := 0; i < n; i++ {
		id := fmt.Sprint("dev-", i)
		tr.Insert("devices/"+id+"/cmd/#", id, i)
	}
	tr.Insert("devices/+/cmd/+", "monitor", -1)
	tr.Insert("#", "audit", -2)
	topic := "devices/dev-54321/cmd/reboot"
	b.ReportAllocs()
	for b.Loop() {
		hits := 0
		tr.Lookup(topic, func(string, int) bool { hits++; return true })
		if hits != 3 {
			b.Fatal(hits)
		}
	}
}

func BenchmarkTrieInsertRemove(b *testing.B) {
	var tr Trie[int]
	for i := 0; i < 100_000; i++ {
		tr.Insert(fmt.Sprint("devices/dev-", i, "/cmd/#"), "k", i)
	}
	b.ReportAllocs()
	for b.Loop() {
		tr.Insert("devices/dev-new/cmd/#", "k", 1)
		tr.Remove("devices/dev-new/cmd/#", "k")
	}
}

// BenchmarkRouteFanout routes one message to 5,000 sessions subscribed to
// its topic (offline, so QoS 0 is dropped after the lookup): the cost of
// the lookup and the grouping by session, per message.
func BenchmarkRouteFanout(b *testing.B) {
	s := NewServer(Config{})
	defer s.Close()
	for i := range 5000 {
		ss := newSession(strconv.Itoa(i))
		s.subs.Insert("fan/out", ss.key(), newSubscription(ss, "fan/out"))
	}
	m := newMsg(&Message{Topic: "fan/out", Payload: []byte("x")}, "", time.Now())
	b.ReportAllocs()
	for b.Loop() {
		if n := s.route(m, 0, 0); n != 5000 {
			b.Fatal(n)
		}
	}
}

// BenchmarkQoS0Publish handles a 64-byte QoS 0 PUBLISH on the publisher's
// conn and delivers it to the one subscriber of its topic over loopback
// TCP: the broker's work per message of bench/mqtt-rt.sh, minus the loops'
// reads (the write to the subscriber's socket is in it).
func BenchmarkQoS0Publish(b *testing.B) {
	br := startBroker(b, Config{PublishRate: -1, PublishBytesRate: -1})
	cl := connectOK(b, br.addr, Version311, "bench")
	cl.subscribe(1, QoS0, "devices/dev-123456/telemetry")
	go io.Copy(io.Discard, cl.c)
	in := AppendPublish(nil, Version311, &Publish{Topic: []byte("devices/dev-123456/telemetry"), Payload: benchPayload})
	p, err := decodeOne(Version311, in, nil)
	if err != nil {
		b.Fatal(err)
	}
	br.mu.RLock()
	sc := br.sessions.Get("bench").conn
	br.mu.RUnlock()
	pub := p.(*Publish)
	b.ReportAllocs()
	for b.Loop() {
		sc.onPublish(pub, len(in), time.Now().UnixNano())
	}
}

// BenchmarkQoS1RoundTrip is bench/mqtt-rt.sh's QoS 1 round trip on the
// broker's side, minus the loops' reads: a 64-byte QoS 1 PUBLISH handled
// on the publisher's conn (corked, as in its loop's read), delivered to
// the publisher's own subscription with the PUBACK in the same write over
// loopback TCP, then the client's PUBACK of the delivery.
func BenchmarkQoS1RoundTrip(b *testing.B) {
	br := startBroker(b, Config{PublishRate: -1, PublishBytesRate: -1})
	cl := connectOK(b, br.addr, Version311, "bench")
	cl.subscribe(1, QoS1, "devices/dev-123456/telemetry")
	go io.Copy(io.Discard, cl.c)
	in := AppendPublish(nil, Version311, &Publish{Topic: []byte("devices/dev-123456/telemetry"), QoS: QoS1, PacketID: 1, Payload: benchPayload})
	p, err := decodeOne(Version311, in, nil)
	if err != nil {
		b.Fatal(err)
	}
	br.mu.RLock()
	ss := br.sessions.Get("bench")
	br.mu.RUnlock()
	sc := ss.conn
	pub := p.(*Publish)
	b.ReportAllocs()
	for b.Loop() {
		sc.cork()
		sc.onPublish(pub, len(in), time.Now().UnixNano())
		sc.uncork()
		ss.mu.Lock()
		id := ss.fl.inflight[0].id
		ss.mu.Unlock()
		sc.onAck(&Ack{Kind: TypePuback, PacketID: id})
	}
}
