package gateway

import (
	"crypto/sha256"
	"encoding/hex"
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
	"github.com/nats-io/nuid"

	"github.com/warrenhq/warren/mqtt"
)

// DefaultMQTTBridgeMaxSubjects bounds the NATS subscriptions one node
// makes for its MQTT subscribers' interest (Config.MQTTBridgeMaxSubjects).
const DefaultMQTTBridgeMaxSubjects = 1024

// DefaultMQTTBridgeQueue bounds the messages from NATS waiting for the
// node's bridge to hand them to its MQTT subscribers
// (Config.MQTTBridgeQueue): a second and a half of 10,000 messages a
// second. Their bytes are bounded by MQTTBridgeQueueBytes once the
// bridge's goroutine has moved them from the NATS client's hand-off into
// its queue; the hand-off itself is bounded by this count only (16,384 ×
// the NATS max payload at worst, only while the goroutine gets no CPU).
const DefaultMQTTBridgeQueue = 16384

// DefaultMQTTBridgeQueueBytes bounds the bytes of the messages from NATS
// waiting in the bridge's queue (Config.MQTTBridgeQueueBytes): 64 MiB,
// the default queue's 16,384 messages at 4 KiB each.
const DefaultMQTTBridgeQueueBytes = 64 << 20

// bridgeMsgOverhead is what a message from NATS holds besides its
// subject, reply, headers and payload (the nats.Msg and its header map),
// counted in the queue's bytes.
const bridgeMsgOverhead = 256

// ReasonBridgeQueueFull labels the messages from NATS dropped because
// the bridge's queue was full (warren_gateway_mqtt_bridge_dropped_total):
// the NATS client drops what the hand-off channel cannot take (a slow
// consumer), and the bridge what its queue, at MQTTBridgeQueue
// messages, cannot.
const ReasonBridgeQueueFull = "queue_full"

// ReasonBridgeQueueBytesFull labels the messages from NATS dropped
// because their bytes would take the bridge's queue past
// MQTTBridgeQueueBytes.
const ReasonBridgeQueueBytesFull = "queue_bytes_full"

// bridgeSwitchGrace is how long the bridge keeps its per-subject
// subscriptions once the server has confirmed the one to ">": a message
// the server matched before it had ">" and delivers after the
// per-subject subscription went would be lost, so the two are kept apart
// by this much.
const bridgeSwitchGrace = time.Second

// bridgeDropCheck is how often the bridge's consumer looks for messages
// the NATS client dropped, to log them (at most once per period).
const bridgeDropCheck = 10 * time.Second

// retainedPrefix starts the subject a node publishes a retained MQTT
// message on, besides the message's own subject: every node subscribes
// to it (retainedPrefix + ">"), so that retained messages reach every
// node's store whatever its subscribers' interest.
const retainedPrefix = "warren.mqtt.retained."

