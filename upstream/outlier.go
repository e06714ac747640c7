package upstream

import (
	"sync"
	"time"
)

// Result is the outcome of one request to a host, as outlier detection
// counts it.
type Result uint8

const (
	// ResultSuccess is a response that is not a server error (a 4xx is the
	// client's fault, not the host's).
	ResultSuccess Result = iota
	// ResultServerError is a 5xx response other than 502, 503 and 504.
	ResultServerError
	// ResultGatewayError is a 502, 503 or 504 response.
	ResultGatewayError
	// ResultConnectFailure is no response at all: the connection was
	// refused, reset or timed out. It counts as a gateway failure and as a
	// 5xx.
	ResultConnectFailure
	numResults
)

var resultNames = [...]string{"success", "server_error", "gateway_error", "connect_failure"}

// String returns the snake_case name used in metrics and logs.
func (r Result) String() string {
	if int(r) < len(resultNames) {
		return resultNames[r]
	}
	return "unknown"
}

// ResultFromStatus classifies an HTTP status code.
func ResultFromStatus(status int) Result {
	switch {
	case status == 502 || status == 503 || status == 504:
		return ResultGatewayError
	case status >= 500 && status <= 599:
		return ResultServerError
	}
	return ResultSuccess
}

// Ejection says why outlier detection ejected a host.
type Ejection uint8

const (
	// EjectNone is no ejection.
	EjectNone Ejection = iota
	// EjectConsecutive5xx is OutlierConfig.Consecutive5xx server errors,
	// gateway errors or connect failures in a row.
	EjectConsecutive5xx
	// EjectConsecutiveGatewayFailure is OutlierConfig.ConsecutiveGatewayFailure
	// gateway errors or connect failures in a row.
	EjectConsecutiveGatewayFailure
	// EjectFailurePercentage is a host failing at least
	// OutlierConfig.FailurePercentageThreshold percent of at least
	// FailurePercentageRequestVolume requests within one Interval.
	EjectFailurePercentage
	numEjections
)

var ejectionNames = [...]string{"none", "consecutive_5xx", "consecutive_gateway_failure", "failure_percentage"}

// String returns the snake_case name used in metrics and logs.
func (e Ejection) String() string {
	if int(e) < len(ejectionNames) {
		return ejectionNames[e]
	}
	return "unknown"
}

// OutlierConfig configures an OutlierDetector. The zero value gives Envoy's
// defaults, with every detector enforced (see each field).
type OutlierConfig struct {
	// Consecutive5xx ejects a host after this many failures in a row of any
	// kind (5xx, gateway error, connect failure). Zero means 5; negative
	// disables it.
	Consecutive5xx int
	// ConsecutiveGatewayFailure ejects a host after this many gateway
	// errors (502, 503, 504) or connect failures in a row. Zero means 5;
	// negative disables it. (Envoy detects this by default but enforces it
	// only when asked; here it is enforced.)
	ConsecutiveGatewayFailure int
	// FailurePercentageThreshold ejects a host whose failures reach this
	// percentage of its requests within one Interval, once it has had
	// FailurePercentageRequestVolume of them. Zero means 85; negative
	// disables it. (Envoy enforces it only when asked; here it is on.)
	FailurePercentageThreshold int
	// FailurePercentageRequestVolume is the requests a host needs within an
	// Interval before its failure percentage counts. Zero means 50.
	FailurePercentageRequestVolume int
	// FailurePercentageMinimumHosts is the hosts the detector must have for
	// failure percentage to apply at all. Zero means 5.
	FailurePercentageMinimumHosts int
	// Interval is the window for failure percentage, and the period after
	// which a host that stays un-ejected has its ejection multiplier
	// lowered by one. Zero means 10s.
	Interval time.Duration
	// BaseEjectionTime is the first ejection's length; the k-th ejection in
	// a row lasts k times as long. Zero means 30s.
	BaseEjectionTime time.Duration
	// MaxEjectionTime caps an ejection's length. Zero means 300s.
	MaxEjectionTime time.Duration
	// MaxEjectionPercent bounds the hosts ejected at once, as a percentage
	// of all hosts; one host can always be ejected. Zero means 10.
	MaxEjectionPercent int
}

// Default OutlierConfig values (Envoy's).
const (
	DefaultConsecutive5xx                 = 5
	DefaultConsecutiveGatewayFailure      = 5
	DefaultFailurePercentageThreshold     = 85
	DefaultFailurePercentageRequestVolume = 50
	DefaultFailurePercentageMinimumHosts  = 5
	DefaultOutlierInterval                = 10 * time.Second
	DefaultBaseEjectionTime               = 30 * time.Second
	DefaultMaxEjectionTime                = 300 * time.Second
	DefaultMaxEjectionPercent             = 10
)

