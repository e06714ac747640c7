package mqtt

import (
	"errors"
	"iter"
	"slices"
)

// Errors of Server.Publish.
var (
	// ErrTopic is a topic name that is not valid (empty, with a wildcard,
	// not UTF-8).
	ErrTopic = errors.New("mqtt: invalid topic name")
	// ErrQoS is a QoS over 2.
	ErrQoS = errors.New("mqtt: invalid QoS")
	// ErrShare is a share that is not a valid shared subscription filter
	// ($share/group/filter; PublishShared).
	ErrShare = errors.New("mqtt: invalid shared subscription")
)

// retainedStore holds the retained messages by topic, guarded by
// Server.mu. A subscription with a literal filter finds its message with
// one map lookup; a wildcard filter scans the store (bounded by
// Config.MaxRetained).
type retainedStore struct {
	m     map[string]*msg
	bytes int
	// by holds the bytes each publishing client (msg.from) has in the
	// store, for Config.MaxRetainedBytesPerClient: a client has an entry
	// only while it holds a retained message. Messages injected by the
	// application (from "") are charged to no client.
	by map[string]int
	// exp is a heap of the stored messages that expire, soonest first,
	// for the sweeper (expireRetained); a message leaves it when it
	// leaves the store (unstore), found by its index (msg.hi).
	exp []*msg
	// pend are the reservations of the PUBLISHes between their decision
	// and their store (reserveRetained), oldest first: as many as the
	// loops running a retained PUBLISH's hook at once.
	pend []*pending
}

// pending is the room a client's retained PUBLISH has reserved in the
// store, from its decision (before Hooks.OnPublish runs) to its store or
// release: the store's bounds are decided once, and the hook, the bridge
// and the subscribers see the retain flag the store will take.
type pending struct {
	topic, from string
	size        int
}

// grow returns what a message of size bytes from client from on topic
// may add to the store: messages, bytes and, when mine is from, mine's
// bytes. It may replace the topic's message, and adds what it holds over
// it; when one of earlier (reservations) is on the topic too, the topic
// may end up holding either, and it counts whole. s.mu is held.
func (r *retainedStore) grow(topic, from string, size int, mine string, earlier []*pending) (n, b, c int) {
	for _, e := range earlier {
		if e.topic == topic {
			if from == mine {
				c = size
			}
			return 1, size, c
		}
	}
	old, own := r.m[topic], 0
	if old == nil {
		n = 1
	} else if old.from == from {
		own = int(old.size)
	}
	if old != nil {
		b = max(0, size-int(old.size))
	} else {
		b = size
	}
	if from == mine {
		c = max(0, size-own)
	}
	return n, b, c
}

// retainRefusal returns why a message of size bytes from client from
// can't go on topic in the store: DropRetainedFull for the node's bounds,
// DropRetainedClientFull for the client's; ok when it fits. What the
// reservations may yet add counts as held. s.mu is held (read or write).
func (s *Server) retainRefusal(from, topic string, size int) (DropReason, bool) {
	r := &s.retained
	n, b, mine := len(r.m), r.bytes, r.by[from]
	for i, p := range r.pend {
		dn, db, dc := r.grow(p.topic, p.from, p.size, from, r.pend[:i])
		n, b, mine = n+dn, b+db, mine+dc
	}
	dn, db, dc := r.grow(topic, from, size, from, r.pend)
	if n+dn > s.cfg.MaxRetained || b+db > s.cfg.MaxRetainedBytes {
		return DropRetainedFull, false
	}
	if from != "" && s.cfg.MaxRetainedBytesPerClient > 0 && mine+dc > s.cfg.MaxRetainedBytesPerClient {
		return DropRetainedClientFull, false
	}
	return 0, true
}

// reserveRetained decides whether a retained message of size bytes
// (msgSize) from client from will be stored on topic, and reserves its
// room when it will: the store takes it (retainIf with the reservation)
// whatever is published meanwhile, or the caller releases the room
// (releaseRetained). A client's PUBLISH decides so before its hook runs.
func (s *Server) reserveRetained(from, topic string, size int) (*pending, DropReason, bool) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if why, ok := s.retainRefusal(from, topic, size); !ok {
		return nil, why, false
	}
	p := &pending{topic: topic, from: from, size: size}
	s.retained.pend = append(s.retained.pend, p)
	return p, 0, true
}