// bridge holds a node's NATS subscriptions for the MQTT messages of other
// nodes and NATS clients. By default it follows the interest of the
// node's MQTT subscribers: the broker tells it (mqtt.Hooks.OnFilter) when
// a topic filter gets its first subscriber and loses its last, and the
// bridge keeps one NATS subscription per distinct subject those filters
// map to, with the device-id level of devices/<id>/… widened to a wildcard
// (devices/dev-7/commands/+ → devices.*.commands.*), so that a node holds
// a handful of subscriptions however many devices subscribe, never one
// per device. A node sees only the messages somebody on it subscribed to.
// Past max subjects, or with a fixed subject (Config.MQTTBridgeSubject),
// the node holds one subscription instead and sees everything on it.
//
// Every subscription of the bridge delivers into one bounded channel
// (nats.Conn.ChanQueueSubscribe), which one goroutine drains: the NATS
// client's read loop puts each message there as it reads it, so the
// bridge hands messages on in the order the server sent them, across
// subscriptions, and the node has one goroutine for them however many
// subjects it follows. When the channel is full the NATS client drops the
// message (a slow consumer); the bridge counts those drops from its
// subscriptions (reason queue_full) and logs them. The node's subscription
// to retained messages (subscribeRetained) delivers into the same channel,
// so that a retained message keeps its place among the others.
//
// Every other subscription of the bridge is in one queue group of its own (a
// name unique to the bridge, nobody else's): the server gives a message
// to one member of a queue group, however many of them match it, and
// when the member it picked has gone since it matched the message, it
// gives it to another member that matched. So overlapping subjects
// (devices.*.telemetry and devices.>) deliver a message once without the
// node comparing subjects, and the switch to ">" is exact: going over
// max, the node subscribes to ">", waits until the server has confirmed
// it, keeps its per-subject subscriptions bridgeSwitchGrace longer, and
// then drains them (nats.Subscription.Drain: the server forgets them
// first, the client a flush later, so that what the server gave them
// reaches the channel). A message the server matched while both were
// there goes to exactly one of them; one it matched before it had ">"
// went to a per-subject subscription. What remains:
//
//   - a message the server matched before it had ">" but delivers after
//     the per-subject subscription went: its delivering goroutine would
//     have to stall between the two for over bridgeSwitchGrace;
//   - duplicates for about bridgeSwitchGrace after each NATS reconnect
//     (see below);
//   - messages the NATS client drops because the channel is full
//     (counted), and, as everywhere in core NATS, what is published while
//     the node is disconnected, and in the instant before a new
//     subscription reaches the server.
//
// Removing a subject drains its subscription the same way, so that a
// message of two overlapping subjects is not lost when one of them goes.
//
// After every NATS reconnect the bridge re-forms its queue group (reform):
// the NATS client resends every subscription under the old group, and a
// server that still keeps the old, dead connection (it notices a
// half-open one only by its own ping check, minutes later) would give
// each message to one member of the group on either connection, about
// half of them to the dead one. So on every reconnect the bridge
// subscribes its current set (the per-subject subscriptions, ">", or the
// fixed subject) again under a new group name, waits until the server has
// them and bridgeSwitchGrace more, and then drains the old group's
// subscriptions: messages the server matched for the old group still
// arrive, and while both groups are there a message comes through each,
// twice. Until the new group reaches the server (a round trip after the
// reconnect) the old one is still split, and about half of what is
// published in that instant is lost. The same clears a subscription that
// was being drained when NATS went away and that the reconnect resent: it
// stays in the old group. A reconnect during a re-form starts another
// one, which re-forms what is current then; add, remove and the switch to
// ">" subscribe under the current group whenever they run.
type bridge struct {
	nc     *nats.Conn
	handle nats.MsgHandler
	max    int
	log    *slog.Logger
	// q is what they deliver, in order: the hand-off from the NATS
	// client's read loop, MQTTBridgeQueue messages (a burst read while
	// the consumer is not scheduled must fit), which the consumer empties
	// into queue before each message it hands on.
	q chan *nats.Msg
	// queue is what waits for the consumer after the hand-off, in order,
	// within queueMax messages and queueMaxBytes bytes (negative: no
	// byte bound). Only the consumer's goroutine touches it.
	queue         msgRing
	queueMax      int
	queueMaxBytes int64
	// queuedMsgs and queuedBytes are queue's length and bytes, for the
	// metrics; fullDrops and bytesDrops the messages it refused.
	queuedMsgs, queuedBytes atomic.Int64
	fullDrops, bytesDrops   atomic.Uint64
	grace                   time.Duration // bridgeSwitchGrace; shorter in tests
	done                    chan struct{} // closed by close: the consumer returns
	exited                  chan struct{} // closed when the consumer has returned

	mu    sync.RWMutex
	group string                // the queue group of the current subscriptions
	refs  map[string]*bridgeSub // by NATS subject
	order []*bridgeSub          // subscribed, oldest first
	all   *nats.Subscription    // the one subscription once over max, or the fixed subject's
	// ret is the node's subscription to retained messages
	// (subscribeRetained).
	ret *nats.Subscription
	// shares are the node's subscriptions for its MQTT share groups, by
	// NATS queue group (addShare).
	shares map[string]*bridgeShare
	// pending is the subscription to ">" made on going over max, until
	// the per-subject subscriptions have gone and it becomes all.
	pending *nats.Subscription
	closed  bool
	// gen numbers the re-forms of the queue group; retiring holds, by
	// re-form, the old group's subscriptions it drains after the grace.
	gen      uint64
	retiring map[uint64][]*nats.Subscription
	// retired counts what the NATS client dropped for subscriptions that
	// have ended (it keeps each subscription's count in the subscription).
	retired uint64

	subjects   atomic.Int64  // distinct subjects of the node's interest
	overflowed atomic.Uint64 // times the interest went over max
	subErrors  atomic.Uint64 // failed NATS subscribes
	logged     atomic.Uint64 // drops logged so far
	// loggedBytes counts the queue_bytes_full drops logged so far.
	loggedBytes atomic.Uint64
	reformed    atomic.Uint64 // re-forms of the queue group completed
	// sharesRefused counts share groups not followed (addShare: over max).
	sharesRefused atomic.Uint64
}

