package mqtt

import (
	"bytes"
	"errors"
	"testing"
)

// packetCase is a packet as the specification lays it out, with the value
// it decodes to. canonical marks bytes the encoder produces from the value.
type packetCase struct {
	name      string
	v         Version
	in        string
	want      Packet
	canonical bool
}

var packetCases = []packetCase{
	// 3.1.1
	{"connect", Version311, "10 0e 00 04 'MQTT' 04 02 00 3c 00 02 'c1'",
		&Connect{Version: Version311, CleanStart: true, KeepAlive: 60, ClientID: []byte("c1")}, true},
	{"connect will user password", Version311,
		"10 1e 00 04 'MQTT' 04 ee 00 0a 00 02 'id' 00 03 'w/t' 00 03 'bye' 00 01 'u' 00 01 'p'",
		&Connect{Version: Version311, CleanStart: true, KeepAlive: 10, ClientID: []byte("id"),
			Will:        &Will{QoS: 1, Retain: true, Topic: []byte("w/t"), Payload: []byte("bye")},
			HasUsername: true, HasPassword: true, Username: []byte("u"), Password: []byte("p")}, true},
	{"connect empty client id and user", Version311, "10 0e 00 04 'MQTT' 04 80 00 00 00 00 00 00",
		&Connect{Version: Version311, HasUsername: true, ClientID: []byte{}, Username: []byte{}}, true},
	{"connack", Version311, "20 02 00 00", &Connack{}, true},
	{"connack session present", Version311, "20 02 01 00", &Connack{SessionPresent: true}, true},
	{"connack not authorized", Version311, "20 02 00 05", &Connack{ReasonCode: NotAuthorized}, true},
	{"connack bad version", Version311, "20 02 00 01", &Connack{ReasonCode: UnsupportedProtocolVersion}, true},
	{"connack server unavailable", Version311, "20 02 00 03", &Connack{ReasonCode: ServerUnavailable}, true},
	{"publish qos0", Version311, "30 0a 00 03 'a/b' 'hello'",
		&Publish{Topic: []byte("a/b"), Payload: []byte("hello")}, true},
	{"publish qos1 dup retain", Version311, "3b 0c 00 03 'a/b' 00 01 'hello'",
		&Publish{Dup: true, QoS: 1, Retain: true, Topic: []byte("a/b"), PacketID: 1, Payload: []byte("hello")}, true},
	{"publish qos2 empty payload", Version311, "34 07 00 03 'a/b' ff ff",
		&Publish{QoS: 2, Topic: []byte("a/b"), PacketID: 0xffff}, true},
	{"publish utf8 topic", Version311, "30 07 00 05 'caf' c3 a9",
		&Publish{Topic: []byte("café")}, true},
	{"puback", Version311, "40 02 00 01", &Ack{Kind: TypePuback, PacketID: 1}, true},
	{"pubrec", Version311, "50 02 00 02", &Ack{Kind: TypePubrec, PacketID: 2}, true},
	{"pubrel", Version311, "62 02 00 02", &Ack{Kind: TypePubrel, PacketID: 2}, true},
	{"pubcomp", Version311, "70 02 00 02", &Ack{Kind: TypePubcomp, PacketID: 2}, true},
	{"subscribe", Version311, "82 0c 00 0a 00 03 'a/+' 01 00 01 '#' 02",
		&Subscribe{PacketID: 10, Filters: []Subscription{{Filter: []byte("a/+"), QoS: 1}, {Filter: []byte("#"), QoS: 2}}}, true},
	{"suback", Version311, "90 04 00 0a 01 80",
		&Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS1, UnspecifiedError}}, true},
	{"unsubscribe", Version311, "a2 0c 00 0b 00 03 'a/b' 00 03 'c/#'",
		&Unsubscribe{PacketID: 11, Filters: [][]byte{[]byte("a/b"), []byte("c/#")}}, true},
	{"unsuback", Version311, "b0 02 00 0b", &Unsuback{PacketID: 11}, true},
	{"pingreq", Version311, "c0 00", &Pingreq{}, true},
	{"pingresp", Version311, "d0 00", &Pingresp{}, true},
	{"disconnect", Version311, "e0 00", &Disconnect{}, true},

	// 5.0
	{"connect", Version5, "10 17 00 04 'MQTT' 05 02 00 3c 08 11 00 00 00 78 21 00 14 00 02 'c1'",
		&Connect{Version: Version5, CleanStart: true, KeepAlive: 60, ClientID: []byte("c1"),
			Props: Properties{Present: setOf(PropSessionExpiry, PropReceiveMaximum), SessionExpiry: 120, ReceiveMaximum: 20}}, true},
	{"connect will and auth", Version5,
		"10 2f 00 04 'MQTT' 05 f4 00 00 0d 15 00 05 'SCRAM' 16 00 02 01 02 00 00" +
			" 0a 01 01 03 00 00 18 00 00 00 05 00 01 't' 00 00 00 01 'u' 00 00",
		&Connect{Version: Version5,
			Props:    Properties{Present: setOf(PropAuthMethod, PropAuthData), AuthMethod: []byte("SCRAM"), AuthData: []byte{1, 2}},
			ClientID: []byte{},
			Will: &Will{QoS: 2, Retain: true, Topic: []byte("t"), Payload: []byte{},
				Props: Properties{Present: setOf(PropPayloadFormat, PropWillDelay, PropContentType), PayloadFormat: 1, WillDelay: 5, ContentType: []byte{}}},
			HasUsername: true, HasPassword: true, Username: []byte("u"), Password: []byte{}}, true},
	{"connect password only", Version5, "10 0f 00 04 'MQTT' 05 40 00 00 00 00 00 00 00",
		&Connect{Version: Version5, ClientID: []byte{}, HasPassword: true, Password: []byte{}}, true},
	{"connack", Version5, "20 03 00 00 00", &Connack{}, true},
	{"connack props", Version5, "20 0c 00 00 09 12 00 01 'a' 22 00 0a 24 01",
		&Connack{Props: Properties{Present: setOf(PropAssignedClientID, PropTopicAliasMaximum, PropMaximumQoS),
			AssignedClientID: []byte("a"), TopicAliasMaximum: 10, MaximumQoS: 1}}, true},
	{"connack retain unavailable qos0", Version5, "20 07 00 00 04 24 00 25 00",
		&Connack{Props: Properties{Present: setOf(PropMaximumQoS, PropRetainAvailable)}}, true},
	{"connack refused", Version5, "20 03 00 87 00", &Connack{ReasonCode: NotAuthorized}, true},
	{"publish qos0", Version5, "30 0b 00 03 'a/b' 00 'hello'",
		&Publish{Topic: []byte("a/b"), Payload: []byte("hello")}, true},
	{"publish qos1 props", Version5, "32 19 00 03 'a/b' 00 0a 0f 02 00 00 00 3c 23 00 01 26 00 01 'k' 00 01 'v' 'hi'",
		&Publish{QoS: 1, Topic: []byte("a/b"), PacketID: 10, Payload: []byte("hi"),
			Props: Properties{Present: setOf(PropMessageExpiry, PropTopicAlias, PropUserProperty),
				MessageExpiry: 60, TopicAlias: 1, User: []UserProperty{{[]byte("k"), []byte("v")}}}}, true},
	{"publish alias only", Version5, "30 07 00 00 03 23 00 05 'x'",
		&Publish{Topic: []byte{}, Payload: []byte("x"),
			Props: Properties{Present: setOf(PropTopicAlias), TopicAlias: 5}}, true},
	{"publish subscription ids", Version5, "30 10 00 01 't' 0c 0b 01 0b ff ff ff 7f 26 00 00 00 00",
		&Publish{Topic: []byte("t"),
			Props: Properties{Present: setOf(PropSubscriptionID, PropUserProperty), SubscriptionIDs: []uint32{1, maxVarint},
				User: []UserProperty{{[]byte{}, []byte{}}}}}, false},
	{"publish request response", Version5, "30 14 00 01 't' 0e 01 01 03 00 01 'j' 08 00 01 'r' 09 00 01 07 '{}'",
		&Publish{Topic: []byte("t"), Payload: []byte("{}"),
			Props: Properties{Present: setOf(PropPayloadFormat, PropContentType, PropResponseTopic, PropCorrelationData),
				PayloadFormat: 1, ContentType: []byte("j"), ResponseTopic: []byte("r"), CorrelationData: []byte{7}}}, true},
	{"puback short", Version5, "40 02 00 01", &Ack{Kind: TypePuback, PacketID: 1}, true},
	{"puback code", Version5, "40 03 00 01 10", &Ack{Kind: TypePuback, PacketID: 1, ReasonCode: NoMatchingSubscribers}, true},
	{"puback long form", Version5, "40 04 00 01 00 00", &Ack{Kind: TypePuback, PacketID: 1}, false},
	{"puback props", Version5, "40 09 00 01 87 05 1f 00 02 'no'",
		&Ack{Kind: TypePuback, PacketID: 1, ReasonCode: NotAuthorized,
			Props: Properties{Present: setOf(PropReasonString), ReasonString: []byte("no")}}, true},
	{"pubrec", Version5, "50 03 00 02 80", &Ack{Kind: TypePubrec, PacketID: 2, ReasonCode: UnspecifiedError}, true},
	{"pubrel not found", Version5, "62 03 00 02 92", &Ack{Kind: TypePubrel, PacketID: 2, ReasonCode: PacketIdentifierNotFound}, true},
	{"pubcomp", Version5, "70 02 00 02", &Ack{Kind: TypePubcomp, PacketID: 2}, true},
	{"subscribe options", Version5, "82 0b 00 0a 02 0b 05 00 03 'a/b' 2d",
		&Subscribe{PacketID: 10, Props: Properties{Present: setOf(PropSubscriptionID), SubscriptionIDs: []uint32{5}},
			Filters: []Subscription{{Filter: []byte("a/b"), QoS: 1, NoLocal: true, RetainAsPublished: true, RetainHandling: 2}}}, true},
	{"subscribe shared", Version5, "82 12 00 01 00 00 0c '$share/g/a/#' 01",
		&Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("$share/g/a/#"), QoS: 1}}}, true},
	{"suback", Version5, "90 05 00 0a 00 01 8f",
		&Suback{PacketID: 10, ReasonCodes: []ReasonCode{GrantedQoS1, TopicFilterInvalid}}, true},
	{"unsubscribe", Version5, "a2 08 00 0b 00 00 03 'a/b'",
		&Unsubscribe{PacketID: 11, Filters: [][]byte{[]byte("a/b")}}, true},
	{"unsuback", Version5, "b0 05 00 0b 00 00 11",
		&Unsuback{PacketID: 11, ReasonCodes: []ReasonCode{Success, NoSubscriptionExisted}}, true},
	{"pingreq", Version5, "c0 00", &Pingreq{}, true},
	{"disconnect", Version5, "e0 00", &Disconnect{}, true},
	{"disconnect with will", Version5, "e0 01 04", &Disconnect{ReasonCode: DisconnectWithWillMessage}, true},
	{"disconnect session expiry 0", Version5, "e0 07 00 05 11 00 00 00 00",
		&Disconnect{Props: Properties{Present: setOf(PropSessionExpiry)}}, true},
	{"disconnect server moved", Version5, "e0 0a 9d 08 1c 00 05 'other'",
		&Disconnect{ReasonCode: ServerMoved, Props: Properties{Present: setOf(PropServerReference), ServerReference: []byte("other")}}, true},
	{"auth", Version5, "f0 00", &Auth{}, true},
	{"auth continue", Version5, "f0 0a 18 08 15 00 05 'SCRAM'",
		&Auth{ReasonCode: ContinueAuthentication, Props: Properties{Present: setOf(PropAuthMethod), AuthMethod: []byte("SCRAM")}}, true},
}

