package gateway

import (
	"errors"
	"log/slog"
	"strings"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestBusAsyncErrorLog: the bus logs no slow consumer on an MQTT
// bridge's subscription (the bridge counts and logs its drops), and other
// asynchronous NATS errors — a slow consumer elsewhere included — at most
// once a kind per asyncErrEvery, with the number left unlogged since.
func TestBusAsyncErrorLog(t *testing.T) {
	var out syncBuffer
	b := &Bus{log: slog.New(slog.NewTextHandler(&out, nil))}
	lines := func() []string {
		s := strings.TrimSpace(out.String())
		if s == "" {
			return nil
		}
		return strings.Split(s, "\n")
	}
	t0 := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	perm := errors.New(`nats: permissions violation for subscription to "x"`)
	other := errors.New("nats: some other error")

	bridged := &nats.Subscription{Subject: "x", Queue: bridgeGroup()}
	b.asyncError(bridged, nats.ErrSlowConsumer, t0)
	b.asyncError(bridged, nats.ErrSlowConsumer, t0)
	if l := lines(); len(l) != 0 {
		t.Fatalf("the bridge's slow consumer logged: %q", l)
	}
	b.asyncError(&nats.Subscription{Subject: "devices.*.presence"}, nats.ErrSlowConsumer, t0)
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "slow consumer") || !strings.Contains(l[0], "devices.*.presence") {
		t.Fatalf("another subscription's slow consumer: %q", l)
	}
	out.Reset()
	b.asyncError(nil, perm, t0)
	b.asyncError(nil, perm, t0.Add(time.Second))
	b.asyncError(nil, perm, t0.Add(9*time.Second))
	if l := lines(); len(l) != 1 || !strings.Contains(l[0], "permissions violation") {
		t.Fatalf("after three of a kind within 10 s: %q", l)
	}
	b.asyncError(nil, other, t0.Add(9*time.Second))
	if l := lines(); len(l) != 2 || !strings.Contains(l[1], "some other error") {
		t.Fatalf("another kind: %q", l)
	}
	b.asyncError(nil, perm, t0.Add(10*time.Second))
	l := lines()
	if len(l) != 3 || !strings.Contains(l[2], "permissions violation") || !strings.Contains(l[2], "not_logged_before=2") {
		t.Fatalf("the kind again after 10 s: %q", l)
	}
}

// TestBusAsyncErrorKindsBounded: past asyncErrKinds kinds within
// asyncErrEvery the rest share one line.
func TestBusAsyncErrorKindsBounded(t *testing.T) {
	var l asyncErrLog
	t0 := time.Date(2026, 12, 6, 17, 0, 0, 0, time.UTC)
	logged := 0
	for i := range 3 * asyncErrKinds {
		if ok, _ := l.allow(strings.Repeat("e", i+1), t0); ok {
			logged++
		}
	}
	if logged != asyncErrKinds+1 || len(l.kinds) != asyncErrKinds+1 {
		t.Fatalf("%d kinds logged, %d remembered; want %d", logged, len(l.kinds), asyncErrKinds+1)
	}
	if ok, _ := l.allow("new", t0.Add(asyncErrEvery)); !ok || len(l.kinds) > asyncErrKinds+1 {
		t.Fatalf("a new kind after the period: logged %v, %d remembered", ok, len(l.kinds))
	}
}

// TestBusSlowConsumerLog: a real slow consumer on the bus's connection
// goes to the bus's handler (nats.go's default would print it to stderr),
// which logs nothing for an MQTT bridge's subscription and logs any other.
func TestBusSlowConsumerLog(t *testing.T) {
	var out syncBuffer
	bus, err := StartBus(BusConfig{Node: "slow", Logger: slog.New(slog.NewTextHandler(&out, nil))})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	if bus.Conn().ErrorHandler() == nil {
		t.Fatal("no error handler on the bus's connection")
	}
	slow := func(sub *nats.Subscription, subject string) {
		t.Helper()
		if err := sub.SetPendingLimits(1, -1); err != nil {
			t.Fatal(err)
		}
		for range 100 {
			if err := bus.Conn().Publish(subject, []byte("x")); err != nil {
				t.Fatal(err)
			}
		}
		if err := bus.Conn().Flush(); err != nil {
			t.Fatal(err)
		}
		testutil.Eventually(t, 0, "a slow consumer on "+subject, func() bool {
			n, err := sub.Dropped()
			return err == nil && n > 0
		})
		if err := bus.Conn().Flush(); err != nil { // a round trip for the callback, on nats.go's goroutine
			t.Fatal(err)
		}
	}
	sub, err := bus.Conn().QueueSubscribeSync("slow.>", bridgeGroup())
	if err != nil {
		t.Fatal(err)
	}
	slow(sub, "slow.x")
	if s := out.String(); strings.Contains(s, "NATS error") {
		t.Fatalf("the bridge's slow consumer logged: %s", s)
	}
	other, err := bus.Conn().SubscribeSync("loud.>")
	if err != nil {
		t.Fatal(err)
	}
	slow(other, "loud.x")
	testutil.Eventually(t, 0, "another subscription's slow consumer logged", func() bool {
		s := out.String()
		return strings.Contains(s, "NATS error") && strings.Contains(s, "loud.>")
	})
}
