package mqtt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
)

// checkTrie checks the trie's shape: every node sits under its first
// level, a node other than the root without a nodeX is a leaf with one
// subscriber, one with a nodeX has a subscriber or two children (a run
// of levels is never left where it could be one node), no node is empty,
// and the subscriptions counted are those held.
func checkTrie[V any](t *testing.T, tr *Trie[V]) {
	t.Helper()
	subs := 0
	var walk func(n *node[V], path string, root bool)
	walk = func(n *node[V], path string, root bool) {
		x := n.x
		if x == nil {
			if root {
				return
			}
			subs++
			return
		}
		subs += len(x.subs)
		nk := x.nkids()
		if !root && len(x.subs) == 0 && nk < 2 {
			t.Fatalf("node %q (%q): %d children and no subscriber", n.name, path, nk)
		}
		if !root && len(x.subs) == 1 && nk == 0 {
			t.Fatalf("node %q (%q): one subscriber in a nodeX", n.name, path)
		}
		if x.kidTab != nil && len(x.kids) > 0 {
			t.Fatalf("node %q: children in both the slice and the table", path)
		}
		if len(x.subs) > smallSubs && x.idx == nil || x.idx != nil && len(x.idx) != len(x.subs) {
			t.Fatalf("node %q: index of %d with %d subscribers", path, len(x.idx), len(x.subs))
		}
		seen := map[string]bool{}
		visit := func(c *node[V]) {
			first := firstLevel(c.name)
			if seen[first] {
				t.Fatalf("node %q: two children under %q", path, first)
			}
			seen[first] = true
			walk(c, path+"/"+c.name, false)
		}
		if x.plus != nil {
			if firstLevel(x.plus.name) != "+" {
				t.Fatalf("node %q: plus child %q", path, x.plus.name)
			}
			visit(x.plus)
		}
		if x.hash != nil {
			if x.hash.name != "#" {
				t.Fatalf("node %q: hash child %q", path, x.hash.name)
			}
			visit(x.hash)
		}
		lit := func(c *node[V]) {
			if f := firstLevel(c.name); f == "+" || f == "#" {
				t.Fatalf("node %q: literal child %q", path, c.name)
			}
			if n.literal(firstLevel(c.name)) != c {
				t.Fatalf("node %q: child %q not found by its first level", path, c.name)
			}
			visit(c)
		}
		for _, c := range x.kids {
			lit(c)
		}
		if x.kidTab != nil {
			if x.kidTab.Len() == 0 {
				t.Fatalf("node %q: empty child table", path)
			}
			x.kidTab.All(func(c *node[V]) bool { lit(c); return true })
		}
	}
	walk(&tr.root, "", true)
	if subs != tr.Len() {
		t.Fatalf("%d subscriptions held, Len %d", subs, tr.Len())
	}
}

// countNodes returns the nodes and nodeXs below the root.
func countNodes[V any](tr *Trie[V]) (nodes, exts int) {
	var walk func(n *node[V])
	walk = func(n *node[V]) {
		nodes++
		x := n.x
		if x == nil {
			return
		}
		exts++
		for _, c := range x.kids {
			walk(c)
		}
		if x.kidTab != nil {
			x.kidTab.All(func(c *node[V]) bool { walk(c); return true })
		}
		if x.plus != nil {
			walk(x.plus)
		}
		if x.hash != nil {
			walk(x.hash)
		}
	}
	walk(&tr.root)
	return nodes - 1, exts - 1
}

// One subscription per device to devices/<id>/commands/+ costs one leaf
// node each (with its subscriber inline) under one devices node; they go
// away with their subscriptions, and the last one left is one node again.
func TestTrieDeviceFilterOneNode(t *testing.T) {
	var tr Trie[int]
	const n = 1000
	for i := range n {
		tr.Insert(fmt.Sprintf("devices/dev-%d/commands/+", i), fmt.Sprint("dev-", i), i)
	}
	checkTrie(t, &tr)
	if nodes, exts := countNodes(&tr); nodes != n+1 || exts != 1 {
		t.Fatalf("%d devices: %d nodes, %d with a nodeX; want %d and 1", n, nodes, exts, n+1)
	}
	for i := range n {
		topic := fmt.Sprintf("devices/dev-%d/commands/reboot", i)
		var got []int
		tr.Lookup(topic, func(_ string, v int) bool { got = append(got, v); return true })
		if len(got) != 1 || got[0] != i {
			t.Fatalf("Lookup(%q) = %v", topic, got)
		}
		for _, miss := range []string{fmt.Sprintf("devices/dev-%d/commands", i), fmt.Sprintf("devices/dev-%d/telemetry", i),
			fmt.Sprintf("devices/dev-%d/commands/a/b", i), fmt.Sprintf("devices/dev-%dx/commands/a", i)} {
			tr.Lookup(miss, func(_ string, v int) bool { t.Fatalf("Lookup(%q) matched %d", miss, v); return true })
		}
	}
	for i := 1; i < n; i++ {
		if !tr.Remove(fmt.Sprintf("devices/dev-%d/commands/+", i), fmt.Sprint("dev-", i)) {
			t.Fatalf("Remove %d", i)
		}
	}
	checkTrie(t, &tr)
	if nodes, _ := countNodes(&tr); nodes != 1 || tr.root.x.kids[0].name != "devices/dev-0/commands/+" {
		t.Fatalf("one device left: %d nodes", nodes)
	}
}