// bridgeShare is one MQTT share group with members on the node.
type bridgeShare struct {
	share string // $share/group/filter
	sub   *nats.Subscription
}

// shareGroupPrefix begins the NATS queue group of an MQTT share group.
const shareGroupPrefix = "warren.mqtt.share."

// shareQueue returns the NATS queue group of an MQTT share group
// ($share/group/filter): the same name on every node, and a valid NATS
// name whatever characters the group and filter have.
func shareQueue(share string) string {
	sum := sha256.Sum256([]byte(share))
	return shareGroupPrefix + hex.EncodeToString(sum[:16])
}

// addShare subscribes the node for an MQTT share group that got its
// first member here (mqtt.Hooks.OnShare): on the subject its filter maps
// to, in the NATS queue group every node with members of the group joins,
// so that NATS gives each message to one of those nodes, which gives it
// to one of its members (mqtt.Server.PublishShared). The subscription
// delivers into the bridge's queue, outside the bridge's own group.
func (b *bridge) addShare(share string) {
	_, filter, ok := mqtt.ParseShared(share)
	if !ok || filter[0] == '$' || !mappable(filter) {
		return
	}
	// The filter's own subject, not widened as the node's interest is:
	// each group has a subscription of its own anyway, and a widened one
	// would bring the group every device's messages.
	subj := subject(filter)
	q := shareQueue(share)
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed || b.shares[q] != nil {
		return
	}
	if len(b.shares) >= b.max {
		b.sharesRefused.Add(1)
		b.log.Warn("MQTT bridge: share group not followed across the cluster: the node follows -mqtt-bridge-max-subjects groups already; its members here get nothing",
			"share", share, "max", b.max)
		return
	}
	sub, err := b.nc.ChanQueueSubscribe(subj, q, b.q)
	if err != nil {
		b.subErrors.Add(1)
		b.log.Error("MQTT bridge: NATS subscribe", "subject", subj, "share", share, "error", err)
		return
	}
	if b.shares == nil {
		b.shares = make(map[string]*bridgeShare)
	}
	b.shares[q] = &bridgeShare{share: share, sub: sub}
}

// removeShare ends the node's subscription for a share group whose last
// member here went.
func (b *bridge) removeShare(share string) {
	q := shareQueue(share)
	b.mu.Lock()
	defer b.mu.Unlock()
	if sh := b.shares[q]; sh != nil {
		b.end(sh.sub, true)
		delete(b.shares, q)
	}
}

// isShareSub reports whether m came through a share group's
// subscription (addShare).
func isShareSub(m *nats.Msg) bool {
	return m.Sub != nil && strings.HasPrefix(m.Sub.Queue, shareGroupPrefix)
}

// shareOf returns the share group ($share/group/filter) a message's
// subscription is for, "" if it is not one of the node's share groups
// (any more).
func (b *bridge) shareOf(m *nats.Msg) string {
	if !isShareSub(m) {
		return ""
	}
	b.mu.RLock()
	defer b.mu.RUnlock()
	if sh := b.shares[m.Sub.Queue]; sh != nil {
		return sh.share
	}
	return ""
}

// sharesFollowed returns the number of share groups the node follows.
func (b *bridge) sharesFollowed() int {
	b.mu.RLock()
	defer b.mu.RUnlock()
	return len(b.shares)
}

// bridgeSub is one subject of the node's interest.
type bridgeSub struct {
	subject string
	filters int // topic filters mapped onto it
	sub     *nats.Subscription
}

