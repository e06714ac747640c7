package mqtt

import "strings"

// Trie is a subscription index: topic filters, each with a value per
// subscriber, looked up by topic name. It holds one level of the filters per
// node, with the + and # levels apart, so a lookup visits only the branches
// that can match, and costs no allocation. A node's children and
// subscribers are small slices that grow an index map when they get many,
// for hundreds of thousands of subscriptions, many subscribers to one filter
// or many filters under one level.
//
// Filters are stored as given: a broker stores a shared subscription under
// its topic filter (see ParseShared), keeping the group in the key or the
// value. Insert does not check the filter; see ValidTopicFilter.
//
// The zero value is an empty trie. A Trie is not safe for concurrent use,
// except that Lookup and Len may run concurrently with each other: guard
// Insert and Remove (an RWMutex), or keep the trie on one goroutine.
type Trie[V any] struct {
	root node[V]
	n    int
}

const (
	// smallKids is the number of children a node searches linearly.
	smallKids = 8
	// smallSubs is the number of subscribers a node searches linearly.
	smallSubs = 16
)

type node[V any] struct {
	name   string
	kids   []*node[V]          // literal levels
	kidMap map[string]*node[V] // literal levels, once more than smallKids
	plus   *node[V]
	hash   *node[V]
	subs   []trieEntry[V]
	idx    map[string]int // key to index in subs, once more than smallSubs
}

type trieEntry[V any] struct {
	key string
	val V
}

// Len returns the number of subscriptions: (filter, key) pairs.
func (t *Trie[V]) Len() int { return t.n }

// Insert sets the value of the subscription of key (a subscriber, such as a
// client identifier) to filter, and reports whether it replaced one: as in
// MQTT, a subscriber has one subscription per filter.
func (t *Trie[V]) Insert(filter, key string, v V) (replaced bool) {
	n := &t.root
	for {
		level, rest, more := strings.Cut(filter, "/")
		n = n.child(level, true)
		if !more {
			break
		}
		filter = rest
	}
	if i := n.find(key); i >= 0 {
		n.subs[i].val = v
		return true
	}
	n.subs = append(n.subs, trieEntry[V]{key, v})
	if n.idx != nil {
		n.idx[key] = len(n.subs) - 1
	} else if len(n.subs) > smallSubs {
		n.idx = make(map[string]int, len(n.subs))
		for i, e := range n.subs {
			n.idx[e.key] = i
		}
	}
	t.n++
	return false
}

// Remove removes key's subscription to filter and reports whether it
// existed. Nodes left empty are freed.
func (t *Trie[V]) Remove(filter, key string) bool {
	found := t.root.remove(filter, key)
	if found {
		t.n--
	}
	return found
}

// Get returns the value of key's subscription to filter.
func (t *Trie[V]) Get(filter, key string) (v V, ok bool) {
	n := &t.root
	for {
		level, rest, more := strings.Cut(filter, "/")
		if n = n.child(level, false); n == nil {
			return v, false
		}
		if !more {
			break
		}
		filter = rest
	}
	if i := n.find(key); i >= 0 {
		return n.subs[i].val, true
	}
	return v, false
}

// Lookup calls fn with the key and value of every subscription whose filter
// matches the topic name, as Match does, until fn returns false. The order
// is unspecified. fn must not modify the trie.
func (t *Trie[V]) Lookup(topic string, fn func(key string, v V) bool) {
	t.root.match(topic, topic != "" && topic[0] == '$', fn)
}

// match matches the remaining topic levels below n. It returns false when fn
// stopped the lookup.
func (n *node[V]) match(topic string, noWild bool, fn func(string, V) bool) bool {
	level, rest, more := strings.Cut(topic, "/")
	if !noWild {
		if n.hash != nil && !n.hash.emit(fn) {
			return false
		}
		if n.plus != nil && !n.plus.matchNext(rest, more, fn) {
			return false
		}
	}
	if c := n.literal(level); c != nil && !c.matchNext(rest, more, fn) {
		return false
	}
	return true
}

