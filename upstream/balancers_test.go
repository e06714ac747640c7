package upstream

import (
	"errors"
	"fmt"
	"math/rand/v2"
	"strings"
	"sync"
	"testing"
)

func hosts(n int) []Host {
	hs := make([]Host, n)
	for i := range hs {
		hs[i] = Host{Addr: fmt.Sprintf("10.0.0.%d:8080", i+1)}
	}
	return hs
}

func TestHostSetFlagsAndPanic(t *testing.T) {
	s := NewHostSet(hosts(4), HostSetConfig{})
	if s.AvailableCount() != 4 || s.Panic() {
		t.Fatal("fresh set not all available")
	}
	s.SetHealthy(0, false)
	s.SetEjected(0, true) // two flags on one host count once
	s.SetEjected(1, true)
	s.SetEjected(1, true)
	if s.AvailableCount() != 2 || s.Available(0) || s.Healthy(0) || !s.Ejected(1) {
		t.Fatalf("available %d", s.AvailableCount())
	}
	if s.Panic() {
		t.Fatal("2 of 4 (50%) is not below 50%")
	}
	s.SetHealthy(2, false)
	if !s.Panic() {
		t.Fatal("1 of 4 must panic")
	}
	s.SetHealthy(0, true)
	s.SetEjected(0, false)
	s.SetHealthy(2, true)
	s.SetEjected(1, false)
	if s.AvailableCount() != 4 {
		t.Fatalf("available %d after clearing", s.AvailableCount())
	}
	if NewHostSet(hosts(1), HostSetConfig{}).Host(0).Weight != 1 {
		t.Fatal("zero weight not 1")
	}
}

// balancerKinds builds each balancer over a set, for the shared tests.
func balancerKinds(t *testing.T, s *HostSet) map[string]Balancer {
	t.Helper()
	mg, err := NewMaglev(s, MaglevConfig{TableSize: 1009})
	if err != nil {
		t.Fatal(err)
	}
	return map[string]Balancer{
		"round_robin":   NewRoundRobin(s),
		"least_request": NewLeastRequest(s, LeastRequestConfig{Rand: rand.NewPCG(1, 1)}),
		"ring_hash":     NewRingHash(s, RingHashConfig{}),
		"maglev":        mg,
	}
}

func TestBalancersSkipUnavailableAndPanic(t *testing.T) {
	s := NewHostSet(hosts(4), HostSetConfig{})
	s.SetEjected(1, true)
	s.SetHealthy(3, false)
	for name, b := range balancerKinds(t, s) {
		for k := range 2000 {
			h := b.Pick(HashKey(fmt.Sprint(k)))
			if h != 0 && h != 2 {
				t.Fatalf("%s picked unavailable host %d", name, h)
			}
		}
	}
	// Three of four down: below 50%, panic, every host is picked again.
	s.SetHealthy(2, false)
	for name, b := range balancerKinds(t, s) {
		seen := map[int]bool{}
		for k := range 2000 {
			seen[b.Pick(HashKey(fmt.Sprint(k)))] = true
		}
		if len(seen) != 4 {
			t.Fatalf("%s in panic picked %v, want all 4", name, seen)
		}
	}
	// Panic disabled: only the one available host; none available: -1.
	s2 := NewHostSet(hosts(4), HostSetConfig{PanicThreshold: -1})
	for i := 1; i < 4; i++ {
		s2.SetEjected(i, true)
	}
	for name, b := range balancerKinds(t, s2) {
		for k := range 100 {
			if h := b.Pick(uint64(k) * 0x9e3779b97f4a7c15); h != 0 {
				t.Fatalf("%s without panic picked %d", name, h)
			}
		}
	}
	s2.SetEjected(0, true)
	for name, b := range balancerKinds(t, s2) {
		if h := b.Pick(1); h != -1 {
			t.Fatalf("%s with nothing available picked %d", name, h)
		}
	}
	empty := NewHostSet(nil, HostSetConfig{})
	for name, b := range balancerKinds(t, empty) {
		if h := b.Pick(1); h != -1 {
			t.Fatalf("%s on an empty set picked %d", name, h)
		}
	}
}

