package proxy

import (
	"strconv"
	"sync/atomic"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/upstream"
)

// Stats is a snapshot of the proxy's counters.
type Stats struct {
	// Requests counts request heads forwarded; Responses the responses
	// passed on whole; Errors the requests answered by the proxy itself
	// (502, 503, 504) or cut short; BadRequests the malformed ones.
	Requests, Responses, Errors, BadRequests uint64
	// Upgrades counts WebSocket (or other) upgrades spliced.
	Upgrades uint64
	// Active is the requests in progress; Tunnels the spliced halves open
	// (two per upgraded pair).
	Active, Tunnels int64
	// Status counts responses sent to clients by class (index 1 to 5).
	Status [6]uint64
	// Failures counts the proxy's own answers by upstream.Failure.
	Failures map[string]uint64
	// RateLimited counts the requests answered 429 for
	// Config.RatePerIP (also in Errors).
	RateLimited uint64
	// Interim counts the interim (1xx) responses passed on to clients;
	// InterimDropped those dropped by Config.MaxInterim (all but 100
	// Continue by default) or MaxInterimBytes. Neither counts the interim
	// responses to an HTTP/1.0 client, which gets none.
	Interim, InterimDropped uint64
	// HeadLimits counts the requests and responses over a head limit, by
	// HeadLimit name.
	HeadLimits map[string]uint64
	// TrailersDropped counts the trailer fields not passed on, by
	// direction ("request": a client's to the backend; "response": a
	// backend's to the client) and then reason ("hop_by_hop": hop-by-hop
	// or named in the head's Connection field; "control": a field that
	// must not come in a trailer section, such as Host, Content-Length,
	// Authorization or X-Forwarded-For; "no_trailer_section": the client
	// is HTTP/1.0 and its response carries none, so each of the backend's
	// fields is dropped for that, whatever it is).
	TrailersDropped map[string]map[string]uint64
	// Routes are the Config.RouteLimits' counters, by route name (their
	// 429s are also in Errors).
	Routes map[string]RouteLimitStats
}

// Stats returns the proxy's counters.
func (p *Proxy) Stats() Stats {
	s := Stats{Requests: p.st.requests.Load(), Responses: p.st.responses.Load(), Errors: p.st.errors.Load(),
		BadRequests: p.st.badRequests.Load(), Upgrades: p.st.upgrades.Load(), Active: p.st.active.Load(),
		Tunnels: p.st.splices.Load(), Failures: map[string]uint64{}, RateLimited: p.st.rateLimited.Load(),
		Interim: p.st.interim.Load(), InterimDropped: p.st.interimDropped.Load()}
	if len(p.routes) > 0 {
		s.Routes = make(map[string]RouteLimitStats, len(p.routes))
		for _, rl := range p.routes {
			s.Routes[rl.name] = rl.stats()
		}
	}
	for i := range s.Status {
		s.Status[i] = p.st.status[i].Load()
	}
	s.HeadLimits = make(map[string]uint64, numHeadLimits)
	for l := HeadLimit(0); l < numHeadLimits; l++ {
		s.HeadLimits[l.String()] = p.st.headLimits[l].Load()
	}
	s.TrailersDropped = make(map[string]map[string]uint64, numTrailerDirs)
	for dir := range numTrailerDirs {
		m := make(map[string]uint64, numTrailerDrops-1)
		for why := keepTrailer + 1; why < numTrailerDrops; why++ {
			m[why.String()] = p.st.trailersDropped[dir][why].Load()
		}
		s.TrailersDropped[trailerDirNames[dir]] = m
	}
	p.st.failures.Range(func(k, v any) bool {
		s.Failures[k.(upstream.Failure).String()] = v.(*atomic.Uint64).Load()
		return true
	})
	return s
}