func (c OutlierConfig) withDefaults() OutlierConfig {
	def := func(v *int, d int) {
		if *v == 0 {
			*v = d
		}
	}
	def(&c.Consecutive5xx, DefaultConsecutive5xx)
	def(&c.ConsecutiveGatewayFailure, DefaultConsecutiveGatewayFailure)
	def(&c.FailurePercentageThreshold, DefaultFailurePercentageThreshold)
	def(&c.FailurePercentageRequestVolume, DefaultFailurePercentageRequestVolume)
	def(&c.FailurePercentageMinimumHosts, DefaultFailurePercentageMinimumHosts)
	def(&c.MaxEjectionPercent, DefaultMaxEjectionPercent)
	if c.Interval <= 0 {
		c.Interval = DefaultOutlierInterval
	}
	if c.BaseEjectionTime <= 0 {
		c.BaseEjectionTime = DefaultBaseEjectionTime
	}
	if c.MaxEjectionTime <= 0 {
		c.MaxEjectionTime = DefaultMaxEjectionTime
	}
	c.MaxEjectionTime = max(c.MaxEjectionTime, c.BaseEjectionTime)
	return c
}

// OutlierStats counts what an OutlierDetector did, for metrics.
type OutlierStats struct {
	// Ejected is the hosts ejected now.
	Ejected int
	// Consecutive5xx, ConsecutiveGatewayFailure and FailurePercentage count
	// ejections by Ejection.
	Consecutive5xx, ConsecutiveGatewayFailure, FailurePercentage uint64
	// Overflow counts outliers detected but not ejected because
	// MaxEjectionPercent of the hosts were already out.
	Overflow uint64
}

// Ejections returns the ejections counted for e.
func (s OutlierStats) Ejections(e Ejection) uint64 {
	switch e {
	case EjectConsecutive5xx:
		return s.Consecutive5xx
	case EjectConsecutiveGatewayFailure:
		return s.ConsecutiveGatewayFailure
	case EjectFailurePercentage:
		return s.FailurePercentage
	}
	return 0
}

// OutlierDetector is passive health checking as a pure state machine:
// callers Record each request's Result against hosts 0..n-1 (the indexes of
// a HostSet), and it ejects hosts that fail (consecutive 5xx, consecutive
// gateway failures, failure percentage), for BaseEjectionTime times the
// number of recent ejections, capped at MaxEjectionTime, never more than
// MaxEjectionPercent of the hosts at once. A host returns when its time is
// up; nothing runs in the background: Record, Ejected and Apply notice
// expired ejections when called with a later time. Detection runs inline on
// Record, not in periodic sweeps as in Envoy, so an outlier is ejected on
// the request that proves it.
//
// An OutlierDetector is safe for concurrent use (one mutex).
type OutlierDetector struct {
	cfg        OutlierConfig
	maxEjected int

	mu      sync.Mutex // guards everything below
	clock   monoClock
	hosts   []outlierHost
	ejected int
	stats   OutlierStats
}

type outlierHost struct {
	cons5xx, consGateway int
	winStart             int64 // start of the failure percentage window
	winTotal, winFailed  int
	ejected              bool
	until                int64 // end of the ejection, when ejected
	multiplier           int64 // ejections not yet forgiven
	calmSince            int64 // last un-ejection or forgiveness
}

// NewOutlierDetector returns a detector for n hosts, none ejected.
func NewOutlierDetector(n int, cfg OutlierConfig) *OutlierDetector {
	cfg = cfg.withDefaults()
	return &OutlierDetector{
		cfg:        cfg,
		maxEjected: max(1, n*cfg.MaxEjectionPercent/100),
		hosts:      make([]outlierHost, n),
	}
}