// decoderVersion is the Decoder.Version a case decodes with: CONNECT comes
// first, to a fresh decoder.
func (c *packetCase) decoderVersion() Version {
	if c.want.Type() == TypeConnect {
		return 0
	}
	return c.v
}

func TestDecodePackets(t *testing.T) {
	for _, c := range packetCases {
		t.Run(c.v.String()+"/"+c.name, func(t *testing.T) {
			in := bin(c.in)
			p, err := decodeOne(c.decoderVersion(), in, nil)
			if err != nil {
				t.Fatalf("decode % x: %v", in, err)
			}
			if !same(p, c.want) {
				t.Fatalf("decoded\n%s\nwant\n%s", show(p), show(c.want))
			}
			out := Append(nil, c.v, c.want)
			if c.canonical && !bytes.Equal(out, in) {
				t.Fatalf("encoded\n% x\nwant\n% x", out, in)
			}
			// Whatever the form decoded, the encoding decodes to the same.
			p2, err := decodeOne(c.decoderVersion(), out, nil)
			if err != nil {
				t.Fatalf("decode encoding % x: %v", out, err)
			}
			if !same(p2, c.want) {
				t.Fatalf("round trip\n%s\nwant\n%s", show(p2), show(c.want))
			}
		})
	}
}

// errorCase is a packet the decoder must refuse with code.
type errorCase struct {
	name string
	v    Version // the decoder's version; 0 for a CONNECT
	in   string
	code ReasonCode
}

