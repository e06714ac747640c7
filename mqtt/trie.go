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

// node is one level of the filters. A leaf with one subscriber (the
// common node: one per device subscription) is 48 bytes and holds it
// inline, its name sharing the filter's string; a node with children or
// several subscribers has them behind x. So a node other than the root
// has x == nil exactly when it is a leaf with one subscriber, in one; the
// root has its nodeX from the first Insert.
type node[V any] struct {
	name string
	one  trieEntry[V] // the subscriber of a leaf without x
	x    *nodeX[V]    // children and subscribers; nil for a leaf with one subscriber
}

// nodeX is the part of a node with children, or with several subscribers.
type nodeX[V any] struct {
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

// ext returns n's nodeX, making it: a leaf's subscriber moves into it.
func (n *node[V]) ext() *nodeX[V] {
	if n.x == nil {
		n.x = &nodeX[V]{subs: []trieEntry[V]{n.one}}
		n.one = trieEntry[V]{}
	}
	return n.x
}

// tidy makes n a leaf again once it has one subscriber and nothing else.
func (n *node[V]) tidy() {
	if x := n.x; x != nil && len(x.subs) == 1 && len(x.kids) == 0 && x.kidMap == nil && x.plus == nil && x.hash == nil && x.idx == nil {
		n.one = x.subs[0]
		n.x = nil
	}
}

// Len returns the number of subscriptions: (filter, key) pairs.
func (t *Trie[V]) Len() int { return t.n }

// Insert sets the value of the subscription of key (a subscriber, such as a
// client identifier) to filter, and reports whether it replaced one: as in
// MQTT, a subscriber has one subscription per filter.
func (t *Trie[V]) Insert(filter, key string, v V) (replaced bool) {
	if t.root.x == nil {
		t.root.x = new(nodeX[V])
	}
	n := &t.root
	var fresh bool
	for {
		level, rest, more := strings.Cut(filter, "/")
		n, fresh = n.make(level, more)
		if !more {
			break
		}
		filter = rest
	}
	switch {
	case fresh:
		n.one = trieEntry[V]{key, v}
		t.n++
		return false
	case n.x == nil && n.one.key == key:
		n.one.val = v
		return true
	}
	x := n.ext()
	if i := n.find(key); i >= 0 {
		x.subs[i].val = v
		return true
	}
	x.subs = append(x.subs, trieEntry[V]{key, v})
	if x.idx != nil {
		x.idx[key] = len(x.subs) - 1
	} else if len(x.subs) > smallSubs {
		x.idx = make(map[string]int, len(x.subs))
		for i, e := range x.subs {
			x.idx[e.key] = i
		}
	}
	t.n++
	return false
}

// Remove removes key's subscription to filter and reports whether it
// existed. Nodes left empty are freed.
func (t *Trie[V]) Remove(filter, key string) bool {
	found := t.root.x != nil && t.root.remove(filter, key)
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
		if n = n.child(level); n == nil {
			return v, false
		}
		if !more {
			break
		}
		filter = rest
	}
	if n.x == nil {
		if n.one.key == key {
			return n.one.val, true
		}
		return v, false
	}
	if i := n.find(key); i >= 0 {
		return n.x.subs[i].val, true
	}
	return v, false
}

// hasSubscribers reports whether filter has a subscriber.
func (t *Trie[V]) hasSubscribers(filter string) bool {
	n := &t.root
	for {
		level, rest, more := strings.Cut(filter, "/")
		if n = n.child(level); n == nil {
			return false
		}
		if !more {
			break
		}
		filter = rest
	}
	return n.x == nil || len(n.x.subs) > 0
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

// emit calls fn with n's subscribers (n is not the root).
func (n *node[V]) emit(fn func(string, V) bool) bool {
	if n.x == nil {
		return fn(n.one.key, n.one.val)
	}
	for i := range n.x.subs {
		if !fn(n.x.subs[i].key, n.x.subs[i].val) {
			return false
		}
	}
	return true
}

// make returns n's child for a filter level, creating it (with its nodeX
// if inner, as it is about to get a child), and reports whether it did.
func (n *node[V]) make(level string, inner bool) (c *node[V], created bool) {
	if c = n.child(level); c != nil {
		return c, false
	}
	c = &node[V]{name: level}
	if inner {
		c.x = new(nodeX[V])
	}
	x := n.ext()
	switch {
	case level == "+":
		x.plus = c
	case level == "#":
		x.hash = c
	case x.kidMap != nil:
		x.kidMap[level] = c
	default:
		x.kids = append(x.kids, c)
		if len(x.kids) > smallKids {
			x.kidMap = make(map[string]*node[V], len(x.kids))
			for _, k := range x.kids {
				x.kidMap[k.name] = k
			}
			x.kids = nil
		}
	}
	return c, true
}

// child returns n's child for a filter level, or nil.
func (n *node[V]) child(level string) *node[V] {
	switch level {
	case "+":
		if n.x == nil {
			return nil
		}
		return n.x.plus
	case "#":
		if n.x == nil {
			return nil
		}
		return n.x.hash
	}
	return n.literal(level)
}

// literal returns n's child for a literal level, or nil.
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

// find returns the index of key's entry in n.x.subs, or -1; n.x is not nil.
func (n *node[V]) find(key string) int {
	x := n.x
	if x.idx != nil {
		if i, ok := x.idx[key]; ok {
			return i
		}
		return -1
	}
	for i := range x.subs {
		if x.subs[i].key == key {
			return i
		}
	}
	return -1
}

// remove removes key's subscription to the filter below n (n.x is not nil).
func (n *node[V]) remove(filter, key string) bool {
	level, rest, more := strings.Cut(filter, "/")
	c := n.child(level)
	if c == nil {
		return false
	}
	if more {
		if !c.remove(rest, key) {
			return false
		}
		if c.empty() {
			n.drop(c)
		}
		return true
	}
	if c.x == nil {
		if c.one.key != key {
			return false
		}
		n.drop(c) // a leaf whose one subscriber leaves
		return true
	}
	i := c.find(key)
	if i < 0 {
		return false
	}
	x := c.x
	last := len(x.subs) - 1
	if x.idx != nil {
		delete(x.idx, key)
		if i != last {
			x.idx[x.subs[last].key] = i
		}
		if last <= 1 {
			x.idx = nil
		}
	}
	x.subs[i] = x.subs[last]
	x.subs[last] = trieEntry[V]{}
	x.subs = x.subs[:last]
	if last == 0 {
		x.subs = nil
	}
	if c.empty() {
		n.drop(c)
	} else {
		c.tidy()
	}
	return true
}

// empty reports whether n, which has its nodeX, holds nothing.
func (n *node[V]) empty() bool {
	x := n.x
	return x != nil && len(x.subs) == 0 && len(x.kids) == 0 && len(x.kidMap) == 0 && x.plus == nil && x.hash == nil
}

// drop removes the child c, which holds nothing any more.
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
