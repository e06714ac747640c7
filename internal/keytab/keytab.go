// Package keytab is an open-addressed hash table of pointers keyed by a
// string their targets hold: a table of sessions by client id, of
// subscriptions by topic filter, of a trie's children by first level, of a
// hub's devices by device id. An entry costs one pointer slot (and one tag
// byte in a tagged table) instead of a Go map's key string, value and
// control byte.
package keytab

import (
	"hash/maphash"
	"unsafe"
)

// joinBuf is the longest key GetJoin joins on the stack.
const joinBuf = 96

// Keyed is what a Table holds: a pointer whose target carries its own key,
// which must not change while the target is in a table.
type Keyed interface {
	comparable
	TableKey() string
}

// Table is an open-addressed hash table of pointers, each keyed by a string
// its target holds (TableKey), so an entry costs one pointer slot instead
// of a Go map's key string, value and control byte: about 11-16 bytes per
// entry at the loads it keeps (1/2 to 3/4: it grows by half, to any size,
// not by doubling to a power of two) against 30-60 for a map[string]*T,
// and growing it leaves one pointer array behind, not a table of strings.
//
// It probes linearly and deletes by shifting back (no tombstones). Keys are
// unique. The zero value is an empty table. A tagged table also keeps one
// byte of each slot's key hash, compared before the entry is followed:
// a lookup then reads the target and its key only for the entry it finds
// (the others are cache misses on a busy broker), for one byte a slot. A
// Table is not safe for concurrent use, except that Get, GetJoin and Len
// may run concurrently with each other: its owner guards it.
type Table[T Keyed] struct {
	slots  []T
	tags   []uint8 // tagged: tagOf the hash of each slot's key
	n      int
	Tagged bool // set before the first Put
}

// tableSeed seeds the hash of every table of the process.
var tableSeed = maphash.MakeSeed()

// minTableSlots is the size of a table's first slot array.
const minTableSlots = 16

func (t *Table[T]) home(key string) int {
	return slotOf(maphash.String(tableSeed, key), len(t.slots))
}

// slotOf maps a hash to a slot of n (fewer than 1<<32) by its low 32 bits,
// scaled: any n works, not only a power of two.
func slotOf(h uint64, n int) int { return int(uint64(uint32(h)) * uint64(n) >> 32) }

// tagOf is the tag of a key's hash: bits the slot index does not use.
func tagOf(h uint64) uint8 { return uint8(h >> 56) }

// grown is the size a table of n slots grows to: half again, so that a
// grown table is half full.
func grown(n int) int { return max(minTableSlots, n+n/2) }

// Len returns the number of entries.
func (t *Table[T]) Len() int { return t.n }

// Get returns the entry with key, or the zero T.
func (t *Table[T]) Get(key string) T {
	var zero T
	if t.n == 0 {
		return zero
	}
	h := maphash.String(tableSeed, key)
	n := len(t.slots)
	if t.tags != nil {
		tag := tagOf(h)
		for i := slotOf(h, n); ; {
			v := t.slots[i]
			if v == zero || t.tags[i] == tag && v.TableKey() == key {
				return v
			}
			if i++; i == n {
				i = 0
			}
		}
	}
	for i := slotOf(h, n); ; {
		v := t.slots[i]
		if v == zero || v.TableKey() == key {
			return v
		}
		if i++; i == n {
			i = 0
		}
	}
}

// GetJoin returns the entry whose key is a+b, or the zero T, without
// making the string a+b.
func (t *Table[T]) GetJoin(a, b string) T {
	var zero T
	if t.n == 0 {
		return zero
	}
	if n := len(a) + len(b); n <= joinBuf {
		// Short keys (a device's filter is): joined on the stack.
		var buf [joinBuf]byte
		copy(buf[copy(buf[:], a):], b)
		return t.Get(unsafe.String(&buf[0], n))
	}
	var hh maphash.Hash
	hh.SetSeed(tableSeed)
	hh.WriteString(a)
	hh.WriteString(b)
	h := hh.Sum64()
	n := len(t.slots)
	for i := slotOf(h, n); ; {
		v := t.slots[i]
		if v == zero {
			return v
		}
		if t.tags == nil || t.tags[i] == tagOf(h) {
			if k := v.TableKey(); len(k) == len(a)+len(b) && k[:len(a)] == a && k[len(a):] == b {
				return v
			}
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Put adds v, whose key must not be in the table.
func (t *Table[T]) Put(v T) {
	if (t.n+1)*4 > len(t.slots)*3 {
		t.resize(grown(len(t.slots)))
	}
	t.insert(v)
	t.n++
}

// insert places v in its slot; there is room.
func (t *Table[T]) insert(v T) {
	var zero T
	h := maphash.String(tableSeed, v.TableKey())
	n := len(t.slots)
	i := slotOf(h, n)
	for t.slots[i] != zero {
		if i++; i == n {
			i = 0
		}
	}
	t.slots[i] = v
	if t.tags != nil {
		t.tags[i] = tagOf(h)
	}
}

// Replace puts v in the slot of old, which has the same key, and reports
// whether old was there.
func (t *Table[T]) Replace(old, v T) bool {
	if i := t.index(old); i >= 0 {
		t.slots[i] = v
		return true
	}
	return false
}

// index returns the slot holding v, or -1.
func (t *Table[T]) index(v T) int {
	var zero T
	if t.n == 0 {
		return -1
	}
	n := len(t.slots)
	for i := t.home(v.TableKey()); ; {
		switch t.slots[i] {
		case v:
			return i
		case zero:
			return -1
		}
		if i++; i == n {
			i = 0
		}
	}
}

// Remove removes v (the very pointer) and reports whether it was there.
func (t *Table[T]) Remove(v T) bool {
	var zero T
	i := t.index(v)
	if i < 0 {
		return false
	}
	// Shift back the entries of the run after i that may live in i: those
	// whose home is not cyclically in (i, j].
	n := len(t.slots)
	next := func(j int) int {
		if j++; j == n {
			return 0
		}
		return j
	}
	for j := next(i); t.slots[j] != zero; j = next(j) {
		k := t.home(t.slots[j].TableKey())
		if i <= j && i < k && k <= j || i > j && (i < k || k <= j) {
			continue
		}
		t.slots[i] = t.slots[j]
		if t.tags != nil {
			t.tags[i] = t.tags[j]
		}
		i = j
	}
	t.slots[i] = zero
	t.n--
	switch {
	case t.n == 0:
		t.slots, t.tags = nil, nil
	case len(t.slots) > minTableSlots && t.n*8 < len(t.slots):
		t.resize(max(minTableSlots, len(t.slots)/2))
	}
	return true
}

// resize moves the entries to a slot array of size n.
func (t *Table[T]) resize(n int) {
	var zero T
	old := t.slots
	t.slots = make([]T, n)
	if t.Tagged {
		t.tags = make([]uint8, n)
	}
	for _, v := range old {
		if v != zero {
			t.insert(v)
		}
	}
}

// All calls fn with every entry until it returns false.
func (t *Table[T]) All(fn func(T) bool) {
	var zero T
	for _, v := range t.slots {
		if v != zero && !fn(v) {
			return
		}
	}
}
