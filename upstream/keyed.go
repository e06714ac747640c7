package upstream

import (
	"math"
	"sync"
	"time"
)

// KeyedConfig configures a KeyedLimiter. The zero value works.
type KeyedConfig struct {
	// Rate is each key's sustained rate in events per second. Zero means 10.
	Rate float64
	// Burst is each key's bucket depth: the events a key that has been quiet
	// may send at once. Zero means max(1, Rate) rounded up.
	Burst int
	// MaxKeys bounds the keys held at once. Zero means 65536.
	MaxKeys int
	// EvictBusy decides what happens to an unseen key when the table is full
	// and its least recently used key is not idle (its bucket not yet full
	// again). False (the default) refuses the new key with
	// ReasonKeyTableFull, so a flood of new keys cannot reset the buckets of
	// busy ones; true evicts the busy key anyway (counted in
	// KeyedStats.EvictedBusy), so new keys always get in.
	EvictBusy bool
}

// Default KeyedConfig values.
const (
	DefaultKeyedRate    = 10
	DefaultKeyedMaxKeys = 65536
)

func (c KeyedConfig) withDefaults() KeyedConfig {
	if c.Rate <= 0 || math.IsNaN(c.Rate) {
		c.Rate = DefaultKeyedRate
	}
	if c.Burst <= 0 {
		c.Burst = int(min(math.Ceil(c.Rate), math.MaxInt32))
	}
	if c.MaxKeys <= 0 {
		c.MaxKeys = DefaultKeyedMaxKeys
	}
	c.MaxKeys = min(c.MaxKeys, math.MaxInt32)
	return c
}

// KeyedStats counts what a KeyedLimiter did, for metrics (monotonic counters
// but Keys).
type KeyedStats struct {
	// Keys is the number of keys held now.
	Keys int
	// Allowed counts admitted calls.
	Allowed uint64
	// RateLimited, OverBurst and TableFull count refusals by Reason
	// (ReasonRateLimited, ReasonOverBurst, ReasonKeyTableFull).
	RateLimited, OverBurst, TableFull uint64
	// EvictedIdle counts keys dropped to make room whose bucket was full
	// again, which loses nothing; EvictedBusy counts keys dropped while
	// their bucket was still filling (only with KeyedConfig.EvictBusy).
	EvictedIdle, EvictedBusy uint64
}

// Refused returns the refusals counted for r.
func (s KeyedStats) Refused(r Reason) uint64 {
	switch r {
	case ReasonRateLimited:
		return s.RateLimited
	case ReasonOverBurst:
		return s.OverBurst
	case ReasonKeyTableFull:
		return s.TableFull
	}
	return 0
}

// KeyedLimiter rate-limits per key (device, IP, route) with a bounded table
// of keys. Each key has a token bucket of KeyedConfig.Rate and Burst.
//
// x/time/rate has no keyed limiter, and a rate.Limiter per key would cost
// about 80 bytes and a mutex per device; here a key costs its entry in a
// map and a slice (the key, one int64 and two int32 links), because each
// bucket is kept as the generic cell rate algorithm's single number (the
// time its bucket will be full again), exactly equivalent to a token bucket
// of the same rate and burst. The table is an LRU list: when it holds
// MaxKeys keys and an unseen key arrives, the least recently used key is
// evicted if it is idle (its bucket full again, so forgetting it changes no
// decision); otherwise KeyedConfig.EvictBusy decides.
//
// A KeyedLimiter is safe for concurrent use (one mutex; calls take well
// under a microsecond). Nothing blocks and nothing reads the clock.
type KeyedLimiter[K comparable] struct {
	interval int64 // nanoseconds per token
	burst    int64
	maxKeys  int32
	evict    bool

	mu      sync.Mutex // guards everything below
	clock   monoClock
	index   map[K]int32
	entries []keyedEntry[K]
	head    int32 // most recently used, -1 when empty
	tail    int32 // least recently used, -1 when empty
	free    int32 // first free entry (linked by next), -1 when none
	stats   KeyedStats
}

type keyedEntry[K comparable] struct {
	key        K
	tat        int64 // when the bucket is full again, on clock
	prev, next int32
}

// NewKeyedLimiter returns an empty KeyedLimiter.
func NewKeyedLimiter[K comparable](cfg KeyedConfig) *KeyedLimiter[K] {
	cfg = cfg.withDefaults()
	return &KeyedLimiter[K]{
		interval: intervalOf(cfg.Rate),
		burst:    int64(cfg.Burst),
		maxKeys:  int32(cfg.MaxKeys),
		evict:    cfg.EvictBusy,
		index:    make(map[K]int32), // grows with the keys seen: no table for keys that never come
		head:     -1,
		tail:     -1,
		free:     -1,
	}
}

// AllowN reports whether key may have n events at now, and if so takes
// them.
func (l *KeyedLimiter[K]) AllowN(key K, now time.Time, n int) bool {
	return l.Check(key, now, n) == ReasonNone
}

// Check is AllowN with a reason: ReasonNone when admitted, else
// ReasonRateLimited, ReasonOverBurst (n exceeds the burst) or
// ReasonKeyTableFull (an unseen key and no room for it).
func (l *KeyedLimiter[K]) Check(key K, now time.Time, n int) Reason {
	r, _ := l.CheckWait(key, now, n)
	return r
}

