package mqtt

import (
	"fmt"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"unicode/utf8"
)

func TestValidTopicName(t *testing.T) {
	for name, want := range map[string]bool{
		"a": true, "a/b": true, "/": true, "//": true, "$SYS/x": true, "café/ü": true, " ": true,
		"": false, "a/+": false, "#": false, "a/#/b": false, "a+b": false, "a\x00b": false,
		"\xff": false, "\xed\xa0\x80": false, "é+": false, strings.Repeat("a", 65535): true,
		strings.Repeat("a", 65536): false,
	} {
		if got := ValidTopicName(name); got != want {
			t.Errorf("ValidTopicName(%.20q) = %v; want %v", name, got, want)
		}
	}
}

func TestValidTopicFilter(t *testing.T) {
	for filter, want := range map[string]bool{
		"#": true, "+": true, "a/#": true, "a/+/b": true, "+/+": true, "/+": true, "+/": true,
		"a/b": true, "/": true, "$SYS/#": true, "$share/g/a/#": true, "$share/g/+": true,
		"$share/g//": true, "$share": true, "$sharex/a": true,
		"": false, "a#": false, "a/#/b": false, "#/": false, "a+": false, "a/b+/c": false,
		"+a": false, "##": false, "a\x00": false, "\xc3": false,
		"$share/": false, "$share/g": false, "$share/g/": false, "$share//a": false,
		"$share/g+/a": false, "$share/g#/a": false, "$share/g/a#": false,
	} {
		if got := ValidTopicFilter(filter); got != want {
			t.Errorf("ValidTopicFilter(%q) = %v; want %v", filter, got, want)
		}
	}
}

func TestParseShared(t *testing.T) {
	for _, c := range []struct {
		in, group, filter string
		ok                bool
	}{
		{"$share/g/a/b", "g", "a/b", true},
		{"$share/consumer1/sport/tennis/+", "consumer1", "sport/tennis/+", true},
		{"$share/g/#", "g", "#", true},
		{"$share/g//", "g", "/", true},
		{"a/b", "", "", false},
		{"$share/g", "", "", false},
		{"$share//a", "", "", false},
		{"$share/g/", "", "", false},
		{"$share/+/a", "", "", false},
		{"$share/g/a/#/b", "", "", false},
	} {
		g, f, ok := ParseShared(c.in)
		if g != c.group || f != c.filter || ok != c.ok {
			t.Errorf("ParseShared(%q) = %q, %q, %v; want %q, %q, %v", c.in, g, f, ok, c.group, c.filter, c.ok)
		}
	}
}

