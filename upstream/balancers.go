package upstream

import (
	"errors"
	"math"
	"math/bits"
	"math/rand/v2"
	"slices"
	"sync"
)

// RoundRobin is smooth weighted round robin (nginx's algorithm): each pick
// adds every eligible host's weight to its running score, takes the host
// with the highest score and subtracts the total weight from it. Over any
// run of total-weight picks each host gets exactly its weight, interleaved
// rather than in blocks (weights 5,1,1 give a a b a c a a, not a a a a a b c).
// Pick is O(hosts) under a mutex, which suits the tens of hosts of a
// cluster; it is safe for concurrent use.
type RoundRobin struct {
	set *HostSet

	mu    sync.Mutex // guards score
	score []int64
}

// NewRoundRobin returns a smooth weighted round robin over set.
func NewRoundRobin(set *HostSet) *RoundRobin {
	return &RoundRobin{set: set, score: make([]int64, set.Len())}
}

// Pick returns the next host in the weighted rotation; it ignores key.
func (r *RoundRobin) Pick(uint64) int {
	all, any := r.set.eligibility()
	if !any {
		return -1
	}
	r.mu.Lock()
	defer r.mu.Unlock()
	best, total := -1, int64(0)
	for i := range r.score {
		if !r.set.eligible(i, all) {
			continue
		}
		w := int64(r.set.hosts[i].Weight)
		r.score[i] += w
		total += w
		if best < 0 || r.score[i] > r.score[best] {
			best = i
		}
	}
	if best >= 0 {
		r.score[best] -= total
	}
	return best
}

// LeastRequestConfig configures a LeastRequest. The zero value works.
type LeastRequestConfig struct {
	// Choices is how many random hosts each pick compares. Zero means 2
	// (power of two choices: nearly as good as scanning every host, at O(1)).
	Choices int
	// Rand supplies randomness. Nil means the runtime's generator, which is
	// safe for concurrent use and never locks; a Source given here (a seeded
	// rand.PCG for reproducible tests) is used under a mutex.
	Rand rand.Source
}

// LeastRequest picks the host with the fewest active requests (per unit of
// weight) among Choices random eligible hosts. Callers report requests with
// HostSet.Start and HostSet.Done. It is safe for concurrent use.
type LeastRequest struct {
	set     *HostSet
	choices int

	mu  sync.Mutex // guards src
	src rand.Source
}

// NewLeastRequest returns a least-request balancer over set.
func NewLeastRequest(set *HostSet, cfg LeastRequestConfig) *LeastRequest {
	if cfg.Choices <= 0 {
		cfg.Choices = 2
	}
	return &LeastRequest{set: set, choices: cfg.Choices, src: cfg.Rand}
}

func (l *LeastRequest) rand64() uint64 {
	if l.src == nil {
		return rand.Uint64()
	}
	l.mu.Lock()
	v := l.src.Uint64()
	l.mu.Unlock()
	return v
}

// Pick returns the least loaded of Choices random eligible hosts; it ignores
// key. Ties go to the first drawn.
func (l *LeastRequest) Pick(uint64) int {
	all, any := l.set.eligibility()
	if !any {
		return -1
	}
	n := len(l.set.hosts)
	if n == 1 && l.src == nil {
		// Every draw is host 0, which is eligible. (A Source given in
		// the config is still drawn from, as before, so that a seeded
		// sequence does not depend on the cluster's size.)
		return 0
	}
	best := -1
	for range l.choices {
		i := l.randomEligible(n, all)
		if best < 0 || l.lighter(i, best) {
			best = i
		}
	}
	return best
}

// lighter reports whether host i has fewer active requests per unit of
// weight than host j.
func (l *LeastRequest) lighter(i, j int) bool {
	ai, aj := l.set.Active(i), l.set.Active(j)
	wi, wj := int64(l.set.hosts[i].Weight), int64(l.set.hosts[j].Weight)
	return ai*wj < aj*wi
}

