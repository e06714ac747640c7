package upstream

import (
	"sync/atomic"
)

// Host is a member of a HostSet.
type Host struct {
	// Addr identifies the host ("10.0.0.7:8080"); ring hash and Maglev hash
	// it, so the same Addr lands on the same share of keys in every process.
	Addr string
	// Weight is the host's share of traffic relative to the others. Zero or
	// negative means 1.
	Weight int
}

// HostSetConfig configures a HostSet. The zero value works.
type HostSetConfig struct {
	// PanicThreshold is the percentage of available hosts below which the
	// balancers stop trusting health and ejection and pick among all hosts
	// (Envoy's healthy panic threshold): when most hosts look down, the
	// cause is more often the checks or a cascade than the hosts, and
	// spreading the load beats piling it on the few left. Zero means 50;
	// negative disables panic mode (only available hosts are ever picked,
	// and Pick returns -1 when there are none).
	PanicThreshold float64
}

// DefaultPanicThreshold is HostSetConfig.PanicThreshold's default, in
// percent.
const DefaultPanicThreshold = 50

// Host flags; a host is available when it has none.
const (
	flagUnhealthy uint32 = 1 << iota
	flagEjected
	flagExcluded
)

// HostSet is a fixed list of hosts with live flags: unhealthy (set by health
// checks), ejected (set by outlier detection) and excluded (set by a drain),
// and a count of active requests per host for least-request balancing.
// Membership is fixed: to add or remove hosts, build a new HostSet and new
// balancers over it; flags and counts change in place.
//
// An excluded host is never picked, in panic mode included, and does not
// count among the hosts when the panic threshold is computed: with three
// hosts of which one is excluded, one unhealthy host leaves 1 of 2
// available (50%), not 1 of 3. Envoy's excluded hosts count the same way
// but are still picked in panic mode; an excluded host here is one an
// operator drained, whose new requests must go elsewhere whatever the
// health of the rest.
//
// A HostSet is safe for concurrent use; flag and count updates are atomic
// and never block Pick.
type HostSet struct {
	hosts       []Host
	state       []hostState
	unavailable atomic.Int32 // hosts with any flag
	excluded    atomic.Int32 // hosts with flagExcluded
	panicBelow  float64      // percent; negative disables
}

type hostState struct {
	flags  atomic.Uint32
	active atomic.Int64
	_      [48]byte // keep hosts on separate cache lines: counts change per request
}

// NewHostSet returns a HostSet of hosts (copied), all healthy and
// un-ejected, with weights of zero or less set to 1.
func NewHostSet(hosts []Host, cfg HostSetConfig) *HostSet {
	s := &HostSet{
		hosts:      make([]Host, len(hosts)),
		state:      make([]hostState, len(hosts)),
		panicBelow: cfg.PanicThreshold,
	}
	if s.panicBelow == 0 {
		s.panicBelow = DefaultPanicThreshold
	}
	copy(s.hosts, hosts)
	for i := range s.hosts {
		if s.hosts[i].Weight <= 0 {
			s.hosts[i].Weight = 1
		}
	}
	return s
}

// Len returns the number of hosts.
func (s *HostSet) Len() int { return len(s.hosts) }

// Host returns host i.
func (s *HostSet) Host(i int) Host { return s.hosts[i] }

// SetHealthy marks host i healthy or not (health checks).
func (s *HostSet) SetHealthy(i int, healthy bool) { s.setFlag(i, flagUnhealthy, !healthy) }

// SetEjected marks host i ejected or not (outlier detection).
func (s *HostSet) SetEjected(i int, ejected bool) { s.setFlag(i, flagEjected, ejected) }

// SetExcluded marks host i excluded or not (Cluster.Drain): an excluded
// host is never picked, even in panic mode, and is left out of the panic
// threshold's count of hosts.
func (s *HostSet) SetExcluded(i int, excluded bool) { s.setFlag(i, flagExcluded, excluded) }

func (s *HostSet) setFlag(i int, flag uint32, on bool) {
	f := &s.state[i].flags
	for {
		old := f.Load()
		nw := old &^ flag
		if on {
			nw = old | flag
		}
		if old == nw {
			return
		}
		if f.CompareAndSwap(old, nw) {
			switch {
			case old == 0:
				s.unavailable.Add(1)
			case nw == 0:
				s.unavailable.Add(-1)
			}
			if flag == flagExcluded {
				if on {
					s.excluded.Add(1)
				} else {
					s.excluded.Add(-1)
				}
			}
			return
		}
	}
}

