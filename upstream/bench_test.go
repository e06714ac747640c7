package upstream

import (
	"fmt"
	"math/rand/v2"
	"testing"
	"time"
)

// The hot calls: every one should report 0 allocs/op.

func BenchmarkTokenBucketAllowN(b *testing.B) {
	tb := NewTokenBucket(1e9, 1000)
	b.ReportAllocs()
	for i := range b.N {
		tb.AllowN(t0.Add(time.Duration(i)), 1)
	}
}

func BenchmarkLeakyBucketAllowN(b *testing.B) {
	lb := NewLeakyBucket(1e9, 1000)
	b.ReportAllocs()
	for i := range b.N {
		lb.AllowN(t0.Add(time.Duration(i)), 1)
	}
}

func BenchmarkLeakyBucketReserveN(b *testing.B) {
	lb := NewLeakyBucket(1e9, 1000)
	b.ReportAllocs()
	for i := range b.N {
		lb.ReserveN(t0.Add(time.Duration(i)), 1)
	}
}

func BenchmarkKeyedLimiterAllowN(b *testing.B) {
	const keys = 10000
	names := make([]string, keys)
	for i := range names {
		names[i] = fmt.Sprintf("device-%d", i)
	}
	kl := NewKeyedLimiter[string](KeyedConfig{Rate: 100, Burst: 100})
	for _, k := range names {
		kl.AllowN(k, t0, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		kl.AllowN(names[i%keys], t0.Add(time.Duration(i)), 1)
	}
}

// BenchmarkKeyedLimiterEvict runs a full table where every call is a new key
// that evicts an idle one.
func BenchmarkKeyedLimiterEvict(b *testing.B) {
	kl := NewKeyedLimiter[int](KeyedConfig{Rate: 1e6, Burst: 1, MaxKeys: 1024})
	for i := range 1024 {
		kl.AllowN(i, t0, 1)
	}
	b.ReportAllocs()
	b.ResetTimer()
	for i := range b.N {
		kl.AllowN(1024+i, t0.Add(time.Duration(i+1)*time.Second), 1)
	}
}

func BenchmarkKeyedLimiterParallel(b *testing.B) {
	kl := NewKeyedLimiter[int](KeyedConfig{Rate: 1e6, Burst: 1000})
	b.ReportAllocs()
	b.RunParallel(func(pb *testing.PB) {
		i := 0
		for pb.Next() {
			i++
			kl.AllowN(i%1000, t0.Add(time.Duration(i)), 1)
		}
	})
}

func BenchmarkPick(b *testing.B) {
	for _, n := range []int{10, 100} {
		s := NewHostSet(hosts(n), HostSetConfig{})
		s.SetEjected(n/2, true)
		mg, err := NewMaglev(s, MaglevConfig{})
		if err != nil {
			b.Fatal(err)
		}
		for _, bc := range []struct {
			name string
			bal  Balancer
		}{
			{"round_robin", NewRoundRobin(s)},
			{"least_request", NewLeastRequest(s, LeastRequestConfig{})},
			{"least_request_seeded", NewLeastRequest(s, LeastRequestConfig{Rand: rand.NewPCG(1, 2)})},
			{"ring_hash", NewRingHash(s, RingHashConfig{})},
			{"maglev", mg},
		} {
			b.Run(fmt.Sprintf("%s/hosts=%d", bc.name, n), func(b *testing.B) {
				b.ReportAllocs()
				for i := range b.N {
					bc.bal.Pick(uint64(i) * 0x9e3779b97f4a7c15)
				}
			})
		}
	}
}

func BenchmarkHashKey(b *testing.B) {
	b.ReportAllocs()
	for range b.N {
		HashKey("device-0123456789")
	}
}

func BenchmarkOutlierRecord(b *testing.B) {
	o := NewOutlierDetector(100, OutlierConfig{})
	b.ReportAllocs()
	for i := range b.N {
		r := ResultSuccess
		if i%7 == 0 {
			r = ResultServerError
		}
		o.Record(i%100, r, t0.Add(time.Duration(i)))
	}
}

func BenchmarkResourcesAcquireRelease(b *testing.B) {
	r := NewResources(Thresholds{})
	b.ReportAllocs()
	for range b.N {
		if r.Acquire(ResourceRequests) == ReasonNone {
			r.Release(ResourceRequests)
		}
	}
}

func BenchmarkBreakerAllowDone(b *testing.B) {
	br := NewBreaker(BreakerConfig{})
	b.ReportAllocs()
	for i := range b.N {
		now := t0.Add(time.Duration(i))
		if tk, why := br.Allow(now); why == ReasonNone {
			br.Done(tk, i%10 != 0, now)
		}
	}
}

func BenchmarkRetryBudget(b *testing.B) {
	rb := NewRetryBudget(RetryBudgetConfig{})
	b.ReportAllocs()
	for range b.N {
		rb.Begin()
		if rb.TryRetry() {
			rb.DoneRetry()
		}
		rb.End()
	}
}

func BenchmarkBackoff(b *testing.B) {
	b.ReportAllocs()
	for i := range b.N {
		Backoff(i%8, 0, 0, nil)
	}
}

func BenchmarkRetryDecide(b *testing.B) {
	p := RetryPolicy{Statuses: []int{429}}
	a := Attempt{Status: 503, Idempotent: true}
	b.ReportAllocs()
	for range b.N {
		p.Decide(a)
	}
}

// TestHotPathsDoNotAllocate pins the zero-allocation hot calls (a count,
// not a timing, so it is stable on noisy machines).
func TestHotPathsDoNotAllocate(t *testing.T) {
	s := NewHostSet(hosts(10), HostSetConfig{})
	s.SetEjected(3, true)
	mg, _ := NewMaglev(s, MaglevConfig{TableSize: 1009})
	tb := NewTokenBucket(1e9, 10)
	lb := NewLeakyBucket(1e9, 10)
	kl := NewKeyedLimiter[string](KeyedConfig{MaxKeys: 4})
	o := NewOutlierDetector(10, OutlierConfig{})
	br := NewBreaker(BreakerConfig{})
	res := NewResources(Thresholds{})
	rb := NewRetryBudget(RetryBudgetConfig{})
	bals := []Balancer{NewRoundRobin(s), NewLeastRequest(s, LeastRequestConfig{}),
		NewLeastRequest(s, LeastRequestConfig{Rand: rand.NewPCG(1, 1)}), NewRingHash(s, RingHashConfig{}), mg}
	keys := []string{"a", "b", "c", "d", "e", "f"}
	i := 0
	allocs := testing.AllocsPerRun(200, func() {
		i++
		now := t0.Add(time.Duration(i) * time.Millisecond)
		tb.AllowN(now, 1)
		tb.ReserveN(now, 1)
		tb.WhenN(now, 1)
		lb.AllowN(now, 1)
		lb.ReserveN(now, 1)
		kl.AllowN(keys[i%len(keys)], now, 1) // 6 keys in a table of 4: evicts
		for _, b := range bals {
			b.Pick(HashKey(keys[i%len(keys)]))
		}
		o.Record(i%10, Result(i%int(numResults)), now)
		o.Ejected(i%10, now)
		if tk, why := br.Allow(now); why == ReasonNone {
			br.Done(tk, i%3 != 0, now)
		}
		if res.Acquire(ResourceRequests) == ReasonNone {
			res.Release(ResourceRequests)
		}
		if rb.TryRetry() {
			rb.DoneRetry()
		}
		Backoff(i%5, 0, 0, nil)
	})
	if allocs != 0 {
		t.Fatalf("hot calls allocate %.1f times per run", allocs)
	}
}