// newBridge returns a bridge delivering to handle, on its own goroutine,
// what its subscriptions bring; queue bounds the messages that wait for
// it (zero: DefaultMQTTBridgeQueue), their bytes DefaultMQTTBridgeQueueBytes.
func newBridge(nc *nats.Conn, handle nats.MsgHandler, max, queue int, log *slog.Logger) *bridge {
	return newBridgeBytes(nc, handle, max, queue, 0, log)
}

// newBridgeBytes is newBridge with queueBytes bounding the bytes of the
// messages that wait (zero: DefaultMQTTBridgeQueueBytes; negative: no
// bound).
func newBridgeBytes(nc *nats.Conn, handle nats.MsgHandler, max, queue int, queueBytes int64, log *slog.Logger) *bridge {
	if max <= 0 {
		max = DefaultMQTTBridgeMaxSubjects
	}
	if queue <= 0 {
		queue = DefaultMQTTBridgeQueue
	}
	if queueBytes == 0 {
		queueBytes = DefaultMQTTBridgeQueueBytes
	}
	b := &bridge{nc: nc, handle: handle, max: max, log: log, refs: map[string]*bridgeSub{},
		group: bridgeGroup(), retiring: map[uint64][]*nats.Subscription{},
		q: make(chan *nats.Msg, queue), grace: bridgeSwitchGrace,
		queueMax: queue, queueMaxBytes: queueBytes,
		done: make(chan struct{}), exited: make(chan struct{})}
	// Chained before the handler nc has (the bus's, which re-announces
	// every session): nc runs its handlers one at a time on a goroutine
	// of its own, and the re-form only starts a goroutine, so the new
	// group reaches the server without waiting for the re-announcement.
	prev := nc.ReconnectHandler()
	nc.SetReconnectHandler(func(c *nats.Conn) {
		b.reconnected()
		if prev != nil {
			prev(c)
		}
	})
	go b.run()
	return b
}

// bridgeGroup returns a new queue group name, nobody else's.
func bridgeGroup() string { return bridgeGroupPrefix + nuid.Next() }

// bridgeGroupPrefix begins the name of every MQTT bridge's queue group.
const bridgeGroupPrefix = "warren.mqtt.bridge."

// run hands the messages of the bridge's subscriptions to handle, one at
// a time in the order the NATS client read them, until close. Before each
// message it moves what waits in the hand-off into its queue, which keeps
// the queue's bounds (take): at most cap(b.q) messages a pass, so that a
// flood into the hand-off can't keep handle from running (drain).
func (b *bridge) run() {
	defer close(b.exited)
	t := time.NewTicker(bridgeDropCheck)
	defer t.Stop()
	for {
		if b.queue.len() == 0 {
			select {
			case m := <-b.q:
				b.take(m)
			case <-t.C:
				b.logDrops()
				continue
			case <-b.done:
				return
			}
		}
		if !b.drain(t.C) {
			return
		}
		m := b.queue.pop()
		b.queuedMsgs.Add(-1)
		b.queuedBytes.Add(-bridgeMsgSize(m))
		b.handle(m)
	}
}

// drain moves what waits in the hand-off into the queue, at most
// cap(b.q) messages (what the hand-off holds when full), and logs the
// drops when tick fires; false when the bridge is closed.
func (b *bridge) drain(tick <-chan time.Time) bool {
	for n := cap(b.q); n > 0; n-- {
		select {
		case m := <-b.q:
			b.take(m)
		case <-tick:
			b.logDrops()
		case <-b.done:
			return false
		default:
			return true
		}
	}
	return true
}

// take puts m in the queue, or drops it (counted) when the queue is at
// its count or its bytes would pass the byte bound.
func (b *bridge) take(m *nats.Msg) {
	n := bridgeMsgSize(m)
	switch {
	case b.queue.len() >= b.queueMax:
		b.fullDrops.Add(1)
	case b.queueMaxBytes > 0 && b.queuedBytes.Load()+n > b.queueMaxBytes && b.queue.len() > 0:
		// (A message larger than the whole bound still goes through an
		// empty queue: NATS's max payload bounds it.)
		b.bytesDrops.Add(1)
	default:
		b.queue.push(m)
		b.queuedMsgs.Add(1)
		b.queuedBytes.Add(n)
	}
}

