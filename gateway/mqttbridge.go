package gateway

import (
	"log/slog"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"
)

// DefaultMQTTBridgeMaxSubjects bounds the NATS subscriptions one node
// makes for its MQTT subscribers' interest (Config.MQTTBridgeMaxSubjects).
const DefaultMQTTBridgeMaxSubjects = 1024

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
//
// Past max subjects, or with a fixed subject (Config.MQTTBridgeSubject),
// the node holds one subscription instead and sees everything on it.
//
// NATS delivers a message once per matching subscription of a
// connection, and the subjects may overlap (devices.*.telemetry and
// devices.>): a message is taken only from the first subscription, in
// the order they were made, whose subject matches it (canonical).
//
// Going over max, the node keeps its subscriptions until the server has
// confirmed the one to ">" (a flush, off the broker's lock): meanwhile
// ">" takes only what none of them matches, so that no message published
// during the switch goes unsubscribed at the server. The NATS client
// queues each subscription's messages apart, though: what sits in those
// queues at the instant of the switch (a few messages, more under load)
// may still be dropped or taken twice. Delivering every subscription
// through one ordered queue with a marker for the switch would make it
// exact; it is not done.
type bridge struct {
	nc     *nats.Conn
	handle nats.MsgHandler
	max    int
	log    *slog.Logger

	mu    sync.RWMutex
	refs  map[string]*bridgeSub // by NATS subject
	order []*bridgeSub          // subscribed, oldest first
	// bySub and wild index order for canonical, which runs for every
	// message: a message's own subscription, and the wildcard subjects
	// (oldest first) — a literal one can only match its own subject,
	// which refs finds. seq numbers the subscriptions as they are made.
	bySub map[*nats.Subscription]*bridgeSub
	wild  []*bridgeSub
	seq   uint64
	all   *nats.Subscription // the one subscription once over max, or the fixed subject's
	// pending is the subscription to ">" made on going over max, until
	// the server has confirmed it and it becomes all.
	pending *nats.Subscription

	subjects   atomic.Int64  // distinct subjects of the node's interest
	overflowed atomic.Uint64 // times the interest went over max
	subErrors  atomic.Uint64 // failed NATS subscribes
}

// bridgeSub is one subject of the node's interest.
type bridgeSub struct {
	subject string
	filters int // topic filters mapped onto it
	sub     *nats.Subscription
	seq     uint64 // when sub was made: lower is older
	wild    bool   // subject has a "*" or ">" token
}

func newBridge(nc *nats.Conn, handle nats.MsgHandler, max int, log *slog.Logger) *bridge {
	if max <= 0 {
		max = DefaultMQTTBridgeMaxSubjects
	}
	return &bridge{nc: nc, handle: handle, max: max, log: log, refs: map[string]*bridgeSub{}}
}

// track appends s, just subscribed as s.sub, to the subscriptions in
// order. b.mu is held.
func (b *bridge) track(s *bridgeSub) {
	if b.refs == nil {
		b.refs = map[string]*bridgeSub{}
	}
	if b.bySub == nil {
		b.bySub = map[*nats.Subscription]*bridgeSub{}
	}
	b.seq++
	s.seq = b.seq
	s.wild = wildSubject(s.subject)
	b.refs[s.subject] = s
	b.order = append(b.order, s)
	b.bySub[s.sub] = s
	if s.wild {
		b.wild = append(b.wild, s)
	}
}

// untrack removes s from the subscriptions in order. b.mu is held.
func (b *bridge) untrack(s *bridgeSub) {
	delete(b.bySub, s.sub)
	b.order = deleteSub(b.order, s)
	if s.wild {
		b.wild = deleteSub(b.wild, s)
	}
}

func deleteSub(l []*bridgeSub, s *bridgeSub) []*bridgeSub {
	for i, o := range l {
		if o == s {
			return append(l[:i], l[i+1:]...)
		}
	}
	return l
}

// wildSubject reports whether NATS subject subj has a wildcard token.
func wildSubject(subj string) bool {
	for {
		t, rest, more := strings.Cut(subj, ".")
		if t == "*" || t == ">" {
			return true
		}
		if !more {
			return false
		}
		subj = rest
	}
}

