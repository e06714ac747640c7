package mqtt

import (
	"fmt"
	"strings"
	"testing"
	"time"
)

// connectWill connects client id with a will of payload on will/<id>,
// returning the client and its CONNACK.
func connectWill(t *testing.T, b *broker, v Version, id, payload string, expiry, delay uint32) (*client, *Connack) {
	t.Helper()
	c := dial(t, b.addr, v)
	w := &Will{QoS: QoS1, Topic: []byte("will/" + id), Payload: []byte(payload)}
	p := &Connect{ClientID: []byte(id), CleanStart: true, KeepAlive: 60, Will: w}
	if v == Version5 {
		w.Props.WillDelay = delay
		p.Props.SessionExpiry = expiry
	}
	return c, c.connect(p)
}

// TestWillBytesBound: the wills held across the server are bounded by
// MaxWillBytes; a CONNECT whose will does not fit is refused with CONNACK
// 0x97 (5.0) or server unavailable (3.1.1) and counted, and its client's
// earlier session is left as it was. A will's bytes are freed when it is
// published, dropped by a normal DISCONNECT or replaced by a takeover's.
func TestWillBytesBound(t *testing.T) {
	b := startBroker(t, Config{MaxWillBytes: 1000})
	sub := connectOK(t, b.addr, Version311, "sub")
	sub.subscribe(1, QoS1, "will/#")
	body := strings.Repeat("w", 300) // 96 + 7 + 300 = 403 bytes a will (topic will/cN)

	c1, ca := connectWill(t, b, Version5, "c1", body, 0, 0)
	if ca.ReasonCode != Success {
		t.Fatalf("c1: CONNACK %v", ca.ReasonCode)
	}
	c2, ca := connectWill(t, b, Version311, "c2", body, 0, 0)
	if ca.ReasonCode != Success {
		t.Fatalf("c2: CONNACK %v", ca.ReasonCode)
	}
	if st := b.Stats(); st.Wills != 2 || st.WillBytes != 806 {
		t.Fatalf("held: %d wills, %d bytes; want 2, 806", st.Wills, st.WillBytes)
	}
	c3, ca := connectWill(t, b, Version5, "c3", body, 0, 0)
	if ca.ReasonCode != QuotaExceeded {
		t.Fatalf("5.0 CONNACK past MaxWillBytes = %v, want quota_exceeded", ca.ReasonCode)
	}
	c3.closed()
	c4, ca := connectWill(t, b, Version311, "c4", body, 0, 0)
	if ca.ReasonCode != ServerUnavailable {
		t.Fatalf("3.1.1 CONNACK past MaxWillBytes = %v, want server unavailable (3)", ca.ReasonCode)
	}
	c4.closed()
	// A small will still fits; a CONNECT without a will always does.
	c5, ca := connectWill(t, b, Version5, "c5", "x", 0, 0)
	if ca.ReasonCode != Success {
		t.Fatalf("small will: CONNACK %v", ca.ReasonCode)
	}
	connectOK(t, b.addr, Version5, "nowill")
	st := b.Stats()
	if st.WillsRefused != 2 || st.Wills != 3 || st.WillBytes != 806+96+7+1 {
		t.Fatalf("after the refusals: %+v", st)
	}
	if n := pendingWills(b); n != 3 {
		t.Fatalf("Server.wills holds %d, want 3", n)
	}

	// A takeover with the same will frees the old one's bytes first.
	c1b, ca := connectWill(t, b, Version5, "c1", body, 0, 0)
	if ca.ReasonCode != Success {
		t.Fatalf("takeover: CONNACK %v", ca.ReasonCode)
	}
	c1.closed()
	if p := sub.expectPublish(); p.Topic != "will/c1" {
		t.Fatalf("the taken-over session's will: got %s", p.Topic) // delay 0: published at takeover
	}
	// A normal DISCONNECT frees the will without publishing it; a
	// dropped connection publishes it and frees it.
	c1b.send(&Disconnect{})
	c1b.closed()
	c2.c.Close()
	if p := sub.expectPublish(); p.Topic != "will/c2" {
		t.Fatalf("got %s, want will/c2", p.Topic)
	}
	c5.c.Close()
	sub.expectPublish()
	b.waitStats(t, "every will freed", func(s Stats) bool { return s.Wills == 0 && s.WillBytes == 0 })
	if n := pendingWills(b); n != 0 {
		t.Fatalf("Server.wills holds %d after every will was freed", n)
	}
}

// pendingWills returns how many wills b's map holds.
func pendingWills(b *broker) int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.wills)
}

