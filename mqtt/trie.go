package mqtt

import (
	"strings"

	"github.com/warrenhq/warren/internal/keytab"
)

// Trie is a subscription index: topic filters, each with a value per
// subscriber, looked up by topic name. It is a path-compressed trie of the
// filters' levels: a node holds a run of one or more levels, the levels
// after the first of a run having no subscriber and no other child, with
// the + and # levels apart, so a lookup visits only the branches that can
// match, and costs no allocation. A filter whose levels below a branch are
// its own (devices/<id>/commands/+ under devices) is one node. A node's
// children and subscribers are small slices that grow an index (a hash
// table) when they get many, for hundreds of thousands of subscriptions,
// many subscribers to one filter or many filters under one level.
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

// node is a run of levels of the filters: name is one level, or several
// joined by '/' when the levels after the first lead nowhere else (path
// compression); it is a substring of a filter, and only a merge (after a
// Remove) makes a string of its own. A node sits in its parent under its
// first level. A leaf with one subscriber (the common node: one per device
// subscription) is 48 bytes and holds it inline; a node with children or
// several subscribers has them behind x. So a node other than the root has
// x == nil exactly when it is a leaf with one subscriber, in one; the root
// (name "") has its nodeX from the first Insert.
type node[V any] struct {
	name string
	one  trieEntry[V] // the subscriber of a leaf without x
	x    *nodeX[V]    // children and subscribers; nil for a leaf with one subscriber
}

// nodeX is the part of a node with children, or with several subscribers.
// A node other than the root with a nodeX has at least one subscriber, or
// two children: one left with one child and no subscriber is merged with
// that child.
type nodeX[V any] struct {
	kids   []*node[V]              // literal first levels
	kidTab *keytab.Table[*node[V]] // literal first levels, once more than smallKids
	plus   *node[V]
	hash   *node[V]
	subs   []trieEntry[V]
	idx    map[string]int // key to index in subs, once more than smallSubs
}

type trieEntry[V any] struct {
	key string
	val V
}

// tableKey keys a node in its parent's kidTab: its first level.
func (n *node[V]) TableKey() string { return firstLevel(n.name) }

// firstLevel returns the first level of a filter or run of levels.
func firstLevel(s string) string {
	if i := strings.IndexByte(s, '/'); i >= 0 {
		return s[:i]
	}
	return s
}

// startsWith reports whether the run name starts with the whole level
// (or run) prefix: name is prefix, or prefix followed by '/'.
func startsWith(name, prefix string) bool {
	return len(name) >= len(prefix) && name[:len(prefix)] == prefix &&
		(len(name) == len(prefix) || name[len(prefix)] == '/')
}

// commonLevels returns the length of the longest run of whole levels that
// a and b start with (a byte offset, at the end of a level of both); -1
// if not even their first levels are equal.
func commonLevels(a, b string) int {
	n := min(len(a), len(b))
	i := 0
	for i < n && a[i] == b[i] {
		i++
	}
	if (i == len(a) || a[i] == '/') && (i == len(b) || b[i] == '/') {
		return i
	}
	return strings.LastIndexByte(a[:i], '/')
}

