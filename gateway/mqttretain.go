package gateway

import (
	"encoding/binary"
	"errors"
	"fmt"
	"log/slog"
	"math"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/mqtt"
)

// A node that starts asks the others once for the retained MQTT messages
// they keep, so that a subscriber on it gets what was retained before it
// came (or came back after a restart). One node answers: the answering
// nodes are one NATS queue group, and a node joins it only once its own
// sync has ended, so that it never answers itself with an empty store.
const (
	// retainSyncSubject is the request's subject. It is not under
	// retainedPrefix: the bridge's retained subscription must not see it.
	retainSyncSubject = "warren.mqtt.sync.retained"
	// retainSyncGroup is the answering nodes' queue group.
	retainSyncGroup = "warren.mqtt.sync.retained"
	// retainSyncPart bounds the bytes of one answer message (less when
	// the NATS server's max payload is smaller).
	retainSyncPart = 256 << 10
	// retainSyncWait bounds the wait for each part of the answer.
	retainSyncWait = 10 * time.Second
	// retainSyncRetry is how long a node asks again while no other node
	// answers: a node that starts with routes to others learns of their
	// answering group only once its routes are up.
	retainSyncRetry = 4 * time.Second
	// retainSyncAttempts bounds the asks after a timeout or a lost or
	// malformed part.
	retainSyncAttempts = 3
	// retainSyncPending bounds the answer's bytes waiting to be stored,
	// at least (twice the node's MaxRetainedBytes if more).
	retainSyncPending = 64 << 20
	// retainSyncMaxTouched bounds the topics a node remembers as changed
	// while its sync runs; past it the sync stops (it could no longer
	// tell a stale answer from a new message).
	retainSyncMaxTouched = 100_000
	// headerSyncEnd marks the last part of an answer; its value is the
	// number of messages in all the parts.
	headerSyncEnd = "Warren-Sync-End"
)

// retainSync is a node's side of the sync: what it asks for at start,
// and its answers to the nodes that start later.
type retainSync struct {
	d   *mqttDevices
	nc  *nats.Conn
	log *slog.Logger

	syncing atomic.Bool // the node's own sync runs: touch records topics
	mu      sync.Mutex
	touched map[string]struct{} // retained topics changed while syncing
	closed  bool
	begun   bool               // start was called: exited will close
	inbox   *nats.Subscription // the answer's, while syncing
	answers *nats.Subscription // the queue group's, once synced
	done    chan struct{}      // closed by close
	exited  chan struct{}      // closed when the sync's goroutine returns

	synced, answered, skipped atomic.Uint64
}

func newRetainSync(d *mqttDevices, nc *nats.Conn, log *slog.Logger) *retainSync {
	return &retainSync{d: d, nc: nc, log: log, done: make(chan struct{}), exited: make(chan struct{})}
}

// begin starts recording the retained topics that change (touch): from
// now on, what changes on the node wins over the answer. The node calls it
// before it subscribes to other nodes' retained messages, and run once it
// has.
func (r *retainSync) begin() {
	r.mu.Lock()
	r.touched = map[string]struct{}{}
	r.begun = true
	r.mu.Unlock()
	r.syncing.Store(true)
}

