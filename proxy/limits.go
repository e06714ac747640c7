package proxy

import (
	"bytes"
	"errors"
	"fmt"
	"hash/maphash"
	"math"
	"net/netip"
	"sort"
	"strconv"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/ipkey"
	"github.com/warrenhq/warren/upstream"
)

// RouteLimit is an inbound rate limit on the requests whose path starts
// with Prefix: a token bucket per key (the client address, or the value of
// a header such as a device id) in a bounded table (upstream.KeyedLimiter).
// A request over it is answered 429 by the proxy itself, with the reason
// header "rate_limited" and a Retry-After computed from the key's bucket
// (whole seconds, rounded up, at least 1); it never reaches the cluster.
//
// A request is checked against one RouteLimit, the one with the longest
// matching Prefix (so "/" is a default for every path no other prefix
// matches), after Config.RatePerIP.
type RouteLimit struct {
	// Prefix is the path prefix, matched against the request path as
	// received (not percent-decoded, without the query). Required; "/"
	// matches every path.
	Prefix string
	// Name labels the route in metrics. Zero means Prefix.
	Name string
	// Rate is each key's sustained rate in requests a second. Required
	// (positive).
	Rate float64
	// Burst is each key's bucket size. Zero means Rate rounded up, at
	// least 1.
	Burst int
	// Header keys the limit by this request header's value (a device id,
	// an API key), kept as a seeded 64-bit hash so that a key's size does
	// not depend on the value's; a request without it is keyed by its
	// client address. Empty means by client address.
	Header string
	// MaxKeys bounds the keys held at once; beyond it the least recently
	// seen key is forgotten (its bucket starts full again when it
	// returns, counted in RouteLimitStats.EvictedBusy when it was still
	// refilling). Zero means 65536.
	MaxKeys int
}

// ParseRouteLimit parses the -route-limit flag's syntax:
//
//	PREFIX=RATE[,burst=N][,header=NAME][,keys=N][,name=LABEL]
//
// for example "/api/=100,burst=200,header=X-Device-Id".
func ParseRouteLimit(s string) (RouteLimit, error) {
	var rl RouteLimit
	parts := strings.Split(s, ",")
	prefix, rate, ok := strings.Cut(parts[0], "=")
	if !ok || prefix == "" || prefix[0] != '/' {
		return rl, fmt.Errorf("route limit %q: want PREFIX=RATE with PREFIX starting with /", s)
	}
	r, err := strconv.ParseFloat(rate, 64)
	if err != nil || !(r > 0) || math.IsInf(r, 0) {
		return rl, fmt.Errorf("route limit %q: rate %q is not a positive number", s, rate)
	}
	rl.Prefix, rl.Rate = prefix, r
	for _, kv := range parts[1:] {
		k, v, ok := strings.Cut(strings.TrimSpace(kv), "=")
		if !ok {
			return rl, fmt.Errorf("route limit %q: %q is not key=value", s, kv)
		}
		switch k {
		case "burst", "keys":
			n, err := strconv.Atoi(v)
			if err != nil || n <= 0 {
				return rl, fmt.Errorf("route limit %q: %s %q is not a positive integer", s, k, v)
			}
			if k == "burst" {
				rl.Burst = n
			} else {
				rl.MaxKeys = n
			}
		case "header":
			if v == "" {
				return rl, fmt.Errorf("route limit %q: empty header name", s)
			}
			rl.Header = v
		case "name":
			rl.Name = v
		default:
			return rl, fmt.Errorf("route limit %q: unknown setting %q (burst, header, keys, name)", s, k)
		}
	}
	return rl, nil
}

// String returns rl in ParseRouteLimit's syntax.
func (rl RouteLimit) String() string {
	s := rl.Prefix + "=" + strconv.FormatFloat(rl.Rate, 'g', -1, 64)
	if rl.Burst > 0 {
		s += ",burst=" + strconv.Itoa(rl.Burst)
	}
	if rl.Header != "" {
		s += ",header=" + rl.Header
	}
	if rl.MaxKeys > 0 {
		s += ",keys=" + strconv.Itoa(rl.MaxKeys)
	}
	if rl.Name != "" && rl.Name != rl.Prefix {
		s += ",name=" + rl.Name
	}
	return s
}

// limitKey is a RouteLimit's key: a hash of the header's value (seeded per
// route, so a key costs the same few bytes however long the value), or
// else the client address. Two values sharing a hash would share a bucket;
// a client able to aim at that could as well send the other value itself,
// since the header is not authenticated here.
type limitKey struct {
	ip   netip.Addr
	id   uint64
	byID bool
}

// routeLimiter is a RouteLimit in use.
type routeLimiter struct {
	name, prefix string
	prefixB      []byte
	header       string
	seed         maphash.Seed
	lim          *upstream.KeyedLimiter[limitKey]
	refused      [3]atomic.Uint64 // by limitReasons
}

// limitReasons name a refusal's reason in metrics, in routeLimiter.refused
// order.
var limitReasons = [3]string{"rate_limited", "over_burst", "key_table_full"}

func reasonIndex(r upstream.Reason) int {
	switch r {
	case upstream.ReasonOverBurst:
		return 1
	case upstream.ReasonKeyTableFull:
		return 2
	}
	return 0
}

