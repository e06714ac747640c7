package gateway

import (
	"encoding/binary"
	"errors"
	"log/slog"
	"math"
	"strconv"
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

// start begins the node's sync on a goroutine of its own. Every change of
// a retained topic the node sees from now on (touch) wins over the answer.
func (r *retainSync) start() {
	r.mu.Lock()
	r.touched = map[string]struct{}{}
	r.begun = true
	r.mu.Unlock()
	r.syncing.Store(true)
	go r.run()
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
	if len(r.touched) >= retainSyncMaxTouched {
		r.touched = nil // apply stops taking the answer
		return
	}
	r.touched[topic] = struct{}{}
}

// run asks for the other nodes' retained messages, stores those whose
// topic holds none and did not change meanwhile, then answers the nodes
// that start later.
func (r *retainSync) run() {
	defer close(r.exited)
	n, err := r.ask()
	for wait, deadline := 100*time.Millisecond, time.Now().Add(retainSyncRetry); errors.Is(err, errNoOtherNode) && time.Now().Before(deadline); wait *= 2 {
		select {
		case <-time.After(min(wait, time.Until(deadline))):
		case <-r.done:
		}
		n, err = r.ask()
	}
	r.mu.Lock()
	r.syncing.Store(false)
	aborted := r.touched == nil
	r.touched = nil
	if r.closed {
		r.mu.Unlock()
		return
	}
	answers, serr := r.nc.QueueSubscribe(retainSyncSubject, retainSyncGroup, r.answer)
	if serr == nil {
		r.answers = answers
	}
	r.mu.Unlock()
	switch {
	case errors.Is(err, errNoOtherNode):
		r.log.Debug("MQTT retained sync: no other node answered")
	case aborted:
		r.log.Warn("MQTT retained sync: stopped, too many retained topics changed while it ran",
			"stored", r.synced.Load(), "max_changed", retainSyncMaxTouched)
	case err != nil:
		r.log.Warn("MQTT retained sync: another node's retained messages are not all here", "error", err,
			"stored", r.synced.Load())
	default:
		r.log.Info("MQTT retained sync: took another node's retained messages", "answer", n,
			"stored", r.synced.Load())
	}
	if serr != nil {
		r.log.Error("MQTT retained sync: NATS subscribe", "subject", retainSyncSubject, "error", serr)
	}
}

var errNoOtherNode = errors.New("no other node answered")

// ask requests the retained messages and stores the answer, returning
// how many messages the answer had.
func (r *retainSync) ask() (int, error) {
	r.mu.Lock()
	if r.closed {
		r.mu.Unlock()
		return 0, errors.New("closed")
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
	// -mqtt-max-retained-bytes), which the bound here lets through.
	inbox.SetPendingLimits(-1, max(64<<20, 2*r.d.broker.Config().MaxRetainedBytes))
	if err := r.nc.PublishRequest(retainSyncSubject, inbox.Subject, nil); err != nil {
		return 0, err
	}
	for {
		m, err := inbox.NextMsg(retainSyncWait)
		if errors.Is(err, nats.ErrNoResponders) {
			return 0, errNoOtherNode
		}
		if err != nil {
			return 0, err
		}
		if err := r.apply(m.Data); err != nil {
			return 0, err
		}
		if end := m.Header.Get(headerSyncEnd); end != "" {
			n, _ := strconv.Atoi(end)
			return n, nil
		}
	}
}

// apply stores one part of an answer.
func (r *retainSync) apply(part []byte) error {
	for len(part) > 0 {
		topic, payload, qos, rest, ok := decodeRetained(part)
		if !ok {
			return errors.New("malformed answer")
		}
		part = rest
		r.mu.Lock()
		if r.touched == nil {
			r.mu.Unlock()
			return nil // stopped: see touch
		}
		if _, changed := r.touched[topic]; !changed {
			if ok, _ := r.d.broker.RetainIfAbsent(&mqtt.Message{Topic: topic, Payload: payload, QoS: qos}); ok {
				r.synced.Add(1)
			}
		}
		r.mu.Unlock()
	}
	return nil
}

// answer sends a starting node this node's retained messages, in parts
// of at most retainSyncPart bytes (a larger message goes alone); the last
// part carries headerSyncEnd. A message too large for one NATS message is
// left out (counted).
func (r *retainSync) answer(req *nats.Msg) {
	if req.Reply == "" {
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