// Record counts one request's result on host at now and returns the
// ejection it caused, if any (EjectNone otherwise, and always for a host
// already ejected: its late results are ignored).
func (o *OutlierDetector) Record(host int, r Result, now time.Time) Ejection {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.clock.nanos(now)
	h := &o.hosts[host]
	o.refresh(h, t)
	if h.ejected {
		return EjectNone
	}
	if t-h.winStart >= int64(o.cfg.Interval) || h.winTotal == 0 {
		h.winStart, h.winTotal, h.winFailed = t, 0, 0
	}
	h.winTotal++
	switch r {
	case ResultSuccess:
		h.cons5xx, h.consGateway = 0, 0
	case ResultServerError:
		h.cons5xx++
		h.consGateway = 0
		h.winFailed++
	default: // gateway error, connect failure
		h.cons5xx++
		h.consGateway++
		h.winFailed++
	}
	why := EjectNone
	switch {
	case o.cfg.ConsecutiveGatewayFailure > 0 && h.consGateway >= o.cfg.ConsecutiveGatewayFailure:
		why = EjectConsecutiveGatewayFailure
	case o.cfg.Consecutive5xx > 0 && h.cons5xx >= o.cfg.Consecutive5xx:
		why = EjectConsecutive5xx
	case o.cfg.FailurePercentageThreshold > 0 && len(o.hosts) >= o.cfg.FailurePercentageMinimumHosts &&
		h.winTotal >= o.cfg.FailurePercentageRequestVolume &&
		h.winFailed*100 >= o.cfg.FailurePercentageThreshold*h.winTotal:
		why = EjectFailurePercentage
	}
	if why == EjectNone {
		return EjectNone
	}
	// Start counting afresh whether or not the host goes: an overflowing
	// outlier is counted once per run of failures, not on every request.
	h.cons5xx, h.consGateway, h.winTotal, h.winFailed = 0, 0, 0, 0
	if o.ejected >= o.maxEjected {
		// Some may be due back: count them out (rare, so O(hosts) is fine).
		for i := range o.hosts {
			o.refresh(&o.hosts[i], t)
		}
	}
	if o.ejected >= o.maxEjected {
		o.stats.Overflow++
		return EjectNone
	}
	maxMult := (int64(o.cfg.MaxEjectionTime) + int64(o.cfg.BaseEjectionTime) - 1) / int64(o.cfg.BaseEjectionTime)
	h.multiplier = min(h.multiplier+1, maxMult)
	h.ejected = true
	h.until = t + min(h.multiplier*int64(o.cfg.BaseEjectionTime), int64(o.cfg.MaxEjectionTime))
	o.ejected++
	switch why {
	case EjectConsecutive5xx:
		o.stats.Consecutive5xx++
	case EjectConsecutiveGatewayFailure:
		o.stats.ConsecutiveGatewayFailure++
	case EjectFailurePercentage:
		o.stats.FailurePercentage++
	}
	return why
}

// refresh returns h if its ejection is over, and forgives one ejection per
// Interval it has stayed in.
func (o *OutlierDetector) refresh(h *outlierHost, t int64) {
	if h.ejected {
		if t < h.until {
			return
		}
		h.ejected = false
		o.ejected--
		h.calmSince = h.until
	}
	if h.multiplier > 0 && t > h.calmSince {
		k := (t - h.calmSince) / int64(o.cfg.Interval)
		h.multiplier = max(0, h.multiplier-k)
		h.calmSince += k * int64(o.cfg.Interval)
	}
}

// Ejected reports whether host is ejected at now.
func (o *OutlierDetector) Ejected(host int, now time.Time) bool {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := &o.hosts[host]
	o.refresh(h, o.clock.nanos(now))
	return h.ejected
}

// EjectedUntil returns when host's ejection ends, and false if it is not
// ejected at now.
func (o *OutlierDetector) EjectedUntil(host int, now time.Time) (time.Time, bool) {
	o.mu.Lock()
	defer o.mu.Unlock()
	h := &o.hosts[host]
	t := o.clock.nanos(now)
	o.refresh(h, t)
	if !h.ejected {
		return time.Time{}, false
	}
	return now.Add(time.Duration(h.until - t)), true
}

// Apply copies every host's ejection at now to set's ejected flags (set
// must have the detector's hosts, in the same order). Call it after a
// Record that ejected and on a timer (each second, say) so hosts whose time
// is up go back into rotation.
func (o *OutlierDetector) Apply(set *HostSet, now time.Time) {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.clock.nanos(now)
	for i := range o.hosts {
		o.refresh(&o.hosts[i], t)
		set.SetEjected(i, o.hosts[i].ejected)
	}
}

// Stats returns the counters and the hosts ejected at now.
func (o *OutlierDetector) Stats(now time.Time) OutlierStats {
	o.mu.Lock()
	defer o.mu.Unlock()
	t := o.clock.nanos(now)
	for i := range o.hosts {
		o.refresh(&o.hosts[i], t)
	}
	s := o.stats
	s.Ejected = o.ejected
	return s
}