// ValidateRouteLimits reports the first route limit that New would skip:
// one without a Prefix starting with "/" or a positive Rate, or a second
// one for the same Prefix or Name.
func ValidateRouteLimits(ls []RouteLimit) error {
	seen := map[string]bool{}
	for _, l := range ls {
		if l.Prefix == "" || l.Prefix[0] != '/' || !(l.Rate > 0) || math.IsInf(l.Rate, 0) {
			return fmt.Errorf("proxy: route limit %q: needs a prefix starting with / and a positive rate", l.String())
		}
		name := l.Name
		if name == "" {
			name = l.Prefix
		}
		if seen["p"+l.Prefix] || seen["n"+name] {
			return fmt.Errorf("proxy: two route limits for prefix %q or name %q", l.Prefix, name)
		}
		seen["p"+l.Prefix], seen["n"+name] = true, true
	}
	return nil
}

// newRouteLimiters makes the limiters of ls, longest prefix first,
// skipping (and returning) those ValidateRouteLimits refuses.
func newRouteLimiters(ls []RouteLimit) (out []*routeLimiter, skipped []error) {
	var kept []RouteLimit
	for _, l := range ls {
		if err := ValidateRouteLimits(append(kept, l)); err != nil {
			skipped = append(skipped, err)
			continue
		}
		kept = append(kept, l)
		name := l.Name
		if name == "" {
			name = l.Prefix
		}
		out = append(out, &routeLimiter{name: name, prefix: l.Prefix, prefixB: []byte(l.Prefix), header: l.Header, seed: maphash.MakeSeed(),
			lim: upstream.NewKeyedLimiter[limitKey](upstream.KeyedConfig{Rate: l.Rate, Burst: l.Burst, MaxKeys: l.MaxKeys, EvictBusy: true})})
	}
	sort.SliceStable(out, func(i, j int) bool { return len(out[i].prefix) > len(out[j].prefix) })
	return out, skipped
}

// routeFor returns the limiter of path (the longest matching prefix), or
// nil.
func (p *Proxy) routeFor(path []byte) *routeLimiter {
	for _, rl := range p.routes {
		if bytes.HasPrefix(path, rl.prefixB) {
			return rl
		}
	}
	return nil
}

// limitError is a request refused by an inbound limit: answered 429 with
// Retry-After.
type limitError struct {
	route      string // the RouteLimit's name; "" for Config.RatePerIP
	retryAfter time.Duration
}

func (e *limitError) Error() string {
	if e.route == "" {
		return errRateLimited.Error()
	}
	return "proxy: over the rate limit of route " + e.route
}

func (e *limitError) Unwrap() error { return errRateLimited }

// errRateLimited is a request over an inbound limit: answered 429.
var errRateLimited = errors.New("proxy: client over its request rate")

// retryAfterSeconds is an HTTP Retry-After value for d: whole seconds,
// rounded up, at least 1.
func retryAfterSeconds(d time.Duration) int64 {
	s := int64((d + time.Second - 1) / time.Second)
	return max(1, s)
}

// checkLimits applies the route limits, and Config.RatePerIP first when
// perIP, to req from addr. It returns nil when the request may go on.
func (p *Proxy) checkLimits(addr netip.Addr, req *http1.Request, now time.Time, perIP bool) *limitError {
	addr = ipkey.Of(addr, p.cfg.PerIPv6Prefix)
	if perIP && p.perIP != nil {
		if r, wait := p.perIP.CheckWait(addr, now, 1); r != upstream.ReasonNone {
			p.st.rateLimited.Add(1)
			return &limitError{retryAfter: wait}
		}
	}
	if len(p.routes) == 0 {
		return nil
	}
	rl := p.routeFor(req.Path)
	if rl == nil {
		return nil
	}
	k := limitKey{ip: addr}
	if rl.header != "" {
		if v := req.Header(rl.header); len(v) > 0 {
			k = limitKey{id: maphash.Bytes(rl.seed, v), byID: true}
		}
	}
	r, wait := rl.lim.CheckWait(k, now, 1)
	if r == upstream.ReasonNone {
		return nil
	}
	rl.refused[reasonIndex(r)].Add(1)
	return &limitError{route: rl.name, retryAfter: wait}
}

// RouteLimitStats is one RouteLimit's counters.
type RouteLimitStats struct {
	// Prefix is the route's prefix.
	Prefix string `json:"prefix"`
	// Keys is the keys held now.
	Keys int `json:"keys"`
	// Allowed counts the requests admitted.
	Allowed uint64 `json:"allowed"`
	// Refused counts the requests answered 429, by reason
	// ("rate_limited"; "over_burst" and "key_table_full" stay zero with
	// the proxy's settings).
	Refused map[string]uint64 `json:"refused"`
	// EvictedBusy counts keys forgotten while their bucket was still
	// refilling (the table was full): such a key's next request finds a
	// full bucket. Non-zero means MaxKeys is too small for the clients.
	EvictedBusy uint64 `json:"evicted_busy"`
}

func (rl *routeLimiter) stats() RouteLimitStats {
	ks := rl.lim.Stats()
	s := RouteLimitStats{Prefix: rl.prefix, Keys: ks.Keys, Allowed: ks.Allowed, EvictedBusy: ks.EvictedBusy,
		Refused: make(map[string]uint64, len(limitReasons))}
	for i, r := range limitReasons {
		s.Refused[r] = rl.refused[i].Load()
	}
	return s
}