var errorCases = []errorCase{
	{"reserved type", Version311, "00 00", MalformedPacket},
	{"reserved type 15 in 3.1.1", Version311, "f0 00", MalformedPacket},
	{"publish qos 3", Version311, "36 05 00 01 't' 00 01", MalformedPacket},
	{"publish dup qos 0", Version5, "38 04 00 01 't' 00", ProtocolError},
	{"pubrel flags", Version311, "60 02 00 01", MalformedPacket},
	{"subscribe flags", Version311, "80 06 00 01 00 01 't' 00", MalformedPacket},
	{"unsubscribe flags", Version311, "a0 05 00 01 00 01 't'", MalformedPacket},
	{"pingreq flags", Version311, "c1 00", MalformedPacket},
	{"puback flags", Version5, "48 02 00 01", MalformedPacket},
	{"remaining length 5 bytes", Version311, "30 ff ff ff ff 01", MalformedPacket},
	{"remaining length not minimal", Version311, "c0 80 00", MalformedPacket},
	{"too large", Version311, "30 ff ff ff 7f", PacketTooLarge},
	{"wildcard topic +", Version311, "30 05 00 03 'a/+'", TopicNameInvalid},
	{"wildcard topic #", Version5, "30 06 00 03 'a/#' 00", TopicNameInvalid},
	{"wildcard after utf8", Version311, "30 06 00 04 c3 a9 '/#'", TopicNameInvalid},
	{"topic U+0000", Version311, "30 05 00 03 'a' 00 'b'", MalformedPacket},
	{"topic U+0000 after utf8", Version311, "30 06 00 04 c3 a9 00 'b'", MalformedPacket},
	{"topic bad utf8", Version311, "30 04 00 02 c3 28", MalformedPacket},
	{"topic surrogate", Version311, "30 05 00 03 ed a0 80", MalformedPacket},
	{"topic overlong", Version311, "30 04 00 02 c0 af", MalformedPacket},
	{"topic longer than packet", Version311, "30 03 00 05 'a'", MalformedPacket},
	{"publish qos1 id 0", Version311, "32 07 00 03 'a/b' 00 00", ProtocolError},
	{"publish qos1 no id", Version311, "32 04 00 02 'ab'", MalformedPacket},
	{"empty topic 3.1.1", Version311, "30 02 00 00", TopicNameInvalid},
	{"empty topic without alias", Version5, "30 03 00 00 00", ProtocolError},
	{"no property length", Version5, "30 03 00 01 't'", MalformedPacket},
	{"property length past end", Version5, "30 05 00 01 't' 05 01", MalformedPacket},
	{"property value past end", Version5, "30 06 00 01 't' 02 02 00", MalformedPacket},
	{"duplicate property", Version5, "30 0e 00 01 't' 0a 02 00 00 00 01 02 00 00 00 02", ProtocolError},
	{"property not for publish", Version5, "30 09 00 01 't' 05 11 00 00 00 01", MalformedPacket},
	{"unknown property", Version5, "30 06 00 01 't' 02 07 00", MalformedPacket},
	{"topic alias 0", Version5, "30 07 00 01 't' 03 23 00 00", ProtocolError},
	{"payload format 2", Version5, "30 06 00 01 't' 02 01 02", ProtocolError},
	{"subscription id 0", Version5, "30 06 00 01 't' 02 0b 00", ProtocolError},
	{"subscription id 5 bytes", Version5, "30 0a 00 01 't' 06 0b ff ff ff ff 01", MalformedPacket},
	{"response topic wildcard", Version5, "30 09 00 01 't' 05 08 00 02 '#/'", TopicNameInvalid},
	{"user property bad utf8", Version5, "30 0b 00 01 't' 07 26 00 01 ff 00 01 'v'", MalformedPacket},
	{"content type U+0000", Version5, "30 08 00 01 't' 04 03 00 01 00", MalformedPacket},
	{"receive maximum 0 in connect", 0, "10 10 00 04 'MQTT' 05 00 00 00 03 21 00 00 00 00", ProtocolError},
	{"connect protocol name", 0, "10 0c 00 04 'MQTX' 04 00 00 00 00 00", UnsupportedProtocolVersion},
	{"connect mqtt 3.1", 0, "10 0e 00 06 'MQIsdp' 03 00 00 00 00 00", UnsupportedProtocolVersion},
	{"connect level 6", 0, "10 0c 00 04 'MQTT' 06 00 00 00 00 00", UnsupportedProtocolVersion},
	{"connect reserved flag", 0, "10 0c 00 04 'MQTT' 04 01 00 00 00 00", MalformedPacket},
	{"connect will qos without will", 0, "10 0c 00 04 'MQTT' 04 08 00 00 00 00", MalformedPacket},
	{"connect will retain without will", 0, "10 0c 00 04 'MQTT' 04 20 00 00 00 00", MalformedPacket},
	{"connect will qos 3", 0, "10 11 00 04 'MQTT' 04 1c 00 00 00 00 00 01 't' 00 00", MalformedPacket},
	{"connect will topic wildcard", 0, "10 11 00 04 'MQTT' 04 04 00 00 00 00 00 01 '#' 00 00", TopicNameInvalid},
	{"connect will topic empty", 0, "10 10 00 04 'MQTT' 04 04 00 00 00 00 00 00 00 00", TopicNameInvalid},
	{"connect password without user 3.1.1", 0, "10 0e 00 04 'MQTT' 04 40 00 00 00 00 00 00", MalformedPacket},
	{"connect missing password", 0, "10 0e 00 04 'MQTT' 04 c0 00 00 00 00 00 00", MalformedPacket},
	{"connect trailing bytes", 0, "10 0d 00 04 'MQTT' 04 00 00 00 00 00 ff", MalformedPacket},
	{"connect client id U+0000", 0, "10 0d 00 04 'MQTT' 04 00 00 00 00 01 00", MalformedPacket},
	{"connect auth data without method", 0, "10 10 00 04 'MQTT' 05 00 00 00 03 16 00 00 00 00", ProtocolError},
	{"connect with publish property", 0, "10 0f 00 04 'MQTT' 05 00 00 00 02 23 00 01 00 00", MalformedPacket},
	{"first packet not connect", 0, "c0 00", ProtocolError},
	{"second connect", Version311, "10 0c 00 04 'MQTT' 04 00 00 00 00 00", ProtocolError},
	{"auth in 3.1.1", Version311, "f0 00", MalformedPacket},
	{"subscribe no filters", Version311, "82 02 00 01", ProtocolError},
	{"subscribe no filters 5.0", Version5, "82 03 00 01 00", ProtocolError},
	{"subscribe id 0", Version311, "82 06 00 00 00 01 't' 00", ProtocolError},
	{"subscribe reserved options 3.1.1", Version311, "82 06 00 01 00 01 't' 04", MalformedPacket},
	{"subscribe reserved options 5.0", Version5, "82 07 00 01 00 00 01 't' 40", MalformedPacket},
	{"subscribe qos 3", Version311, "82 06 00 01 00 01 't' 03", MalformedPacket},
	{"subscribe retain handling 3", Version5, "82 07 00 01 00 00 01 't' 30", ProtocolError},
	{"subscribe shared no local", Version5, "82 12 00 01 00 00 0c '$share/g/a/b' 04", ProtocolError},
	{"subscribe missing options", Version311, "82 05 00 01 00 01 't'", MalformedPacket},
	{"subscribe two subscription ids", Version5, "82 0b 00 01 04 0b 01 0b 02 00 01 't' 00", ProtocolError},
	{"subscribe filter bad utf8", Version311, "82 06 00 01 00 01 fe 00", MalformedPacket},
	{"unsubscribe no filters", Version311, "a2 02 00 01", ProtocolError},
	{"unsubscribe truncated filter", Version311, "a2 05 00 01 00 05 't'", MalformedPacket},
	{"puback id 0", Version311, "40 02 00 00", ProtocolError},
	{"puback long 3.1.1", Version311, "40 03 00 01 00", MalformedPacket},
	{"puback short", Version311, "40 01 00", MalformedPacket},
	{"puback bad code", Version5, "40 03 00 01 01", ProtocolError},
	{"pubrel bad code", Version5, "62 03 00 01 10", ProtocolError},
	{"puback trailing", Version5, "40 05 00 01 00 00 00", MalformedPacket},
	{"pingreq with body", Version311, "c0 01 00", MalformedPacket},
	{"disconnect with body 3.1.1", Version311, "e0 01 00", MalformedPacket},
	{"disconnect bad code", Version5, "e0 01 01", ProtocolError},
	{"disconnect publish property", Version5, "e0 05 00 03 23 00 01", MalformedPacket},
	{"auth bad code", Version5, "f0 01 04", ProtocolError},
	{"connack reserved flags", Version311, "20 02 02 00", MalformedPacket},
	{"connack return code 6", Version311, "20 02 00 06", ProtocolError},
	{"connack session present refused", Version5, "20 03 01 80 00", ProtocolError},
	{"connack max qos 2", Version5, "20 05 00 00 02 24 02", ProtocolError},
	{"connack receive maximum 0", Version5, "20 06 00 00 03 21 00 00", ProtocolError},
	{"connack maximum packet size 0", Version5, "20 08 00 00 05 27 00 00 00 00", ProtocolError},
	{"connack retain available 2", Version5, "20 05 00 00 02 25 02", ProtocolError},
	{"suback bad code", Version311, "90 03 00 01 87", ProtocolError},
	{"suback no codes", Version311, "90 02 00 01", ProtocolError},
	{"unsuback no codes", Version5, "b0 03 00 01 00", ProtocolError},
	{"unsuback long 3.1.1", Version311, "b0 03 00 01 00", MalformedPacket},
}