func TestRoundRobinSmoothWeighted(t *testing.T) {
	s := NewHostSet([]Host{{Addr: "a", Weight: 5}, {Addr: "b", Weight: 1}, {Addr: "c", Weight: 1}}, HostSetConfig{})
	r := NewRoundRobin(s)
	var seq strings.Builder
	for range 7 {
		seq.WriteString(s.Host(r.Pick(0)).Addr)
	}
	if got := seq.String(); got != "aabacaa" {
		t.Fatalf("sequence %q, want aabacaa (nginx smooth WRR)", got)
	}
	// Over many rounds the shares are exact.
	count := map[int]int{}
	for range 7000 {
		count[r.Pick(0)]++
	}
	if count[0] != 5000 || count[1] != 1000 || count[2] != 1000 {
		t.Fatalf("counts %v", count)
	}
	// An ejected host drops out; the rest keep their ratio.
	s.SetEjected(0, true)
	count = map[int]int{}
	for range 100 {
		count[r.Pick(0)]++
	}
	if count[0] != 0 || count[1] != 50 || count[2] != 50 {
		t.Fatalf("counts with a ejected %v", count)
	}
}

// TestLeastRequestSkew checks P2C's balance with a fixed seed: requests that
// stay open spread within a few of even, and a loaded host is avoided.
func TestLeastRequestSkew(t *testing.T) {
	const n = 10
	s := NewHostSet(hosts(n), HostSetConfig{})
	lr := NewLeastRequest(s, LeastRequestConfig{Rand: rand.NewPCG(42, 7)})
	for range 10000 {
		s.Start(lr.Pick(0)) // never Done: load only grows
	}
	lo, hi := s.Active(0), s.Active(0)
	for i := range n {
		lo, hi = min(lo, s.Active(i)), max(hi, s.Active(i))
	}
	// P2C keeps the max-min gap at O(log log n); uniform random would be
	// ~±3σ ≈ ±90 here.
	if hi-lo > 4 {
		t.Fatalf("P2C spread %d..%d, want within 4", lo, hi)
	}
	// Release everything, load host 0 heavily: it is picked only when both
	// draws land on it (~1%).
	for i := range n {
		for s.Active(i) > 0 {
			s.Done(i)
		}
	}
	for range 100 {
		s.Start(0)
	}
	hits := 0
	for range 10000 {
		if lr.Pick(0) == 0 {
			hits++
		}
	}
	if hits > 200 {
		t.Fatalf("loaded host picked %d/10000, want ~100", hits)
	}
}

func TestLeastRequestWeighted(t *testing.T) {
	s := NewHostSet([]Host{{Addr: "big", Weight: 3}, {Addr: "small", Weight: 1}}, HostSetConfig{})
	lr := NewLeastRequest(s, LeastRequestConfig{Rand: rand.NewPCG(9, 9), Choices: 2})
	for range 4000 {
		s.Start(lr.Pick(0))
	}
	ratio := float64(s.Active(0)) / float64(s.Active(1))
	if ratio < 2.5 || ratio > 3.5 {
		t.Fatalf("weight 3:1 gave %d:%d", s.Active(0), s.Active(1))
	}
}

// moved returns the share of keys whose host (by address) differs between
// two balancers over two sets.
func moved(keys []uint64, a Balancer, sa *HostSet, b Balancer, sb *HostSet) float64 {
	n := 0
	for _, k := range keys {
		ha, hb := sa.Host(a.Pick(k)).Addr, sb.Host(b.Pick(k)).Addr
		if ha != hb {
			n++
		}
	}
	return float64(n) / float64(len(keys))
}

func testKeys(n int) []uint64 {
	keys := make([]uint64, n)
	for i := range keys {
		keys[i] = HashKey(fmt.Sprintf("device-%d", i))
	}
	return keys
}

