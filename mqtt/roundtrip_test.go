package mqtt

import (
	"bytes"
	"fmt"
	"testing"
)

// fullProps returns properties with every property of allowed set, some of
// them to zero values that only Present carries.
func fullProps(allowed PropSet) Properties {
	p := Properties{
		PayloadFormat:        1,
		MessageExpiry:        3600,
		ContentType:          []byte("text/plain"),
		ResponseTopic:        []byte("resp/1"),
		CorrelationData:      []byte{1, 2, 3},
		SubscriptionIDs:      []uint32{1, 300, maxVarint},
		SessionExpiry:        0, // present, zero
		AssignedClientID:     []byte("auto-1"),
		ServerKeepAlive:      30,
		AuthMethod:           []byte("SCRAM-SHA-1"),
		AuthData:             []byte{0, 1},
		RequestProblemInfo:   false, // present, zero
		WillDelay:            10,
		RequestResponseInfo:  true,
		ResponseInfo:         []byte("ri"),
		ServerReference:      []byte("srv:1883"),
		ReasonString:         []byte("because"),
		ReceiveMaximum:       100,
		TopicAliasMaximum:    10,
		TopicAlias:           7,
		MaximumQoS:           0, // present, zero
		RetainAvailable:      false,
		User:                 []UserProperty{{[]byte("k"), []byte("v")}, {[]byte("k"), []byte("v2")}, {[]byte("é"), []byte{}}},
		MaximumPacketSize:    1 << 20,
		WildcardSubAvailable: true,
		SubIDAvailable:       false,
		SharedSubAvailable:   true,
	}
	// Keep only the allowed properties.
	var q Properties
	q.Present = allowed
	for id := PropID(1); id <= maxPropID; id++ {
		if !allowed.Has(id) {
			continue
		}
		switch id {
		case PropPayloadFormat:
			q.PayloadFormat = p.PayloadFormat
		case PropMessageExpiry:
			q.MessageExpiry = p.MessageExpiry
		case PropContentType:
			q.ContentType = p.ContentType
		case PropResponseTopic:
			q.ResponseTopic = p.ResponseTopic
		case PropCorrelationData:
			q.CorrelationData = p.CorrelationData
		case PropSubscriptionID:
			q.SubscriptionIDs = p.SubscriptionIDs
		case PropAssignedClientID:
			q.AssignedClientID = p.AssignedClientID
		case PropServerKeepAlive:
			q.ServerKeepAlive = p.ServerKeepAlive
		case PropAuthMethod:
			q.AuthMethod = p.AuthMethod
		case PropAuthData:
			q.AuthData = p.AuthData
		case PropWillDelay:
			q.WillDelay = p.WillDelay
		case PropRequestResponseInfo:
			q.RequestResponseInfo = p.RequestResponseInfo
		case PropResponseInfo:
			q.ResponseInfo = p.ResponseInfo
		case PropServerReference:
			q.ServerReference = p.ServerReference
		case PropReasonString:
			q.ReasonString = p.ReasonString
		case PropReceiveMaximum:
			q.ReceiveMaximum = p.ReceiveMaximum
		case PropTopicAliasMaximum:
			q.TopicAliasMaximum = p.TopicAliasMaximum
		case PropTopicAlias:
			q.TopicAlias = p.TopicAlias
		case PropUserProperty:
			q.User = p.User
		case PropMaximumPacketSize:
			q.MaximumPacketSize = p.MaximumPacketSize
		case PropWildcardSubAvailable:
			q.WildcardSubAvailable = p.WildcardSubAvailable
		case PropSharedSubAvailable:
			q.SharedSubAvailable = p.SharedSubAvailable
		}
	}
	return q
}

// roundTrip is a packet to encode for v, and what decoding the encoding
// must give (the packet itself if want is nil).
type roundTrip struct {
	v    Version
	p    Packet
	want Packet
}