// randomEligible draws hosts uniformly until one is eligible (a few tries),
// then scans on from the last draw. The caller has checked that one exists.
func (l *LeastRequest) randomEligible(n int, all bool) int {
	i := 0
	for range 4 {
		hi, _ := bits.Mul64(l.rand64(), uint64(n))
		i = int(hi)
		if l.set.eligible(i, all) {
			return i
		}
	}
	for range n {
		i++
		if i == n {
			i = 0
		}
		if l.set.eligible(i, all) {
			return i
		}
	}
	return i // flags changed under us; any host will do
}

// RingHashConfig configures a RingHash. The zero value works.
type RingHashConfig struct {
	// MinRingSize is the least number of points on the ring; more points
	// split keys more evenly (and by weight more exactly). Each unit of
	// weight gets the same number of points, a power of two, so the ring
	// holds between MinRingSize and twice that. Zero means 1024.
	MinRingSize int
	// MaxRingSize caps the ring. Zero means 8M (8388608). Every unit of
	// weight gets at least one point, so a ring of more total weight than
	// this is larger.
	MaxRingSize int
}

// Default RingHashConfig values (Envoy's).
const (
	DefaultMinRingSize = 1024
	DefaultMaxRingSize = 8 << 20
)

// RingHash is consistent hashing on a ring (ketama): each host owns points
// on a circle of 64-bit hashes in proportion to its weight, and a key goes to
// the owner of the first point at or after its hash. Removing a host moves
// only the keys it owned; an unavailable host's keys go to the next eligible
// point clockwise, and no other key moves. Pick is a binary search; the ring
// is immutable and Pick is safe for concurrent use.
type RingHash struct {
	set    *HostSet
	points []ringPoint
}

type ringPoint struct {
	hash uint64
	host int32
}

// ringSeed seeds the virtual node hashes.
const ringSeed = 0x9e3779b97f4a7c15

// NewRingHash builds the ring for set's hosts.
func NewRingHash(set *HostSet, cfg RingHashConfig) *RingHash {
	if cfg.MinRingSize <= 0 {
		cfg.MinRingSize = DefaultMinRingSize
	}
	if cfg.MaxRingSize <= 0 {
		cfg.MaxRingSize = DefaultMaxRingSize
	}
	r := &RingHash{set: set}
	if set.Len() == 0 {
		return r
	}
	total := 0
	for _, h := range set.hosts {
		total += h.Weight
	}
	// Points per unit of weight: enough for MinRingSize points in all,
	// rounded up to a power of two so that it stays the same when a host
	// comes or goes (10 hosts or 9 both give 128 for 1024): a host's points
	// then never change with the others, and removing a host moves only its
	// own keys. Capped so the ring stays within MaxRingSize.
	per := 1 << bits.Len(uint((cfg.MinRingSize+total-1)/total-1))
	for per > 1 && per*total > cfg.MaxRingSize {
		per >>= 1
	}
	r.points = make([]ringPoint, 0, per*total)
	for i, h := range set.hosts {
		n := per * h.Weight
		for v := range n {
			r.points = append(r.points, ringPoint{hash: hashSeeded(ringSeed, h.Addr, uint64(v)), host: int32(i)})
		}
	}
	slices.SortFunc(r.points, func(a, b ringPoint) int {
		if a.hash != b.hash {
			if a.hash < b.hash {
				return -1
			}
			return 1
		}
		return int(a.host - b.host) // equal hashes: same order in every process
	})
	return r
}

// Pick returns the host owning key's point, or the next eligible one
// clockwise.
func (r *RingHash) Pick(key uint64) int {
	all, any := r.set.eligibility()
	if !any {
		return -1
	}
	n := len(r.points)
	i, _ := slices.BinarySearchFunc(r.points, key, func(p ringPoint, k uint64) int {
		if p.hash < k {
			return -1
		}
		if p.hash > k {
			return 1
		}
		return 0
	})
	for range n {
		if i == n {
			i = 0
		}
		if h := int(r.points[i].host); r.set.eligible(h, all) {
			return h
		}
		i++
	}
	return int(r.points[0].host) // flags changed under us
}

// MaglevConfig configures a Maglev. The zero value works.
type MaglevConfig struct {
	// TableSize is the lookup table's size; it must be a prime at least the
	// number of hosts (ideally 100 times more), and larger tables move fewer
	// keys when hosts change. Zero means 65537.
	TableSize int
}

