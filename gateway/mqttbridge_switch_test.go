package gateway

import (
	"bytes"
	"encoding/binary"
	"fmt"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/internal/testutil"
)

// seqRecorder counts, by the sequence number in their payload, the
// messages a bridge hands on, and checks they come in the order they were
// published.
type seqRecorder struct {
	mu       sync.Mutex
	seen     map[uint64]int
	last     uint64
	n        int
	disorder []string
}

func newSeqRecorder() *seqRecorder { return &seqRecorder{seen: map[uint64]int{}} }

// take is the bridge's handler.
func (r *seqRecorder) take(m *nats.Msg) {
	if len(m.Data) != 8 {
		return
	}
	seq := binary.BigEndian.Uint64(m.Data)
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen[seq]++
	r.n++
	if seq <= r.last && len(r.disorder) < 10 {
		r.disorder = append(r.disorder, fmt.Sprintf("%d (%s) after %d", seq, m.Subject, r.last))
	}
	r.last = max(r.last, seq)
}

func (r *seqRecorder) count() int {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.n
}

// check fails t unless every sequence number in want arrived exactly
// once, and everything in order.
func (r *seqRecorder) check(t *testing.T, want func(seq uint64) bool, published uint64) {
	t.Helper()
	r.mu.Lock()
	defer r.mu.Unlock()
	var lost, twice []uint64
	for seq := uint64(1); seq <= published; seq++ {
		n := r.seen[seq]
		switch {
		case n > 1:
			twice = append(twice, seq)
		case n == 0 && want(seq):
			lost = append(lost, seq)
		}
	}
	if len(lost) > 0 || len(twice) > 0 {
		t.Errorf("of %d messages published: %d lost (first: %v), %d taken more than once (first: %v)",
			published, len(lost), lost[:min(len(lost), 10)], len(twice), twice[:min(len(twice), 10)])
	}
	if len(r.disorder) > 0 {
		t.Errorf("out of order: %v", r.disorder)
	}
}