// subscribeAll makes the node's one subscription to subject: the fixed
// subject, or ">" once the interest is over max. b.mu is held or b is
// not shared yet.
func (b *bridge) subscribeAll(subject string) error {
	sub, err := b.nc.Subscribe(subject, b.handle)
	if err != nil {
		b.subErrors.Add(1)
		return err
	}
	b.all = sub
	b.dropOrder()
	return nil
}

// dropOrder ends the per-subject subscriptions. b.mu is held.
func (b *bridge) dropOrder() {
	for _, s := range b.order {
		s.sub.Unsubscribe()
		s.sub = nil
	}
	b.order, b.wild, b.bySub = nil, nil, nil
}

// overflow subscribes to ">" once the interest is over max, and switches
// to it when the server has it. b.mu is held.
func (b *bridge) overflow() {
	sub, err := b.nc.Subscribe(">", b.handle)
	if err != nil {
		b.subErrors.Add(1)
		b.log.Error("MQTT bridge: NATS subscribe", "subject", ">", "error", err)
		return
	}
	b.pending = sub
	go func() {
		// A conn that is reconnecting fails the flush; it resubscribes
		// ">" with the rest when it is back, so the switch goes ahead.
		if err := b.nc.FlushTimeout(10 * time.Second); err != nil {
			b.log.Warn("MQTT bridge: NATS flush after subscribing to >", "error", err)
		}
		b.mu.Lock()
		defer b.mu.Unlock()
		if b.pending != sub {
			return // closed meanwhile
		}
		b.all, b.pending = sub, nil
		b.dropOrder()
	}()
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
	sub, err := b.nc.Subscribe(subj, b.handle)
	if err != nil {
		b.subErrors.Add(1)
		b.log.Error("MQTT bridge: NATS subscribe", "subject", subj, "error", err)
		return
	}
	s.sub = sub
	b.track(s)
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
	s.sub.Unsubscribe()
	b.untrack(s)
}

// canonical reports whether m, delivered by subscription m.Sub, is to be
// taken: no subscription made before m.Sub matches its subject. It costs
// a map lookup or two and a match per older wildcard subject, however
// many literal subjects the node follows.
func (b *bridge) canonical(m *nats.Msg) bool {
	b.mu.RLock()
	defer b.mu.RUnlock()
	if b.all != nil {
		return m.Sub == b.all
	}
	if s := b.bySub[m.Sub]; s != nil {
		return !b.matchedBefore(m.Subject, s.seq)
	}
	// ">" while it is pending takes what no per-subject subscription
	// matches; anything else was unsubscribed since.
	return b.pending != nil && m.Sub == b.pending && !b.matchedBefore(m.Subject, b.seq+1)
}

// matchedBefore reports whether a subscription in order made before seq
// matches subj. b.mu is held.
func (b *bridge) matchedBefore(subj string, seq uint64) bool {
	if s := b.refs[subj]; s != nil && s.sub != nil && !s.wild && s.seq < seq {
		return true
	}
	for _, w := range b.wild {
		if w.seq >= seq {
			return false
		}
		if subjectMatches(w.subject, subj) {
			return true
		}
	}
	return false
}

// close ends the bridge's subscriptions.
func (b *bridge) close() {
	b.mu.Lock()
	defer b.mu.Unlock()
	if b.all != nil {
		b.all.Unsubscribe()
		b.all = nil
	}
	if b.pending != nil {
		b.pending.Unsubscribe()
		b.pending = nil
	}
	b.dropOrder()
}

// subjectMatches reports whether NATS subject subj matches pattern, whose
// tokens may be "*" (one token) or a final ">" (one or more).
func subjectMatches(pattern, subj string) bool {
	for {
		p, prest, pmore := strings.Cut(pattern, ".")
		if p == ">" {
			return subj != ""
		}
		t, srest, smore := strings.Cut(subj, ".")
		if p != "*" && p != t {
			return false
		}
		if pmore != smore {
			return false
		}
		if !pmore {
			return true
		}
		pattern, subj = prest, srest
	}
}