// Collector returns a Prometheus collector of the proxy's counters
// (namespace empty means "warren"):
//
//	warren_proxy_requests_total                counter  requests forwarded
//	warren_proxy_responses_total{class}        counter  responses to clients by status class
//	warren_proxy_errors_total{reason}          counter  requests the proxy answered itself, by upstream failure
//	warren_proxy_bad_requests_total            counter  malformed requests (4xx, closed)
//	warren_proxy_rate_limited_total            counter  requests answered 429 for the per-IP rate limit
//	warren_proxy_route_limited_total{route,reason} counter requests answered 429 for a route limit (Config.RouteLimits)
//	warren_proxy_route_limit_allowed_total{route} counter requests a route limit admitted
//	warren_proxy_route_limit_keys{route}       gauge    keys held in a route limit's table
//	warren_proxy_route_limit_evicted_busy_total{route} counter keys forgotten while their bucket refilled (table full)
//	warren_proxy_upgrades_total                counter  upgrades spliced
//	warren_proxy_interim_total                 counter  interim (1xx) responses passed on to clients
//	warren_proxy_interim_dropped_total         counter  interim responses dropped by Config.MaxInterim (all but 100 Continue by default) or MaxInterimBytes
//	warren_proxy_head_limit_total{limit}       counter  requests and responses over a head limit (HeadLimit)
//	warren_proxy_trailers_dropped_total{direction,reason} counter trailer fields not passed on (Stats.TrailersDropped)
//	warren_proxy_requests_active               gauge    requests in progress
//	warren_proxy_tunnels_active                gauge    spliced connection halves open
//
// The cluster's own metrics come from upstream.Cluster.Collector.
func (p *Proxy) Collector(namespace string) prometheus.Collector {
	if namespace == "" {
		namespace = "warren"
	}
	ns := namespace + "_proxy_"
	return &collector{p: p,
		requests:  prometheus.NewDesc(ns+"requests_total", "Requests forwarded.", nil, nil),
		responses: prometheus.NewDesc(ns+"responses_total", "Responses to clients by status class.", []string{"class"}, nil),
		errors:    prometheus.NewDesc(ns+"errors_total", "Requests the proxy answered itself, by upstream failure.", []string{"reason"}, nil),
		bad:       prometheus.NewDesc(ns+"bad_requests_total", "Malformed requests, answered 4xx and closed.", nil, nil),
		limited:   prometheus.NewDesc(ns+"rate_limited_total", "Requests answered 429 for the per-IP rate limit.", nil, nil),
		upgrades:  prometheus.NewDesc(ns+"upgrades_total", "Upgrades spliced.", nil, nil),
		interim:   prometheus.NewDesc(ns+"interim_total", "Interim (1xx) responses passed on to clients.", nil, nil),
		headLimit: prometheus.NewDesc(ns+"head_limit_total", "Requests and responses over a head limit, by limit.", []string{"limit"}, nil),
		trailersDropped: prometheus.NewDesc(ns+"trailers_dropped_total",
			"Trailer fields not passed on, by direction (request, response) and reason (hop_by_hop, control, no_trailer_section).",
			[]string{"direction", "reason"}, nil),
		interimDropped: prometheus.NewDesc(ns+"interim_dropped_total",
			"Interim responses not passed on: other than 100 Continue without -max-interim, or over the per-request count or byte bound.", nil, nil),
		routeLimited: prometheus.NewDesc(ns+"route_limited_total", "Requests answered 429 for a route limit, by route and reason.",
			[]string{"route", "reason"}, nil),
		routeAllowed: prometheus.NewDesc(ns+"route_limit_allowed_total", "Requests a route limit admitted.", []string{"route"}, nil),
		routeKeys:    prometheus.NewDesc(ns+"route_limit_keys", "Keys held in a route limit's table.", []string{"route"}, nil),
		routeEvicted: prometheus.NewDesc(ns+"route_limit_evicted_busy_total",
			"Keys a full route limit table forgot while their bucket was refilling.", []string{"route"}, nil),
		active:  prometheus.NewDesc(ns+"requests_active", "Requests in progress.", nil, nil),
		tunnels: prometheus.NewDesc(ns+"tunnels_active", "Spliced connection halves open.", nil, nil),
	}
}

type collector struct {
	p                                                                    *Proxy
	requests, responses, errors, bad, limited, upgrades, active, tunnels *prometheus.Desc
	routeLimited, routeAllowed, routeKeys, routeEvicted                  *prometheus.Desc
	interim, interimDropped, headLimit, trailersDropped                  *prometheus.Desc
}

func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.requests, c.responses, c.errors, c.bad, c.limited, c.upgrades, c.active, c.tunnels,
		c.routeLimited, c.routeAllowed, c.routeKeys, c.routeEvicted, c.interim, c.interimDropped, c.headLimit, c.trailersDropped} {
		ch <- d
	}
}

func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.p.Stats()
	ch <- prometheus.MustNewConstMetric(c.requests, prometheus.CounterValue, float64(s.Requests))
	for k := 1; k <= 5; k++ {
		ch <- prometheus.MustNewConstMetric(c.responses, prometheus.CounterValue, float64(s.Status[k]), strconv.Itoa(k)+"xx")
	}
	for _, f := range upstream.Failures() {
		ch <- prometheus.MustNewConstMetric(c.errors, prometheus.CounterValue, float64(s.Failures[f.String()]), f.String())
	}
	ch <- prometheus.MustNewConstMetric(c.bad, prometheus.CounterValue, float64(s.BadRequests))
	ch <- prometheus.MustNewConstMetric(c.limited, prometheus.CounterValue, float64(s.RateLimited))
	ch <- prometheus.MustNewConstMetric(c.upgrades, prometheus.CounterValue, float64(s.Upgrades))
	ch <- prometheus.MustNewConstMetric(c.interim, prometheus.CounterValue, float64(s.Interim))
	ch <- prometheus.MustNewConstMetric(c.interimDropped, prometheus.CounterValue, float64(s.InterimDropped))
	for l := HeadLimit(0); l < numHeadLimits; l++ {
		ch <- prometheus.MustNewConstMetric(c.headLimit, prometheus.CounterValue, float64(s.HeadLimits[l.String()]), l.String())
	}
	for _, dir := range trailerDirNames {
		for why := keepTrailer + 1; why < numTrailerDrops; why++ {
			ch <- prometheus.MustNewConstMetric(c.trailersDropped, prometheus.CounterValue,
				float64(s.TrailersDropped[dir][why.String()]), dir, why.String())
		}
	}
	ch <- prometheus.MustNewConstMetric(c.active, prometheus.GaugeValue, float64(s.Active))
	ch <- prometheus.MustNewConstMetric(c.tunnels, prometheus.GaugeValue, float64(s.Tunnels))
	for name, r := range s.Routes {
		for _, why := range limitReasons {
			ch <- prometheus.MustNewConstMetric(c.routeLimited, prometheus.CounterValue, float64(r.Refused[why]), name, why)
		}
		ch <- prometheus.MustNewConstMetric(c.routeAllowed, prometheus.CounterValue, float64(r.Allowed), name)
		ch <- prometheus.MustNewConstMetric(c.routeKeys, prometheus.GaugeValue, float64(r.Keys), name)
		ch <- prometheus.MustNewConstMetric(c.routeEvicted, prometheus.CounterValue, float64(r.EvictedBusy), name)
	}
}
