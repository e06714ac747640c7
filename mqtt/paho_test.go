package mqtt

import (
	"bytes"
	"testing"

	"github.com/eclipse/paho.mqtt.golang/packets"
)

// pahoPairs are the same 3.1.1 packets as this package's values and as
// Eclipse Paho's (github.com/eclipse/paho.mqtt.golang/packets).
func pahoPairs() []struct {
	mine Packet
	paho packets.ControlPacket
} {
	type pair = struct {
		mine Packet
		paho packets.ControlPacket
	}
	var ps []pair
	add := func(mine Packet, paho packets.ControlPacket) { ps = append(ps, pair{mine, paho}) }

	c := packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion, c.CleanSession, c.Keepalive = "MQTT", 4, true, 30
	c.ClientIdentifier = "paho-1"
	c.WillFlag, c.WillQos, c.WillRetain, c.WillTopic, c.WillMessage = true, 1, true, "dev/paho-1/status", []byte("offline")
	c.UsernameFlag, c.Username, c.PasswordFlag, c.Password = true, "user", true, []byte("secret")
	add(&Connect{Version: Version311, CleanStart: true, KeepAlive: 30, ClientID: []byte("paho-1"),
		Will:        &Will{QoS: 1, Retain: true, Topic: []byte("dev/paho-1/status"), Payload: []byte("offline")},
		HasUsername: true, Username: []byte("user"), HasPassword: true, Password: []byte("secret")}, c)

	c = packets.NewControlPacket(packets.Connect).(*packets.ConnectPacket)
	c.ProtocolName, c.ProtocolVersion, c.ClientIdentifier = "MQTT", 4, ""
	add(&Connect{Version: Version311, ClientID: []byte{}}, c)

	ca := packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
	ca.SessionPresent = true
	add(&Connack{SessionPresent: true}, ca)
	ca = packets.NewControlPacket(packets.Connack).(*packets.ConnackPacket)
	ca.ReturnCode = packets.ErrRefusedNotAuthorised
	add(&Connack{ReasonCode: NotAuthorized}, ca)

	for _, qos := range []byte{0, 1, 2} {
		p := packets.NewControlPacket(packets.Publish).(*packets.PublishPacket)
		p.Qos, p.Retain, p.TopicName, p.Payload = qos, qos == 1, "a/b/c", bytes.Repeat([]byte{qos}, 200)
		id := uint16(0)
		if qos > 0 {
			id = 1000 + uint16(qos)
			p.MessageID, p.Dup = id, qos == 2
		}
		add(&Publish{QoS: QoS(qos), Retain: qos == 1, Dup: qos == 2, Topic: []byte("a/b/c"), PacketID: id,
			Payload: bytes.Repeat([]byte{qos}, 200)}, p)
	}

	pa := packets.NewControlPacket(packets.Puback).(*packets.PubackPacket)
	pa.MessageID = 7
	add(&Ack{Kind: TypePuback, PacketID: 7}, pa)
	prec := packets.NewControlPacket(packets.Pubrec).(*packets.PubrecPacket)
	prec.MessageID = 8
	add(&Ack{Kind: TypePubrec, PacketID: 8}, prec)
	prel := packets.NewControlPacket(packets.Pubrel).(*packets.PubrelPacket)
	prel.MessageID = 8
	add(&Ack{Kind: TypePubrel, PacketID: 8}, prel)
	pc := packets.NewControlPacket(packets.Pubcomp).(*packets.PubcompPacket)
	pc.MessageID = 8
	add(&Ack{Kind: TypePubcomp, PacketID: 8}, pc)

	s := packets.NewControlPacket(packets.Subscribe).(*packets.SubscribePacket)
	s.MessageID, s.Topics, s.Qoss = 9, []string{"a/+", "b/#", "$share/g/c"}, []byte{0, 1, 2}
	add(&Subscribe{PacketID: 9, Filters: []Subscription{{Filter: []byte("a/+")}, {Filter: []byte("b/#"), QoS: 1},
		{Filter: []byte("$share/g/c"), QoS: 2}}}, s)
	sa := packets.NewControlPacket(packets.Suback).(*packets.SubackPacket)
	sa.MessageID, sa.ReturnCodes = 9, []byte{0, 1, 0x80}
	add(&Suback{PacketID: 9, ReasonCodes: []ReasonCode{GrantedQoS0, GrantedQoS1, UnspecifiedError}}, sa)

	u := packets.NewControlPacket(packets.Unsubscribe).(*packets.UnsubscribePacket)
	u.MessageID, u.Topics = 10, []string{"a/+", "b/#"}
	add(&Unsubscribe{PacketID: 10, Filters: [][]byte{[]byte("a/+"), []byte("b/#")}}, u)
	ua := packets.NewControlPacket(packets.Unsuback).(*packets.UnsubackPacket)
	ua.MessageID = 10
	add(&Unsuback{PacketID: 10}, ua)

	add(&Pingreq{}, packets.NewControlPacket(packets.Pingreq))
	add(&Pingresp{}, packets.NewControlPacket(packets.Pingresp))
	add(&Disconnect{}, packets.NewControlPacket(packets.Disconnect))
	return ps
}

// TestPahoInterop cross-checks the 3.1.1 codec with Eclipse Paho's: both
// encode a packet to the same bytes, this decoder reads Paho's encoding,
// and Paho reads this encoder's.
func TestPahoInterop(t *testing.T) {
	for _, pair := range pahoPairs() {
		name := pair.mine.Type().String()
		var buf bytes.Buffer
		if err := pair.paho.Write(&buf); err != nil {
			t.Fatalf("%s: paho write: %v", name, err)
		}
		pahoBytes := buf.Bytes()
		mine := Append(nil, Version311, pair.mine)
		if !bytes.Equal(mine, pahoBytes) {
			t.Errorf("%s: encoded\n% x\npaho\n% x", name, mine, pahoBytes)
		}

		dv := Version311
		if pair.mine.Type() == TypeConnect {
			dv = 0
		}
		got, err := decodeOne(dv, pahoBytes, nil)
		if err != nil {
			t.Fatalf("%s: decode paho's % x: %v", name, pahoBytes, err)
		}
		if !same(got, pair.mine) {
			t.Errorf("%s: decoded paho's as\n%s\nwant\n%s", name, show(got), show(pair.mine))
		}

		pp, err := packets.ReadPacket(bytes.NewReader(mine))
		if err != nil {
			t.Fatalf("%s: paho read % x: %v", name, mine, err)
		}
		buf.Reset()
		if err := pp.Write(&buf); err != nil {
			t.Fatalf("%s: paho rewrite: %v", name, err)
		}
		if !bytes.Equal(buf.Bytes(), mine) {
			t.Errorf("%s: paho read\n% x\nas %v", name, mine, pp)
		}
	}
}
