package mqtt

import (
	"slices"
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
// MaxRetainedBytesPerClient; past it a 5.0 QoS 1 publish is refused
// whole: its PUBACK says quota_exceeded with a reason string, no
// subscriber gets it, and the refusal is counted. Replacing a topic
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
	if a, ok := p.next().(*Ack); !ok || a.Kind != TypePuback || a.PacketID != 3 || a.ReasonCode != QuotaExceeded ||
		string(a.Props.ReasonString) != "client's retained quota exceeded" {
		t.Fatalf("PUBACK past the client's bound = %s, want quota_exceeded with a reason", show(a))
	}
	p.pub("a/plain", "next", QoS1, 30, false)
	p.expectAck(TypePuback, 30)
	if m := sub.expectPublish(); m.Topic != "a/plain" {
		t.Fatalf("the subscriber got %s %q, want a/3 refused and a/plain next", m.Topic, m.Payload)
	}
	st := b.Stats()
	if st.Dropped[DropRetainedClientFull] != 1 || st.Retained != 2 || st.RetainedBytes != 798 || st.RetainedClients != 1 {
		t.Fatalf("stats: dropped %d, retained %d (%d bytes, %d clients); want 1, 2 (798, 1)",
			st.Dropped[DropRetainedClientFull], st.Retained, st.RetainedBytes, st.RetainedClients)
	}
	late := connectOK(t, b.addr, Version5, "late")
	late.subscribe(1, QoS1, "a/3")
	late.subscribe(2, QoS1, "a/1")
	if m := late.expectPublish(); m.Topic != "a/1" { // a/3 was not retained
		t.Fatalf("a later subscriber got %s, want a/1 only", m.Topic)
	}

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

// TestRetainedRefusedCodes: a 5.0 QoS 2 retained PUBLISH refused by the
// node's bounds gets PUBREC quota_exceeded, is neither delivered nor seen
// by the hook, and keeps no QoS 2 state: the flow ends there, and a
// resend (DUP) is refused again, never delivered twice. A client asking
// for no problem information gets no reason string. A 3.1.1 client's
// refused publish is delivered as a plain message, its hook sees it
// without its retain flag, and the client gets its plain acknowledgement.
func TestRetainedRefusedCodes(t *testing.T) {
	var mu sync.Mutex
	var sawRetain []bool
	b := startBroker(t, Config{MaxRetained: 1, Hooks: Hooks{OnPublish: func(_ *Client, m *Message) (bool, ReasonCode) {
		mu.Lock()
		sawRetain = append(sawRetain, m.Retain)
		mu.Unlock()
		return true, Success
	}}})
	sub := connectOK(t, b.addr, Version5, "sub")
	sub.subscribe(1, QoS2, "n/#")
	p := dial(t, b.addr, Version5)
	if ca := p.connect(&Connect{ClientID: []byte("p"), CleanStart: true, KeepAlive: 60,
		Props: Properties{Present: 1 << PropRequestProblemInfo, RequestProblemInfo: false}}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	p.pub("n/1", "one", QoS1, 1, true)
	if rc := p.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("first retained PUBACK = %v", rc)
	}
	if m := sub.expectPublish(); m.Topic != "n/1" {
		t.Fatalf("the subscriber got %s", m.Topic)
	}
	for _, dup := range []bool{false, true} {
		p.send(&Publish{Topic: []byte("n/2"), Payload: []byte("two"), QoS: QoS2, PacketID: 2, Retain: true, Dup: dup})
		a, ok := p.next().(*Ack)
		if !ok || a.Kind != TypePubrec || a.PacketID != 2 || a.ReasonCode != QuotaExceeded || a.Props.ReasonString != nil {
			t.Fatalf("PUBREC past MaxRetained (dup %v) = %s, want quota_exceeded without a reason string", dup, show(a))
		}
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
	if m := sub.expectPublish(); m.Topic != "n/1" || m.Payload != "uno" {
		t.Fatalf("the subscriber got %s %q, want n/1 uno (n/2 refused twice)", m.Topic, m.Payload)
	}
	old := connectOK(t, b.addr, Version311, "old")
	old.pub("n/3", "three", QoS1, 1, true)
	if rc := old.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("3.1.1 PUBACK = %v", rc)
	}
	if m := sub.expectPublish(); m.Topic != "n/3" {
		t.Fatalf("the subscriber got %s, want n/3 delivered as a plain message", m.Topic)
	}
	b.waitStats(t, "three refusals counted", func(s Stats) bool { return s.Dropped[DropRetainedFull] == 3 })
	mu.Lock()
	defer mu.Unlock()
	if want := []bool{true, true, false}; !slices.Equal(sawRetain, want) {
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
// store's bounds that goes on as a plain one (3.1.1) and that the
// OnPublish hook refuses is counted once, as the hook's refusal.
func TestRetainedRefusedByHookCountedOnce(t *testing.T) {
	b := startBroker(t, Config{MaxRetainedBytesPerClient: 100, Hooks: Hooks{OnPublish: func(*Client, *Message) (bool, ReasonCode) {
		return true, NotAuthorized
	}}})
	p := connectOK(t, b.addr, Version311, "p")
	p.pub("h/1", strings.Repeat("x", 200), QoS1, 1, true)
	p.expectAck(TypePuback, 1)
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

// TestRetainedDecidedOnce: the store decides a client's retained PUBLISH
// before its hook runs and keeps the room: a message the hook injects
// meanwhile (filling the store) is refused, not the client's, whose
// retain flag the hook saw; a hook that takes the message over (local
// false) gives the room back.
func TestRetainedDecidedOnce(t *testing.T) {
	var srv *broker // set under mu once started, for the hook
	var mu sync.Mutex
	var saw []bool
	take := false
	b := startBroker(t, Config{MaxRetained: 2, Hooks: Hooks{OnPublish: func(_ *Client, m *Message) (bool, ReasonCode) {
		mu.Lock()
		defer mu.Unlock()
		saw = append(saw, m.Retain)
		if take {
			return false, Success
		}
		if _, err := srv.RetainIfAbsent(&Message{Topic: "app/" + m.Topic, Payload: []byte("x")}); err != nil {
			t.Error(err)
		}
		return true, Success
	}}})
	mu.Lock()
	srv = b
	mu.Unlock()
	p := connectOK(t, b.addr, Version5, "p")
	p.pub("d/1", "one", QoS1, 1, true) // d/1 stored, app/d/1 fills the store
	if rc := p.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("PUBACK 1 = %v", rc)
	}
	if st := b.Stats(); st.Retained != 2 {
		t.Fatalf("%d retained, want d/1 and app/d/1", st.Retained)
	}
	p.pub("d/1", "uno", QoS1, 2, true) // replaces d/1; app/d/1 is there
	if rc := p.expectAck(TypePuback, 2); rc != Success {
		t.Fatalf("PUBACK 2 = %v", rc)
	}
	// Delete app/d/1; d/2 reserves the last slot, so the hook's
	// app/d/2 must be refused while d/2 is stored.
	if err := b.Retain(&Message{Topic: "app/d/1"}); err != nil {
		t.Fatal(err)
	}
	p.pub("d/2", "two", QoS1, 3, true)
	if rc := p.expectAck(TypePuback, 3); rc != Success {
		t.Fatalf("PUBACK 3 = %v, want the reserved room used", rc)
	}
	var kept []string
	for m := range b.RetainedMessages() {
		kept = append(kept, m.Topic)
	}
	slices.Sort(kept)
	if !slices.Equal(kept, []string{"d/1", "d/2"}) {
		t.Fatalf("retained %v, want [d/1 d/2]", kept)
	}
	// Taken over by the hook: nothing stored, nothing counted, no room held.
	mu.Lock()
	take = true
	mu.Unlock()
	p.pub("d/1", "gone", QoS1, 4, true)
	if rc := p.expectAck(TypePuback, 4); rc != Success {
		t.Fatalf("PUBACK 4 = %v", rc)
	}
	b.mu.RLock()
	pend := len(b.retained.pend)
	b.mu.RUnlock()
	if pend != 0 {
		t.Fatalf("%d reservations left", pend)
	}
	mu.Lock()
	defer mu.Unlock()
	if !slices.Equal(saw, []bool{true, true, true, true}) {
		t.Fatalf("the hook saw retain %v", saw)
	}
	if st := b.Stats(); st.Dropped[DropRetainedFull] != 1 {
		t.Fatalf("retained_full = %d, want app/d/2's refusal only", st.Dropped[DropRetainedFull])
	}
}

// TestRetainedReservationsBound: reservations count as held until they
// are stored or released, as the most they may add: a smaller message
// reserved on a full topic still holds the topic's bytes, and a second
// reservation on a topic counts whole.
func TestRetainedReservationsBound(t *testing.T) {
	s := NewServer(Config{MaxRetainedBytes: 1000})
	big := newMsg(&Message{Topic: "t", Payload: make([]byte, 700), Retain: true}, "", time.Time{})
	if s.retain(big, nil) {
		t.Fatal("the first message was refused")
	}
	small, _, ok := s.reserveRetained("a", "t", 200)
	if !ok {
		t.Fatal("a smaller replacement was refused")
	}
	// The reservation may be released: t's 797 bytes still count.
	if _, _, ok := s.reserveRetained("b", "u", 300); ok {
		t.Fatal("a reservation that could pass the bound was granted")
	}
	second, _, ok := s.reserveRetained("c", "t", 150)
	if !ok {
		t.Fatal("a second reservation on t within the bound was refused")
	}
	if _, _, ok := s.reserveRetained("b", "u", 100); ok {
		t.Fatal("the second reservation on t did not count whole")
	}
	s.releaseRetained(small)
	if s.retain(newMsg(&Message{Topic: "t", Payload: make([]byte, 150), Retain: true}, "c", time.Time{}), second) {
		t.Fatal("a reserved message was refused")
	}
	if len(s.retained.pend) != 0 || s.retained.bytes != 150+96+1 {
		t.Fatalf("%d reservations left, %d bytes stored", len(s.retained.pend), s.retained.bytes)
	}
}

// TestRetainedDefaultFitsMaxPacket: the default per-client bound holds a
// retained message of the default maximum packet size.
func TestRetainedDefaultFitsMaxPacket(t *testing.T) {
	s := NewServer(Config{})
	payload := make([]byte, DefaultMaxPacketSize-16) // fixed header, topic, packet id, properties
	m := newMsg(&Message{Topic: "dev/1/state", Payload: payload, Retain: true}, "dev-1", time.Time{})
	if s.retain(m, nil) {
		t.Fatalf("a %d-byte retained message was refused under the default bound of %d", m.size, DefaultMaxRetainedBytesPerClient)
	}
}

// TestRetainedPublishRefusedNotRetainedFlag: a message the application
// publishes with Retain that the store refuses reaches a Retain As
// Published subscriber without its retain flag, as a client's does.
func TestRetainedPublishRefusedNotRetainedFlag(t *testing.T) {
	b := startBroker(t, Config{MaxRetained: 1})
	sub := connectOK(t, b.addr, Version5, "sub")
	sub.send(&Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("r/#"), QoS: QoS1, RetainAsPublished: true}}})
	if _, ok := sub.next().(*Suback); !ok {
		t.Fatal("expected SUBACK")
	}
	for i, topic := range []string{"r/1", "r/2"} {
		if _, err := b.Publish(&Message{Topic: topic, Payload: []byte("v"), QoS: QoS1, Retain: true}); err != nil {
			t.Fatal(err)
		}
		m := sub.expectPublish()
		if m.Topic != topic || m.Retain != (i == 0) {
			t.Fatalf("got %s retain %v; want %s retain %v", m.Topic, m.Retain, topic, i == 0)
		}
		sub.send(&Ack{Kind: TypePuback, PacketID: m.PacketID})
	}
}