// Healthy reports whether host i is not marked unhealthy.
func (s *HostSet) Healthy(i int) bool { return s.state[i].flags.Load()&flagUnhealthy == 0 }

// Ejected reports whether host i is marked ejected.
func (s *HostSet) Ejected(i int) bool { return s.state[i].flags.Load()&flagEjected != 0 }

// Excluded reports whether host i is marked excluded.
func (s *HostSet) Excluded(i int) bool { return s.state[i].flags.Load()&flagExcluded != 0 }

// Available reports whether host i is healthy, not ejected and not
// excluded.
func (s *HostSet) Available(i int) bool { return s.state[i].flags.Load() == 0 }

// AvailableCount returns the number of available hosts.
func (s *HostSet) AvailableCount() int { return len(s.hosts) - int(s.unavailable.Load()) }

// Panic reports whether fewer than PanicThreshold percent of the hosts
// that are not excluded are available, so the balancers pick among all of
// them but the excluded. It is false when every host is excluded.
func (s *HostSet) Panic() bool {
	if s.panicBelow < 0 {
		return false
	}
	n := len(s.hosts) - int(s.excluded.Load())
	if n <= 0 {
		return false
	}
	return float64(s.AvailableCount())*100 < s.panicBelow*float64(n)
}

// Start counts a request starting on host i (least request reads it).
func (s *HostSet) Start(i int) { s.state[i].active.Add(1) }

// Done counts a request on host i finishing; pair it with Start.
func (s *HostSet) Done(i int) { s.state[i].active.Add(-1) }

// Active returns the requests in flight on host i.
func (s *HostSet) Active(i int) int64 { return s.state[i].active.Load() }

// eligibility returns whether to pick among all hosts but the excluded
// (panic) and whether any host can be picked at all.
func (s *HostSet) eligibility() (all, any bool) {
	if len(s.hosts) == 0 {
		return false, false
	}
	if s.Panic() {
		return true, true
	}
	return false, s.AvailableCount() > 0
}

// eligible reports whether host i may be picked: when available, or in
// panic (all) when not excluded.
func (s *HostSet) eligible(i int, all bool) bool {
	f := s.state[i].flags.Load()
	return f == 0 || all && f&flagExcluded == 0
}

// Balancer picks a host of a HostSet for a request. key is the request's
// hash (HashKey of a device id, a client IP, a header); balancers that do
// not hash ignore it. Pick returns the host's index in the HostSet, or -1
// when no host may be picked (an empty set, every host excluded, or none
// available with panic mode disabled). It skips unhealthy and ejected hosts
// unless the set is in panic, and excluded hosts always. Every Balancer here is safe for concurrent use and does not
// allocate in Pick.
type Balancer interface {
	Pick(key uint64) int
}

var (
	_ Balancer = (*RoundRobin)(nil)
	_ Balancer = (*LeastRequest)(nil)
	_ Balancer = (*RingHash)(nil)
	_ Balancer = (*Maglev)(nil)
)

// HashKey hashes a key (device id, client IP, session) for Pick: FNV-1a
// with a 64-bit finalizer, stable across processes, platforms and releases,
// so every node of a cluster maps the same key to the same host.
func HashKey(s string) uint64 {
	h := uint64(fnvOffset)
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	return mix64(h)
}

const (
	fnvOffset = 14695981039346656037
	fnvPrime  = 1099511628211
)

// hashSeeded hashes s then n, seeded, for virtual nodes and Maglev
// permutations; it does not allocate.
func hashSeeded(seed uint64, s string, n uint64) uint64 {
	h := uint64(fnvOffset) ^ seed
	for i := 0; i < len(s); i++ {
		h ^= uint64(s[i])
		h *= fnvPrime
	}
	for range 8 {
		h ^= n & 0xff
		h *= fnvPrime
		n >>= 8
	}
	return mix64(h)
}

// mix64 is a 64-bit finalizer (MurmurHash3's fmix64): every input bit
// affects every output bit.
func mix64(h uint64) uint64 {
	h ^= h >> 33
	h *= 0xff51afd7ed558ccd
	h ^= h >> 33
	h *= 0xc4ceb9fe1a85ec53
	h ^= h >> 33
	return h
}
