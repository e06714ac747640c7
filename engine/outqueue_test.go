package engine

import (
	"bytes"
	"testing"
)

// TestOutQueueKeepsSmallBuffer: a queue whose small output was written
// keeps its buffer for its next small write (outQueue.keep), across its
// trip through outQueuePool, instead of returning it to internal/pool and
// taking another: the io_uring mode queues every write it defers.
func TestOutQueueKeepsSmallBuffer(t *testing.T) {
	c := &Conn{out: new(outQueue)}
	msg := bytes.Repeat([]byte("k"), 300)
	c.appendOutLocked([][]byte{msg}, 0)
	c.out.bytes += len(msg)
	first := &c.out.bufs[0][:1][0]
	c.out.bytes -= len(msg)
	c.consumeOutLocked(len(msg))
	if len(c.out.bufs) != 0 || c.out.keep == nil || &c.out.keep[:1][0] != first || len(c.out.keep) != 0 {
		t.Fatalf("after the write: %d buffers queued, keep %p (len %d), want none queued and the written buffer kept",
			len(c.out.bufs), c.out.keep, len(c.out.keep))
	}
	c.appendOutLocked([][]byte{msg[:100]}, 0)
	if c.out.keep != nil || &c.out.bufs[0][:1][0] != first || !bytes.Equal(c.out.bufs[0], msg[:100]) {
		t.Fatal("the next small write did not take the kept buffer")
	}
	// A large write takes a pooled buffer of its size and gives the kept
	// one back: a queue holding output holds no spare buffer.
	c.consumeOutLocked(100)
	if c.out.keep == nil {
		t.Fatal("the second small write's buffer was not kept")
	}
	big := bytes.Repeat([]byte("b"), 3*outKeepSize)
	c.appendOutLocked([][]byte{big}, 0)
	if c.out.keep != nil || cap(c.out.bufs[0]) < len(big) {
		t.Fatalf("large write: keep %p, buffer cap %d", c.out.keep, cap(c.out.bufs[0]))
	}
	// Of two small buffers written out, only the last is kept.
	c.consumeOutLocked(len(big))
	c.appendOutLocked([][]byte{bytes.Repeat([]byte("s"), outKeepSize), msg[:10]}, 0)
	if len(c.out.bufs) != 2 {
		t.Fatalf("%d buffers, want 2", len(c.out.bufs))
	}
	second := &c.out.bufs[1][:1][0]
	c.consumeOutLocked(outKeepSize)
	if c.out.keep != nil {
		t.Fatal("a buffer kept while output waits")
	}
	c.consumeOutLocked(10)
	if c.out.keep == nil || &c.out.keep[:1][0] != second {
		t.Fatal("the emptied queue's last buffer was not kept")
	}
}

// TestOutQueueCycleAllocates0: a queue that runs empty and queues again
// (the io_uring mode's every deferred write and its send's completion)
// allocates nothing; reslicing its written buffers off the front left
// it no capacity, and every next write grew it.
func TestOutQueueCycleAllocates0(t *testing.T) {
	c := &Conn{out: new(outQueue)}
	msg := bytes.Repeat([]byte("a"), 200)
	cycle := func() {
		c.appendOutLocked([][]byte{msg}, 0)
		c.consumeOutLocked(len(msg))
	}
	cycle()
	if n := testing.AllocsPerRun(100, cycle); n != 0 {
		t.Fatalf("%.1f allocations a write", n)
	}
	// Partly written, several buffers: the rest stays in order.
	big := bytes.Repeat([]byte("0123456789"), 1000)
	c.appendOutLocked([][]byte{msg, big, msg}, 0)
	want := append(append(append([]byte{}, msg...), big...), msg...)
	c.consumeOutLocked(len(msg) + 5)
	var got []byte
	for _, b := range c.out.bufs {
		got = append(got, b...)
	}
	if !bytes.Equal(got, want[len(msg)+5:]) {
		t.Fatalf("after a partial write the queue holds %d bytes, want %d in order", len(got), len(want)-len(msg)-5)
	}
}

// TestOutQueueLongConsumeReslices: a long queue drained in steps is
// resliced, not shifted down at every step (O(n²) copies over the
// drain); a short one is shifted, keeping its capacity.
func TestOutQueueLongConsumeReslices(t *testing.T) {
	fill := func(n int) *Conn {
		c := &Conn{out: new(outQueue)}
		for range n {
			// Each write fills a buffer: n buffers of outKeepSize.
			c.appendOutLocked([][]byte{bytes.Repeat([]byte("x"), outKeepSize)}, 0)
		}
		if len(c.out.bufs) != n {
			t.Fatalf("%d buffers, want %d", len(c.out.bufs), n)
		}
		return c
	}
	long := fill(outShiftMax + 100)
	before := cap(long.out.bufs)
	long.consumeOutLocked(outKeepSize + 1) // one buffer and a byte of the next
	if got := cap(long.out.bufs); got != before-1 {
		t.Fatalf("long queue: capacity %d after one buffer written, want %d (resliced, not shifted)", got, before-1)
	}
	if len(long.out.bufs) != outShiftMax+99 || len(long.out.bufs[0]) != outKeepSize-1 {
		t.Fatalf("long queue: %d buffers, head %d bytes", len(long.out.bufs), len(long.out.bufs[0]))
	}
	short := fill(3)
	before = cap(short.out.bufs)
	short.consumeOutLocked(outKeepSize)
	if got := cap(short.out.bufs); got != before || len(short.out.bufs) != 2 {
		t.Fatalf("short queue: capacity %d (want %d), %d buffers (want 2)", got, before, len(short.out.bufs))
	}
}

// TestOutQueueResetDropsLongSlice: a queue goes back to outQueuePool
// with its buffer slice only when that is short; a fan-out storm's long
// queues must not keep their slices in the pool.
func TestOutQueueResetDropsLongSlice(t *testing.T) {
	q := &outQueue{bufs: make([][]byte, 3, outBufsKeepMax+1), bytes: 7, ring: true}
	q.reset()
	if q.bufs != nil || q.bytes != 0 || q.ring {
		t.Fatalf("long: bufs cap %d, bytes %d, ring %v", cap(q.bufs), q.bytes, q.ring)
	}
	q = &outQueue{bufs: make([][]byte, 3, outBufsKeepMax)}
	q.bufs[0] = []byte("x")
	q.reset()
	if q.bufs == nil || cap(q.bufs) != outBufsKeepMax || len(q.bufs) != 0 || q.bufs[:1][0] != nil {
		t.Fatalf("short: bufs len %d cap %d", len(q.bufs), cap(q.bufs))
	}
}
