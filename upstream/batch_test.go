package upstream

import (
	"encoding/json"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testutil"
)

func TestBatcherBounds(t *testing.T) {
	t0 := time.Unix(1000, 0)
	b := NewBatcher(BatcherConfig{MaxCount: 3, MaxBytes: 10, MaxDelay: 50 * time.Millisecond})
	if _, ok := b.Add([]byte("a"), t0); ok {
		t.Fatal("closed after one message")
	}
	if dl, ok := b.Deadline(); !ok || !dl.Equal(t0.Add(50*time.Millisecond)) {
		t.Fatalf("deadline %v %v", dl, ok)
	}
	if _, ok := b.Due(t0.Add(49 * time.Millisecond)); ok {
		t.Fatal("due early")
	}
	b.Add([]byte("b"), t0.Add(time.Millisecond))
	bt, ok := b.Add([]byte("c"), t0.Add(2*time.Millisecond))
	if !ok || bt.Why != "count" || len(bt.Messages) != 3 || string(bt.Messages[2]) != "c" {
		t.Fatalf("count: %+v %v", bt, ok)
	}
	if _, ok := b.Deadline(); ok {
		t.Fatal("deadline with no open batch")
	}
	bt, ok = b.Add([]byte("0123456789"), t0)
	if !ok || bt.Why != "bytes" || bt.Bytes != 10 {
		t.Fatalf("bytes: %+v", bt)
	}
	b.Add([]byte("x"), t0)
	bt, ok = b.Due(t0.Add(50 * time.Millisecond))
	if !ok || bt.Why != "time" || len(bt.Messages) != 1 {
		t.Fatalf("time: %+v", bt)
	}
	if _, ok := b.Flush(); ok {
		t.Fatal("flush of nothing")
	}
}

func TestBatcherDefaults(t *testing.T) {
	b := NewBatcher(BatcherConfig{})
	now := time.Unix(0, 0)
	for i := range 127 {
		if _, ok := b.Add([]byte("m"), now); ok {
			t.Fatalf("closed at %d", i+1)
		}
	}
	if bt, ok := b.Add([]byte("m"), now); !ok || len(bt.Messages) != DefaultBatchCount {
		t.Fatal("default count is not 128")
	}
	// The default delay, 50 ms after the first message.
	b.Add([]byte("m"), now)
	if d, ok := b.Deadline(); !ok || d != now.Add(50*time.Millisecond) || DefaultBatchDelay != 50*time.Millisecond {
		t.Fatalf("deadline %v; want 50 ms after the first message", d.Sub(now))
	}
	if _, ok := b.Due(now.Add(49 * time.Millisecond)); ok {
		t.Fatal("due after 49 ms")
	}
	if bt, ok := b.Due(now.Add(50 * time.Millisecond)); !ok || bt.Why != "time" || len(bt.Messages) != 1 {
		t.Fatalf("not due after 50 ms: %v %+v", ok, bt)
	}
	// The default bytes bound, 1 MiB.
	if _, ok := b.Add(make([]byte, DefaultBatchBytes-1), now); ok {
		t.Fatal("closed below 1 MiB")
	}
	if bt, ok := b.Add([]byte("m"), now); !ok || bt.Why != "bytes" || bt.Bytes != 1<<20 {
		t.Fatalf("not closed at 1 MiB: %+v", bt)
	}
}

func TestHTTPSink(t *testing.T) {
	e := startEngine(t)
	var mu sync.Mutex
	var got [][]int
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		var arr []int
		if err := json.Unmarshal(body, &arr); err != nil || r.Header.Get("Content-Type") != "application/json" {
			w.WriteHeader(400)
			return
		}
		mu.Lock()
		got = append(got, arr)
		mu.Unlock()
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	s := NewHTTPSink(c, SinkConfig{Path: "/hook", Batch: BatcherConfig{MaxCount: 10, MaxDelay: 20 * time.Millisecond}})
	for i := range 25 {
		s.Send([]byte{'0' + byte(i%10)})
	}
	deadline := time.Now().Add(5 * time.Second)
	for s.Stats().Delivered < 3 && time.Now().Before(deadline) {
		time.Sleep(5 * time.Millisecond)
	}
	st := s.Stats()
	mu.Lock()
	defer mu.Unlock()
	total := 0
	for _, a := range got {
		total += len(a)
	}
	if st.Delivered != 3 || total != 25 || st.Dropped != 0 || st.Failed != 0 || st.DeliveredMessages != 25 || st.FailedMessages != 0 {
		t.Fatalf("stats %+v, backend got %v", st, got)
	}
}

// TestHTTPSinkFailedMessages: the messages of a batch the endpoint
// refuses (after the cluster's retries) are counted as failed, so every
// message closed into a batch is accounted for as delivered, failed or
// dropped.
func TestHTTPSinkFailedMessages(t *testing.T) {
	e := startEngine(t)
	var fail atomic.Bool
	fail.Store(true)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if fail.Load() {
			w.WriteHeader(503)
		}
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	s := NewHTTPSink(c, SinkConfig{Batch: BatcherConfig{MaxCount: 10, MaxDelay: 20 * time.Millisecond}})
	for range 25 {
		s.Send([]byte("1"))
	}
	testutil.Eventually(t, 5*time.Second, "three failed batches", func() bool { return s.Stats().Failed == 3 })
	fail.Store(false)
	for range 7 {
		s.Send([]byte("2"))
	}
	testutil.Eventually(t, 5*time.Second, "a delivered batch", func() bool { return s.Stats().Delivered == 1 })
	st := s.Stats()
	if st.FailedMessages != 25 || st.DeliveredMessages != 7 || st.Messages != 32 || st.DroppedMessages != 0 {
		t.Fatalf("stats %+v", st)
	}
}
