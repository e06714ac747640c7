package upstream

import (
	"fmt"
	"math"
	"math/rand/v2"
	"runtime"
	"strconv"
	"sync"
	"testing"
	"time"

	"golang.org/x/time/rate"
)

// t0 is the fixed time tests start from; no test reads the clock.
var t0 = time.Date(2025, 1, 1, 0, 0, 0, 0, time.UTC)

func at(d time.Duration) time.Time { return t0.Add(d) }

func TestTokenBucket(t *testing.T) {
	b := NewTokenBucket(10, 5) // 10/s, burst 5
	for i := range 5 {
		if !b.AllowN(t0, 1) {
			t.Fatalf("event %d of the burst refused", i)
		}
	}
	if r := b.Check(t0, 1); r != ReasonRateLimited {
		t.Fatalf("sixth event: %v, want rate_limited", r)
	}
	if r := b.Check(t0, 6); r != ReasonOverBurst {
		t.Fatalf("n > burst: %v, want over_burst", r)
	}
	when, ok := b.WhenN(t0, 2)
	if !ok || when != at(200*time.Millisecond) {
		t.Fatalf("WhenN(2) = %v %v, want +200ms", when.Sub(t0), ok)
	}
	if b.AllowN(at(199*time.Millisecond), 2) {
		t.Fatal("allowed before WhenN")
	}
	if !b.AllowN(when, 2) {
		t.Fatal("refused at WhenN")
	}
	if _, ok := b.WhenN(t0, 6); ok {
		t.Fatal("WhenN over the burst is ok")
	}
	// Refill is capped at the burst.
	if got := b.Tokens(at(time.Hour)); got != 5 {
		t.Fatalf("tokens after an hour = %v, want 5", got)
	}
}

func TestTokenBucketReserve(t *testing.T) {
	b := NewTokenBucket(10, 2)
	for i, want := range []time.Duration{0, 0, 100 * time.Millisecond, 200 * time.Millisecond} {
		got, ok := b.ReserveN(t0, 1)
		if !ok || got != at(want) {
			t.Fatalf("reservation %d at %v %v, want %v", i, got.Sub(t0), ok, want)
		}
	}
	if _, ok := b.ReserveN(t0, 3); ok {
		t.Fatal("reserved more than the burst")
	}
	if b.Tokens(t0) != -2 {
		t.Fatalf("tokens = %v, want -2 after running ahead", b.Tokens(t0))
	}
}

func TestTokenBucketInfiniteAndZero(t *testing.T) {
	inf := NewTokenBucket(math.Inf(1), 0)
	for range 100 {
		if !inf.AllowN(t0, 1000) {
			t.Fatal("infinite rate refused")
		}
	}
	if w, ok := inf.WhenN(t0, 1e6); !ok || w != t0 {
		t.Fatal("infinite rate WhenN not now")
	}
	zero := NewTokenBucket(0, 2)
	if !zero.AllowN(t0, 2) || zero.AllowN(at(time.Hour), 1) {
		t.Fatal("zero rate: want the first burst only")
	}
	if _, ok := zero.WhenN(t0, 1); ok {
		t.Fatal("zero rate WhenN ok")
	}
}

func TestLeakyBucket(t *testing.T) {
	b := NewLeakyBucket(10, 3) // one unit leaks per 100ms, holds 3
	if !b.AllowN(t0, 3) {
		t.Fatal("a full capacity refused")
	}
	if r := b.Check(t0, 1); r != ReasonRateLimited {
		t.Fatalf("over capacity: %v", r)
	}
	if r := b.Check(t0, 4); r != ReasonOverBurst {
		t.Fatalf("n > capacity: %v", r)
	}
	if got := b.Level(t0); got != 3 {
		t.Fatalf("level = %v, want 3", got)
	}
	if got := b.Level(at(150 * time.Millisecond)); got != 1.5 {
		t.Fatalf("level at 150ms = %v, want 1.5", got)
	}
	when, ok := b.WhenN(t0, 2)
	if !ok || when != at(200*time.Millisecond) {
		t.Fatalf("WhenN(2) = %v %v, want +200ms", when.Sub(t0), ok)
	}
	if b.AllowN(when.Add(-1), 2) || !b.AllowN(when, 2) {
		t.Fatal("WhenN is not the exact boundary")
	}
	if _, ok := b.WhenN(t0, 4); ok {
		t.Fatal("WhenN over capacity ok")
	}
	if !b.AllowN(at(time.Hour), 0) {
		t.Fatal("n=0 refused")
	}
}

