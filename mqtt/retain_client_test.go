package mqtt

import (
	"strings"
	"sync"
	"testing"
	"time"
)

// retainedBy returns the bytes client id holds in the retained store.
func retainedBy(b *broker, id string) int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return b.retained.by[id]
}

// TestRetainedPerClient: a client's retained messages are bounded by
// MaxRetainedBytesPerClient; past it a 5.0 publisher's PUBACK says
// quota_exceeded, the message still reaches the current subscribers
// (without being retained) and the refusal is counted. Replacing a topic
// re-charges it to its new publisher, deleting refunds, and a client that
// retains nothing holds no entry.
func TestRetainedPerClient(t *testing.T) {
	b := startBroker(t, Config{MaxRetainedBytesPerClient: 1000})
	sub := connectOK(t, b.addr, Version5, "watcher")
	sub.subscribe(1, QoS1, "a/#")
	p := connectOK(t, b.addr, Version5, "p")
	body := strings.Repeat("x", 300) // 96 + 3 + 300 = 399 bytes a message

	for i, topic := range []string{"a/1", "a/2"} {
		p.pub(topic, body, QoS1, uint16(i+1), true)
		if rc := p.expectAck(TypePuback, uint16(i+1)); rc != Success {
			t.Fatalf("PUBACK of %s = %v, want success", topic, rc)
		}
		sub.expectPublish()
	}
	if got := retainedBy(b, "p"); got != 798 {
		t.Fatalf("p holds %d retained bytes, want 798", got)
	}
	p.pub("a/3", body, QoS1, 3, true)
	if rc := p.expectAck(TypePuback, 3); rc != QuotaExceeded {
		t.Fatalf("PUBACK past the client's bound = %v, want quota_exceeded", rc)
	}
	if m := sub.expectPublish(); m.Topic != "a/3" || m.Payload != body {
		t.Fatalf("the subscriber got %s, want a/3 delivered though not retained", m.Topic)
	}
	st := b.Stats()
	if st.Dropped[DropRetainedClientFull] != 1 || st.Retained != 2 || st.RetainedBytes != 798 || st.RetainedClients != 1 {
		t.Fatalf("stats: dropped %d, retained %d (%d bytes, %d clients); want 1, 2 (798, 1)",
			st.Dropped[DropRetainedClientFull], st.Retained, st.RetainedBytes, st.RetainedClients)
	}
	late := connectOK(t, b.addr, Version5, "late")
	late.subscribe(1, QoS1, "a/3")
	late.quiet(200 * time.Millisecond) // a/3 was not retained

	// Replacing its own topic with less frees room: a/3 fits now.
	p.pub("a/1", "small", QoS1, 4, true)
	p.expectAck(TypePuback, 4)
	sub.expectPublish()
	p.pub("a/3", body, QoS1, 5, true)
	if rc := p.expectAck(TypePuback, 5); rc != Success {
		t.Fatalf("PUBACK once room was freed = %v", rc)
	}
	sub.expectPublish()
	if got := retainedBy(b, "p"); got != 104+399+399 {
		t.Fatalf("p holds %d retained bytes, want %d", got, 104+399+399)
	}

	// Another client's message on a/2 is charged to it, refunded to p.
	q := connectOK(t, b.addr, Version311, "q")
	q.pub("a/2", "q's", QoS1, 1, true)
	q.expectAck(TypePuback, 1)
	sub.expectPublish()
	if gp, gq := retainedBy(b, "p"), retainedBy(b, "q"); gp != 104+399 || gq != 96+3+3 {
		t.Fatalf("after q replaced a/2: p %d, q %d; want %d, %d", gp, gq, 104+399, 102)
	}
	// Deleting refunds; a client with nothing retained has no entry.
	q.pub("a/2", "", QoS1, 2, true)
	q.expectAck(TypePuback, 2)
	sub.expectPublish()
	b.mu.RLock()
	_, has := b.retained.by["q"]
	b.mu.RUnlock()
	if has || b.Stats().RetainedClients != 1 {
		t.Fatalf("q still has an entry after deleting its only retained message")
	}
	// Messages the application injects are charged to no client.
	if _, err := b.Publish(&Message{Topic: "a/9", Payload: []byte(body), Retain: true}); err != nil {
		t.Fatal(err)
	}
	sub.expectPublish()
	if st := b.Stats(); st.RetainedClients != 1 || st.Retained != 3 {
		t.Fatalf("after an injected retained message: %d clients, %d retained; want 1, 3", st.RetainedClients, st.Retained)
	}
}

