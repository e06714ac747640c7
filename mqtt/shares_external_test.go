package mqtt

import (
	"testing"
	"time"
)

// TestExternalShares: with Config.ExternalShares a share group gets no
// message from a client's publish or Publish — plain subscribers still do
// — and one from PublishShared, at one member; Hooks.OnShare hears of a
// group's first member and its last, per filter.
func TestExternalShares(t *testing.T) {
	var l filterLog
	b := startBroker(t, Config{ExternalShares: true, Hooks: Hooks{OnShare: l.hook}})
	m1 := connectOK(t, b.addr, Version5, "m1")
	m1.subscribe(1, QoS1, "$share/g/t/#")
	l.want(t, "$share/g/t/# true")
	m2 := connectOK(t, b.addr, Version311, "m2")
	m2.subscribe(1, QoS1, "$share/g/t/#", "$share/h/t/#")
	l.want(t, "$share/h/t/# true") // g has its member already
	plain := connectOK(t, b.addr, Version311, "plain")
	plain.subscribe(1, QoS0, "t/#")

	pub := connectOK(t, b.addr, Version311, "pub")
	pub.pub("t/1", "from a client", QoS1, 1, false)
	pub.expectAck(TypePuback, 1)
	if _, err := b.Publish(&Message{Topic: "t/2", Payload: []byte("injected"), QoS: QoS1}); err != nil {
		t.Fatal(err)
	}
	for _, want := range []string{"t/1", "t/2"} {
		if p := plain.expectPublish(); p.Topic != want {
			t.Fatalf("plain subscriber got %s, want %s", p.Topic, want)
		}
	}

	// The group g gets PublishShared's message at one member, and nothing
	// before it: the first message either member sees is it.
	n, err := b.PublishShared(&Message{Topic: "t/3", Payload: []byte("shared"), QoS: QoS1}, "$share/g/t/#")
	if n != 1 || err != nil {
		t.Fatalf("PublishShared = %d, %v; want 1, nil", n, err)
	}
	got := 0
	for _, m := range []*client{m1, m2} {
		if p, err := m.nextErr(2 * time.Second); err == nil {
			pb, ok := p.(*Publish)
			if !ok || string(pb.Topic) != "t/3" {
				t.Fatalf("a member of g got %s first, want t/3", show(p))
			}
			got++
		}
	}
	if got != 1 {
		t.Fatalf("%d members of g got t/3, want 1", got)
	}

	// Nothing for a group with no member here, a filter that does not
	// match, a share that is not one.
	for _, c := range []struct {
		topic, share string
		err          error
	}{{"t/4", "$share/nobody/t/#", nil}, {"u/1", "$share/g/t/#", nil}, {"t/5", "t/#", ErrShare}, {"t/+", "$share/g/t/#", ErrTopic}} {
		if n, err := b.PublishShared(&Message{Topic: c.topic, Payload: []byte("x")}, c.share); n != 0 || err != c.err {
			t.Fatalf("PublishShared(%s, %s) = %d, %v; want 0, %v", c.topic, c.share, n, err, c.err)
		}
	}

	// The last members go: an UNSUBSCRIBE, a clean session's end.
	m2.send(&Unsubscribe{PacketID: 2, Filters: [][]byte{[]byte("$share/h/t/#")}})
	m2.expectUnsuback(2)
	l.want(t, "$share/h/t/# false")
	m1.c.Close()
	b.waitStats(t, "m1 gone", func(s Stats) bool { return s.SessionsOnline == 3 })
	l.want(t) // m2 is still in g
	m2.c.Close()
	l.want(t, "$share/g/t/# false")
}
