package mqtt

import (
	"errors"
	"iter"
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
}

// retain stores m as its topic's retained message, or deletes the retained
// message when m's payload is empty (MQTT 3.3.1.3).
func (s *Server) retain(m *msg) { s.retainIf(m, false) }

// retainIf is retain; with ifAbsent it stores m only when its topic holds
// no retained message, or an expired one (and deletes nothing). It
// reports whether m was stored.
func (s *Server) retainIf(m *msg, ifAbsent bool) bool {
	var now int64
	if ifAbsent {
		now = s.now().UnixNano()
	}
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.retained
	old := r.m[m.Topic]
	if ifAbsent && ((old != nil && !old.expired(now)) || len(m.Payload) == 0) {
		return false
	}
	if len(m.Payload) == 0 {
		if old != nil {
			delete(r.m, m.Topic)
			r.bytes -= int(old.size)
			s.stats.retained.Add(-1)
		}
		return false
	}
	n, b := len(r.m), r.bytes
	if old != nil {
		n, b = n-1, b-int(old.size)
	}
	if n+1 > s.cfg.MaxRetained || b+int(m.size) > s.cfg.MaxRetainedBytes {
		s.drop(DropRetainedFull)
		return false
	}
	if r.m == nil {
		r.m = make(map[string]*msg)
	}
	r.m[m.Topic] = m
	r.bytes = b + int(m.size)
	if old == nil {
		s.stats.retained.Add(1)
	}
	return true
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
	return mm, s.retainIf(mm, ifAbsent), nil
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