// Splits and merges: a run is cut where a new filter leaves it or ends
// in it, and put back together when the branch goes away.
func TestTrieSplitMerge(t *testing.T) {
	type step struct {
		insert bool
		filter string
		shape  string // after the step: each node by name, * for subscribers beside children, its children in []
	}
	steps := []step{
		{true, "a/b/c/d", "[a/b/c/d]"},
		{true, "a/b/x", "[a/b[c/d x]]"},
		{true, "a/b", "[a/b*[c/d x]]"},
		{true, "a/b/c/d/#", "[a/b*[c/d*[#] x]]"},
		{true, "a/+/c", "[a[+/c b*[c/d*[#] x]]]"},
		{false, "a/b", "[a[+/c b[c/d*[#] x]]]"},
		{false, "a/b/x", "[a[+/c b/c/d*[#]]]"},
		{false, "a/+/c", "[a/b/c/d*[#]]"},
		{false, "a/b/c/d", "[a/b/c/d/#]"},
		{true, "a/b/c/d/e", "[a/b/c/d[# e]]"},
		{false, "a/b/c/d/#", "[a/b/c/d/e]"},
		{true, "a", "[a*[b/c/d/e]]"},
		{true, "#", "[# a*[b/c/d/e]]"},
		{true, "a/b/c", "[# a*[b/c*[d/e]]]"},
		{false, "a/b/c/d/e", "[# a*[b/c]]"},
		{false, "a", "[# a/b/c]"},
		{false, "#", "[a/b/c]"},
		{false, "a/b/c", "[]"},
	}
	var tr Trie[int]
	var shape func(n *node[int]) string
	shape = func(n *node[int]) string {
		x := n.x
		if x == nil {
			return "*"
		}
		var kids []*node[int]
		kids = append(kids, x.kids...)
		for _, c := range []*node[int]{x.plus, x.hash} {
			if c != nil {
				kids = append(kids, c)
			}
		}
		slices.SortFunc(kids, func(a, b *node[int]) int { return strings.Compare(a.name, b.name) })
		var b strings.Builder
		if len(x.subs) > 0 {
			b.WriteString("*")
		}
		if len(kids) == 0 {
			return b.String()
		}
		b.WriteString("[")
		for i, c := range kids {
			if i > 0 {
				b.WriteString(" ")
			}
			b.WriteString(c.name)
			if s := shape(c); s != "*" {
				b.WriteString(s)
			}
		}
		b.WriteString("]")
		return b.String()
	}
	for i, s := range steps {
		if s.insert {
			if tr.Insert(s.filter, "k", i) {
				t.Fatalf("step %d: Insert(%q) replaced", i, s.filter)
			}
		} else if !tr.Remove(s.filter, "k") {
			t.Fatalf("step %d: Remove(%q) = false", i, s.filter)
		}
		checkTrie(t, &tr)
		got := shape(&tr.root)
		if got == "" || got == "*" {
			got = "[]"
		}
		if got != s.shape {
			t.Fatalf("step %d (%v %q): shape %s; want %s", i, s.insert, s.filter, got, s.shape)
		}
	}
}

// TestTrieRandomDeep is TestTrieRandom with long filters sharing
// prefixes, so that runs are split and merged at every level, and the
// shape checked after every step.
func TestTrieRandomDeep(t *testing.T) {
	rng := rand.New(rand.NewPCG(5, 6))
	levels := []string{"a", "b", "", "$s", "+"}
	pick := func(wild bool) string {
		n := 1 + rng.IntN(6)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = levels[rng.IntN(len(levels))]
			if rng.IntN(4) == 0 || !wild && parts[i] == "+" {
				parts[i] = fmt.Sprint("n", rng.IntN(12))
			}
		}
		if wild && rng.IntN(5) == 0 {
			parts[n-1] = "#"
		}
		return strings.Join(parts, "/")
	}
	type sub struct{ filter, key string }
	model := map[sub]int{}
	var tr Trie[int]
	for step := range 6000 {
		if len(model) > 0 && rng.IntN(2) == 0 {
			for s := range model {
				if !tr.Remove(s.filter, s.key) {
					t.Fatalf("Remove(%q, %q) = false", s.filter, s.key)
				}
				delete(model, s)
				break
			}
		} else {
			s := sub{pick(true), fmt.Sprint("k", rng.IntN(20))}
			_, had := model[s]
			if tr.Insert(s.filter, s.key, step) != had {
				t.Fatalf("Insert(%q, %q) replaced = %v; want %v", s.filter, s.key, !had, had)
			}
			model[s] = step
		}
		checkTrie(t, &tr)
		if step%10 != 0 {
			continue
		}
		for s, v := range model {
			if got, ok := tr.Get(s.filter, s.key); !ok || got != v {
				t.Fatalf("Get(%q, %q) = %d, %v; want %d", s.filter, s.key, got, ok, v)
			}
			if !tr.hasSubscribers(s.filter) {
				t.Fatalf("hasSubscribers(%q) = false", s.filter)
			}
		}
		for range 30 {
			tp := pick(false)
			var got, want []string
			tr.Lookup(tp, func(k string, v int) bool { got = append(got, fmt.Sprint(k, v)); return true })
			for s, v := range model {
				if Match(s.filter, tp) {
					want = append(want, fmt.Sprint(s.key, v))
				}
			}
			slices.Sort(got)
			slices.Sort(want)
			if !slices.Equal(got, want) {
				t.Fatalf("step %d: Lookup(%q) = %v; want %v", step, tp, got, want)
			}
		}
	}
}