func TestDecodeErrors(t *testing.T) {
	for _, c := range errorCases {
		t.Run(c.name, func(t *testing.T) {
			in := bin(c.in)
			d := Decoder{Version: c.v}
			n, p, err := d.Decode(in, nil)
			var e *Error
			if !errors.As(err, &e) {
				t.Fatalf("Decode(% x) = %d, %s, %v; want error %v", in, n, show(p), err, c.code)
			}
			if e.Code != c.code {
				t.Fatalf("Decode(% x): %v; want code %v", in, err, c.code)
			}
			if n != 0 || p != nil {
				t.Fatalf("Decode(% x) returned %d, %s with the error", in, n, show(p))
			}
		})
	}
}

func TestDecodeLimits(t *testing.T) {
	filters := bin("82 0e 00 01 00 01 'a' 00 00 01 'b' 00 00 01 'c' 00")
	if _, err := decodeOne(Version311, filters, &Limits{MaxTopicFilters: 3}); err != nil {
		t.Fatalf("3 filters, limit 3: %v", err)
	}
	_, err := decodeOne(Version311, filters, &Limits{MaxTopicFilters: 2})
	if e := (*Error)(nil); !errors.As(err, &e) || e.Code != QuotaExceeded {
		t.Fatalf("3 filters, limit 2: %v; want quota_exceeded", err)
	}
	unsub := bin("a2 0b 00 01 00 01 'a' 00 01 'b' 00 01 'c'")
	if _, err := decodeOne(Version311, unsub, &Limits{MaxTopicFilters: 2}); err == nil {
		t.Fatal("unsubscribe 3 filters, limit 2: no error")
	}

	user := bin("30 12 00 01 't' 0e 26 00 01 'a' 00 01 'b' 26 00 01 'c' 00 01 'd'")
	if _, err := decodeOne(Version5, user, &Limits{MaxUserProperties: 2}); err != nil {
		t.Fatalf("2 user properties, limit 2: %v", err)
	}
	_, err = decodeOne(Version5, user, &Limits{MaxUserProperties: 1})
	if e := (*Error)(nil); !errors.As(err, &e) || e.Code != QuotaExceeded {
		t.Fatalf("2 user properties, limit 1: %v; want quota_exceeded", err)
	}

	// The size limit counts the whole packet and applies as soon as the
	// fixed header is complete.
	pub := AppendPublish(nil, Version311, &Publish{Topic: []byte("t"), Payload: make([]byte, 200)})
	if _, err := decodeOne(Version311, pub, &Limits{MaxPacketSize: len(pub)}); err != nil {
		t.Fatalf("packet of exactly the limit: %v", err)
	}
	d := Decoder{Version: Version311}
	if _, _, err := d.Decode(pub[:3], &Limits{MaxPacketSize: len(pub) - 1}); err == nil {
		t.Fatal("packet over the limit: no error from its fixed header")
	}
	// Past the protocol's maximum a limit is clamped.
	if l := (&Limits{MaxPacketSize: 1 << 30}).resolve(); l.packetSize != MaxPacketSizeLimit {
		t.Fatalf("clamped limit = %d", l.packetSize)
	}
}

