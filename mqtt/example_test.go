package mqtt_test

import (
	"errors"
	"fmt"
	"sort"

	"github.com/warrenhq/warren/mqtt"
)

// A connection's bytes arrive in pieces; the decoder takes whole packets
// from the front of what has been read, and the caller keeps the rest.
func ExampleDecoder_Decode() {
	stream := mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version5, CleanStart: true,
		KeepAlive: 30, ClientID: []byte("dev-1")})
	stream = mqtt.AppendPublish(stream, mqtt.Version5, &mqtt.Publish{QoS: 1, PacketID: 1,
		Topic: []byte("devices/dev-1/telemetry"), Payload: []byte(`{"t":21.5}`)})

	var d mqtt.Decoder // one per connection; expects CONNECT first
	var buf []byte     // the connection's unconsumed input
	for _, chunk := range [][]byte{stream[:10], stream[10:40], stream[40:]} {
		buf = append(buf, chunk...)
		for {
			n, p, err := d.Decode(buf, nil)
			if err != nil {
				fmt.Println("close:", err)
				return
			}
			if n == 0 {
				break // wait for more bytes
			}
			switch p := p.(type) {
			case *mqtt.Connect:
				fmt.Printf("CONNECT %s, MQTT %v, keep-alive %ds\n", p.ClientID, p.Version, p.KeepAlive)
			case *mqtt.Publish:
				// p.Topic and p.Payload are valid until the next Decode.
				fmt.Printf("PUBLISH %s qos %d: %s\n", p.Topic, p.QoS, p.Payload)
			}
			buf = buf[n:]
		}
	}
	// Output:
	// CONNECT dev-1, MQTT 5.0, keep-alive 30s
	// PUBLISH devices/dev-1/telemetry qos 1: {"t":21.5}
}

// A refused packet comes with the reason code to answer with.
func ExampleError() {
	d := mqtt.Decoder{Version: mqtt.Version5}
	publishToWildcard := []byte{0x30, 0x06, 0x00, 0x03, 'a', '/', '#', 0x00}
	_, _, err := d.Decode(publishToWildcard, nil)
	var e *mqtt.Error
	if errors.As(err, &e) {
		disconnect := mqtt.AppendDisconnect(nil, d.Version, &mqtt.Disconnect{ReasonCode: e.Code})
		fmt.Printf("%v: send % x and close\n", e.Code, disconnect)
	}
	// Output:
	// topic_name_invalid: send e0 01 90 and close
}

func ExampleAppendPublish() {
	p := &mqtt.Publish{QoS: 1, PacketID: 10, Topic: []byte("a/b"), Payload: []byte("hi")}
	fmt.Printf("3.1.1: % x\n", mqtt.AppendPublish(nil, mqtt.Version311, p))
	p.Props.MessageExpiry = 60
	fmt.Printf("5.0:   % x\n", mqtt.AppendPublish(nil, mqtt.Version5, p))
	// Output:
	// 3.1.1: 32 09 00 03 61 2f 62 00 0a 68 69
	// 5.0:   32 0f 00 03 61 2f 62 00 0a 05 02 00 00 00 3c 68 69
}

func ExampleMatch() {
	fmt.Println(mqtt.Match("sport/tennis/+", "sport/tennis/player1"))
	fmt.Println(mqtt.Match("sport/#", "sport"))
	fmt.Println(mqtt.Match("#", "$SYS/uptime"))
	fmt.Println(mqtt.Match("$SYS/#", "$SYS/uptime"))
	// Output:
	// true
	// true
	// false
	// true
}

func ExampleParseShared() {
	group, filter, ok := mqtt.ParseShared("$share/workers/jobs/+")
	fmt.Println(group, filter, ok)
	_, _, ok = mqtt.ParseShared("jobs/+")
	fmt.Println(ok)
	// Output:
	// workers jobs/+ true
	// false
}

func ExampleTrie() {
	type sub struct{ qos mqtt.QoS }
	var subs mqtt.Trie[sub]
	subs.Insert("devices/+/telemetry", "dashboard", sub{0})
	subs.Insert("devices/dev-1/#", "dev-1-owner", sub{1})
	subs.Insert("#", "audit", sub{2})

	var got []string
	subs.Lookup("devices/dev-1/telemetry", func(client string, s sub) bool {
		got = append(got, fmt.Sprintf("%s@qos%d", client, s.qos))
		return true
	})
	sort.Strings(got)
	fmt.Println(got)

	subs.Remove("#", "audit")
	fmt.Println(subs.Len())
	// Output:
	// [audit@qos2 dashboard@qos0 dev-1-owner@qos1]
	// 2
}