// TestRetainedRefusedCodes: a retained PUBLISH refused by the node's
// bounds gets quota_exceeded too; a QoS 2 flow refused so ends at its
// PUBREC; a 3.1.1 client gets its plain acknowledgement; the hook sees
// the refused message without its retain flag.
func TestRetainedRefusedCodes(t *testing.T) {
	var mu sync.Mutex
	var sawRetain []bool
	b := startBroker(t, Config{MaxRetained: 1, Hooks: Hooks{OnPublish: func(_ *Client, m *Message) (bool, ReasonCode) {
		mu.Lock()
		sawRetain = append(sawRetain, m.Retain)
		mu.Unlock()
		return true, Success
	}}})
	p := connectOK(t, b.addr, Version5, "p")
	p.pub("n/1", "one", QoS1, 1, true)
	if rc := p.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("first retained PUBACK = %v", rc)
	}
	p.pub("n/2", "two", QoS2, 2, true)
	if rc := p.expectAck(TypePubrec, 2); rc != QuotaExceeded {
		t.Fatalf("PUBREC past MaxRetained = %v, want quota_exceeded", rc)
	}
	p.send(&Ack{Kind: TypePubrel, PacketID: 2})
	if rc := p.expectAck(TypePubcomp, 2); rc != PacketIdentifierNotFound {
		t.Fatalf("PUBCOMP after a refused PUBREC = %v, want packet_identifier_not_found (the flow ended)", rc)
	}
	// The client's own topic may still be replaced at the node's bound.
	p.pub("n/1", "uno", QoS1, 3, true)
	if rc := p.expectAck(TypePuback, 3); rc != Success {
		t.Fatalf("replacing at the node's bound = %v", rc)
	}
	old := connectOK(t, b.addr, Version311, "old")
	old.pub("n/3", "three", QoS1, 1, true)
	if rc := old.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("3.1.1 PUBACK = %v", rc)
	}
	b.waitStats(t, "two refusals counted", func(s Stats) bool { return s.Dropped[DropRetainedFull] == 2 })
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{true, false, true, false}; len(sawRetain) != len(want) || sawRetain[1] || sawRetain[3] || !sawRetain[0] {
		t.Fatalf("the hook saw retain %v, want %v", sawRetain, want)
	}
}