// TestDecodeVersionFromConnect checks that CONNECT sets the version and that
// later packets decode by it.
func TestDecodeVersionFromConnect(t *testing.T) {
	for _, v := range []Version{Version311, Version5} {
		in := AppendConnect(nil, &Connect{Version: v, ClientID: []byte("x")})
		in = AppendPublish(in, v, &Publish{Topic: []byte("t"), Payload: []byte("p")})
		var d Decoder
		n, p, err := d.Decode(in, nil)
		if err != nil || p.Type() != TypeConnect || d.Version != v {
			t.Fatalf("%v: CONNECT: %v %v, version %v", v, p, err, d.Version)
		}
		_, p, err = d.Decode(in[n:], nil)
		if err != nil || string(p.(*Publish).Payload) != "p" {
			t.Fatalf("%v: PUBLISH: %s %v", v, show(p), err)
		}
	}
	// A malformed 5.0 CONNECT still tells the version to refuse it in.
	var d Decoder
	_, _, err := d.Decode(bin("10 0c 00 04 'MQTT' 05 01 00 00 00 00 00"), nil)
	if err == nil || d.Version != Version5 {
		t.Fatalf("malformed CONNECT: %v, version %v", err, d.Version)
	}
}

func TestPacketSize(t *testing.T) {
	for _, c := range []struct {
		in   string
		size int
		err  bool
	}{
		{"", 0, false}, {"30", 0, false}, {"30 00", 2, false}, {"30 7f", 129, false},
		{"30 80", 0, false}, {"30 80 01", 131, false}, {"30 ff ff ff 7f", 268435460, false},
		{"30 ff ff ff ff", 0, true}, {"30 80 00", 0, true},
	} {
		size, err := PacketSize(bin(c.in))
		if size != c.size || (err != nil) != c.err {
			t.Errorf("PacketSize(%s) = %d, %v; want %d, error %v", c.in, size, err, c.size, c.err)
		}
	}
}