func roundTrips() []roundTrip {
	subProps := fullProps(subscribeProps)
	subProps.SubscriptionIDs = []uint32{42}
	rt := []roundTrip{}
	for _, v := range []Version{Version311, Version5} {
		v5 := v == Version5
		props := func(allowed PropSet) Properties {
			if v5 {
				return fullProps(allowed)
			}
			return Properties{}
		}
		code := func(c5, c3 ReasonCode) ReasonCode {
			if v5 {
				return c5
			}
			return c3
		}
		willProps := props(willProps)
		sp := Properties{}
		if v5 {
			sp = subProps
		}
		rt = append(rt,
			roundTrip{v, &Connect{Version: v, CleanStart: true, KeepAlive: 65535, Props: props(connectProps),
				ClientID: []byte("client-1"), Will: &Will{QoS: 2, Retain: true, Props: willProps,
					Topic: []byte("will/topic"), Payload: []byte{0, 0xff}},
				HasUsername: true, HasPassword: true, Username: []byte("user"), Password: []byte{0, 1, 2}}, nil},
			roundTrip{v, &Connect{Version: v, ClientID: []byte{}, Props: props(0)}, nil},
			roundTrip{v, &Connack{SessionPresent: true, Props: props(connackProps)}, nil},
			roundTrip{v, &Connack{ReasonCode: BadUserNameOrPassword}, nil},
			roundTrip{v, &Connack{ReasonCode: ServerBusy}, &Connack{ReasonCode: code(ServerBusy, ServerUnavailable)}},
			roundTrip{v, &Publish{QoS: 1, Retain: true, Dup: true, Topic: []byte("a/b/c"), PacketID: 77,
				Props: props(publishProps), Payload: bytes.Repeat([]byte("x"), 300)}, nil},
			roundTrip{v, &Publish{QoS: 2, Topic: []byte("ü/$"), PacketID: 1, Payload: []byte{}}, nil},
			roundTrip{v, &Subscribe{PacketID: 9, Props: sp, Filters: []Subscription{
				{Filter: []byte("a/+/c"), QoS: 2},
				{Filter: []byte("#"), QoS: 1},
			}}, nil},
			roundTrip{v, &Suback{PacketID: 9, Props: props(ackProps), ReasonCodes: []ReasonCode{GrantedQoS2, GrantedQoS0, UnspecifiedError}}, nil},
			roundTrip{v, &Suback{PacketID: 9, ReasonCodes: []ReasonCode{NotAuthorized}},
				&Suback{PacketID: 9, ReasonCodes: []ReasonCode{code(NotAuthorized, UnspecifiedError)}}},
			roundTrip{v, &Unsubscribe{PacketID: 10, Props: props(unsubscribeProps), Filters: [][]byte{[]byte("a/#"), []byte("$share/g/x")}}, nil},
			roundTrip{v, &Pingreq{}, nil},
			roundTrip{v, &Pingresp{}, nil},
			roundTrip{v, &Disconnect{}, nil},
		)
		for _, kind := range []Type{TypePuback, TypePubrec, TypePubrel, TypePubcomp} {
			rc := UnspecifiedError
			if kind == TypePubrel || kind == TypePubcomp {
				rc = PacketIdentifierNotFound
			}
			rt = append(rt,
				roundTrip{v, &Ack{Kind: kind, PacketID: 65535}, nil},
				roundTrip{v, &Ack{Kind: kind, PacketID: 1, ReasonCode: rc, Props: props(ackProps)},
					&Ack{Kind: kind, PacketID: 1, ReasonCode: code(rc, Success), Props: props(ackProps)}},
			)
		}
		if v5 {
			rt = append(rt,
				roundTrip{v, &Subscribe{PacketID: 9, Filters: []Subscription{
					{Filter: []byte("a"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2},
					{Filter: []byte("$share/g/a"), RetainHandling: 1},
				}}, nil},
				roundTrip{v, &Unsuback{PacketID: 10, Props: props(ackProps), ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}, nil},
				roundTrip{v, &Disconnect{ReasonCode: SessionTakenOver, Props: props(disconnectProps)}, nil},
				roundTrip{v, &Disconnect{ReasonCode: DisconnectWithWillMessage}, nil},
				roundTrip{v, &Auth{ReasonCode: ReAuthenticate, Props: props(authProps)}, nil},
				roundTrip{v, &Auth{}, nil},
			)
		} else {
			rt = append(rt,
				roundTrip{v, &Subscribe{PacketID: 9, Filters: []Subscription{
					{Filter: []byte("a"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}},
					&Subscribe{PacketID: 9, Filters: []Subscription{{Filter: []byte("a"), QoS: 1}}}},
				roundTrip{v, &Unsuback{PacketID: 10, ReasonCodes: []ReasonCode{NoSubscriptionExisted}}, &Unsuback{PacketID: 10}},
				roundTrip{v, &Disconnect{ReasonCode: SessionTakenOver, Props: fullProps(disconnectProps)}, &Disconnect{}},
			)
		}
	}
	return rt
}

// TestRoundTrip encodes every packet for both versions and decodes it back.
func TestRoundTrip(t *testing.T) {
	for i, c := range roundTrips() {
		t.Run(fmt.Sprintf("%v/%d/%v", c.v, i, c.p.Type()), func(t *testing.T) {
			want := c.want
			if want == nil {
				want = c.p
			}
			dv := c.v
			if c.p.Type() == TypeConnect {
				dv = 0
			}
			enc := Append([]byte("prefix"), c.v, c.p)
			if string(enc[:6]) != "prefix" {
				t.Fatal("Append overwrote dst")
			}
			enc = enc[6:]
			if size, _ := PacketSize(enc); size != len(enc) {
				t.Fatalf("PacketSize = %d, encoded %d bytes", size, len(enc))
			}
			got, err := decodeOne(dv, enc, nil)
			if err != nil {
				t.Fatalf("decode % x: %v", enc, err)
			}
			if !same(got, want) {
				t.Fatalf("decoded\n%s\nwant\n%s\nfrom % x", show(got), show(want), enc)
			}
			if again := Append(nil, c.v, got); !bytes.Equal(again, enc) {
				t.Fatalf("re-encoded\n% x\nwant\n% x", again, enc)
			}
		})
	}
}

// stream returns, for a version, the packets of packetCases after a
// CONNECT, as one byte stream, with the packets each decodes to.
func stream(v Version) ([]byte, []Packet) {
	in := AppendConnect(nil, &Connect{Version: v, ClientID: []byte("s")})
	want := []Packet{&Connect{Version: v, ClientID: []byte("s")}}
	for _, c := range packetCases {
		if c.v != v || c.want.Type() == TypeConnect {
			continue
		}
		in = append(in, bin(c.in)...)
		want = append(want, c.want)
	}
	return in, want
}

// feed decodes the stream arriving in the given chunks, as an event loop
// would: the unconsumed bytes stay in buf and the next chunk is appended.
func feed(t *testing.T, chunks [][]byte, want []Packet) {
	t.Helper()
	var d Decoder
	var buf []byte
	got := 0
	for _, c := range chunks {
		buf = append(buf, c...)
		for {
			n, p, err := d.Decode(buf, nil)
			if err != nil {
				t.Fatalf("packet %d: %v", got, err)
			}
			if n == 0 {
				if p != nil {
					t.Fatal("packet returned with n == 0")
				}
				break
			}
			if got >= len(want) {
				t.Fatalf("extra packet %s", show(p))
			}
			if !same(p, want[got]) {
				t.Fatalf("packet %d:\n%s\nwant\n%s", got, show(p), show(want[got]))
			}
			got++
			buf = buf[n:]
		}
	}
	if got != len(want) || len(buf) != 0 {
		t.Fatalf("decoded %d packets of %d, %d bytes left", got, len(want), len(buf))
	}
}

// TestSplit feeds the packets byte by byte and in two parts at every split
// point: a packet is returned exactly when its last byte arrives.
func TestSplit(t *testing.T) {
	for _, v := range []Version{Version311, Version5} {
		in, want := stream(v)
		t.Run(v.String(), func(t *testing.T) {
			var bytewise [][]byte
			for i := range in {
				bytewise = append(bytewise, in[i:i+1])
			}
			feed(t, bytewise, want)
			for k := 0; k <= len(in); k++ {
				feed(t, [][]byte{in[:k], in[k:]}, want)
			}
		})
	}
}

// TestSplitPrefixes checks each packet alone: every strict prefix needs
// more bytes, and the whole packet decodes.
func TestSplitPrefixes(t *testing.T) {
	for _, c := range packetCases {
		in := bin(c.in)
		for k := 0; k < len(in); k++ {
			d := Decoder{Version: c.decoderVersion()}
			if n, p, err := d.Decode(in[:k], nil); n != 0 || p != nil || err != nil {
				t.Fatalf("%v %s: prefix %d of %d: %d, %s, %v", c.v, c.name, k, len(in), n, show(p), err)
			}
		}
	}
}

// TestSharedScratch decodes two connections of different versions with one
// Scratch, as the decoders of one event loop do.
func TestSharedScratch(t *testing.T) {
	var s Scratch
	d4 := Decoder{Version: Version311, Scratch: &s}
	d5 := Decoder{Version: Version5, Scratch: &s}
	p5 := AppendPublish(nil, Version5, &Publish{Topic: []byte("t"), Props: fullProps(publishProps)})
	p4 := AppendPublish(nil, Version311, &Publish{Topic: []byte("t"), Payload: []byte("x")})
	for i := 0; i < 2; i++ {
		if _, p, err := d5.Decode(p5, nil); err != nil || len(p.(*Publish).Props.User) != 3 {
			t.Fatalf("5.0: %s %v", show(p), err)
		}
		_, p, err := d4.Decode(p4, nil)
		if err != nil || !same(p, &Publish{Topic: []byte("t"), Payload: []byte("x")}) {
			t.Fatalf("3.1.1 after 5.0 in the same scratch: %s %v", show(p), err)
		}
	}
}

// TestPropsSizeEachField sets one property at a time, without Present, and
// checks that the encoder sends it, for every packet's property set (the
// size has fast paths for the hot packets).
func TestPropsSizeEachField(t *testing.T) {
	zeroInFull := setOf(PropSessionExpiry, PropRequestProblemInfo, PropMaximumQoS,
		PropRetainAvailable, PropSubIDAvailable)
	for _, allowed := range []PropSet{connectProps, willProps, connackProps, publishProps,
		ackProps, subscribeProps, unsubscribeProps, disconnectProps, authProps} {
		for id := PropID(1); id <= maxPropID; id++ {
			if !allowed.Has(id) || zeroInFull.Has(id) {
				continue
			}
			p := fullProps(setOf(id))
			p.Present = 0
			if p.size(allowed) == 0 {
				t.Errorf("%v set alone is not encoded", id)
			}
			if p.size(allowed&^setOf(id)) != 0 {
				t.Errorf("%v is encoded where it is not allowed", id)
			}
		}
	}
}