// TestRetainedExpiryRefunds: the sweeper takes an expired retained
// message out of the store and refunds its publisher.
func TestRetainedExpiryRefunds(t *testing.T) {
	clk := &testClock{}
	clk.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := startBroker(t, Config{Clock: clk})
	p := connectOK(t, b.addr, Version5, "p")
	for i := range 200 {
		exp := uint32(10)
		if i%2 == 1 {
			exp = 1000
		}
		p.send(&Publish{Topic: []byte("e/" + strings.Repeat("t", i%7) + string(rune('a'+i%26)) + "/" + string(rune('a'+i/26))),
			Payload: []byte("v"), QoS: QoS1, PacketID: uint16(i + 1), Retain: true,
			Props: Properties{MessageExpiry: exp}})
		if rc := p.expectAck(TypePuback, uint16(i+1)); rc != Success {
			t.Fatalf("PUBACK %d = %v", i, rc)
		}
	}
	p.pub("e/forever", "v", QoS1, 999, true)
	p.expectAck(TypePuback, 999)
	before := retainedBy(b, "p")
	clk.t.Add(int64(11 * time.Second))
	b.sweep(clk.Now())
	st := b.Stats()
	if st.Retained != 101 {
		t.Fatalf("%d retained after the short-lived ones expired, want 101", st.Retained)
	}
	if got := retainedBy(b, "p"); int64(got) != st.RetainedBytes || got >= before {
		t.Fatalf("p holds %d bytes (store %d, before %d)", got, st.RetainedBytes, before)
	}
	clk.t.Add(int64(1000 * time.Second))
	b.sweep(clk.Now())
	if st := b.Stats(); st.Retained != 1 || retainedBy(b, "p") != 96+9+1 {
		t.Fatalf("after every expiry: %d retained, p holds %d", st.Retained, retainedBy(b, "p"))
	}
	b.mu.RLock()
	left := len(b.retained.exp)
	b.mu.RUnlock()
	if left != 0 {
		t.Fatalf("%d entries left in the expiry heap", left)
	}
}

// TestRetainedRefusedByHookCountedOnce: a retained message over the
// store's bounds that the OnPublish hook refuses too is counted once, as
// the hook's refusal.
func TestRetainedRefusedByHookCountedOnce(t *testing.T) {
	b := startBroker(t, Config{MaxRetainedBytesPerClient: 100, Hooks: Hooks{OnPublish: func(*Client, *Message) (bool, ReasonCode) {
		return true, NotAuthorized
	}}})
	p := connectOK(t, b.addr, Version5, "p")
	p.pub("h/1", strings.Repeat("x", 200), QoS1, 1, true)
	if rc := p.expectAck(TypePuback, 1); rc != NotAuthorized {
		t.Fatalf("PUBACK = %v, want the hook's not_authorized", rc)
	}
	if st := b.Stats(); st.Dropped[DropRefused] != 1 || st.Dropped[DropRetainedClientFull] != 0 {
		t.Fatalf("dropped: refused %d, retained_client_full %d; want 1, 0", st.Dropped[DropRefused], st.Dropped[DropRetainedClientFull])
	}
}

// TestRetainedExpiryHeapNoStale: replacing or deleting a retained message
// that expires takes it out of the expiry heap at once, so a publish and
// delete loop of large expiring messages leaves no entries behind, and
// so no memory outside the store's bounds.
func TestRetainedExpiryHeapNoStale(t *testing.T) {
	b := startBroker(t, Config{})
	p := connectOK(t, b.addr, Version5, "p")
	id := uint16(0)
	pub := func(topic string, payload []byte) {
		id++
		p.send(&Publish{Topic: []byte(topic), Payload: payload, QoS: QoS1, PacketID: id, Retain: true,
			Props: Properties{MessageExpiry: 3600}})
		if rc := p.expectAck(TypePuback, id); rc != Success {
			t.Fatalf("PUBACK %d = %v", id, rc)
		}
	}
	for i := range 10 {
		pub("keep/"+string(rune('a'+i)), []byte("v"))
	}
	big := make([]byte, 64<<10)
	for range 50 {
		pub("big/1", big)         // stored, in the heap
		pub("big/1", []byte("w")) // replaced
		pub("big/1", big)
		pub("big/1", nil) // deleted
	}
	b.mu.RLock()
	n := len(b.retained.exp)
	for i, m := range b.retained.exp {
		if b.retained.m[m.Topic] != m || int(m.hi) != i+1 {
			t.Errorf("heap entry %d (%s, index %d) is not the stored message", i, m.Topic, m.hi)
		}
	}
	b.mu.RUnlock()
	if n != 10 {
		t.Fatalf("%d entries in the expiry heap, want the 10 stored", n)
	}
	if st := b.Stats(); st.Retained != 10 {
		t.Fatalf("%d retained, want 10", st.Retained)
	}
}