// bridgeMsgSize is the bytes m is counted for in the bridge's queue.
func bridgeMsgSize(m *nats.Msg) int64 {
	n := len(m.Subject) + len(m.Reply) + len(m.Data) + bridgeMsgOverhead
	for k, vs := range m.Header {
		n += len(k)
		for _, v := range vs {
			n += len(v)
		}
	}
	return int64(n)
}

// msgRing is a FIFO of messages that grows as it needs and lets its
// buffer go once it is empty and large.
type msgRing struct {
	buf     []*nats.Msg
	head, n int
}

func (r *msgRing) len() int { return r.n }

func (r *msgRing) push(m *nats.Msg) {
	if r.n == len(r.buf) {
		nb := make([]*nats.Msg, max(16, 2*len(r.buf)))
		for i := range r.n {
			nb[i] = r.buf[(r.head+i)%len(r.buf)]
		}
		r.buf, r.head = nb, 0
	}
	r.buf[(r.head+r.n)%len(r.buf)] = m
	r.n++
}

func (r *msgRing) pop() *nats.Msg {
	m := r.buf[r.head]
	r.buf[r.head] = nil
	r.head = (r.head + 1) % len(r.buf)
	r.n--
	if r.n == 0 {
		r.head = 0
		if len(r.buf) > 1024 {
			r.buf = nil
		}
	}
	return m
}

// logDrops logs the messages the NATS client dropped since the last time.
func (b *bridge) logDrops() {
	n := b.dropped()
	if last := b.logged.Load(); n > last && b.logged.CompareAndSwap(last, n) {
		b.log.Warn("MQTT bridge: messages from NATS dropped: the bridge's queue was full (-mqtt-bridge-queue)",
			"dropped", n-last, "reason", ReasonBridgeQueueFull, "queue", b.queueMax)
	}
	if n, last := b.bytesDrops.Load(), b.loggedBytes.Load(); n > last && b.loggedBytes.CompareAndSwap(last, n) {
		b.log.Warn("MQTT bridge: messages from NATS dropped: the bridge's queue was at its bytes (-mqtt-bridge-queue-bytes)",
			"dropped", n-last, "reason", ReasonBridgeQueueBytesFull, "queue_bytes", b.queueMaxBytes)
	}
}

// dropped returns the messages dropped because the bridge's queue was
// full: by the NATS client (the hand-off) and by the queue at its count. A
// drop in the instant between a subscription's last count and its end is
// not counted.
func (b *bridge) dropped() uint64 {
	b.mu.RLock()
	defer b.mu.RUnlock()
	n := b.retired + b.fullDrops.Load()
	count := func(s *nats.Subscription) {
		if s == nil {
			return
		}
		if d, err := s.Dropped(); err == nil {
			n += uint64(d)
		}
	}
	for _, s := range b.order {
		count(s.sub)
	}
	count(b.all)
	count(b.pending)
	count(b.ret)
	for _, sh := range b.shares {
		count(sh.sub)
	}
	for _, old := range b.retiring {
		for _, s := range old {
			count(s)
		}
	}
	return n
}

// queued returns the messages waiting in the bridge's queue, hand-off
// included.
func (b *bridge) queued() int { return len(b.q) + int(b.queuedMsgs.Load()) }

// subscribe makes one subscription of the bridge, in its current queue
// group. b.mu is held or b is not shared yet.
func (b *bridge) subscribe(subject string) (*nats.Subscription, error) {
	sub, err := b.nc.ChanQueueSubscribe(subject, b.group, b.q)
	if err != nil {
		b.subErrors.Add(1)
	}
	return sub, err
}

// end ends sub, keeping the count of what the NATS client dropped for
// it. With drain, while NATS is connected, the server forgets sub first
// and the client a flush later, so that what the server gave sub still
// reaches the queue. b.mu is held.
func (b *bridge) end(sub *nats.Subscription, drain bool) {
	if n, err := sub.Dropped(); err == nil {
		b.retired += uint64(n)
	}
	if drain && b.nc.IsConnected() && sub.Drain() == nil {
		return
	}
	sub.Unsubscribe()
}