// touch records that topic's retained message changed (a local publish or
// another node's, about to be stored): an answer's older copy must not
// replace it. Cheap when no sync runs.
func (r *retainSync) touch(topic string) {
	if !r.syncing.Load() {
		return
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	if r.touched == nil {
		return
	}
	if _, ok := r.touched[topic]; ok {
		return
	}
	if len(r.touched) >= retainSyncMaxTouched {
		r.touched = nil // apply stops taking the answer
		return
	}
	r.touched[topic] = struct{}{}
}

// run asks for the other nodes' retained messages and stores those whose
// topic holds none and did not change meanwhile; then, if it has what
// another node keeps (or no other node answered), it answers the nodes
// that start later. On its own goroutine, after begin.
func (r *retainSync) run() {
	defer close(r.exited)
	var n int
	var err error
	for attempt, wait, deadline := 1, 100*time.Millisecond, time.Now().Add(retainSyncRetry); ; attempt++ {
		n, err = r.ask()
		switch {
		case err == nil || errors.Is(err, errSyncClosed) || r.stopped():
		case errors.Is(err, errNoOtherNode) && time.Now().Before(deadline):
			// Routes to the other nodes may not be up yet.
			if !r.sleep(min(wait, time.Until(deadline))) {
				break
			}
			wait *= 2
			continue
		case !errors.Is(err, errNoOtherNode) && attempt < retainSyncAttempts:
			// A timeout, a lost or malformed part: ask again, afresh (the
			// queue group may pick another node).
			r.log.Warn("MQTT retained sync: asking again", "error", err, "attempt", attempt)
			if r.sleep(time.Second) {
				continue
			}
		}
		break
	}
	r.mu.Lock()
	r.syncing.Store(false)
	aborted := r.touched == nil
	r.touched = nil
	// A node answers only with a store as complete as it can know it.
	answer := !r.closed && (err == nil || errors.Is(err, errNoOtherNode) || aborted)
	var serr error
	if answer {
		var answers *nats.Subscription
		if answers, serr = r.nc.QueueSubscribe(retainSyncSubject, retainSyncGroup, r.answer); serr == nil {
			r.answers = answers
		}
	}
	closed := r.closed
	r.mu.Unlock()
	switch {
	case closed:
	case aborted:
		r.log.Warn("MQTT retained sync: stopped, too many retained topics changed while it ran",
			"stored", r.synced.Load(), "max_changed", retainSyncMaxTouched)
	case errors.Is(err, errNoOtherNode):
		r.log.Debug("MQTT retained sync: no other node answered")
	case err != nil:
		r.log.Error("MQTT retained sync: another node's retained messages are not all here; this node does not answer others",
			"error", err, "stored", r.synced.Load())
	default:
		r.log.Info("MQTT retained sync: took another node's retained messages", "answer", n,
			"stored", r.synced.Load())
	}
	if serr != nil {
		r.log.Error("MQTT retained sync: NATS subscribe", "subject", retainSyncSubject, "error", serr)
	}
}

// sleep waits d, false if the sync closed meanwhile.
func (r *retainSync) sleep(d time.Duration) bool {
	select {
	case <-time.After(d):
		return true
	case <-r.done:
		return false
	}
}

// stopped reports whether too many topics changed for the sync to go on.
func (r *retainSync) stopped() bool {
	r.mu.Lock()
	defer r.mu.Unlock()
	return r.touched == nil
}

var (
	errNoOtherNode = errors.New("no other node answered")
	errSyncClosed  = errors.New("closed")
)

// ask requests the retained messages and stores the answer, returning
// how many messages the answer had.
func (r *retainSync) ask() (int, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errSyncClosed
	}
	inbox, err := r.nc.SubscribeSync(nats.NewInbox())
	if err != nil {
		r.mu.Unlock()
		return 0, err
	}
	r.inbox = inbox
	r.mu.Unlock()
	defer inbox.Unsubscribe()
	// The answer is at most the answering node's store (its
	// MaxRetainedBytes, 64 MiB by default), in parts of 256 KiB.
	if err := inbox.SetPendingLimits(-1, max(retainSyncPending, 2*r.d.broker.Config().MaxRetainedBytes)); err != nil {
		return 0, err
	}
	if err := r.nc.PublishRequest(retainSyncSubject, inbox.Subject, nil); err != nil {
		return 0, err
	}
	got := 0
	for {
		m, err := inbox.NextMsg(retainSyncWait)
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, errNoOtherNode
		}
		if err != nil {
			return got, err
		}
		k, err := r.apply(m.Data)
		got += k
		if err != nil {
			return got, err
		}
		if end := m.Header.Get(headerSyncEnd); end != "" {
			if n, err := strconv.Atoi(end); err != nil || n != got {
				return got, fmt.Errorf("the answer had %d messages, its end says %q", got, end)
			}
			return got, nil
		}
	}
}

