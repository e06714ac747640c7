package mqtt

import (
	"maps"
	"sync/atomic"
	"testing"
	"time"
)

// TestRetainAPI: Retain stores and deletes without delivering;
// RetainIfAbsent fills only an empty topic; RetainedMessages lists the
// store; a new subscriber gets what Retain stored; the bounds apply.
func TestRetainAPI(t *testing.T) {
	b := startBroker(t, Config{MaxRetained: 3})
	c := connectOK(t, b.addr, Version311, "watcher")
	c.subscribe(1, QoS1, "r/#")

	if err := b.Retain(&Message{Topic: "r/1", Payload: []byte("one"), QoS: QoS1}); err != nil {
		t.Fatal(err)
	}
	if ok, err := b.RetainIfAbsent(&Message{Topic: "r/1", Payload: []byte("older")}); ok || err != nil {
		t.Fatalf("RetainIfAbsent over a stored topic = %v, %v; want false, nil", ok, err)
	}
	if ok, err := b.RetainIfAbsent(&Message{Topic: "r/2", Payload: []byte("two")}); !ok || err != nil {
		t.Fatalf("RetainIfAbsent on an empty topic = %v, %v; want true, nil", ok, err)
	}
	if ok, _ := b.RetainIfAbsent(&Message{Topic: "r/3"}); ok {
		t.Fatal("RetainIfAbsent stored an empty payload")
	}
	// Nothing was delivered: the watcher's next message is this one.
	if _, err := b.Publish(&Message{Topic: "r/marker", Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	if p := c.expectPublish(); p.Topic != "r/marker" {
		t.Fatalf("the subscriber got %q before the marker: Retain delivered", p.Topic)
	}

	got := map[string]string{}
	for m := range b.RetainedMessages() {
		got[m.Topic] = string(m.Payload)
	}
	if want := map[string]string{"r/1": "one", "r/2": "two"}; !maps.Equal(got, want) {
		t.Fatalf("RetainedMessages = %v, want %v", got, want)
	}
	n := 0
	for range b.RetainedMessages() {
		n++
		break
	}
	if n != 1 {
		t.Fatal("RetainedMessages went on after yield returned false")
	}

	// A new subscriber gets what Retain stored, with the retain flag.
	d := connectOK(t, b.addr, Version311, "late")
	d.subscribe(1, QoS1, "r/1")
	if p := d.expectPublish(); p.Topic != "r/1" || p.Payload != "one" || !p.Retain || p.QoS != QoS1 {
		t.Fatalf("the new subscriber got %+v", p)
	}

	// An empty payload deletes; the bound (3) drops the fourth topic.
	if err := b.Retain(&Message{Topic: "r/1"}); err != nil {
		t.Fatal(err)
	}
	for _, topic := range []string{"r/4", "r/5", "r/6"} {
		if err := b.Retain(&Message{Topic: topic, Payload: []byte("x")}); err != nil {
			t.Fatal(err)
		}
	}
	if st := b.Stats(); st.Retained != 3 {
		t.Fatalf("retained %d, want 3 (r/2, r/4, r/5; r/6 over the bound)", st.Retained)
	}
	if ok, _ := b.RetainIfAbsent(&Message{Topic: "r/7", Payload: []byte("x")}); ok {
		t.Fatal("RetainIfAbsent stored over MaxRetained")
	}

	// Invalid input gets the Publish errors.
	if err := b.Retain(&Message{Topic: "r/+", Payload: []byte("x")}); err != ErrTopic {
		t.Fatalf("wildcard topic: %v, want ErrTopic", err)
	}
	if _, err := b.RetainIfAbsent(&Message{Topic: "r/8", Payload: []byte("x"), QoS: 3}); err != ErrQoS {
		t.Fatalf("QoS 3: %v, want ErrQoS", err)
	}
}

// testClock is a Config.Clock the test moves.
type testClock struct{ t atomic.Int64 }

func (c *testClock) Now() time.Time { return time.Unix(0, c.t.Load()) }

// TestPublishIfAbsent: it stores and delivers when the topic holds no
// retained message, neither when it holds one; an expired one counts as
// none, for RetainIfAbsent too.
func TestPublishIfAbsent(t *testing.T) {
	clk := &testClock{}
	clk.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := startBroker(t, Config{Clock: clk})
	c := connectOK(t, b.addr, Version311, "early")
	c.subscribe(1, QoS1, "f/#")

	n, stored, err := b.PublishIfAbsent(&Message{Topic: "f/1", Payload: []byte("filled"), QoS: QoS1})
	if n != 1 || !stored || err != nil {
		t.Fatalf("PublishIfAbsent on an empty topic = %d, %v, %v; want 1, true, nil", n, stored, err)
	}
	if p := c.expectPublish(); p.Topic != "f/1" || p.Payload != "filled" {
		t.Fatalf("the early subscriber got %+v", p)
	}
	if n, stored, _ := b.PublishIfAbsent(&Message{Topic: "f/1", Payload: []byte("older")}); n != 0 || stored {
		t.Fatalf("PublishIfAbsent over a stored topic = %d, %v", n, stored)
	}
	if _, err := b.Publish(&Message{Topic: "f/marker", Payload: []byte("m")}); err != nil {
		t.Fatal(err)
	}
	if p := c.expectPublish(); p.Topic != "f/marker" {
		t.Fatalf("got %s before the marker: the refused fill was delivered", p.Topic)
	}

	// A retained message that expired does not keep the topic.
	b.Retain(&Message{Topic: "f/2", Payload: []byte("short-lived"), MessageExpiry: 10})
	if ok, _ := b.RetainIfAbsent(&Message{Topic: "f/2", Payload: []byte("x")}); ok {
		t.Fatal("RetainIfAbsent replaced a live retained message")
	}
	clk.t.Add(int64(11 * time.Second))
	if ok, _ := b.RetainIfAbsent(&Message{Topic: "f/2", Payload: []byte("after")}); !ok {
		t.Fatal("an expired retained message kept RetainIfAbsent out")
	}
}