// subscribeRetained subscribes the node to every node's retained
// messages (subject: retainedPrefix + ">"), outside the queue group, since
// every node keeps each of them. They come through the bridge's queue like
// the rest, so that a retained message keeps its place among the messages
// published before and after it on its topic (MQTT's ordered topic): on a
// subscription of its own, with its own goroutine, it would overtake them
// or fall behind. The handler tells them apart with isRetainedSub.
func (b *bridge) subscribeRetained(subject string) error {
	b.mu.Lock()
	defer b.mu.Unlock()
	sub, err := b.nc.ChanSubscribe(subject, b.q)
	if err != nil {
		b.subErrors.Add(1)
		return err
	}
	b.ret = sub
	return nil
}

// isRetainedSub reports whether m came through the bridge's subscription
// to retained messages (subscribeRetained): the one subscription of the
// bridge in no queue group. The same message can also come through ">"
// in the group, when the bridge follows everything.
func isRetainedSub(m *nats.Msg) bool {
	return m.Sub != nil && m.Sub.Queue == "" && strings.HasPrefix(m.Subject, retainedPrefix)
}

// subscribeAll makes the node's one subscription to subject: the fixed
// subject. b.mu is held or b is not shared yet.
func (b *bridge) subscribeAll(subject string) error {
	sub, err := b.subscribe(subject)
	if err != nil {
		return err
	}
	b.all = sub
	b.dropOrder(false)
	return nil
}

// dropOrder ends the per-subject subscriptions. b.mu is held.
func (b *bridge) dropOrder(drain bool) {
	for _, s := range b.order {
		b.end(s.sub, drain)
		s.sub = nil
	}
	b.order = nil
}

// overflow subscribes to ">" once the interest is over max, and switches
// to it when the server has it. b.mu is held.
func (b *bridge) overflow() {
	sub, err := b.subscribe(">")
	if err != nil {
		b.log.Error("MQTT bridge: NATS subscribe", "subject", ">", "error", err)
		return
	}
	b.pending = sub
	go b.switchTo(sub)
}

