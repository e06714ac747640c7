package mqtt

import (
	"math/rand/v2"
	"slices"
	"strconv"
	"testing"
)

// The subscription index (literal table plus trie) against a brute-force
// model: random subscribes (new and replacing), unsubscribes and session
// ends over overlapping literal, wildcard and shared filters; after each
// batch every topic's matches are those the model's filters match, each
// subscription once.
func TestIndexModel(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	s := NewServer(Config{})
	filters := []string{"a", "a/b", "a/b", "a/c", "a/+", "a/#", "#", "+/b", "$share/g/a/b", "$share/h/a/b",
		"$share/g/a/+", "x/y/z", "$SYS/a", "a//b", "/a",
		"x/y/+", "x/y/+", "$SYS/+", "/+", "a//+", "+/+", "$share/g/x/y/+", "x/+/+", "x/y/z/+"}
	topics := []string{"a", "a/b", "a/c", "a/d", "x/y/z", "$SYS/a", "a//b", "/a", "b", "x/y/", "x/y", "x/y/z/w", "/", "$SYS/"}
	var sessions []*session
	for i := range 12 {
		ss := newSession("c" + strconv.Itoa(i))
		sessions = append(sessions, ss)
		s.sessions.Put(ss)
	}
	maxPlus := 0
	for step := range 3000 {
		ss := sessions[r.IntN(len(sessions))]
		f := filters[r.IntN(len(filters))]
		s.mu.Lock()
		switch prev, old := ss.findSub(f); {
		case r.IntN(40) == 0:
			for sub := ss.subs; sub != nil; sub = sub.next {
				s.unindex(sub)
			}
			ss.subs, ss.nsubs = nil, 0
		case old != nil && r.IntN(2) == 0:
			s.unindex(old)
			ss.unlinkSub(prev, old)
		default:
			sub := newSubscription(ss, f)
			sub.qos = QoS(r.IntN(3))
			if IsShared(f) {
				_, tf, _ := ParseShared(f)
				sub.setTF(len(f) - len(tf))
			}
			s.index(old, sub)
			ss.linkSub(prev, old, sub)
		}
		plus := 0
		s.lit.All(func(sub *subscription) bool {
			if !tableable(sub.topicFilter()) {
				t.Fatalf("step %d: %q in the table", step, sub.filter())
			}
			if plusLast(sub.topicFilter()) {
				plus++
			}
			return true
		})
		if plus != s.litPlus {
			t.Fatalf("step %d: %d P/+ filters in the table, litPlus %d", step, plus, s.litPlus)
		}
		maxPlus = max(maxPlus, plus)
		s.mu.Unlock()
		if step%25 != 0 {
			continue
		}
		for _, topic := range topics {
			var want []*subscription
			for _, ss := range sessions {
				for sub := ss.subs; sub != nil; sub = sub.next {
					if Match(sub.topicFilter(), topic) {
						want = append(want, sub)
					}
				}
			}
			s.mu.RLock()
			got := s.matching(topic, nil)
			s.mu.RUnlock()
			key := func(a, b *subscription) int {
				if a.sess.key() != b.sess.key() {
					return cmpString(a.sess.key(), b.sess.key())
				}
				return cmpString(a.filter(), b.filter())
			}
			slices.SortFunc(want, key)
			slices.SortFunc(got, key)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d topic %q: got %v, want %v", step, topic, subNames(got), subNames(want))
			}
		}
	}
	if maxPlus < 3 {
		t.Fatalf("at most %d P/+ filters in the table at once: the test does not exercise it", maxPlus)
	}
}

func cmpString(a, b string) int {
	switch {
	case a < b:
		return -1
	case a > b:
		return 1
	}
	return 0
}

func subNames(subs []*subscription) []string {
	var out []string
	for _, sub := range subs {
		out = append(out, sub.sess.key()+":"+sub.filter())
	}
	return out
}
