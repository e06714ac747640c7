package keytab

import (
	"hash/maphash"
	"math/rand/v2"
	"strconv"
	"strings"
	"testing"
)

type tkey struct{ k string }

func (t *tkey) TableKey() string { return t.k }

// The table against a map model: random puts, replaces and removes, every
// key checked after each step batch, sizes through growth and shrinking.
func TestTableModel(t *testing.T) {
	t.Run("plain", func(t *testing.T) { testTableModel(t, false) })
	t.Run("tagged", func(t *testing.T) { testTableModel(t, true) })
}

func testTableModel(t *testing.T, tagged bool) {
	r := rand.New(rand.NewPCG(1, 2))
	tb := Table[*tkey]{Tagged: tagged}
	model := map[string]*tkey{}
	check := func() {
		t.Helper()
		if tb.Len() != len(model) {
			t.Fatalf("len %d, model %d", tb.Len(), len(model))
		}
		for k, v := range model {
			if got := tb.Get(k); got != v {
				t.Fatalf("get(%q) = %v, want %v", k, got, v)
			}
			for i := range len(k) + 1 {
				if got := tb.GetJoin(k[:i], k[i:]); got != v {
					t.Fatalf("getJoin(%q, %q) = %v, want %v", k[:i], k[i:], got, v)
				}
			}
			if got := tb.GetJoin(k, "x"); got != model[k+"x"] {
				t.Fatalf("getJoin(%q, x) = %v, want %v", k, got, model[k+"x"])
			}
		}
		n := 0
		tb.All(func(v *tkey) bool {
			if model[v.k] != v {
				t.Fatalf("all yields %q, not in the model", v.k)
			}
			n++
			return true
		})
		if n != len(model) {
			t.Fatalf("all yields %d, model %d", n, len(model))
		}
		if tagged != (tb.tags != nil) && tb.slots != nil || len(tb.tags) != 0 && len(tb.tags) != len(tb.slots) {
			t.Fatalf("tagged %v: %d tags for %d slots", tagged, len(tb.tags), len(tb.slots))
		}
		for i, v := range tb.slots {
			if v != nil && tb.tags != nil && tb.tags[i] != tagOf(maphash.String(tableSeed, v.k)) {
				t.Fatalf("slot %d (%q): stale tag", i, v.k)
			}
		}
		if tb.Len() > 0 && tb.Len()*4 > len(tb.slots)*3 {
			t.Fatalf("load %d/%d over 3/4", tb.Len(), len(tb.slots))
		}
	}
	for round := range 40 {
		space := 10 + round*50
		for range 400 {
			k := strconv.Itoa(r.IntN(space))
			switch old := model[k]; {
			case old == nil:
				v := &tkey{k}
				tb.Put(v)
				model[k] = v
			case r.IntN(3) == 0:
				v := &tkey{k}
				if !tb.Replace(old, v) {
					t.Fatalf("replace(%q) missed", k)
				}
				model[k] = v
			default:
				if tb.Remove(&tkey{k}) {
					t.Fatalf("remove of another pointer with key %q succeeded", k)
				}
				if !tb.Remove(old) {
					t.Fatalf("remove(%q) missed", k)
				}
				delete(model, k)
			}
		}
		check()
		if tb.Get("absent") != nil {
			t.Fatal("get of an absent key")
		}
	}
	for k, v := range model {
		if !tb.Remove(v) {
			t.Fatalf("remove(%q) missed", k)
		}
		delete(model, k)
	}
	check()
	if tb.slots != nil {
		t.Fatalf("an empty table keeps %d slots", len(tb.slots))
	}
}

// getJoin finds keys joined on the stack and, past joinBuf bytes, hashed
// in two parts, at every split.
func TestTableGetJoinLong(t *testing.T) {
	for _, tagged := range []bool{false, true} {
		tb := Table[*tkey]{Tagged: tagged}
		var keys []*tkey
		for i := range 50 {
			k := &tkey{strings.Repeat("l", joinBuf-25+i) + "/" + strconv.Itoa(i) + "/+"}
			tb.Put(k)
			keys = append(keys, k)
		}
		for _, k := range keys {
			for i := range len(k.k) + 1 {
				if got := tb.GetJoin(k.k[:i], k.k[i:]); got != k {
					t.Fatalf("tagged %v: getJoin at %d of %d bytes = %v", tagged, i, len(k.k), got)
				}
			}
			if got := tb.GetJoin(k.k, "/"); got != nil {
				t.Fatalf("getJoin of a missing key = %v", got)
			}
		}
	}
}

// A table filled by Put keeps its load between 1/2 and 3/4 (it grows by
// half, to any size), so an entry costs 8/load bytes of slots: at most 16.
func TestTableLoad(t *testing.T) {
	tb := Table[*tkey]{Tagged: true}
	for i := range 200_000 {
		tb.Put(&tkey{strconv.Itoa(i)})
		if n, s := tb.Len(), len(tb.slots); n*4 > s*3 || s > minTableSlots && n*2+2 < s {
			t.Fatalf("%d entries in %d slots", n, s)
		}
	}
	for _, n := range []int{15_000, 16_667, 100_000} {
		tb := Table[*tkey]{}
		for i := range n {
			tb.Put(&tkey{strconv.Itoa(i)})
		}
		if per := float64(len(tb.slots)*8) / float64(n); per > 16 {
			t.Errorf("%d entries: %d slots, %.1f bytes an entry", n, len(tb.slots), per)
		}
	}
}

// slotOf spreads hashes over any number of slots and stays in range.
func TestSlotOf(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	for _, n := range []int{1, 16, 24, 23377, 1 << 20, 3_000_001} {
		counts := make([]int, min(n, 64))
		for range 100_000 {
			i := slotOf(r.Uint64(), n)
			if i < 0 || i >= n {
				t.Fatalf("slotOf(_, %d) = %d", n, i)
			}
			counts[i*len(counts)/n]++
		}
		for b, c := range counts {
			if want := 100_000 / len(counts); c < want*8/10 || c > want*12/10 {
				t.Errorf("n %d: bucket %d of %d has %d, want about %d", n, b, len(counts), c, want)
			}
		}
	}
}

// BenchmarkTableGet looks up keys present and absent in a tagged table of
// 15,000 entries (a broker's literal filters), and in a plain one (its
// sessions).
func BenchmarkTableGet(b *testing.B) {
	for _, tagged := range []bool{true, false} {
		tb := Table[*tkey]{Tagged: tagged}
		keys := make([]string, 15_000)
		for i := range keys {
			keys[i] = "idle/" + strconv.Itoa(i)
			tb.Put(&tkey{keys[i]})
		}
		name := "plain"
		if tagged {
			name = "tagged"
		}
		b.Run(name+"/hit", func(b *testing.B) {
			for i := range b.N {
				if tb.Get(keys[i%len(keys)]) == nil {
					b.Fatal("miss")
				}
			}
		})
		b.Run(name+"/miss", func(b *testing.B) {
			for i := range b.N {
				if tb.GetJoin("other/", keys[i%len(keys)]) != nil {
					b.Fatal("hit")
				}
			}
		})
	}
}