// TestConsistentHashMinimalDisruption is the property test for ring hash
// and Maglev: removing one host of n moves about 1/n of the keys (the
// removed host's share), and ejecting a host moves only its own keys.
func TestConsistentHashMinimalDisruption(t *testing.T) {
	const n = 10
	keys := testKeys(20000)
	all := hosts(n)
	less := append(append([]Host{}, all[:4]...), all[5:]...) // host 4 removed
	sAll := NewHostSet(all, HostSetConfig{})
	sLess := NewHostSet(less, HostSetConfig{})

	build := map[string]func(*HostSet) Balancer{
		"ring_hash": func(s *HostSet) Balancer { return NewRingHash(s, RingHashConfig{}) },
		"maglev": func(s *HostSet) Balancer {
			m, err := NewMaglev(s, MaglevConfig{})
			if err != nil {
				t.Fatal(err)
			}
			return m
		},
	}
	for name, mk := range build {
		bAll, bLess := mk(sAll), mk(sLess)
		share := moved(keys, bAll, sAll, bLess, sLess)
		// Ideal is 1/n = 10%; ring hash moves exactly the removed host's keys
		// (its share varies with the ring), Maglev a little more.
		if share > 0.15 {
			t.Errorf("%s: removing 1 of %d hosts moved %.1f%% of keys", name, n, share*100)
		}
		owned := 0
		for _, k := range keys {
			if bAll.Pick(k) == 4 {
				owned++
			}
		}
		ownShare := float64(owned) / float64(len(keys))
		if share < ownShare {
			t.Errorf("%s: moved %.3f, less than the removed host's share", name, share)
		}
		if name == "ring_hash" && share != ownShare {
			t.Errorf("%s: moved %.4f, want exactly the removed host's share %.4f", name, share, ownShare)
		}
		t.Logf("%s: removed host owned %.2f%%, moved %.2f%%", name, 100*float64(owned)/float64(len(keys)), share*100)

		// Ejection: keys of other hosts stay put.
		before := make([]int, len(keys))
		for i, k := range keys {
			before[i] = bAll.Pick(k)
		}
		sAll.SetEjected(4, true)
		for i, k := range keys {
			h := bAll.Pick(k)
			if before[i] != 4 && h != before[i] {
				t.Fatalf("%s: key of host %d moved to %d on ejecting host 4", name, before[i], h)
			}
			if h == 4 {
				t.Fatalf("%s: picked the ejected host", name)
			}
		}
		sAll.SetEjected(4, false)
	}
}

// TestConsistentHashBalance checks the shares: Maglev splits keys within a
// few percent of even, ring hash (1024 points) within tens of percent, and
// both follow weights.
func TestConsistentHashBalance(t *testing.T) {
	keys := testKeys(50000)
	hs := hosts(8)
	hs[0].Weight = 3
	s := NewHostSet(hs, HostSetConfig{})
	mg, _ := NewMaglev(s, MaglevConfig{})
	for name, tc := range map[string]struct {
		b   Balancer
		tol float64
	}{"maglev": {mg, 0.05}, "ring_hash": {NewRingHash(s, RingHashConfig{}), 0.35}} {
		count := make([]int, len(hs))
		for _, k := range keys {
			count[tc.b.Pick(k)]++
		}
		unit := float64(len(keys)) / 10 // total weight 10
		for i, c := range count {
			want := unit * float64(s.Host(i).Weight)
			if dev := (float64(c) - want) / want; dev > tc.tol || dev < -tc.tol {
				t.Errorf("%s: host %d got %d keys, want %.0f ±%.0f%%", name, i, c, want, tc.tol*100)
			}
		}
	}
}

func TestMaglevTableSize(t *testing.T) {
	s := NewHostSet(hosts(3), HostSetConfig{})
	for _, size := range []int{65536, 1, 2} {
		if _, err := NewMaglev(s, MaglevConfig{TableSize: size}); !errors.Is(err, ErrTableSize) {
			t.Errorf("size %d: err %v", size, err)
		}
	}
	m, err := NewMaglev(s, MaglevConfig{TableSize: 7})
	if err != nil {
		t.Fatal(err)
	}
	count := map[int32]int{}
	for _, h := range m.table {
		count[h]++
	}
	if count[-1] != 0 || len(count) != 3 {
		t.Fatalf("table %v not filled by every host", m.table)
	}
}

func TestHashKeyStable(t *testing.T) {
	// Pinned values: a change here remaps every key in a running cluster.
	if got := HashKey("device-1"); got != HashKey("device-1") || got == HashKey("device-2") {
		t.Fatal("HashKey not deterministic")
	}
	if got := fmt.Sprintf("%016x", HashKey("")); got != "efd01f60ba992926" {
		t.Fatalf("HashKey(\"\") = %s; changing the hash remaps every key", got)
	}
}

func TestBalancersConcurrent(t *testing.T) {
	s := NewHostSet(hosts(6), HostSetConfig{})
	kinds := balancerKinds(t, s)
	kinds["least_request_runtime_rand"] = NewLeastRequest(s, LeastRequestConfig{})
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for i := range 2000 {
				if g == 0 && i%10 == 0 {
					s.SetEjected(i%6, i%20 == 0)
					s.SetHealthy((i+1)%6, i%30 != 0)
				}
				for name, b := range kinds {
					h := b.Pick(uint64(i) * 0x9e3779b97f4a7c15)
					if h < 0 || h >= 6 {
						t.Errorf("%s picked %d", name, h)
						return
					}
					s.Start(h)
					s.Done(h)
				}
			}
		}()
	}
	wg.Wait()
}