// releaseRetained gives back the room p reserved, when its message is not
// stored after all.
func (s *Server) releaseRetained(p *pending) {
	s.mu.Lock()
	s.retained.unpend(p)
	s.mu.Unlock()
}

// unpend takes p out of the reservations; s.mu is held.
func (r *retainedStore) unpend(p *pending) {
	if i := slices.Index(r.pend, p); i >= 0 {
		r.pend = slices.Delete(r.pend, i, i+1)
	}
	if len(r.pend) == 0 {
		r.pend = nil
	}
}

// unstore takes old, the message stored on its topic, out of the store
// and refunds its bytes; s.mu is held.
func (s *Server) unstore(old *msg) {
	r := &s.retained
	delete(r.m, old.Topic)
	r.bytes -= int(old.size)
	s.charge(old.from, -int(old.size))
	if old.hi != 0 {
		r.removeExp(int(old.hi) - 1)
	}
	s.stats.retained.Add(-1)
	s.stats.retainedBytes.Store(int64(r.bytes))
}

// store puts m in the store (its topic holds nothing) and charges its
// bytes; s.mu is held.
func (s *Server) store(m *msg) {
	r := &s.retained
	if r.m == nil {
		r.m = make(map[string]*msg)
	}
	r.m[m.Topic] = m
	r.bytes += int(m.size)
	s.charge(m.from, int(m.size))
	if m.expires != 0 {
		r.pushExp(m)
	}
	s.stats.retained.Add(1)
	s.stats.retainedBytes.Store(int64(r.bytes))
}

// charge adds n bytes to the client from's share of the store; s.mu is
// held.
func (s *Server) charge(from string, n int) {
	if from == "" {
		return
	}
	r := &s.retained
	v := r.by[from] + n
	switch {
	case v > 0 && r.by == nil:
		r.by = map[string]int{from: v}
	case v > 0:
		r.by[from] = v
	default:
		delete(r.by, from)
	}
	s.stats.retainedClients.Store(int64(len(r.by)))
}

// retain stores m as its topic's retained message, or deletes the retained
// message when m's payload is empty (MQTT 3.3.1.3); res, when not nil, is
// the room reserved for m (reserveRetained), and m is then stored
// whatever the bounds. It reports whether the store refused m (counted
// with its DropReason).
func (s *Server) retain(m *msg, res *pending) bool {
	_, refused := s.retainIf(m, false, res)
	return refused
}