// TestLeakyBucketShapes checks the shaper: slots are spaced exactly n/rate
// apart whatever the arrival pattern, and the queue is bounded.
func TestLeakyBucketShapes(t *testing.T) {
	b := NewLeakyBucket(100, 5) // 10ms per unit, queue of 5
	var slots []time.Duration
	for range 7 { // a burst of 7 at once: 5 queued, 2 refused
		if s, ok := b.ReserveN(t0, 1); ok {
			slots = append(slots, s.Sub(t0))
		}
	}
	want := []time.Duration{0, 10 * time.Millisecond, 20 * time.Millisecond, 30 * time.Millisecond, 40 * time.Millisecond}
	if fmt.Sprint(slots) != fmt.Sprint(want) {
		t.Fatalf("slots %v, want %v", slots, want)
	}
	// A request of 3 units takes a 30ms slot: the next one starts after it.
	s, ok := b.ReserveN(at(45*time.Millisecond), 3)
	if !ok || s != at(50*time.Millisecond) {
		t.Fatalf("3-unit slot at %v %v, want 50ms", s.Sub(t0), ok)
	}
	s, ok = b.ReserveN(at(45*time.Millisecond), 1)
	if !ok || s != at(80*time.Millisecond) {
		t.Fatalf("next slot at %v %v, want 80ms", s.Sub(t0), ok)
	}
	// After a quiet spell the bucket is empty and the slot is now.
	s, _ = b.ReserveN(at(time.Second), 1)
	if s != at(time.Second) {
		t.Fatalf("slot after quiet = %v", s.Sub(t0))
	}
}

func TestLeakyBucketBadRate(t *testing.T) {
	defer func() {
		if recover() == nil {
			t.Fatal("no panic for rate 0")
		}
	}()
	NewLeakyBucket(0, 1)
}

// TestKeyedMatchesTokenBucket is a property test: for random arrivals, a
// key of a KeyedLimiter decides exactly as x/time/rate's token bucket of the
// same rate and burst.
func TestKeyedMatchesTokenBucket(t *testing.T) {
	rng := rand.New(rand.NewPCG(1, 2))
	for trial := range 20 {
		perSec := float64(1 + rng.IntN(50))
		burst := 1 + rng.IntN(10)
		kl := NewKeyedLimiter[int](KeyedConfig{Rate: perSec, Burst: burst})
		ref := rate.NewLimiter(rate.Limit(perSec), burst)
		now := t0
		for i := range 2000 {
			now = now.Add(time.Duration(rng.Int64N(int64(2 * time.Second / time.Duration(perSec)))))
			n := 1 + rng.IntN(burst)
			got, want := kl.AllowN(7, now, n), ref.AllowN(now, n)
			if got != want {
				t.Fatalf("trial %d (rate %v burst %d) event %d n=%d: keyed %v, rate.Limiter %v",
					trial, perSec, burst, i, n, got, want)
			}
		}
	}
}