// matchCases are the examples of the specification (4.7) and more.
var matchCases = []struct {
	filter, topic string
	want          bool
}{
	{"sport/tennis/player1/#", "sport/tennis/player1", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/ranking", true},
	{"sport/tennis/player1/#", "sport/tennis/player1/score/wimbledon", true},
	{"sport/#", "sport", true},
	{"#", "sport/tennis", true},
	{"#", "/", true},
	{"sport/tennis/+", "sport/tennis/player1", true},
	{"sport/tennis/+", "sport/tennis/player1/ranking", false},
	{"sport/+", "sport", false},
	{"sport/+", "sport/", true},
	{"+/+", "/finance", true},
	{"/+", "/finance", true},
	{"+", "/finance", false},
	{"+", "finance", true},
	{"+/#", "finance", true},
	{"+/tennis/#", "sport/tennis", true},
	{"a/b", "a/b", true},
	{"a/b", "a/b/c", false},
	{"a/b/c", "a/b", false},
	{"a//b", "a//b", true},
	{"a/+/b", "a//b", true},
	{"#", "$SYS/uptime", false},
	{"+/monitor/Clients", "$SYS/monitor/Clients", false},
	{"$SYS/#", "$SYS/monitor/Clients", true},
	{"$SYS/monitor/+", "$SYS/monitor/Clients", true},
	{"a/$x", "a/$x", true},
	{"a/+", "a/$x", true},
	{"A", "a", false},
}

func TestMatch(t *testing.T) {
	for _, c := range matchCases {
		if got := Match(c.filter, c.topic); got != c.want {
			t.Errorf("Match(%q, %q) = %v; want %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestTrieMatchCases(t *testing.T) {
	for _, c := range matchCases {
		var tr Trie[int]
		tr.Insert(c.filter, "k", 1)
		var got []string
		tr.Lookup(c.topic, func(key string, v int) bool { got = append(got, key); return true })
		if (len(got) == 1) != c.want || len(got) > 1 {
			t.Errorf("trie %q lookup %q: %v; want match %v", c.filter, c.topic, got, c.want)
		}
	}
}

func TestTrieInsertRemove(t *testing.T) {
	var tr Trie[int]
	if tr.Insert("a/+", "c1", 1) || tr.Insert("a/+", "c2", 2) || tr.Insert("a/#", "c1", 3) {
		t.Fatal("new subscriptions reported as replaced")
	}
	if !tr.Insert("a/+", "c1", 10) {
		t.Fatal("replacement not reported")
	}
	if tr.Len() != 3 {
		t.Fatalf("Len = %d", tr.Len())
	}
	if v, ok := tr.Get("a/+", "c1"); !ok || v != 10 {
		t.Fatalf("Get = %d, %v", v, ok)
	}
	if _, ok := tr.Get("a/+", "c3"); ok {
		t.Fatal("Get of a missing key")
	}
	if _, ok := tr.Get("a/b", "c1"); ok {
		t.Fatal("Get of a missing filter")
	}
	got := map[string]int{}
	tr.Lookup("a/x", func(k string, v int) bool { got[k] += v; return true })
	if got["c1"] != 13 || got["c2"] != 2 || len(got) != 2 {
		t.Fatalf("lookup: %v", got)
	}
	// Stopping early.
	calls := 0
	tr.Lookup("a/x", func(string, int) bool { calls++; return false })
	if calls != 1 {
		t.Fatalf("fn called %d times after returning false", calls)
	}
	if tr.Remove("a/+", "c3") || tr.Remove("b", "c1") || tr.Remove("a/+/c", "c1") {
		t.Fatal("removed a missing subscription")
	}
	for _, s := range [][2]string{{"a/+", "c1"}, {"a/+", "c2"}, {"a/#", "c1"}} {
		if !tr.Remove(s[0], s[1]) {
			t.Fatalf("Remove(%q, %q) = false", s[0], s[1])
		}
	}
	if tr.Len() != 0 || !tr.root.empty() {
		t.Fatalf("trie not empty after removing all: %d, %+v", tr.Len(), tr.root)
	}
}

// TestTrieRandom checks Lookup against Match for random filters and topics,
// through inserts, replacements and removals, with enough subscribers on a
// filter and children under a level for the index maps.
func TestTrieRandom(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	levels := []string{"a", "b", "c", "", "$s", "dd"}
	var names []string
	for i := 0; i < 20; i++ {
		names = append(names, fmt.Sprint("n", i))
	}
	level := func() string {
		if rng.IntN(4) == 0 {
			return names[rng.IntN(len(names))]
		}
		return levels[rng.IntN(len(levels))]
	}
	topic := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			parts[i] = level()
		}
		return strings.Join(parts, "/")
	}
	filter := func() string {
		n := 1 + rng.IntN(4)
		parts := make([]string, n)
		for i := range parts {
			switch rng.IntN(5) {
			case 0:
				parts[i] = "+"
			default:
				parts[i] = level()
			}
		}
		if rng.IntN(4) == 0 {
			parts[n-1] = "#"
		}
		return strings.Join(parts, "/")
	}
	type sub struct{ filter, key string }
	model := map[sub]int{}
	var tr Trie[int]
	for step := 0; step < 4000; step++ {
		if len(model) > 0 && rng.IntN(3) == 0 {
			for s := range model { // remove a random one
				if !tr.Remove(s.filter, s.key) {
					t.Fatalf("Remove(%q, %q) = false", s.filter, s.key)
				}
				if _, ok := tr.Get(s.filter, s.key); ok {
					t.Fatalf("Get(%q, %q) found after Remove", s.filter, s.key)
				}
				delete(model, s)
				break
			}
		} else {
			s := sub{filter(), fmt.Sprint("k", rng.IntN(40))}
			_, had := model[s]
			if tr.Insert(s.filter, s.key, step) != had {
				t.Fatalf("Insert(%q, %q) replaced = %v; want %v", s.filter, s.key, !had, had)
			}
			model[s] = step
			if v, ok := tr.Get(s.filter, s.key); !ok || v != step {
				t.Fatalf("Get(%q, %q) = %d, %v; want %d", s.filter, s.key, v, ok, step)
			}
		}
		if tr.Len() != len(model) {
			t.Fatalf("Len = %d; want %d", tr.Len(), len(model))
		}
		checkTrie(t, &tr)
		if step%20 != 0 {
			continue
		}
		for i := 0; i < 20; i++ {
			tp := topic()
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
				t.Fatalf("Lookup(%q) = %v; want %v", tp, got, want)
			}
		}
	}
	for s := range model {
		tr.Remove(s.filter, s.key)
	}
	if tr.Len() != 0 || !tr.root.empty() {
		t.Fatal("trie not empty after removing all")
	}
}

// TestCheckTopicNameEveryPosition puts each kind of special byte at every
// position of names long enough for the eight-byte scan.
func TestCheckTopicNameEveryPosition(t *testing.T) {
	naive := func(b []byte) ReasonCode {
		s := string(b)
		switch {
		case !utf8.ValidString(s), strings.IndexByte(s, 0) >= 0:
			return MalformedPacket
		case strings.ContainsAny(s, "+#"):
			return TopicNameInvalid
		}
		return Success
	}
	for n := 1; n <= 24; n++ {
		for pos := 0; pos < n; pos++ {
			for _, special := range []string{"+", "#", "\x00", "é", "\xff", "\xc3", "/", "é+", "\x00#"} {
				b := []byte(strings.Repeat("a", n))
				b = append(append(b[:pos:pos], special...), b[pos+1:]...)
				got := Success
				if e := checkTopicName(b); e != nil {
					got = e.Code
				}
				if want := naive(b); got != want {
					t.Fatalf("checkTopicName(%q) = %v; want %v", b, got, want)
				}
				got = Success
				if e := checkUTF8(b); e != nil {
					got = e.Code
				}
				if want := naive(b); got != want && !(want == TopicNameInvalid && got == Success) {
					t.Fatalf("checkUTF8(%q) = %v; want %v", b, got, want)
				}
			}
		}
	}
}