// retainIf is retain; with ifAbsent it stores m only when its topic holds
// no retained message, or an expired one (and deletes nothing). It
// reports whether m was stored, and whether the store's bounds refused it.
func (s *Server) retainIf(m *msg, ifAbsent bool, res *pending) (stored, refused bool) {
	var now int64
	if ifAbsent {
		now = s.now().UnixNano()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.retained
	if res != nil {
		r.unpend(res)
	}
	old := r.m[m.Topic]
	if ifAbsent && ((old != nil && !old.expired(now)) || len(m.Payload) == 0) {
		return false, false
	}
	if len(m.Payload) == 0 {
		if old != nil {
			s.unstore(old)
		}
		return false, false
	}
	if res == nil {
		if why, ok := s.retainRefusal(m.from, m.Topic, int(m.size)); !ok {
			s.drop(why)
			return false, true
		}
	}
	if old != nil {
		s.unstore(old)
	}
	s.store(m)
	return true, false
}

// pushExp adds m to the expiry heap.
func (r *retainedStore) pushExp(m *msg) {
	r.exp = append(r.exp, m)
	m.hi = int32(len(r.exp))
	r.up(len(r.exp) - 1)
}

// removeExp takes the heap's entry i out.
func (r *retainedStore) removeExp(i int) {
	m := r.exp[i]
	last := len(r.exp) - 1
	if i != last {
		r.swap(i, last)
	}
	r.exp[last] = nil
	r.exp = r.exp[:last]
	m.hi = 0
	if i != last {
		r.down(i)
		r.up(i)
	}
	if len(r.exp) == 0 {
		r.exp = nil
	}
}

func (r *retainedStore) swap(i, j int) {
	r.exp[i], r.exp[j] = r.exp[j], r.exp[i]
	r.exp[i].hi, r.exp[j].hi = int32(i+1), int32(j+1)
}

// up restores the heap above i.
func (r *retainedStore) up(i int) {
	for i > 0 {
		p := (i - 1) / 2
		if r.exp[p].expires <= r.exp[i].expires {
			return
		}
		r.swap(p, i)
		i = p
	}
}

// down restores the heap below i.
func (r *retainedStore) down(i int) {
	for {
		l, min := 2*i+1, i
		if l < len(r.exp) && r.exp[l].expires < r.exp[min].expires {
			min = l
		}
		if l+1 < len(r.exp) && r.exp[l+1].expires < r.exp[min].expires {
			min = l + 1
		}
		if min == i {
			return
		}
		r.swap(i, min)
		i = min
	}
}

// expireRetained takes the retained messages expired at now (unix ns)
// out of the store, refunding their bytes to their clients; s.mu is held
// (the sweeper's).
func (s *Server) expireRetained(now int64) {
	r := &s.retained
	for len(r.exp) > 0 && r.exp[0].expired(now) {
		s.unstore(r.exp[0]) // takes it out of the heap
	}
}

// Retain stores m as the retained message of its topic, without
// delivering it to anyone, or deletes the topic's retained message when
// m's payload is empty. The store's bounds apply (Config.MaxRetained,
// MaxRetainedBytes: a message over them is dropped with reason
// retained_full and Retain returns nil). m is copied; its Retain field is
// ignored. For the application's own store of a topic's state, or for
// filling a broker from elsewhere; Publish with Retain both stores and
// delivers.
func (s *Server) Retain(m *Message) error {
	_, _, err := s.storeRetained(m, false)
	return err
}

// RetainIfAbsent is Retain for a topic that holds no retained message
// (or an expired one): it stores m only then, deletes nothing (an empty
// payload is ignored), and reports whether m was stored. The check and
// the store are one step against every other publish, so it can fill a
// broker from a snapshot taken elsewhere (another node's retained
// messages) without overwriting what was published since.
func (s *Server) RetainIfAbsent(m *Message) (bool, error) {
	_, stored, err := s.storeRetained(m, true)
	return stored, err
}

// PublishIfAbsent is RetainIfAbsent, and delivers m to the current
// subscribers (as Publish does, Retain As Published included) when it
// stored it: a broker filled from a snapshot while clients subscribe then
// gives the clients that subscribed before a topic was filled what the
// store would have given them at their subscription. It returns the
// number of sessions m went to and whether it was stored.
func (s *Server) PublishIfAbsent(m *Message) (int, bool, error) {
	mm, stored, err := s.storeRetained(m, true)
	if !stored {
		return 0, false, err
	}
	return s.route(mm, s.now().UnixNano(), 0), true, nil
}

func (s *Server) storeRetained(m *Message, ifAbsent bool) (*msg, bool, error) {
	if !ValidTopicName(m.Topic) {
		return nil, false, ErrTopic
	}
	if m.QoS > QoS2 {
		return nil, false, ErrQoS
	}
	mm := newMsg(m, "", s.now())
	mm.Retain = true
	stored, _ := s.retainIf(mm, ifAbsent, nil)
	return mm, stored, nil
}

// RetainedMessages returns the retained messages as they are when it is
// called (expired ones left out), in no particular order. The messages
// share their bytes with the store: their slices must not be modified.
// The store is not locked while the caller's loop runs.
func (s *Server) RetainedMessages() iter.Seq[Message] {
	now := s.now().UnixNano()
	s.mu.RLock()
	all := make([]*msg, 0, len(s.retained.m))
	for _, m := range s.retained.m {
		if !m.expired(now) {
			all = append(all, m)
		}
	}
	s.mu.RUnlock()
	return func(yield func(Message) bool) {
		for _, m := range all {
			if !yield(m.Message) {
				return
			}
		}
	}
}

// retainedFor returns the retained messages matching filter (a plain
// filter, not $share), dropping expired ones.
func (s *Server) retainedFor(filter string, now int64) []*msg {
	s.mu.RLock()
	defer s.mu.RUnlock()
	r := &s.retained
	if len(r.m) == 0 {
		return nil
	}
	var out []*msg
	if !hasWildcard(filter) {
		if m := r.m[filter]; m != nil && !m.expired(now) {
			out = append(out, m)
		}
		return out
	}
	for t, m := range r.m {
		if !m.expired(now) && Match(filter, t) {
			out = append(out, m)
		}
	}
	return out
}

func hasWildcard(filter string) bool {
	for i := 0; i < len(filter); i++ {
		if filter[i] == '+' || filter[i] == '#' {
			return true
		}
	}
	return false
}