func TestKeyedLimiterPerKey(t *testing.T) {
	l := NewKeyedLimiter[string](KeyedConfig{Rate: 1, Burst: 2})
	for _, k := range []string{"dev-1", "dev-2"} {
		if !l.AllowN(k, t0, 2) {
			t.Fatalf("%s: burst refused", k)
		}
		if r := l.Check(k, t0, 1); r != ReasonRateLimited {
			t.Fatalf("%s: %v, want rate_limited", k, r)
		}
	}
	if r := l.Check("dev-3", t0, 3); r != ReasonOverBurst {
		t.Fatalf("n > burst: %v", r)
	}
	if w, ok := l.WhenN("dev-1", t0, 1); !ok || w != at(time.Second) {
		t.Fatalf("WhenN = %v %v", w.Sub(t0), ok)
	}
	if w, ok := l.WhenN("unseen", t0, 2); !ok || w != t0 {
		t.Fatal("unseen key must go now")
	}
	if !l.AllowN("dev-1", at(time.Second), 1) {
		t.Fatal("refused after refill")
	}
	l.Forget("dev-2")
	if !l.AllowN("dev-2", t0, 2) {
		t.Fatal("forgotten key did not start full")
	}
	s := l.Stats()
	if s.Keys != 2 {
		t.Fatalf("keys = %d", s.Keys)
	}
	if s.Allowed != 4 || s.RateLimited != 2 || s.OverBurst != 1 || s.Refused(ReasonRateLimited) != 2 {
		t.Fatalf("stats %+v", s)
	}
}

func TestKeyedLimiterEviction(t *testing.T) {
	l := NewKeyedLimiter[int](KeyedConfig{Rate: 1, Burst: 1, MaxKeys: 3})
	for k := range 3 {
		l.AllowN(k, t0, 1) // keys 0,1,2 busy until t0+1s
	}
	// Full of busy keys: a new key is refused, nobody is evicted.
	if r := l.Check(3, at(500*time.Millisecond), 1); r != ReasonKeyTableFull {
		t.Fatalf("new key on a busy table: %v", r)
	}
	// Touch key 0 so key 1 is the least recently used.
	l.Check(0, at(600*time.Millisecond), 1)
	// At 1s every bucket is full again: key 1 (LRU) is evicted, losslessly.
	if r := l.Check(3, at(time.Second), 1); r != ReasonNone {
		t.Fatalf("new key with an idle LRU: %v", r)
	}
	s := l.Stats()
	if s.EvictedIdle != 1 || s.EvictedBusy != 0 || s.TableFull != 1 || s.Keys != 3 {
		t.Fatalf("stats %+v", s)
	}
	l.mu.Lock()
	_, has1 := l.index[1]
	l.mu.Unlock()
	if has1 {
		t.Fatal("evicted the wrong key")
	}

	busy := NewKeyedLimiter[int](KeyedConfig{Rate: 1, Burst: 1, MaxKeys: 2, EvictBusy: true})
	busy.AllowN(0, t0, 1)
	busy.AllowN(1, t0, 1)
	if !busy.AllowN(2, t0, 1) {
		t.Fatal("EvictBusy refused a new key")
	}
	if s := busy.Stats(); s.EvictedBusy != 1 || s.Keys != 2 {
		t.Fatalf("EvictBusy stats %+v", s)
	}
	// Key 0 was evicted while busy: it starts over with a full bucket.
	if !busy.AllowN(0, t0, 1) {
		t.Fatal("evicted key did not start full")
	}
}

func TestKeyedLimiterSweep(t *testing.T) {
	l := NewKeyedLimiter[int](KeyedConfig{Rate: 10, Burst: 1})
	for k := range 100 {
		l.AllowN(k, at(time.Duration(k)*time.Millisecond), 1)
	}
	// At 150ms, keys used before 50ms are full again (100ms per token).
	if n := l.Sweep(at(150 * time.Millisecond)); n != 51 {
		t.Fatalf("swept %d, want 51", n)
	}
	if l.Len() != 49 {
		t.Fatalf("len = %d", l.Len())
	}
	// Freed entries are reused without growing the slice.
	for k := 100; k < 151; k++ {
		l.AllowN(k, at(150*time.Millisecond), 1)
	}
	l.mu.Lock()
	n := len(l.entries)
	l.mu.Unlock()
	if n != 100 || l.Len() != 100 {
		t.Fatalf("entries %d keys %d, want 100 and 100", n, l.Len())
	}
}

