package admin

import (
	"strconv"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
)

// collector turns a Source's Stats into constant metrics at scrape time. It
// keeps nothing per connection and counts nothing per event.
type collector struct {
	src      Source
	overload func() float64
	memory   func() uint64

	accepted     *prometheus.Desc
	active       *prometheus.Desc
	byState      *prometheus.Desc
	closed       *prometheus.Desc
	details      *prometheus.Desc
	duration     *prometheus.Desc
	bytesIn      *prometheus.Desc
	bytesOut     *prometheus.Desc
	queued       *prometheus.Desc
	watermark    *prometheus.Desc
	lingers      *prometheus.Desc
	workerQueue  *prometheus.Desc
	workersBusy  *prometheus.Desc
	rejected     *prometheus.Desc
	idleTimeout  *prometheus.Desc
	overloadDesc *prometheus.Desc
	draining     *prometheus.Desc
	loopConns    *prometheus.Desc
	loopAccepted *prometheus.Desc
	loopBusy     *prometheus.Desc
	loopHost     *prometheus.Desc
	memPerConn   *prometheus.Desc
	ringLoops    *prometheus.Desc
	ringSends    *prometheus.Desc
	ringRecvs    *prometheus.Desc

	// Label values, made once so a scrape does not convert them again.
	states  []engine.State
	sNames  []string
	reasons []engine.CloseReason
	rNames  []string
	bounds  []engine.Bound
	bNames  []string
	lingerO []engine.LingerOutcome
	lNames  []string
}

var _ prometheus.Collector = (*collector)(nil)

func newCollector(ns string, src Source, overload func() float64, memory func() uint64) *collector {
	d := func(name, help string, labels ...string) *prometheus.Desc {
		return prometheus.NewDesc(prometheus.BuildFQName(ns, "", name), help, labels, nil)
	}
	c := &collector{
		src: src, overload: overload, memory: memory,
		accepted:     d("connections_accepted_total", "Connections admitted since start."),
		active:       d("connections_active", "Open connections."),
		byState:      d("connections", "Open connections by state.", "state"),
		closed:       d("connections_closed_total", "Closed connections by close reason; limit_reached includes connections refused at accept.", "reason"),
		details:      d("connection_close_details_total", "Closed connections whose protocol gave a close detail (a WebSocket close code, say), by protocol, close reason and detail.", "proto", "reason", "detail"),
		duration:     d("connection_duration_seconds", "Lifetime of closed connections."),
		bytesIn:      d("received_bytes_total", "Payload bytes read from connections."),
		bytesOut:     d("sent_bytes_total", "Payload bytes written to connections."),
		queued:       d("queued_write_bytes", "Output bytes queued over all connections."),
		watermark:    d("write_watermark_hits_total", "Writes that found a connection's queue over its high watermark."),
		lingers:      d("connection_lingers_total", "Lingering closes (flush, shut the write side, read and discard until the peer's end of stream) that ended, by outcome: eof, or bytes and timeout (bound hit, reset), error, aborted.", "outcome"),
		workerQueue:  d("worker_queue_length", "Tasks waiting for a worker."),
		workersBusy:  d("workers_busy", "Workers running a task."),
		rejected:     d("admission_rejected_total", "Connections refused at accept, by admission bound.", "bound"),
		idleTimeout:  d("idle_timeout_seconds", "Effective idle timeout; 0 when disabled."),
		overloadDesc: d("overload_state", "Overload state: 0 normal, higher under load shedding."),
		draining:     d("draining", "1 while the engine drains for shutdown."),
		loopConns:    d("loop_connections", "Open connections per event loop.", "loop"),
		loopAccepted: d("loop_connections_accepted_total", "Connections handed to each event loop.", "loop"),
		loopBusy:     d("loop_busy_ratio", "Share of its last load window (about 250 ms) each loop's goroutine was awake, folded loops' work included; 0 while folded.", "loop"),
		loopHost:     d("loop_host", "Index of the loop whose goroutine runs each loop: its own, or 0 while folded.", "loop"),
		memPerConn:   d("memory_per_connection_bytes", "Process resident memory divided by open connections; 0 with none."),
		ringLoops:    d("io_uring_loops", "Event loops waiting and sending through io_uring (engine Config.IOUring, -io-uring); 0: every loop on epoll (off, or the kernel refused)."),
		ringSends:    d("io_uring_sends_total", "Sends submitted through the loops' io_urings."),
		ringRecvs:    d("io_uring_recvs_total", "Reads submitted through the loops' io_urings."),
	}
	for _, s := range engine.States() {
		if s == engine.StateClosed {
			continue // an open connection is never closed: always 0
		}
		c.states = append(c.states, s)
		c.sNames = append(c.sNames, s.String())
	}
	for _, r := range engine.CloseReasons() {
		c.reasons = append(c.reasons, r)
		c.rNames = append(c.rNames, r.String())
	}
	for _, b := range engine.Bounds() {
		c.bounds = append(c.bounds, b)
		c.bNames = append(c.bNames, b.String())
	}
	for _, o := range engine.LingerOutcomes() {
		c.lingerO = append(c.lingerO, o)
		c.lNames = append(c.lNames, o.String())
	}
	return c
}