// apply stores one part of an answer and returns how many records it
// had. A topic stored is delivered to the node's subscribers too: they
// subscribed before it came, and would have had it from the store.
func (r *retainSync) apply(part []byte) (int, error) {
	k := 0
	for len(part) > 0 {
		topic, payload, qos, rest, ok := decodeRetained(part)
		if !ok {
			return k, errors.New("malformed answer")
		}
		part = rest
		k++
		r.mu.Lock()
		if r.touched == nil {
			r.mu.Unlock()
			continue // stopped: see touch
		}
		if _, changed := r.touched[topic]; !changed {
			if _, ok, _ := r.d.broker.PublishIfAbsent(&mqtt.Message{Topic: topic, Payload: payload, QoS: qos, Retain: true}); ok {
				r.synced.Add(1)
			}
		}
		r.mu.Unlock()
	}
	return k, nil
}

// answer sends a starting node this node's retained messages, in parts
// of at most retainSyncPart bytes (a larger message goes alone); the last
// part carries headerSyncEnd. A message too large for one NATS message is
// left out (counted). Only a request with an inbox for its reply is
// answered.
func (r *retainSync) answer(req *nats.Msg) {
	if !strings.HasPrefix(req.Reply, nats.InboxPrefix) {
		return
	}
	limit := retainSyncPart // a part's bytes, unless one record is more
	largest := limit        // a record's, under the NATS server's max payload
	if mp := int(r.nc.MaxPayload()); mp > 0 {
		largest = mp - 1024
		limit = min(limit, largest)
	}
	var buf []byte
	n := 0
	send := func(last bool) bool {
		m := nats.NewMsg(req.Reply)
		m.Data = buf
		if last {
			m.Header.Set(headerSyncEnd, strconv.Itoa(n))
		}
		if err := r.nc.PublishMsg(m); err != nil {
			r.log.Warn("MQTT retained sync: answer", "error", err)
			return false
		}
		buf = nil
		return true
	}
	for m := range r.d.broker.RetainedMessages() {
		size := retainedRecordSize(m.Topic, m.Payload)
		if size > largest {
			r.skipped.Add(1)
			continue
		}
		if len(buf) > 0 && len(buf)+size > limit && !send(false) {
			return
		}
		buf = appendRetained(buf, m.Topic, m.Payload, m.QoS)
		n++
	}
	if send(true) {
		r.answered.Add(1)
	}
}

// close ends the sync and the answers; it returns once the sync's
// goroutine has.
func (r *retainSync) close() {
	r.mu.Lock()
	if !r.closed {
		close(r.done)
	}
	r.closed = true
	if r.inbox != nil {
		r.inbox.Unsubscribe() // ends the wait in ask
	}
	if r.answers != nil {
		r.answers.Unsubscribe()
	}
	begun := r.begun
	r.mu.Unlock()
	if begun {
		<-r.exited
	}
}

// A part of an answer is a sequence of records: the topic's length
// (uvarint), the topic, the QoS (one byte), the payload's length
// (uvarint), the payload.

func retainedRecordSize(topic string, payload []byte) int {
	return 2*binary.MaxVarintLen64 + 1 + len(topic) + len(payload)
}

func appendRetained(b []byte, topic string, payload []byte, qos mqtt.QoS) []byte {
	b = binary.AppendUvarint(b, uint64(len(topic)))
	b = append(b, topic...)
	b = append(b, byte(qos))
	b = binary.AppendUvarint(b, uint64(len(payload)))
	return append(b, payload...)
}

// decodeRetained reads one record from b; ok is false when b does not
// start with a whole, valid one.
func decodeRetained(b []byte) (topic string, payload []byte, qos mqtt.QoS, rest []byte, ok bool) {
	tl, k := binary.Uvarint(b)
	if k <= 0 || tl > math.MaxUint16 || uint64(len(b)-k) < tl+1 {
		return "", nil, 0, nil, false
	}
	b = b[k:]
	topic, b = string(b[:tl]), b[tl:]
	qos, b = mqtt.QoS(b[0]), b[1:]
	pl, k := binary.Uvarint(b)
	if k <= 0 || uint64(len(b)-k) < pl || qos > mqtt.QoS2 {
		return "", nil, 0, nil, false
	}
	b = b[k:]
	return topic, b[:pl:pl], qos, b[pl:], true
}
