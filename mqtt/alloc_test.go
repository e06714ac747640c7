//go:build !race

package mqtt

import "testing"

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