// TestWillBytesDelayAndExpiry: a will with a delay stays counted while
// its session waits offline, and is freed when the sweeper publishes it;
// a resumed session drops it (freed); connecting and disconnecting many
// times in every way leaves the gauge at 0.
func TestWillBytesDelayAndExpiry(t *testing.T) {
	clk := &testClock{}
	clk.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := startBroker(t, Config{Clock: clk, MaxWillBytes: 100_000})
	c, ca := connectWill(t, b, Version5, "delayed", "bye", 3600, 30)
	if ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	c.c.Close()
	b.waitStats(t, "offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	if st := b.Stats(); st.Wills != 1 {
		t.Fatalf("a delayed will of an offline session: %d held, want 1", st.Wills)
	}
	clk.t.Add(int64(31 * time.Second))
	b.sweep(clk.Now())
	if st := b.Stats(); st.Wills != 0 || st.WillBytes != 0 || st.WillsPublished != 1 {
		t.Fatalf("after the will delay: %d held (%d bytes), %d published", st.Wills, st.WillBytes, st.WillsPublished)
	}

	// Resumed within the delay: the will is dropped, and freed.
	c, _ = connectWill(t, b, Version5, "back", "bye", 3600, 30)
	c.c.Close()
	b.waitStats(t, "back offline", func(s Stats) bool { return s.SessionsOffline == 2 })
	r := dial(t, b.addr, Version5)
	if ca := r.connect(&Connect{ClientID: []byte("back"), KeepAlive: 60, Props: Properties{SessionExpiry: 3600}}); !ca.SessionPresent {
		t.Fatal("session not resumed")
	}
	if st := b.Stats(); st.Wills != 0 || st.WillBytes != 0 {
		t.Fatalf("after resuming: %d held, %d bytes", st.Wills, st.WillBytes)
	}

	// Many connections, ended every way, some taking others over.
	var open []*client
	for i := range 120 {
		id := fmt.Sprintf("churn-%d", i%7)
		v := Version5
		if i%3 == 0 {
			v = Version311
		}
		var delay, expiry uint32
		if i%4 == 1 {
			delay, expiry = 5, 60
		}
		c, ca := connectWill(t, b, v, id, strings.Repeat("p", i), expiry, delay)
		if ca.ReasonCode != Success {
			t.Fatalf("churn %d: CONNACK %v", i, ca.ReasonCode)
		}
		switch i % 5 {
		case 0:
			c.send(&Disconnect{})
			c.closed()
		case 1, 2:
			c.c.Close()
		default:
			open = append(open, c) // taken over by the next with its id, or left
		}
	}
	for _, c := range open {
		c.c.Close()
	}
	b.waitStats(t, "every churned connection closed", func(s Stats) bool { return s.SessionsOnline == 1 })
	clk.t.Add(int64(time.Hour))
	b.sweep(clk.Now())
	if st := b.Stats(); st.Wills != 0 || st.WillBytes != 0 {
		t.Fatalf("after the churn: %d wills held, %d bytes; want 0, 0", st.Wills, st.WillBytes)
	}
	if n := pendingWills(b); n != 0 {
		t.Fatalf("after the churn: Server.wills holds %d", n)
	}
}

// TestWillExpiryFromPublication: a will's Message Expiry counts from its
// publication (after its will delay), not from the CONNECT that set it:
// a retained will with an expiry shorter than its delay is kept once
// published.
func TestWillExpiryFromPublication(t *testing.T) {
	clk := &testClock{}
	clk.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := startBroker(t, Config{Clock: clk})
	c := dial(t, b.addr, Version5)
	w := &Will{QoS: QoS1, Retain: true, Topic: []byte("will/c"), Payload: []byte("gone")}
	w.Props.WillDelay, w.Props.MessageExpiry = 30, 10
	if ca := c.connect(&Connect{ClientID: []byte("c"), CleanStart: true, KeepAlive: 60, Will: w,
		Props: Properties{SessionExpiry: 60}}); ca.ReasonCode != Success {
		t.Fatalf("CONNACK %v", ca.ReasonCode)
	}
	c.c.Close()
	b.waitStats(t, "the session offline", func(s Stats) bool { return s.SessionsOffline == 1 })
	clk.t.Add(int64(31 * time.Second))
	b.sweep(clk.Now())
	if st := b.Stats(); st.Wills != 0 {
		t.Fatalf("%d wills still held after their delay, want 0", st.Wills)
	}
	var kept []string
	for m := range b.RetainedMessages() {
		kept = append(kept, m.Topic)
	}
	if len(kept) != 1 || kept[0] != "will/c" {
		t.Fatalf("retained %v, want the will, 10 s from its publication", kept)
	}
	clk.t.Add(int64(11 * time.Second))
	b.sweep(clk.Now())
	if st := b.Stats(); st.Retained != 0 {
		t.Fatalf("%d retained 11 s after the will's publication, want it expired", st.Retained)
	}
}
