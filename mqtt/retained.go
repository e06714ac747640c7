package mqtt

import "errors"

// Errors of Server.Publish.
var (
	// ErrTopic is a topic name that is not valid (empty, with a wildcard,
	// not UTF-8).
	ErrTopic = errors.New("mqtt: invalid topic name")
	// ErrQoS is a QoS over 2.
	ErrQoS = errors.New("mqtt: invalid QoS")
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
func (s *Server) retain(m *msg) {
	s.mu.Lock()
	defer s.mu.Unlock()
	r := &s.retained
	old := r.m[m.Topic]
	if len(m.Payload) == 0 {
		if old != nil {
			delete(r.m, m.Topic)
			r.bytes -= int(old.size)
			s.stats.retained.Add(-1)
		}
		return
	}
	n, b := len(r.m), r.bytes
	if old != nil {
		n, b = n-1, b-int(old.size)
	}
	if n+1 > s.cfg.MaxRetained || b+int(m.size) > s.cfg.MaxRetainedBytes {
		s.drop(DropRetainedFull)
		return
	}
	if r.m == nil {
		r.m = make(map[string]*msg)
	}
	r.m[m.Topic] = m
	r.bytes = b + int(m.size)
	if old == nil {
		s.stats.retained.Add(1)
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