// startBridge starts an embedded NATS server and a bridge on its
// connection that hands what it takes to rec; pub is another connection.
func startBridge(t *testing.T, max int, rec *seqRecorder) (b *bridge, pub *nats.Conn) {
	t.Helper()
	bus, err := StartBus(BusConfig{Node: "bridge-test", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	b = newBridge(bus.Conn(), rec.take, max, 0, quietLog())
	t.Cleanup(b.close)
	pub, err = nats.Connect("", nats.InProcessServer(bus.Embedded()))
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(pub.Close)
	return b, pub
}

// publisher publishes sequence numbers 1, 2, … round robin on subjects
// from another connection, in bursts of 10 a millisecond apart (about
// 10,000 a second), until stop; it returns the last number published.
func publisher(t *testing.T, pub *nats.Conn, subjects []string) (stop func() uint64) {
	t.Helper()
	done := make(chan struct{})
	var last atomic.Uint64
	exited := make(chan struct{})
	go func() {
		defer close(exited)
		var seq uint64
		deadline := time.Now().Add(30 * time.Second)
		for time.Now().Before(deadline) {
			select {
			case <-done:
				return
			default:
			}
			for range 10 {
				seq++
				var p [8]byte
				binary.BigEndian.PutUint64(p[:], seq)
				if err := pub.Publish(subjects[seq%uint64(len(subjects))], p[:]); err != nil {
					t.Errorf("publish: %v", err)
					return
				}
				last.Store(seq)
			}
			time.Sleep(time.Millisecond)
		}
	}()
	return func() uint64 {
		close(done)
		<-exited
		if err := pub.Flush(); err != nil {
			t.Fatal(err)
		}
		return last.Load()
	}
}

// settle waits until rec has n messages, and then until nothing more
// arrives for 200 ms (a message taken twice would come late).
func settle(t *testing.T, rec *seqRecorder, n int) {
	t.Helper()
	testutil.Eventually(t, 15*time.Second, fmt.Sprintf("%d messages through the bridge", n), func() bool { return rec.count() >= n })
	for last := -1; rec.count() != last; time.Sleep(200 * time.Millisecond) {
		last = rec.count()
	}
}

// TestBridgeSwitchExact: the bridge goes over its bound, and switches to
// ">", while another connection publishes on subjects it follows, some
// of them twice over (t.1 is t.1 and t.*): every message is handed on
// exactly once, and in the order it was published.
func TestBridgeSwitchExact(t *testing.T) {
	rec := newSeqRecorder()
	b, pub := startBridge(t, 3, rec)
	for _, f := range []string{"t/1", "t/+", "t/2"} {
		b.add(f)
	}
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	stop := publisher(t, pub, []string{"t.1", "t.2", "t.3", "t.4"})
	testutil.Eventually(t, 10*time.Second, "messages before the switch", func() bool { return rec.count() >= 2000 })

	b.add("x/1") // the fourth subject: over max
	if b.overflowed.Load() != 1 {
		t.Fatal("not over max")
	}
	testutil.Eventually(t, 15*time.Second, "the switch to >", func() bool {
		b.mu.RLock()
		defer b.mu.RUnlock()
		return b.all != nil && b.pending == nil && len(b.order) == 0
	})
	after := rec.count()
	testutil.Eventually(t, 10*time.Second, "messages after the switch", func() bool { return rec.count() >= after+2000 })
	published := stop()
	settle(t, rec, int(published))
	rec.check(t, func(uint64) bool { return true }, published)
	if d := b.dropped(); d != 0 {
		t.Errorf("%d messages dropped (queue full)", d)
	}
	t.Logf("%d messages, %d before the switch was done", published, after)
}

// TestBridgeRemoveOverlapExact: of two subscriptions that both match a
// subject, first one and then the other goes while messages on it flow:
// the one left takes every message, none is taken twice.
func TestBridgeRemoveOverlapExact(t *testing.T) {
	rec := newSeqRecorder()
	b, pub := startBridge(t, 0, rec)
	b.add("r/1")
	b.add("r/+")
	if err := b.nc.Flush(); err != nil {
		t.Fatal(err)
	}
	stop := publisher(t, pub, []string{"r.1"})
	step := func(what string, f func()) {
		t.Helper()
		n := rec.count()
		f()
		testutil.Eventually(t, 10*time.Second, "messages after "+what, func() bool { return rec.count() >= n+1500 })
	}
	step("the start", func() {})
	step("removing r/1", func() { b.remove("r/1") })
	step("adding r/1 again", func() {
		b.add("r/1")
		if err := b.nc.Flush(); err != nil {
			t.Fatal(err)
		}
	})
	step("removing r/+", func() { b.remove("r/+") })
	published := stop()
	settle(t, rec, int(published))
	rec.check(t, func(uint64) bool { return true }, published)
	b.mu.RLock()
	subs := len(b.order)
	b.mu.RUnlock()
	if subs != 1 || b.subjects.Load() != 1 {
		t.Errorf("%d subscriptions, %d subjects, want 1 (r.1)", subs, b.subjects.Load())
	}
}

// TestBridgeQueueFull: a consumer that falls behind its queue loses
// messages to the NATS client's slow-consumer rule, and the bridge counts
// them.
func TestBridgeQueueFull(t *testing.T) {
	bus, err := StartBus(BusConfig{Node: "bridge-full", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	release := make(chan struct{})
	var got atomic.Int64
	var logs syncBuffer
	b := newBridge(bus.Conn(), func(*nats.Msg) {
		got.Add(1)
		<-release
	}, 0, 4, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(b.close)
	t.Cleanup(func() { close(release) })
	b.add("f/1")
	nc := bus.Conn()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The consumer holds the first message; four fit in the queue; the
	// other five are dropped.
	nc.Publish("f.1", []byte("x"))
	testutil.Eventually(t, 10*time.Second, "the first message", func() bool { return got.Load() == 1 })
	for range 9 {
		nc.Publish("f.1", []byte("x"))
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "five drops", func() bool { return b.dropped() == 5 })
	if b.queued() != 4 || got.Load() != 1 {
		t.Fatalf("queued %d, handed on %d; want 4 and 1", b.queued(), got.Load())
	}
	// Logged once (the consumer does it every bridgeDropCheck).
	b.logDrops()
	b.logDrops()
	if out := logs.String(); strings.Count(out, "queue was full") != 1 || !strings.Contains(out, "dropped=5 reason=queue_full") {
		t.Fatalf("log: %q", out)
	}
	// A subscription that ends keeps its drops counted.
	b.remove("f/1")
	if d := b.dropped(); d != 5 {
		t.Fatalf("after the subscription ended: %d dropped, want 5", d)
	}
}

// syncBuffer is a bytes.Buffer safe for a logger and a test at once.
type syncBuffer struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncBuffer) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncBuffer) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

func (w *syncBuffer) Reset() {
	w.mu.Lock()
	defer w.mu.Unlock()
	w.b.Reset()
}

// TestBridgeQueueBytes: the bridge's queue holds at most
// MQTTBridgeQueueBytes of messages; what would pass it is dropped with its
// own reason (queue_bytes_full), counted apart from queue_full, and
// logged; the queued bytes return to 0 once the consumer has caught up.
// A message larger than the whole bound still passes an empty queue.
func TestBridgeQueueBytes(t *testing.T) {
	bus, err := StartBus(BusConfig{Node: "bridge-bytes", Logger: quietLog()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(bus.Close)
	release := make(chan struct{})
	var got atomic.Int64
	var logs syncBuffer
	payload := make([]byte, 1000)
	one := bridgeMsgSize(&nats.Msg{Subject: "f.1", Data: payload}) // 1259
	b := newBridgeBytes(bus.Conn(), func(*nats.Msg) {
		if got.Add(1) == 1 {
			<-release
		}
	}, 0, 100, 3*one, slog.New(slog.NewTextHandler(&logs, nil)))
	t.Cleanup(b.close)
	b.add("f/1")
	nc := bus.Conn()
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	// The consumer holds the first message; nine wait in the hand-off;
	// released, it takes three of them into its queue, within the bytes,
	// and drops six.
	nc.Publish("f.1", payload)
	testutil.Eventually(t, 10*time.Second, "the first message", func() bool { return got.Load() == 1 })
	for range 9 {
		nc.Publish("f.1", payload)
	}
	if err := nc.Flush(); err != nil {
		t.Fatal(err)
	}
	testutil.Eventually(t, 10*time.Second, "nine in the hand-off", func() bool { return b.queued() == 9 })
	close(release)
	testutil.Eventually(t, 10*time.Second, "four handed on", func() bool { return got.Load() == 4 })
	testutil.Eventually(t, 10*time.Second, "the queue empty", func() bool { return b.queued() == 0 && b.queuedBytes.Load() == 0 })
	if bd, d := b.bytesDrops.Load(), b.dropped(); bd != 6 || d != 0 {
		t.Fatalf("dropped: %d queue_bytes_full, %d queue_full; want 6, 0", bd, d)
	}
	b.logDrops()
	b.logDrops()
	if out := logs.String(); strings.Count(out, "-mqtt-bridge-queue-bytes") != 1 || !strings.Contains(out, "dropped=6 reason=queue_bytes_full") {
		t.Fatalf("log: %q", out)
	}
	nc.Publish("f.1", make([]byte, 5*one))
	testutil.Eventually(t, 10*time.Second, "the large message handed on", func() bool { return got.Load() == 5 })
}

// TestBridgeDrainCapped: one pass of the consumer moves at most the
// hand-off's capacity into its queue, however fast the hand-off is
// refilled, so a flood can't keep the consumer from handing messages on.
func TestBridgeDrainCapped(t *testing.T) {
	b := &bridge{q: make(chan *nats.Msg, 4), queueMax: 1000, queueMaxBytes: -1, done: make(chan struct{})}
	const total = 200
	go func() {
		for range total {
			b.q <- &nats.Msg{Subject: "f.1", Data: []byte("x")}
		}
	}()
	for taken := 0; taken < total; {
		if !b.drain(nil) {
			t.Fatal("drain reported the bridge closed")
		}
		n := b.queue.len()
		if n > cap(b.q) {
			t.Fatalf("one pass took %d messages, over the hand-off's %d", n, cap(b.q))
		}
		for range n {
			b.queue.pop()
		}
		taken += n
	}
}
