package mqtt

import (
	"testing"
	"time"
	"unsafe"

	"github.com/warrenhq/warren/internal/testutil"
)

// The structs an idle subscribed client holds stay within their size
// classes: a field added carelessly shows here first.
func TestIdleStructSizes(t *testing.T) {
	for _, c := range []struct {
		name      string
		size, max uintptr
	}{
		{"Client with its conn and session", unsafe.Sizeof(Client{}), 128},
		{"conn", unsafe.Sizeof(conn{}), 96},
		{"session", unsafe.Sizeof(session{}), 40},
		{"session apart, with its id", unsafe.Sizeof(ownSession{}), 56},
		{"connExt", unsafe.Sizeof(connExt{}), 48},
		{"subscription", unsafe.Sizeof(subscription{}), 32},
		{"trie node", unsafe.Sizeof(node[*subscription]{}), 48},
	} {
		if c.size > c.max {
			t.Errorf("%s is %d bytes, over %d", c.name, c.size, c.max)
		}
	}
}

// A user name equal to the client id is the client id's string, not a
// second copy of it (devices often send their id as both); another user
// name is its own.
func TestUsernameSharesClientID(t *testing.T) {
	type seen struct{ id, user string }
	got := make(chan seen, 2)
	b := startBroker(t, Config{Hooks: Hooks{OnConnect: func(c *Client, _ bool) { got <- seen{c.ID, c.Username()} }}})
	for _, user := range []string{"dev-1", "someone"} {
		c := dial(t, b.addr, Version311)
		if ca := c.connect(&Connect{Version: Version311, ClientID: []byte("dev-1"), CleanStart: true,
			HasUsername: true, Username: []byte(user)}); ca.ReasonCode != Success {
			t.Fatal(ca.ReasonCode)
		}
		s := <-got
		if s.id != "dev-1" || s.user != user {
			t.Fatalf("client %q user %q; want dev-1, %q", s.id, s.user, user)
		}
		if shared := unsafe.StringData(s.id) == unsafe.StringData(s.user); shared != (user == "dev-1") {
			t.Fatalf("user name %q shares the client id's string: %v", user, shared)
		}
		c.c.Close()
	}
}

// A session that ends with its connection (session expiry 0) is part of
// the connection's allocation and keyed by its Client's id; one that may
// outlive it is apart. A takeover that resumes a connection's own session
// with an expiry keeps it working after both connections close.
func TestOwnSession(t *testing.T) {
	b := startBroker(t, Config{})
	get := func(id string) *session {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return b.sessions.Get(id)
	}
	c := connectOK(t, b.addr, Version311, "clean")
	ss := get("clean")
	if ss == nil || !ss.inConn || ss.key() != "clean" {
		t.Fatalf("clean session %+v: want the connection's own", ss)
	}
	ss.mu.Lock()
	own := ss.conn != nil && ss == &ss.conn.own && ss.conn.session() == ss
	ss.mu.Unlock()
	if !own {
		t.Fatal("the clean session is not its connection's own")
	}
	c.c.Close()
	testutil.Eventually(t, 10*time.Second, "clean session ended", func() bool { return get("clean") == nil })

	p := dial(t, b.addr, Version311)
	if ca := p.connect(&Connect{ClientID: []byte("kept"), KeepAlive: 60}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	if ss := get("kept"); ss == nil || ss.inConn || ss.key() != "kept" {
		t.Fatalf("persistent session %+v: want one apart", ss)
	}
	p.c.Close()
	testutil.Eventually(t, 10*time.Second, "kept offline", func() bool { return offline(b, "kept") })

	// 5.0: expiry 0, then taken over by clean start 0 with an expiry.
	c1 := dial(t, b.addr, Version5)
	if ca := c1.connect(&Connect{ClientID: []byte("dev"), CleanStart: true}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	c1.subscribe(1, QoS1, "dev/in")
	first := get("dev")
	if !first.inConn {
		t.Fatal("expiry 0: want the connection's own session")
	}
	c2 := dial(t, b.addr, Version5)
	ca := c2.connect(&Connect{ClientID: []byte("dev"), Props: Properties{SessionExpiry: 60}})
	if ca.ReasonCode != Success || !ca.SessionPresent {
		t.Fatalf("takeover: %v, session present %v", ca.ReasonCode, ca.SessionPresent)
	}
	if get("dev") != first || first.key() != "dev" {
		t.Fatal("the taken-over session is not the first connection's")
	}
	if d := c1.closed(); d == nil || d.ReasonCode != SessionTakenOver {
		t.Fatalf("first connection: %+v", d)
	}
	pub := connectOK(t, b.addr, Version311, "pub")
	pub.pub("dev/in", "one", QoS1, 1, false)
	pub.expectAck(TypePuback, 1)
	m := c2.expectPublish()
	if m.Payload != "one" {
		t.Fatalf("got %q", m.Payload)
	}
	c2.send(&Ack{Kind: TypePuback, PacketID: m.PacketID})
	c2.c.Close()
	testutil.Eventually(t, 10*time.Second, "dev offline", func() bool { return offline(b, "dev") })
	pub.pub("dev/in", "two", QoS1, 2, false)
	pub.expectAck(TypePuback, 2)
	c3 := dial(t, b.addr, Version5)
	if ca := c3.connect(&Connect{ClientID: []byte("dev"), Props: Properties{SessionExpiry: 60}}); !ca.SessionPresent {
		t.Fatal("the resumed session was not kept offline")
	}
	if m := c3.expectPublish(); m.Payload != "two" {
		t.Fatalf("queued: got %q", m.Payload)
	}
}

// A connection keeps its last input's stamp in 24 bits of 16 ms: since
// never says more time passed than did (a keep-alive is not enforced
// early), says at most two units less, and reads across the stamps'
// wrap; a stamp after t reads as zero.
func TestStampSince(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	wrap := int64(1<<(32-stampShift)) * int64(stampUnit)
	for _, start := range []int64{0, 5 * int64(time.Millisecond), wrap - int64(time.Second), 3*wrap - 7} {
		t0 := s.epoch + start
		st := s.stamp(t0)
		if st >= 1<<(32-stampShift) {
			t.Fatalf("stamp %#x over 24 bits", st)
		}
		for _, d := range []time.Duration{0, time.Millisecond, 15 * time.Millisecond, 16 * time.Millisecond,
			40 * time.Millisecond, 1500 * time.Millisecond, 98302 * time.Second} {
			got := s.since(st, t0+int64(d))
			if got > d || got < d-2*stampUnit {
				t.Errorf("start %d: since %v later = %v", start, d, got)
			}
		}
		if got := s.since(st, t0-int64(time.Second)); got != 0 {
			t.Errorf("start %d: a stamp a second ahead reads %v, want 0", start, got)
		}
	}
}