// Describe sends every descriptor.
func (c *collector) Describe(ch chan<- *prometheus.Desc) {
	for _, d := range []*prometheus.Desc{c.accepted, c.active, c.byState, c.closed, c.details, c.duration,
		c.bytesIn, c.bytesOut, c.queued, c.watermark, c.lingers, c.workerQueue, c.workersBusy, c.rejected,
		c.idleTimeout, c.overloadDesc, c.draining, c.loopConns, c.loopAccepted, c.loopBusy, c.loopHost, c.memPerConn,
		c.ringLoops, c.ringSends, c.ringRecvs} {
		ch <- d
	}
}

// Collect takes one Stats snapshot and sends it as constant metrics.
func (c *collector) Collect(ch chan<- prometheus.Metric) {
	s := c.src.Stats()
	counter := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.CounterValue, v, lv...)
	}
	gauge := func(d *prometheus.Desc, v float64, lv ...string) {
		ch <- prometheus.MustNewConstMetric(d, prometheus.GaugeValue, v, lv...)
	}
	counter(c.accepted, float64(s.Accepted))
	gauge(c.active, float64(s.Active))
	for i, st := range c.states {
		gauge(c.byState, float64(at(s.ByState, st)), c.sNames[i])
	}
	for i, r := range c.reasons {
		counter(c.closed, float64(at(s.Closed, r)), c.rNames[i])
	}
	for _, d := range s.Details {
		counter(c.details, float64(d.Count), d.Protocol, d.Reason.String(), d.Detail)
	}
	count, sum, buckets := durationHistogram(&s)
	ch <- prometheus.MustNewConstHistogram(c.duration, count, sum, buckets)
	counter(c.bytesIn, float64(s.BytesIn))
	counter(c.bytesOut, float64(s.BytesOut))
	gauge(c.queued, float64(s.QueuedBytes))
	counter(c.watermark, float64(s.WatermarkHits))
	gauge(c.ringLoops, float64(s.IOUringLoops))
	counter(c.ringSends, float64(s.RingSends))
	counter(c.ringRecvs, float64(s.RingRecvs))
	for i, o := range c.lingerO {
		counter(c.lingers, float64(at(s.Lingers, o)), c.lNames[i])
	}
	gauge(c.workerQueue, float64(s.WorkerQueue))
	gauge(c.workersBusy, float64(s.WorkersBusy))
	for i, b := range c.bounds {
		counter(c.rejected, float64(at(s.Rejected, b)), c.bNames[i])
	}
	gauge(c.idleTimeout, idleSeconds(s.IdleTimeout))
	gauge(c.overloadDesc, c.overloadState())
	draining := 0.0
	if c.src.Draining() {
		draining = 1
	}
	gauge(c.draining, draining)
	for i, l := range s.Loops {
		name := strconv.Itoa(i)
		gauge(c.loopConns, float64(l.Conns), name)
		counter(c.loopAccepted, float64(l.Accepted), name)
		gauge(c.loopBusy, l.Busy, name)
		gauge(c.loopHost, float64(l.Host), name)
	}
	gauge(c.memPerConn, perConn(c.memory(), s.Active))
}

func (c *collector) overloadState() float64 {
	if c.overload == nil {
		return 0
	}
	return c.overload()
}

// durationHistogram converts the engine's per-bucket counts into the
// cumulative buckets Prometheus wants.
func durationHistogram(s *engine.Stats) (count uint64, sum float64, buckets map[float64]uint64) {
	buckets = make(map[float64]uint64, len(engine.DurationBuckets))
	for i, le := range engine.DurationBuckets {
		count += s.DurationCounts[i]
		buckets[le] = count
	}
	for _, n := range s.DurationCounts[len(engine.DurationBuckets):] {
		count += n // the +Inf bucket
	}
	return count, s.DurationSum.Seconds(), buckets
}

// at returns counts[i], or 0 past its end: Stats' per-state, per-reason
// and per-bound counts are slices indexed by those enums, and a Source
// other than the engine may leave them short or nil.
func at[T int64 | uint64, I ~uint8](counts []T, i I) T {
	if int(i) >= len(counts) {
		return 0
	}
	return counts[i]
}

// perConn divides total bytes over n connections; 0 with none.
func perConn(total uint64, n int64) float64 {
	if n <= 0 {
		return 0
	}
	return float64(total) / float64(n)
}