// DefaultMaglevTableSize is MaglevConfig.TableSize's default (Envoy's).
const DefaultMaglevTableSize = 65537

// ErrTableSize is NewMaglev refusing a table size that is not a prime at
// least the number of hosts.
var ErrTableSize = errors.New("upstream: maglev table size must be a prime not less than the number of hosts")

// Maglev is Google's Maglev consistent hashing: a table of TableSize slots
// filled by every host in turn along its own permutation, so hosts own
// nearly equal (weighted) shares and a lookup is one index. Removing a host
// moves its keys and only slightly more. An unavailable host's keys are
// rehashed to another slot (up to a few times, then the next eligible slot),
// so keys of available hosts never move on an ejection. The table is
// immutable and Pick is safe for concurrent use.
type Maglev struct {
	set   *HostSet
	table []int32
}

// Maglev permutation seeds.
const (
	maglevOffsetSeed = 0x6a09e667f3bcc909
	maglevSkipSeed   = 0xbb67ae8584caa73b
	maglevRetrySeed  = 0x3c6ef372fe94f82b
)

// NewMaglev builds the lookup table for set's hosts. It returns ErrTableSize
// when cfg.TableSize is not a prime at least set.Len().
func NewMaglev(set *HostSet, cfg MaglevConfig) (*Maglev, error) {
	if cfg.TableSize == 0 {
		cfg.TableSize = DefaultMaglevTableSize
	}
	m := uint64(cfg.TableSize)
	if !isPrime(m) || cfg.TableSize < set.Len() || cfg.TableSize > math.MaxInt32 {
		return nil, ErrTableSize
	}
	g := &Maglev{set: set}
	n := set.Len()
	if n == 0 {
		return g, nil
	}
	g.table = make([]int32, m)
	for i := range g.table {
		g.table[i] = -1
	}
	offset := make([]uint64, n)
	skip := make([]uint64, n)
	next := make([]uint64, n)
	count := make([]float64, n)
	share := make([]float64, n) // weight relative to the heaviest host
	maxW := 0
	for _, h := range set.hosts {
		maxW = max(maxW, h.Weight)
	}
	for i, h := range set.hosts {
		offset[i] = hashSeeded(maglevOffsetSeed, h.Addr, 0) % m
		skip[i] = hashSeeded(maglevSkipSeed, h.Addr, 0)%(m-1) + 1
		share[i] = float64(h.Weight) / float64(maxW)
	}
	filled := uint64(0)
	for round := 1.0; filled < m; round++ {
		for i := range n {
			// A host takes a slot this round only while it is below its
			// weighted share of the rounds so far.
			if count[i] >= round*share[i] {
				continue
			}
			for {
				c := (offset[i] + next[i]*skip[i]) % m
				next[i]++
				if g.table[c] < 0 {
					g.table[c] = int32(i)
					break
				}
			}
			count[i]++
			if filled++; filled == m {
				break
			}
		}
	}
	return g, nil
}

// Pick returns the host in key's slot, or, if it is not eligible, in the
// slot of a rehash of key.
func (g *Maglev) Pick(key uint64) int {
	all, any := g.set.eligibility()
	if !any {
		return -1
	}
	m := uint64(len(g.table))
	slot := key % m
	if h := int(g.table[slot]); g.set.eligible(h, all) {
		return h
	}
	for attempt := uint64(1); attempt <= 8; attempt++ {
		if h := int(g.table[mix64(key^(attempt*maglevRetrySeed))%m]); g.set.eligible(h, all) {
			return h
		}
	}
	for range m {
		if slot++; slot == m {
			slot = 0
		}
		if h := int(g.table[slot]); g.set.eligible(h, all) {
			return h
		}
	}
	return int(g.table[key%m]) // flags changed under us
}

// isPrime reports whether n is prime (trial division; n is a table size).
func isPrime(n uint64) bool {
	if n < 2 {
		return false
	}
	for d := uint64(2); d*d <= n; d++ {
		if n%d == 0 {
			return false
		}
	}
	return true
}
