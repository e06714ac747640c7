package engine

import (
	"cmp"
	"slices"
	"sync/atomic"
	"time"
)

// DurationBuckets are the upper bounds, in seconds, of the connection
// length histogram in Stats.
var DurationBuckets = [10]float64{0.01, 0.1, 1, 10, 60, 300, 1800, 3600, 6 * 3600, 24 * 3600}

// loopStats are one loop's counters. Loops (and writers on other
// goroutines) add to them with atomics; Stats sums them on demand, so
// nothing is shared on the hot path between loops.
type loopStats struct {
	accepted      atomic.Uint64
	closed        [numReasons]atomic.Uint64
	rejected      [numBounds]atomic.Uint64
	bytesIn       atomic.Uint64
	bytesOut      atomic.Uint64
	watermarkHits atomic.Uint64
	ringSends     atomic.Uint64 // io_uring sends submitted (Config.IOUring)
	ringRecvs     atomic.Uint64 // io_uring recvs submitted
	deferred      atomic.Int64  // output bytes the loop's ring holds for the round's end (outQueue.deferred)
	conns         atomic.Int64
	states        [numStates]atomic.Int64
	durCounts     [len(DurationBuckets) + 1]atomic.Uint64
	durSumMicros  atomic.Uint64
	busy          atomic.Uint32 // share of the last load window awake, per mille
	host          atomic.Int32  // the loop whose goroutine runs this one
	_             [64]byte      // keep loops' counters on separate cache lines
}

func (s *loopStats) observeDuration(d time.Duration) {
	sec := d.Seconds()
	i := 0
	for i < len(DurationBuckets) && sec > DurationBuckets[i] {
		i++
	}
	s.durCounts[i].Add(1)
	s.durSumMicros.Add(uint64(d / time.Microsecond))
}

// LoopStats are one loop's figures.
type LoopStats struct {
	// Conns is the number of connections the loop holds.
	Conns int64
	// Accepted counts connections handed to the loop.
	Accepted uint64
	// Busy is the share of its last load window (250 ms, closed at the
	// first wake-up after that) the loop's goroutine was awake, 0 to 1,
	// counting folded loops' work; 0 while the loop is folded (see
	// Config.Loops).
	Busy float64
	// Host is the index of the loop whose goroutine runs this one: its own
	// unless it is folded into another.
	Host int
}

// Stats is a snapshot of an engine's counters, summed over its loops.
type Stats struct {
	// Accepted counts connections admitted since start.
	Accepted uint64
	// Active is the number of open connections.
	Active int64
	// ByState counts open connections by State: index it with a State
	// (len is len(States())).
	ByState []int64
	// Closed counts closed connections by CloseReason: index it with one
	// (len is len(CloseReasons())+1; ReasonNone stays 0).
	Closed []uint64
	// Rejected counts connections refused at accept by Bound: index it
	// with one (len is len(Bounds())).
	Rejected []uint64
	// Details counts closes that carried a protocol's CloseDetail, by
	// protocol, reason and detail, sorted.
	Details []DetailCount
	// BytesIn and BytesOut count payload bytes read and written.
	BytesIn, BytesOut uint64
	// WatermarkHits counts writes that found a queue over its high watermark.
	WatermarkHits uint64
	// IOUringLoops is the number of loops waiting and sending through an
	// io_uring (Config.IOUring; 0 without it, off Linux, or when the
	// kernel refused and the loops fell back to epoll).
	IOUringLoops int
	// RingSends and RingRecvs count the sends and the reads submitted
	// through the loops' io_urings.
	RingSends, RingRecvs uint64
	// Lingers counts the lingering closes (Conn.CloseLinger) that ended,
	// by how they ended: index it with a LingerOutcome (len is
	// len(LingerOutcomes())).
	Lingers []uint64
	// QueuedBytes is the output queued across all connections.
	QueuedBytes int64
	// WorkersBusy is the number of worker goroutines running a task.
	WorkersBusy int64
	// WorkerQueue is the number of tasks waiting for a worker.
	WorkerQueue int
	// IdleTimeout is the engine's effective idle timeout.
	IdleTimeout time.Duration
	// DurationCounts holds, per bucket of DurationBuckets plus a final
	// +Inf bucket, how many closed connections lived that long (not
	// cumulative).
	DurationCounts [len(DurationBuckets) + 1]uint64
	// DurationSum is the summed lifetime of closed connections.
	DurationSum time.Duration
	// Loops holds per-loop figures, for balance.
	Loops []LoopStats
}

// DetailCount is how many connections of a protocol closed with a reason
// and a protocol detail (Conn.CloseWithDetail).
type DetailCount struct {
	Protocol string
	Reason   CloseReason
	Detail   string
	Count    uint64
}

// detailKey identifies a DetailCount.
type detailKey struct {
	proto  string
	reason CloseReason
	detail string
}

// maxDetailKeys bounds the detail table: details are meant to come from a
// small set, and a protocol that sent free text must not grow it without
// end. Past the bound, new keys count under detail "other".
const maxDetailKeys = 1024

// countDetail counts c's close detail. It runs once per close that has one.
func (e *Engine) countDetail(c *Conn, r CloseReason, d CloseDetail) {
	k := detailKey{protocolOf(c.h), r, d.String()}
	e.detailMu.Lock()
	if _, ok := e.details[k]; !ok && len(e.details) >= maxDetailKeys {
		k.detail = "other"
	}
	e.details[k]++
	e.detailMu.Unlock()
}

func (e *Engine) detailCounts() []DetailCount {
	e.detailMu.Lock()
	out := make([]DetailCount, 0, len(e.details))
	for k, n := range e.details {
		out = append(out, DetailCount{Protocol: k.proto, Reason: k.reason, Detail: k.detail, Count: n})
	}
	e.detailMu.Unlock()
	slices.SortFunc(out, func(a, b DetailCount) int {
		if c := cmp.Compare(a.Protocol, b.Protocol); c != 0 {
			return c
		}
		if c := cmp.Compare(a.Reason, b.Reason); c != 0 {
			return c
		}
		return cmp.Compare(a.Detail, b.Detail)
	})
	return out
}

func (s *Stats) add(ls *loopStats) {

	s.Accepted += ls.accepted.Load()
	for i := range s.Closed {
		s.Closed[i] += ls.closed[i].Load()
	}
	for i := range s.Rejected {
		s.Rejected[i] += ls.rejected[i].Load()
	}
	for i := range s.ByState {
		s.ByState[i] += ls.states[i].Load()
	}
	for i := range s.DurationCounts {
		s.DurationCounts[i] += ls.durCounts[i].Load()
	}
	s.DurationSum += time.Duration(ls.durSumMicros.Load()) * time.Microsecond
	s.BytesIn += ls.bytesIn.Load()
	s.BytesOut += ls.bytesOut.Load()
	s.WatermarkHits += ls.watermarkHits.Load()
	s.RingSends += ls.ringSends.Load()
	s.RingRecvs += ls.ringRecvs.Load()
	n := ls.conns.Load()
	s.Active += n
	s.Loops = append(s.Loops, LoopStats{Conns: n, Accepted: ls.accepted.Load(),
		Busy: float64(ls.busy.Load()) / 1000, Host: int(ls.host.Load())})
}