// ext returns n's nodeX, making it: a leaf's subscriber moves into it.
func (n *node[V]) ext() *nodeX[V] {
	if n.x == nil {
		n.x = &nodeX[V]{subs: []trieEntry[V]{n.one}}
		n.one = trieEntry[V]{}
	}
	return n.x
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
	for {
		c := n.child(firstLevel(filter))
		if c == nil {
			// The rest of the filter is a new leaf: one node.
			n.add(&node[V]{name: filter, one: trieEntry[V]{key, v}})
			t.n++
			return false
		}
		k := commonLevels(c.name, filter)
		if k < len(c.name) {
			c.split(k)
		}
		if k == len(filter) {
			n = c
			break
		}
		n, filter = c, filter[k+1:]
	}
	if n.x == nil && n.one.key == key {
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

// split cuts n's run after its first k bytes (the end of a level, before
// the end of the run): n keeps the first levels, in the same place of its
// parent, and gets one child with the rest of the run and everything n
// held.
func (n *node[V]) split(k int) {
	c := &node[V]{name: n.name[k+1:], one: n.one, x: n.x}
	n.name, n.one, n.x = n.name[:k], trieEntry[V]{}, new(nodeX[V])
	n.add(c)
}

// add adds the child c under its first level, which n has no child for.
func (n *node[V]) add(c *node[V]) {
	x := n.ext()
	switch level := firstLevel(c.name); {
	case level == "+":
		x.plus = c
	case level == "#":
		x.hash = c
	case x.kidTab != nil:
		x.kidTab.Put(c)
	default:
		x.kids = append(x.kids, c)
		if len(x.kids) > smallKids {
			x.kidTab = &keytab.Table[*node[V]]{Tagged: true}
			for _, k := range x.kids {
				x.kidTab.Put(k)
			}
			x.kids = nil
		}
	}
}

// Remove removes key's subscription to filter and reports whether it
// existed. Nodes left empty are freed, and a node left with one child
// and no subscriber is merged with it.
func (t *Trie[V]) Remove(filter, key string) bool {
	found := t.root.x != nil && t.root.remove(filter, key)
	if found {
		t.n--
	}
	return found
}

// node returns the node of filter, or nil.
func (t *Trie[V]) node(filter string) *node[V] {
	n := &t.root
	for {
		c := n.child(firstLevel(filter))
		if c == nil || !startsWith(filter, c.name) {
			return nil
		}
		if len(filter) == len(c.name) {
			return c
		}
		n, filter = c, filter[len(c.name)+1:]
	}
}

// Get returns the value of key's subscription to filter.
func (t *Trie[V]) Get(filter, key string) (v V, ok bool) {
	n := t.node(filter)
	switch {
	case n == nil:
	case n.x == nil:
		if n.one.key == key {
			return n.one.val, true
		}
	default:
		if i := n.find(key); i >= 0 {
			return n.x.subs[i].val, true
		}
	}
	return v, false
}

// hasSubscribers reports whether filter has a subscriber.
func (t *Trie[V]) hasSubscribers(filter string) bool {
	n := t.node(filter)
	return n != nil && (n.x == nil || len(n.x.subs) > 0)
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
		if x.hash != nil && !x.hash.matchNext("", false, fn) {
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

// matchNext continues a lookup at n, whose first level matched a topic
// level (or is #): the rest of n's run against the next topic levels,
// then n's subscribers or children.
func (n *node[V]) matchNext(rest string, more bool, fn func(string, V) bool) bool {
	run := n.name
	if run == "#" {
		return n.emit(fn) // matches what is left, parent level included
	}
	for {
		i := strings.IndexByte(run, '/')
		if i < 0 {
			break
		}
		run = run[i+1:]
		if strings.HasPrefix(run, "#") && (len(run) == 1 || run[1] == '/') {
			// A filter ending in /# matches what is left, and the parent
			// level too (nothing left).
			return n.emit(fn)
		}
		if !more {
			return true // the topic ends inside the run
		}
		var level string
		level, rest, more = strings.Cut(rest, "/")
		if !startsWith(run, level) && !startsWith(run, "+") {
			return true
		}
	}
	if more {
		return n.match(rest, false, fn)
	}
	if !n.emit(fn) {
		return false
	}
	// A filter ending in /# matches its parent level too.
	return n.x == nil || n.x.hash == nil || n.x.hash.matchNext("", false, fn)
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

// child returns n's child for a first level, or nil.
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

// literal returns n's child for a literal first level, or nil.
func (n *node[V]) literal(level string) *node[V] {
	x := n.x
	if x == nil {
		return nil
	}
	if x.kidTab != nil {
		return x.kidTab.Get(level)
	}
	for _, c := range x.kids {
		if startsWith(c.name, level) {
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

// remove removes key's subscription to the filter below n (n.x is not
// nil), and tidies the child it went through.
func (n *node[V]) remove(filter, key string) bool {
	c := n.child(firstLevel(filter))
	if c == nil || !startsWith(filter, c.name) {
		return false
	}
	if len(filter) > len(c.name) {
		if c.x == nil || !c.remove(filter[len(c.name)+1:], key) {
			return false
		}
		n.settle(c)
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
	n.settle(c)
	return true
}

// settle puts n's child c, which lost a subscriber or a descendant, in
// its tidiest form: dropped when it holds nothing, a leaf when it holds
// one subscriber only, merged with its child when it holds one child
// only.
func (n *node[V]) settle(c *node[V]) {
	x := c.x
	if x == nil {
		return
	}
	nk := x.nkids()
	switch {
	case len(x.subs) == 0 && nk == 0:
		n.drop(c)
	case len(x.subs) == 1 && nk == 0:
		c.one, c.x = x.subs[0], nil
	case len(x.subs) == 0 && nk == 1:
		k := x.plus
		switch {
		case k != nil:
		case x.hash != nil:
			k = x.hash
		case x.kidTab != nil:
			x.kidTab.All(func(o *node[V]) bool { k = o; return false })
		default:
			k = x.kids[0]
		}
		c.name, c.one, c.x = c.name+"/"+k.name, k.one, k.x
	}
}

// nkids returns the number of children.
func (x *nodeX[V]) nkids() int {
	n := len(x.kids)
	if x.kidTab != nil {
		n += x.kidTab.Len()
	}
	if x.plus != nil {
		n++
	}
	if x.hash != nil {
		n++
	}
	return n
}

// empty reports whether n, which has its nodeX, holds nothing.
func (n *node[V]) empty() bool {
	x := n.x
	return x != nil && len(x.subs) == 0 && x.nkids() == 0
}

// drop removes the child c, which holds nothing any more. n itself is
// settled by its own parent (the root never is).
func (n *node[V]) drop(c *node[V]) {
	x := n.x
	switch {
	case c == x.plus:
		x.plus = nil
	case c == x.hash:
		x.hash = nil
	case x.kidTab != nil:
		x.kidTab.Remove(c)
		if x.kidTab.Len() == 0 {
			x.kidTab = nil
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
}
