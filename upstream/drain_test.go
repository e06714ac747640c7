package upstream

import (
	"context"
	"fmt"
	"net/http"
	"testing"
	"time"
)

// TestBalancersNeverPickExcluded: an excluded (drained) host is never
// picked by any balancer, in panic mode included, and is left out of the
// panic threshold's count.
func TestBalancersNeverPickExcluded(t *testing.T) {
	s := NewHostSet(hosts(5), HostSetConfig{})
	s.SetExcluded(3, true)
	s.SetExcluded(4, true)
	if s.Panic() || s.AvailableCount() != 3 || !s.Excluded(3) || s.Available(3) || !s.Healthy(3) {
		t.Fatalf("3 of 3 hosts left: panic %v, available %d", s.Panic(), s.AvailableCount())
	}
	s.SetHealthy(1, false)
	if s.Panic() {
		t.Fatal("2 of the 3 hosts not excluded (67%) is not below 50%")
	}
	s.SetHealthy(2, false)
	if !s.Panic() {
		t.Fatal("1 of the 3 hosts not excluded must panic")
	}
	for name, b := range balancerKinds(t, s) {
		seen := map[int]bool{}
		for k := range 3000 {
			h := b.Pick(HashKey(fmt.Sprint(k)))
			if h == 3 || h == 4 || h < 0 {
				t.Fatalf("%s in panic picked %d; hosts 3 and 4 are excluded", name, h)
			}
			seen[h] = true
		}
		if len(seen) != 3 {
			t.Errorf("%s in panic picked %v, want hosts 0, 1 and 2", name, seen)
		}
	}
	// Every host excluded: nothing to pick, and no panic.
	for i := range 3 {
		s.SetExcluded(i, true)
	}
	if s.Panic() || s.AvailableCount() != 0 {
		t.Fatalf("all excluded: panic %v, available %d", s.Panic(), s.AvailableCount())
	}
	for name, b := range balancerKinds(t, s) {
		if h := b.Pick(HashKey("x")); h != -1 {
			t.Errorf("%s picked %d with every host excluded", name, h)
		}
	}
	// Back in: the counts return.
	for i := range 5 {
		s.SetExcluded(i, false)
		s.SetHealthy(i, true)
	}
	if s.Panic() || s.AvailableCount() != 5 || s.excluded.Load() != 0 {
		t.Fatalf("after undrain: panic %v, available %d, excluded %d", s.Panic(), s.AvailableCount(), s.excluded.Load())
	}
}

// TestClusterDrainPanic: with two of three hosts drained, every request
// goes to the third, with every balancer; and with hosts unhealthy as
// well, panic mode spreads requests over the hosts that are not drained,
// never onto a drained one.
func TestClusterDrainPanic(t *testing.T) {
	for _, kind := range []BalancerKind{BalanceRoundRobin, BalanceLeastRequest, BalanceRingHash, BalanceMaglev} {
		t.Run(kind.String(), func(t *testing.T) {
			e := startEngine(t)
			var bs []*backend
			var addrs []string
			for range 5 {
				b := startBackend(t, http.HandlerFunc(hello))
				bs = append(bs, b)
				addrs = append(addrs, b.addr)
			}
			c := newTestCluster(t, e, ClusterConfig{Hosts: addrs[:3], Balancer: kind, OutlierOff: true})
			c.Drain(1)
			c.Drain(2)
			do := func(n int) {
				t.Helper()
				for i := range n {
					ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
					head := AppendRequestHead(nil, "GET", "/", "test", nil, -1, false)
					r, err := c.RoundTrip(ctx, &Request{Method: "GET", Head: head, Key: HashKey(fmt.Sprint(i))}, 0)
					cancel()
					if err != nil || r.Status != 200 {
						t.Fatalf("request %d (panic %v): %v", i, c.HostSet().Panic(), err)
					}
				}
			}
			do(30)
			if n := bs[0].requests.Load(); n != 30 || bs[1].requests.Load() != 0 || bs[2].requests.Load() != 0 {
				t.Fatalf("requests per host %d %d %d; want all 30 on the host not drained",
					n, bs[1].requests.Load(), bs[2].requests.Load())
			}
			c.Undrain(1)
			c.Undrain(2)
			do(60)
			if bs[1].requests.Load() == 0 || bs[2].requests.Load() == 0 {
				t.Errorf("undrained hosts got no requests: %d %d", bs[1].requests.Load(), bs[2].requests.Load())
			}

			// Five hosts, two drained and two unhealthy: panic among the
			// three not drained.
			c5 := newTestCluster(t, e, ClusterConfig{Hosts: addrs, Balancer: kind, OutlierOff: true})
			c5.Drain(3)
			c5.Drain(4)
			c5.HostSet().SetHealthy(1, false)
			c5.HostSet().SetHealthy(2, false)
			if !c5.HostSet().Panic() {
				t.Fatal("1 of 3 hosts available is panic")
			}
			before := [5]int64{}
			for i, b := range bs {
				before[i] = b.requests.Load()
			}
			c = c5
			do(60)
			for i := 3; i < 5; i++ {
				if n := bs[i].requests.Load() - before[i]; n != 0 {
					t.Errorf("drained host %d got %d requests in panic mode", i, n)
				}
			}
		})
	}
}
