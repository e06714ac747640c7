package loadgen

import (
	"encoding/json"
	"math"
	"math/rand/v2"
	"slices"
	"strings"
	"testing"
	"time"
)

func TestHistogramBuckets(t *testing.T) {
	prevHi := int64(-1)
	for i := range numBuckets {
		lo, hi := bucketBounds(i)
		if lo != prevHi+1 || hi < lo {
			t.Fatalf("bucket %d [%d, %d] after %d", i, lo, hi, prevHi)
		}
		if bucketOf(lo) != i || bucketOf(hi) != i {
			t.Fatalf("bucket %d: bucketOf(%d)=%d bucketOf(%d)=%d", i, lo, bucketOf(lo), hi, bucketOf(hi))
		}
		if lo >= subCount && float64(hi-lo+1)/float64(lo) > 1.0/subHalf+1e-12 {
			t.Fatalf("bucket %d [%d, %d] wider than 1/%d", i, lo, hi, subHalf)
		}
		prevHi = hi
	}
	if prevHi != maxValue {
		t.Fatalf("last bucket ends at %d, want %d", prevHi, maxValue)
	}
}

func TestHistogramQuantiles(t *testing.T) {
	r := rand.New(rand.NewPCG(3, 4))
	var h Histogram
	vals := make([]int64, 100000)
	for i := range vals {
		// Log-uniform from 1 µs to 10 s.
		vals[i] = int64(math.Pow(10, 3+r.Float64()*7))
		h.Record(time.Duration(vals[i]))
	}
	slices.Sort(vals)
	for _, q := range []float64{0, 0.5, 0.9, 0.99, 0.999, 0.9999, 1} {
		rank := max(int(math.Ceil(q*float64(len(vals)))), 1)
		exact := float64(vals[rank-1])
		got := float64(h.Quantile(q))
		if got < exact || (got-exact)/exact > 1.0/subHalf {
			t.Errorf("q%v: %v, exact %v", q, got, exact)
		}
	}
	if h.Count() != uint64(len(vals)) || h.Min() != time.Duration(vals[0]) || h.Max() != time.Duration(vals[len(vals)-1]) {
		t.Fatalf("count %d min %v max %v", h.Count(), h.Min(), h.Max())
	}
	var sum float64
	for _, v := range vals {
		sum += float64(v)
	}
	if mean := sum / float64(len(vals)); math.Abs(float64(h.Mean())-mean) > 1 {
		t.Fatalf("mean %v, want %v", h.Mean(), mean)
	}
}

func TestHistogramEdges(t *testing.T) {
	var h Histogram
	if h.Quantile(0.5) != 0 || h.Mean() != 0 || h.Max() != 0 {
		t.Fatal("empty histogram not zero")
	}
	h.Record(-5)
	h.Record(100 * time.Hour) // clamped
	if h.Min() != 0 || h.Max() != maxValue || h.Count() != 2 {
		t.Fatalf("min %v max %v", h.Min(), h.Max())
	}
	h.Reset()
	if h.Count() != 0 {
		t.Fatal("reset")
	}
}

func TestHistogramJSON(t *testing.T) {
	var h Histogram
	for i := range 1000 {
		h.Record(time.Duration(i*i) * time.Microsecond)
	}
	b, err := json.Marshal(&h)
	if err != nil {
		t.Fatal(err)
	}
	var back Histogram
	if err := json.Unmarshal(b, &back); err != nil {
		t.Fatal(err)
	}
	if back.Count() != h.Count() || back.Max() != h.Max() || back.Mean() != h.Mean() ||
		!slices.Equal(back.counts, h.counts) {
		t.Fatal("round trip changed the histogram")
	}
	bad := strings.Replace(string(b), `"count":1000`, `"count":999`, 1)
	if err := json.Unmarshal([]byte(bad), &back); err == nil {
		t.Fatal("count mismatch accepted")
	}
	bad = strings.Replace(string(b), "sub=8", "sub=9", 1)
	if err := json.Unmarshal([]byte(bad), &back); err == nil {
		t.Fatal("other layout accepted")
	}
	if err := json.Unmarshal([]byte(`{"layout":"`+histLayout+`","count":1,"buckets":[[99999,1]]}`), &back); err == nil {
		t.Fatal("bucket out of range accepted")
	}
}

func BenchmarkHistogramRecord(b *testing.B) {
	var h Histogram
	b.ReportAllocs()
	for i := 0; b.Loop(); i++ {
		h.Record(time.Duration(i&0xfffff) * 100)
	}
}
