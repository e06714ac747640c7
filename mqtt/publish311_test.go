package mqtt

import (
	"bytes"
	"strings"
	"testing"
)

// TestAppendPublish311 checks the 3.1.1 PUBLISH the broker's deliveries
// encode without a Publish (appendPublish311, which AppendPublish also
// uses for 3.1.1) against the bytes of the specification's layout
// (3.1.1 section 3.3) assembled here, and decodes it back, for every QoS
// and flag and for remaining lengths of one to four varint bytes.
func TestAppendPublish311(t *testing.T) {
	for _, size := range []int{0, 1, 64, 120, 127, 128, 300, 16383, 16384, 70000, 2097152} {
		payload := bytes.Repeat([]byte{'x'}, size)
		for _, topic := range []string{"a", "devices/dev-123456/telemetry", strings.Repeat("t/", 100) + "z"} {
			for qos := QoS0; qos <= QoS2; qos++ {
				for _, dup := range []bool{false, true} {
					for _, retain := range []bool{false, true} {
						p := Publish{Dup: dup, QoS: qos, Retain: retain, Topic: []byte(topic), Payload: payload}
						if qos > 0 {
							p.PacketID = 4321
						}
						want := spec311Publish(&p)
						got := appendPublish311([]byte("head"), publishFlags(qos, dup, retain), topic, p.PacketID, payload)
						if api := AppendPublish([]byte("head"), Version311, &p); !bytes.Equal(api, got) {
							t.Fatalf("size %d topic %q qos %d: AppendPublish and appendPublish311 differ", size, topic, qos)
						}
						if !bytes.Equal(got[4:], want) {
							t.Fatalf("size %d topic %q qos %d dup %v retain %v: got % x…, want % x…", size, topic, qos, dup, retain, got[:min(len(got), 16)], want[:min(len(want), 16)])
						}
						if dup && qos == QoS0 {
							continue // encodable, but not a valid packet to decode [MQTT-3.3.1-2]
						}
						if size > 1<<20 {
							continue // over the decoder's default packet bound; the bytes are checked above
						}
						q, err := decodeOne(Version311, got[4:], nil)
						if err != nil {
							t.Fatal(err)
						}
						d := q.(*Publish)
						if d.Dup != dup || d.QoS != qos || d.Retain != retain || string(d.Topic) != topic || d.PacketID != p.PacketID || !bytes.Equal(d.Payload, payload) {
							t.Fatalf("size %d topic %q qos %d: decoded %+v", size, topic, qos, d)
						}
					}
				}
			}
		}
	}
}

// spec311Publish lays out a 3.1.1 PUBLISH by hand: the fixed header (type
// 3, DUP, QoS, RETAIN; the remaining length in 7-bit groups, low first),
// the topic with its 16-bit length, the packet identifier at QoS 1 and 2,
// the payload.
func spec311Publish(p *Publish) []byte {
	var body []byte
	body = append(body, byte(len(p.Topic)>>8), byte(len(p.Topic)))
	body = append(body, p.Topic...)
	if p.QoS > 0 {
		body = append(body, byte(p.PacketID>>8), byte(p.PacketID))
	}
	body = append(body, p.Payload...)
	flags := byte(p.QoS) << 1
	if p.Dup {
		flags |= 8
	}
	if p.Retain {
		flags |= 1
	}
	out := []byte{3<<4 | flags}
	for n := len(body); ; {
		b := byte(n % 128)
		if n /= 128; n > 0 {
			b |= 128
		}
		out = append(out, b)
		if n == 0 {
			break
		}
	}
	return append(out, body...)
}
