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

// node is one level of the filters. A leaf (the common node: one per
// device subscription) is 48 bytes, its name sharing the filter's string;
// what only inner nodes need is behind x.
type node[V any] struct {
	name string
	subs []trieEntry[V]
	x    *nodeX[V] // children and the subscriber index; nil for a leaf
}

// nodeX is the part of a node with children, or with many subscribers.
type nodeX[V any] struct {
	kids   []*node[V]          // literal levels
	kidMap map[string]*node[V] // literal levels, once more than smallKids
	plus   *node[V]
	hash   *node[V]
	idx    map[string]int // key to index in subs, once more than smallSubs
}

// ext returns n's nodeX, making it.
func (n *node[V]) ext() *nodeX[V] {
	if n.x == nil {
		n.x = new(nodeX[V])
	}
	return n.x
}

// tidy drops n's nodeX once it holds nothing.
func (n *node[V]) tidy() {
	if x := n.x; x != nil && len(x.kids) == 0 && x.kidMap == nil && x.plus == nil && x.hash == nil && x.idx == nil {
		n.x = nil
	}
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
	if n.x != nil && n.x.idx != nil {
		n.x.idx[key] = len(n.subs) - 1
	} else if len(n.subs) > smallSubs {
		idx := make(map[string]int, len(n.subs))
		for i, e := range n.subs {
			idx[e.key] = i
		}
		n.ext().idx = idx
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
	x := n.x
	if x == nil {
		return true // a leaf: nothing below
	}
	level, rest, more := strings.Cut(topic, "/")
	if !noWild {
		if x.hash != nil && !x.hash.emit(fn) {
			return false
		}
		if x.plus != nil && !x.plus.matchNext(rest, more, fn) {
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
	return n.x == nil || n.x.hash == nil || n.x.hash.emit(fn)
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
	x := n.x
	if x == nil {
		if !create {
			return nil
		}
		x = n.ext()
	}
	switch level {
	case "+":
		if x.plus == nil && create {
			x.plus = &node[V]{name: level}
		}
		return x.plus
	case "#":
		if x.hash == nil && create {
			x.hash = &node[V]{name: level}
		}
		return x.hash
	}
	if x.kidMap != nil {
		if c := x.kidMap[level]; c != nil || !create {
			return c
		}
	} else {
		for _, c := range x.kids {
			if c.name == level {
				return c
			}
		}
		if !create {
			return nil
		}
	}
	c := &node[V]{name: level}
	if x.kidMap != nil {
		x.kidMap[level] = c
		return c
	}
	x.kids = append(x.kids, c)
	if len(x.kids) > smallKids {
		x.kidMap = make(map[string]*node[V], len(x.kids))
		for _, k := range x.kids {
			x.kidMap[k.name] = k
		}
		x.kids = nil
	}
	return c
}

// literal returns n's child for a topic level, or nil.
func (n *node[V]) literal(level string) *node[V] {
	x := n.x
	if x == nil {
		return nil
	}
	if x.kidMap != nil {
		return x.kidMap[level]
	}
	for _, c := range x.kids {
		if c.name == level {
			return c
		}
	}
	return nil
}

// find returns the index of key's entry in n.subs, or -1.
func (n *node[V]) find(key string) int {
	if n.x != nil && n.x.idx != nil {
		if i, ok := n.x.idx[key]; ok {
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
		if c.x != nil && c.x.idx != nil {
			delete(c.x.idx, key)
			if i != last {
				c.x.idx[c.subs[last].key] = i
			}
			if last == 0 {
				c.x.idx = nil
				c.tidy()
			}
		}
		c.subs[i] = c.subs[last]
		c.subs[last] = trieEntry[V]{}
		c.subs = c.subs[:last]
		if last == 0 {
			c.subs = nil
		}
	}
	if found && c.empty() {
		n.drop(c)
	}
	return found
}

func (n *node[V]) empty() bool {
	return len(n.subs) == 0 && n.x == nil
}

// drop removes the empty child c.
func (n *node[V]) drop(c *node[V]) {
	x := n.x
	switch {
	case c == x.plus:
		x.plus = nil
	case c == x.hash:
		x.hash = nil
	case x.kidMap != nil:
		delete(x.kidMap, c.name)
		if len(x.kidMap) == 0 {
			x.kidMap = nil
		}
	default:
		for i, k := range x.kids {
			if k == c {
				last := len(x.kids) - 1
				x.kids[i] = x.kids[last]
				x.kids[last] = nil
				x.kids = x.kids[:last]
				break
			}
		}
		if len(x.kids) == 0 {
			x.kids = nil
		}
	}
	n.tidy()
}