// TestRetainedRefusedPlain: a 5.0 QoS 0 retained publish the store
// refuses is delivered as a plain message and counted; one the hook
// takes over (local false) touches the local store not at all, so it is
// not counted and holds no room.
func TestRetainedRefusedPlain(t *testing.T) {
	var mu sync.Mutex
	local := true
	b := startBroker(t, Config{MaxRetainedBytesPerClient: 150, Hooks: Hooks{OnPublish: func(*Client, *Message) (bool, ReasonCode) {
		mu.Lock()
		defer mu.Unlock()
		return local, Success
	}}})
	sub := connectOK(t, b.addr, Version5, "sub")
	sub.send(&Subscribe{PacketID: 1, Filters: []Subscription{{Filter: []byte("z/#"), QoS: QoS1, RetainAsPublished: true}}})
	if _, ok := sub.next().(*Suback); !ok {
		t.Fatal("expected SUBACK")
	}
	p := connectOK(t, b.addr, Version5, "p")
	body := strings.Repeat("x", 100) // 96 + 3 + 100 bytes: over 150
	p.pub("z/1", body, QoS0, 0, true)
	if m := sub.expectPublish(); m.Topic != "z/1" || m.Retain {
		t.Fatalf("got %s retain %v, want z/1 as a plain message", m.Topic, m.Retain)
	}
	b.waitStats(t, "the refusal counted", func(s Stats) bool { return s.Dropped[DropRetainedClientFull] == 1 })

	mu.Lock()
	local = false
	mu.Unlock()
	old := connectOK(t, b.addr, Version311, "old")
	old.pub("z/2", body, QoS1, 1, true)
	if rc := old.expectAck(TypePuback, 1); rc != Success {
		t.Fatalf("PUBACK = %v", rc)
	}
	b.mu.RLock()
	pend := len(b.retained.pend)
	b.mu.RUnlock()
	if st := b.Stats(); st.Dropped[DropRetainedClientFull] != 1 || st.Retained != 0 || pend != 0 {
		t.Fatalf("retained_client_full %d, retained %d, reservations %d; want 1, 0, 0",
			st.Dropped[DropRetainedClientFull], st.Retained, pend)
	}
}