// CheckWait is Check that also says, when it refuses with
// ReasonRateLimited, how long from now until key may have n events if it
// takes none meanwhile (the value of an HTTP Retry-After); the wait is
// zero otherwise. One lock, like Check.
func (l *KeyedLimiter[K]) CheckWait(key K, now time.Time, n int) (Reason, time.Duration) {
	if n <= 0 {
		return ReasonNone, 0
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	if int64(n) > l.burst {
		l.stats.OverBurst++
		return ReasonOverBurst, 0
	}
	t := l.clock.nanos(now)
	i, ok := l.index[key]
	if ok {
		l.touch(i)
	} else if i, ok = l.insert(key, t); !ok {
		l.stats.TableFull++
		return ReasonKeyTableFull, 0
	}
	e := &l.entries[i]
	tat, _, fits := gcra(e.tat, t, int64(n), l.interval, l.burst)
	if !fits {
		l.stats.RateLimited++
		return ReasonRateLimited, time.Duration(gcraWait(e.tat, t, int64(n), l.interval, l.burst))
	}
	e.tat = tat
	l.stats.Allowed++
	return ReasonNone, 0
}

// WhenN returns the earliest time, not before now, at which key may have n
// events if it takes none meanwhile; it changes nothing. ok is false when n
// exceeds the burst. An unseen key may go now (room in the table aside).
func (l *KeyedLimiter[K]) WhenN(key K, now time.Time, n int) (t time.Time, ok bool) {
	if int64(n) > l.burst {
		return time.Time{}, false
	}
	l.mu.Lock()
	defer l.mu.Unlock()
	i, found := l.index[key]
	if !found || n <= 0 {
		return now, true
	}
	tn := l.clock.nanos(now)
	return now.Add(time.Duration(gcraWait(l.entries[i].tat, tn, int64(n), l.interval, l.burst))), true
}

// Forget drops key, as if it had never been seen.
func (l *KeyedLimiter[K]) Forget(key K) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if i, ok := l.index[key]; ok {
		l.remove(i)
	}
}

// Sweep drops idle keys (bucket full again) from the least recently used
// end, stopping at the first busy one, and returns how many it dropped.
// Dropping an idle key changes no decision; Sweep only returns memory to
// the table's free list for other keys. Eviction does the same on demand,
// so calling Sweep is optional.
func (l *KeyedLimiter[K]) Sweep(now time.Time) int {
	l.mu.Lock()
	defer l.mu.Unlock()
	t := l.clock.nanos(now)
	n := 0
	for l.tail >= 0 && l.entries[l.tail].tat <= t {
		l.remove(l.tail)
		n++
	}
	return n
}

// Len returns the number of keys held.
func (l *KeyedLimiter[K]) Len() int {
	l.mu.Lock()
	defer l.mu.Unlock()
	return len(l.index)
}

// Stats returns the counters and the number of keys held.
func (l *KeyedLimiter[K]) Stats() KeyedStats {
	l.mu.Lock()
	defer l.mu.Unlock()
	s := l.stats
	s.Keys = len(l.index)
	return s
}

// insert adds key with a full bucket at the front, evicting if the table is
// full; ok is false when it is full of busy keys and EvictBusy is off.
func (l *KeyedLimiter[K]) insert(key K, t int64) (int32, bool) {
	var i int32
	switch {
	case l.free >= 0:
		i = l.free
		l.free = l.entries[i].next
	case int32(len(l.entries)) < l.maxKeys:
		l.entries = append(l.entries, keyedEntry[K]{})
		i = int32(len(l.entries) - 1)
	default:
		i = l.tail
		if l.entries[i].tat <= t {
			l.stats.EvictedIdle++
		} else if l.evict {
			l.stats.EvictedBusy++
		} else {
			return -1, false
		}
		delete(l.index, l.entries[i].key)
		l.unlink(i)
	}
	l.entries[i] = keyedEntry[K]{key: key, tat: t, prev: -1, next: -1}
	l.index[key] = i
	l.pushFront(i)
	return i, true
}

// remove drops entry i and puts it on the free list.
func (l *KeyedLimiter[K]) remove(i int32) {
	delete(l.index, l.entries[i].key)
	l.unlink(i)
	var zero K
	l.entries[i] = keyedEntry[K]{key: zero, prev: -1, next: l.free}
	l.free = i
}

func (l *KeyedLimiter[K]) touch(i int32) {
	if l.head == i {
		return
	}
	l.unlink(i)
	l.pushFront(i)
}

func (l *KeyedLimiter[K]) unlink(i int32) {
	e := &l.entries[i]
	if e.prev >= 0 {
		l.entries[e.prev].next = e.next
	} else {
		l.head = e.next
	}
	if e.next >= 0 {
		l.entries[e.next].prev = e.prev
	} else {
		l.tail = e.prev
	}
	e.prev, e.next = -1, -1
}

func (l *KeyedLimiter[K]) pushFront(i int32) {
	e := &l.entries[i]
	e.prev, e.next = -1, l.head
	if l.head >= 0 {
		l.entries[l.head].prev = i
	}
	l.head = i
	if l.tail < 0 {
		l.tail = i
	}
}
