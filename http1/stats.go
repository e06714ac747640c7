package http1

import (
	"sync/atomic"
	"time"
)

// DurationBuckets are the upper bounds, in seconds, of the request duration
// histogram in Stats.
var DurationBuckets = [14]float64{0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10}

type serverStats struct {
	byClass  [6]atomic.Uint64 // index status/100; 0 unused
	refused  atomic.Uint64
	timeouts atomic.Uint64
	durCount [len(DurationBuckets) + 1]atomic.Uint64
	durSumUS atomic.Uint64
	detached atomic.Int64 // requests detached and not yet finished
}

func (st *serverStats) countStatus(code int) {
	if c := code / 100; c >= 1 && c <= 5 {
		st.byClass[c].Add(1)
	}
}

func (st *serverStats) observe(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(DurationBuckets) && sec > DurationBuckets[i] {
		i++
	}
	st.durCount[i].Add(1)
	st.durSumUS.Add(uint64(d / time.Microsecond))
}

// Stats are the server's request counters.
type Stats struct {
	// Requests counts responses by status class: Requests[2] is 2xx.
	Requests [6]uint64
	// Refused counts malformed or over-limit requests answered 4xx/5xx
	// and closed.
	Refused uint64
	// HeaderTimeouts counts requests cut by the header or body timeout
	// (answered 408).
	HeaderTimeouts uint64
	// DurationCounts holds per bucket of DurationBuckets, plus a final +Inf
	// bucket, how many requests took that long from head parsed to
	// response handed to the engine (not cumulative).
	DurationCounts [len(DurationBuckets) + 1]uint64
	// DurationSum is the summed duration of all requests.
	DurationSum time.Duration
	// Detached is how many requests are detached (Ctx.Detach) and not yet
	// finished: answers the server waits for without a worker.
	Detached int64
}

// Stats returns a snapshot of the server's request counters.
func (s *Server) Stats() Stats {
	var out Stats
	for i := range out.Requests {
		out.Requests[i] = s.stats.byClass[i].Load()
	}
	out.Refused = s.stats.refused.Load()
	out.HeaderTimeouts = s.stats.timeouts.Load()
	for i := range out.DurationCounts {
		out.DurationCounts[i] = s.stats.durCount[i].Load()
	}
	out.DurationSum = time.Duration(s.stats.durSumUS.Load()) * time.Microsecond
	out.Detached = s.stats.detached.Load()
	return out
}