func TestReasonCodeString(t *testing.T) {
	for c, want := range map[ReasonCode]string{
		Success:                           "success",
		NotAuthorized:                     "not_authorized",
		PacketTooLarge:                    "packet_too_large",
		MalformedPacket:                   "malformed_packet",
		ProtocolError:                     "protocol_error",
		TopicNameInvalid:                  "topic_name_invalid",
		GrantedQoS2:                       "granted_qos_2",
		WildcardSubscriptionsNotSupported: "wildcard_subscriptions_not_supported",
		0x03:                              "reason_0x03",
		0xff:                              "reason_0xff",
	} {
		if got := c.String(); got != want {
			t.Errorf("ReasonCode(%#x).String() = %q; want %q", byte(c), got, want)
		}
	}
	if Success.IsError() || !UnspecifiedError.IsError() {
		t.Error("IsError")
	}
	e := &Error{PacketTooLarge, "x"}
	if e.Error() != "mqtt: packet_too_large: x" {
		t.Errorf("Error() = %q", e.Error())
	}
	if TypePubrel.String() != "pubrel" || Version5.String() != "5.0" || Version311.String() != "3.1.1" {
		t.Error("Type or Version String")
	}
	if PropTopicAlias.String() != "topic_alias" || PropID(0x04).String() != "property_4" {
		t.Error("PropID String")
	}
}