// switchTo ends the per-subject subscriptions once the server has sub
// (">") and bridgeSwitchGrace has passed.
func (b *bridge) switchTo(sub *nats.Subscription) {
	// A conn that is reconnecting fails the flush; it resubscribes ">"
	// with the rest when it is back, so the switch goes ahead.
	if !b.settle("subscribing to >") {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.pending != sub {
		return // closed meanwhile
	}
	b.all, b.pending = sub, nil
	b.dropOrder(true)
}

// settle waits until the server has what the bridge subscribed to so
// far (a flush) and bridgeSwitchGrace more, after what (for the log if
// the flush fails); false if the bridge closed meanwhile.
func (b *bridge) settle(after string) bool {
	if err := b.nc.FlushTimeout(10 * time.Second); err != nil {
		b.log.Warn("MQTT bridge: NATS flush after "+after, "error", err)
	}
	t := time.NewTimer(b.grace)
	defer t.Stop()
	select {
	case <-t.C:
		return true
	case <-b.done:
		return false
	}
}

// interestSubject maps a topic filter onto the subject the bridge
// subscribes to for it, widening a device id level (devices/<id>/…); ok
// is false for a filter the bridge does not follow ($-topics, a filter
// that cannot map: the gateway refuses those anyway).
func interestSubject(filter string) (subj string, ok bool) {
	if filter == "" || filter[0] == '$' || !mappable(filter) {
		return "", false
	}
	if rest, ok := strings.CutPrefix(filter, "devices/"); ok {
		if i := strings.IndexByte(rest, '/'); i > 0 && rest[:i] != "+" && rest[:i] != "#" {
			filter = "devices/+" + rest[i:]
		} else if i < 0 && rest != "+" && rest != "#" {
			filter = "devices/+"
		}
	}
	return subject(filter), true
}

// add counts a topic filter that got its first subscriber on this node.
func (b *bridge) add(filter string) {
	subj, ok := interestSubject(filter)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.closed {
		return
	}
	if s := b.refs[subj]; s != nil {
		s.filters++
		return
	}
	s := &bridgeSub{subject: subj, filters: 1}
	b.refs[subj] = s
	b.subjects.Store(int64(len(b.refs)))
	if b.all != nil || b.pending != nil {
		return
	}
	if len(b.order) >= b.max {
		b.overflowed.Add(1)
		b.log.Warn("MQTT bridge: the node's MQTT subscribers want more NATS subjects than -mqtt-bridge-max-subjects; it subscribes to every subject (>) from now on",
			"max", b.max)
		b.overflow()
		return
	}
	sub, err := b.subscribe(subj)
	if err != nil {
		b.log.Error("MQTT bridge: NATS subscribe", "subject", subj, "error", err)
		return
	}
	s.sub = sub
	b.order = append(b.order, s)
}

// remove uncounts a topic filter that lost its last subscriber.
func (b *bridge) remove(filter string) {
	subj, ok := interestSubject(filter)
	if !ok {
		return
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	s := b.refs[subj]
	if s == nil {
		return
	}
	if s.filters--; s.filters > 0 {
		return
	}
	delete(b.refs, subj)
	b.subjects.Store(int64(len(b.refs)))
	if s.sub == nil {
		return
	}
	// Drained: a message the server gave it, of a subject another
	// subscription also matches, still reaches the queue.
	b.end(s.sub, true)
	s.sub = nil
	for i, o := range b.order {
		if o == s {
			b.order = append(b.order[:i], b.order[i+1:]...)
			break
		}
	}
}

// close ends the bridge's subscriptions and its goroutine; what is left
// in its queue is not handed on.
func (b *bridge) close() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.closed = true
	if b.ret != nil {
		b.end(b.ret, false)
		b.ret = nil
	}
	for q, sh := range b.shares {
		b.end(sh.sub, false)
		delete(b.shares, q)
	}
	if b.all != nil {
		b.end(b.all, false)
		b.all = nil
	}
	if b.pending != nil {
		b.end(b.pending, false)
		b.pending = nil
	}
	b.dropOrder(false)
	for gen, old := range b.retiring {
		for _, s := range old {
			b.end(s, false)
		}
		delete(b.retiring, gen)
	}
	b.mu.Unlock()
	close(b.done)
	<-b.exited
}

// reconnected re-forms the bridge's queue group, on a goroutine of its
// own: NATS has reconnected.
func (b *bridge) reconnected() { go b.reform() }

// reform subscribes the bridge's current set under a new queue group,
// and drains the old group's subscriptions once the server has the new
// ones and bridgeSwitchGrace has passed (see bridge).
func (b *bridge) reform() {
	b.mu.Lock()
	if b.closed {
		b.mu.Unlock()
		return
	}
	b.gen++
	gen := b.gen
	b.group = bridgeGroup()
	var old []*nats.Subscription
	renew := func(sub *nats.Subscription) *nats.Subscription {
		ns, err := b.subscribe(sub.Subject)
		if err != nil {
			// The old one stays: it still brings a share of the
			// subject's messages.
			b.log.Error("MQTT bridge: NATS subscribe after a reconnect", "subject", sub.Subject, "error", err)
			return sub
		}
		old = append(old, sub)
		return ns
	}
	for _, s := range b.order {
		s.sub = renew(s.sub)
	}
	if b.all != nil {
		b.all = renew(b.all)
	}
	var switchTo *nats.Subscription
	if p := b.pending; p != nil {
		// The switch waiting for the old ">" sees it is no longer
		// pending and returns; this one waits for the new ">".
		if b.pending = renew(p); b.pending != p {
			switchTo = b.pending
		}
	}
	b.retiring[gen] = old
	n := len(old)
	b.mu.Unlock()
	if switchTo != nil {
		go b.switchTo(switchTo)
	}
	// A conn that is reconnecting again fails the flush; that reconnect
	// starts another re-form.
	if !b.settle("re-forming the queue group") {
		return // close ends what retires
	}
	b.mu.Lock()
	defer b.mu.Unlock()
	old, ok := b.retiring[gen]
	if !ok {
		return // closed meanwhile
	}
	delete(b.retiring, gen)
	for _, s := range old {
		b.end(s, true)
	}
	b.reformed.Add(1)
	b.log.Info("MQTT bridge: queue group re-formed after a NATS reconnect", "subscriptions", n)
}