// TestKeyedLimiterLRUInvariant drives random operations and checks the LRU
// list against the index after each.
func TestKeyedLimiterLRUInvariant(t *testing.T) {
	rng := rand.New(rand.NewPCG(3, 4))
	l := NewKeyedLimiter[int](KeyedConfig{Rate: 5, Burst: 2, MaxKeys: 16, EvictBusy: rng.IntN(2) == 0})
	now := t0
	for i := range 5000 {
		now = now.Add(time.Duration(rng.IntN(50)) * time.Millisecond)
		switch rng.IntN(10) {
		case 0:
			l.Forget(rng.IntN(40))
		case 1:
			l.Sweep(now)
		default:
			l.Check(rng.IntN(40), now, 1+rng.IntN(2))
		}
		l.mu.Lock()
		seen := 0
		prev := int32(-1)
		for j := l.head; j >= 0; j = l.entries[j].next {
			e := l.entries[j]
			if e.prev != prev || l.index[e.key] != j {
				l.mu.Unlock()
				t.Fatalf("step %d: broken list at %d", i, j)
			}
			prev = j
			seen++
		}
		if prev != l.tail || seen != len(l.index) || seen > 16 {
			l.mu.Unlock()
			t.Fatalf("step %d: list has %d, index %d, tail ok %v", i, seen, len(l.index), prev == l.tail)
		}
		l.mu.Unlock()
	}
}

func TestRateLimitersConcurrent(t *testing.T) {
	tb := NewTokenBucket(1000, 100)
	lb := NewLeakyBucket(1000, 100)
	kl := NewKeyedLimiter[int](KeyedConfig{Rate: 1000, Burst: 100, MaxKeys: 8})
	var wg sync.WaitGroup
	var mu sync.Mutex
	allowed := 0
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			n := 0
			for i := range 500 {
				if lb.AllowN(t0, 1) {
					n++
				}
				tb.AllowN(t0, 1)
				kl.AllowN((g*500+i)%12, t0, 1)
				lb.WhenN(t0, 1)
				kl.WhenN(i%12, t0, 1)
			}
			mu.Lock()
			allowed += n
			mu.Unlock()
		}()
	}
	wg.Wait()
	if allowed != 100 {
		t.Fatalf("leaky bucket admitted %d at one instant, want its capacity 100", allowed)
	}
	if s := kl.Stats(); s.Keys > 8 {
		t.Fatalf("keys %d over MaxKeys", s.Keys)
	}
}

// TestKeyedLimiterStartsSmall: a new KeyedLimiter holds no table for keys
// it has not seen (a gateway makes ~100 of them at start, one per shard
// and purpose: eager tables were 5 MB a process), and grows with the keys.
func TestKeyedLimiterStartsSmall(t *testing.T) {
	var before, after runtime.MemStats
	runtime.ReadMemStats(&before)
	ls := make([]*KeyedLimiter[string], 100)
	for i := range ls {
		ls[i] = NewKeyedLimiter[string](KeyedConfig{Rate: 10, MaxKeys: 1 << 20})
	}
	runtime.ReadMemStats(&after)
	if per := (after.TotalAlloc - before.TotalAlloc) / uint64(len(ls)); per > 1024 {
		t.Fatalf("a new KeyedLimiter allocates %d bytes before any key", per)
	}
	now := time.Unix(0, 0)
	for i := range 5000 {
		if !ls[0].AllowN(strconv.Itoa(i), now, 1) {
			t.Fatalf("key %d refused", i)
		}
	}
	if n := ls[0].Len(); n != 5000 {
		t.Fatalf("%d keys held, want 5000", n)
	}
}
