package loadgen

import (
	"encoding/json"
	"fmt"
	"math"
	"math/bits"
	"time"
)

// The histogram is log-linear, laid out like HdrHistogram with two
// significant decimal digits: values below 2^subBits nanoseconds each have
// their own bucket, and every power-of-two range above is split into
// 2^(subBits-1) equal buckets, so a recorded value is known to within
// 1/2^(subBits-1) (0.8%) of itself. Values are nanoseconds; the largest is
// 2^maxBits-1 ns (about 4.9 hours), beyond which values are clamped.
const (
	subBits    = 8
	subCount   = 1 << subBits // 256
	subHalf    = subCount / 2 // 128
	maxBits    = 44
	maxValue   = 1<<maxBits - 1
	numBuckets = subCount + (maxBits-subBits)*subHalf
)

// Histogram counts durations in log-linear buckets with a relative error
// below 0.8% (HdrHistogram-style, two significant digits), from 1 ns to
// about 4.9 hours, in at most 37 KiB. Histograms with the same layout merge
// exactly, which is how reports from several processes are combined. The
// zero value is empty and ready to use; a Histogram is not safe for
// concurrent use.
//
// It marshals to JSON as its non-empty buckets, so a report stays small.
type Histogram struct {
	counts []uint64 // allocated on first Record
	n      uint64
	sum    float64 // nanoseconds
	min    int64
	max    int64
}

// bucketOf returns the bucket index of v (0 ≤ v ≤ maxValue).
func bucketOf(v int64) int {
	if v < subCount {
		return int(v)
	}
	e := bits.Len64(uint64(v)) - subBits // ≥ 1
	sub := int(v >> e)                   // in [subHalf, subCount)
	return subCount + (e-1)*subHalf + sub - subHalf
}

// bucketBounds returns the smallest and largest value counted in bucket i.
func bucketBounds(i int) (lo, hi int64) {
	if i < subCount {
		return int64(i), int64(i)
	}
	e := (i-subCount)/subHalf + 1
	sub := int64((i-subCount)%subHalf + subHalf)
	return sub << e, (sub+1)<<e - 1
}

// Record adds one observation of d. Negative durations count as zero.
func (h *Histogram) Record(d time.Duration) { h.RecordN(d, 1) }

// RecordN adds n observations of d.
func (h *Histogram) RecordN(d time.Duration, n uint64) {
	if n == 0 {
		return
	}
	v := int64(d)
	if v < 0 {
		v = 0
	} else if v > maxValue {
		v = maxValue
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	h.counts[bucketOf(v)] += n
	if h.n == 0 || v < h.min {
		h.min = v
	}
	if v > h.max {
		h.max = v
	}
	h.n += n
	h.sum += float64(v) * float64(n)
}

// Merge adds every observation of o to h.
func (h *Histogram) Merge(o *Histogram) {
	if o == nil || o.n == 0 {
		return
	}
	if h.counts == nil {
		h.counts = make([]uint64, numBuckets)
	}
	for i, c := range o.counts {
		h.counts[i] += c
	}
	if h.n == 0 || o.min < h.min {
		h.min = o.min
	}
	if o.max > h.max {
		h.max = o.max
	}
	h.n += o.n
	h.sum += o.sum
}

// Reset empties h, keeping its buckets for reuse.
func (h *Histogram) Reset() {
	clear(h.counts)
	h.n, h.sum, h.min, h.max = 0, 0, 0, 0
}

// Count returns the number of observations.
func (h *Histogram) Count() uint64 { return h.n }

// Min returns the smallest observation, or 0 when h is empty.
func (h *Histogram) Min() time.Duration { return time.Duration(h.min) }

// Max returns the largest observation, or 0 when h is empty.
func (h *Histogram) Max() time.Duration { return time.Duration(h.max) }

// Mean returns the mean observation, or 0 when h is empty.
func (h *Histogram) Mean() time.Duration {
	if h.n == 0 {
		return 0
	}
	return time.Duration(h.sum / float64(h.n))
}

// Quantile returns the value at quantile q (0 ≤ q ≤ 1): the upper bound of
// the bucket holding the observation of rank ceil(q·Count), clamped to the
// observed range, as HdrHistogram reports it. It returns 0 when h is empty.
func (h *Histogram) Quantile(q float64) time.Duration {
	if h.n == 0 {
		return 0
	}
	if q >= 1 {
		return time.Duration(h.max)
	}
	rank := uint64(math.Ceil(q * float64(h.n)))
	if rank < 1 {
		rank = 1
	}
	var seen uint64
	for i, c := range h.counts {
		seen += c
		if seen >= rank {
			_, hi := bucketBounds(i)
			return time.Duration(min(max(hi, h.min), h.max))
		}
	}
	return time.Duration(h.max)
}

// histJSON is the wire form of a Histogram: its layout, so that a reader
// can refuse an incompatible one, and its non-empty buckets as
// [index, count] pairs.
type histJSON struct {
	Layout  string      `json:"layout"`
	Count   uint64      `json:"count"`
	SumNS   float64     `json:"sum_ns"`
	MinNS   int64       `json:"min_ns"`
	MaxNS   int64       `json:"max_ns"`
	Buckets [][2]uint64 `json:"buckets"`
}

// histLayout names the bucket layout in JSON.
var histLayout = fmt.Sprintf("log-linear ns sub=%d max=%d", subBits, maxBits)

// MarshalJSON encodes h as its layout and non-empty buckets.
func (h *Histogram) MarshalJSON() ([]byte, error) {
	j := histJSON{Layout: histLayout, Count: h.n, SumNS: h.sum, MinNS: h.min, MaxNS: h.max,
		Buckets: [][2]uint64{}}
	for i, c := range h.counts {
		if c != 0 {
			j.Buckets = append(j.Buckets, [2]uint64{uint64(i), c})
		}
	}
	return json.Marshal(j)
}

// UnmarshalJSON decodes what MarshalJSON encoded. It refuses another
// layout and checks that the buckets add up to the count.
func (h *Histogram) UnmarshalJSON(b []byte) error {
	var j histJSON
	if err := json.Unmarshal(b, &j); err != nil {
		return err
	}
	if j.Layout != histLayout {
		return fmt.Errorf("loadgen: histogram layout %q, want %q", j.Layout, histLayout)
	}
	*h = Histogram{}
	var total uint64
	for _, bc := range j.Buckets {
		if bc[0] >= numBuckets {
			return fmt.Errorf("loadgen: histogram bucket %d out of range", bc[0])
		}
		if h.counts == nil {
			h.counts = make([]uint64, numBuckets)
		}
		h.counts[bc[0]] += bc[1]
		total += bc[1]
	}
	if total != j.Count {
		return fmt.Errorf("loadgen: histogram buckets hold %d observations, count says %d", total, j.Count)
	}
	h.n, h.sum, h.min, h.max = j.Count, j.SumNS, j.MinNS, j.MaxNS
	return nil
}
