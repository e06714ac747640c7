package upstream

import "sync/atomic"

// Thresholds are Envoy-style circuit breaking limits for one cluster: caps
// on concurrent use of each Resource. The zero value gives Envoy's defaults.
type Thresholds struct {
	// MaxConnections caps connections to the cluster's hosts. Zero means
	// 1024; negative means no limit.
	MaxConnections int
	// MaxPending caps requests waiting for a connection. Zero means 1024;
	// negative means no limit.
	MaxPending int
	// MaxRequests caps requests in flight. Zero means 1024; negative means
	// no limit.
	MaxRequests int
	// MaxRetries caps retries in flight. Zero means 3; negative means no
	// limit. (A RetryBudget scales with traffic instead; use one or the
	// other.)
	MaxRetries int
}

// Default Thresholds values (Envoy's).
const (
	DefaultMaxConnections = 1024
	DefaultMaxPending     = 1024
	DefaultMaxRequests    = 1024
	DefaultMaxRetries     = 3
)

// Resource is what a Thresholds field caps.
type Resource uint8

const (
	// ResourceConnections is a connection (Thresholds.MaxConnections).
	ResourceConnections Resource = iota
	// ResourcePending is a request waiting for a connection
	// (Thresholds.MaxPending).
	ResourcePending
	// ResourceRequests is a request in flight (Thresholds.MaxRequests).
	ResourceRequests
	// ResourceRetries is a retry in flight (Thresholds.MaxRetries).
	ResourceRetries
	numResources
)

var resourceNames = [...]string{"connections", "pending", "requests", "retries"}

// String returns the snake_case name used in metrics and logs.
func (r Resource) String() string {
	if int(r) < len(resourceNames) {
		return resourceNames[r]
	}
	return "unknown"
}

// reason returns the Reason an overflow of r is refused with.
func (r Resource) reason() Reason {
	return [...]Reason{ReasonMaxConnections, ReasonMaxPending, ReasonMaxRequests, ReasonMaxRetries}[r]
}

// Resources counts concurrent use of each Resource against Thresholds:
// Acquire before using one, Release after. It never blocks: over the limit
// Acquire refuses at once with the Resource's Reason and counts an
// overflow. It is safe for concurrent use (atomics, no lock).
type Resources struct {
	limit    [numResources]int64 // negative: no limit
	count    [numResources]atomic.Int64
	overflow [numResources]atomic.Uint64
}

// NewResources returns counters at zero for t.
func NewResources(t Thresholds) *Resources {
	r := &Resources{}
	for i, v := range [...]struct{ set, def int }{
		{t.MaxConnections, DefaultMaxConnections},
		{t.MaxPending, DefaultMaxPending},
		{t.MaxRequests, DefaultMaxRequests},
		{t.MaxRetries, DefaultMaxRetries},
	} {
		switch {
		case v.set == 0:
			r.limit[i] = int64(v.def)
		case v.set < 0:
			r.limit[i] = -1
		default:
			r.limit[i] = int64(v.set)
		}
	}
	return r
}

// Acquire takes one of res: ReasonNone if there was room, else the
// Resource's Reason (ReasonMaxConnections, ReasonMaxPending,
// ReasonMaxRequests, ReasonMaxRetries) and nothing is taken.
func (r *Resources) Acquire(res Resource) Reason {
	lim, c := r.limit[res], &r.count[res]
	for {
		n := c.Load()
		if lim >= 0 && n >= lim {
			r.overflow[res].Add(1)
			return res.reason()
		}
		if c.CompareAndSwap(n, n+1) {
			return ReasonNone
		}
	}
}

// Release gives back one of res taken by Acquire.
func (r *Resources) Release(res Resource) { r.count[res].Add(-1) }

// Count returns how many of res are in use.
func (r *Resources) Count(res Resource) int64 { return r.count[res].Load() }

// Remaining returns how many more of res Acquire would grant now, or -1
// for no limit.
func (r *Resources) Remaining(res Resource) int64 {
	if r.limit[res] < 0 {
		return -1
	}
	return max(0, r.limit[res]-r.count[res].Load())
}

// Overflows returns how many times Acquire refused res.
func (r *Resources) Overflows(res Resource) uint64 { return r.overflow[res].Load() }