// matchNext continues a lookup at n, which matched a topic level.
func (n *node[V]) matchNext(rest string, more bool, fn func(string, V) bool) bool {
	if more {
		return n.match(rest, false, fn)
	}
	if !n.emit(fn) {
		return false
	}
	// A filter ending in /# matches its parent level too.
	return n.hash == nil || n.hash.emit(fn)
}

func (n *node[V]) emit(fn func(string, V) bool) bool {
	for i := range n.subs {
		if !fn(n.subs[i].key, n.subs[i].val) {
			return false
		}
	}
	return true
}

// child returns n's child for a filter level, creating it if create is set,
// or nil.
func (n *node[V]) child(level string, create bool) *node[V] {
	switch level {
	case "+":
		if n.plus == nil && create {
			n.plus = &node[V]{name: level}
		}
		return n.plus
	case "#":
		if n.hash == nil && create {
			n.hash = &node[V]{name: level}
		}
		return n.hash
	}
	if n.kidMap != nil {
		if c := n.kidMap[level]; c != nil || !create {
			return c
		}
	} else {
		for _, c := range n.kids {
			if c.name == level {
				return c
			}
		}
		if !create {
			return nil
		}
	}
	c := &node[V]{name: level}
	if n.kidMap != nil {
		n.kidMap[level] = c
		return c
	}
	n.kids = append(n.kids, c)
	if len(n.kids) > smallKids {
		n.kidMap = make(map[string]*node[V], len(n.kids))
		for _, k := range n.kids {
			n.kidMap[k.name] = k
		}
		n.kids = nil
	}
	return c
}

// literal returns n's child for a topic level, or nil.
func (n *node[V]) literal(level string) *node[V] {
	if n.kidMap != nil {
		return n.kidMap[level]
	}
	for _, c := range n.kids {
		if c.name == level {
			return c
		}
	}
	return nil
}

// find returns the index of key's entry in n.subs, or -1.
func (n *node[V]) find(key string) int {
	if n.idx != nil {
		if i, ok := n.idx[key]; ok {
			return i
		}
		return -1
	}
	for i := range n.subs {
		if n.subs[i].key == key {
			return i
		}
	}
	return -1
}

// remove removes key's subscription to the filter below n.
func (n *node[V]) remove(filter, key string) bool {
	level, rest, more := strings.Cut(filter, "/")
	c := n.child(level, false)
	if c == nil {
		return false
	}
	var found bool
	if more {
		found = c.remove(rest, key)
	} else if i := c.find(key); i >= 0 {
		found = true
		last := len(c.subs) - 1
		if c.idx != nil {
			delete(c.idx, key)
			if i != last {
				c.idx[c.subs[last].key] = i
			}
		}
		c.subs[i] = c.subs[last]
		c.subs[last] = trieEntry[V]{}
		c.subs = c.subs[:last]
	}
	if found && c.empty() {
		n.drop(c)
	}
	return found
}

func (n *node[V]) empty() bool {
	return len(n.subs) == 0 && len(n.kids) == 0 && len(n.kidMap) == 0 && n.plus == nil && n.hash == nil
}

// drop removes the empty child c.
func (n *node[V]) drop(c *node[V]) {
	switch {
	case c == n.plus:
		n.plus = nil
	case c == n.hash:
		n.hash = nil
	case n.kidMap != nil:
		delete(n.kidMap, c.name)
		if len(n.kidMap) == 0 {
			n.kidMap = nil
		}
	default:
		for i, k := range n.kids {
			if k == c {
				last := len(n.kids) - 1
				n.kids[i] = n.kids[last]
				n.kids[last] = nil
				n.kids = n.kids[:last]
				break
			}
		}
		if len(n.kids) == 0 {
			n.kids = nil
		}
	}
}
