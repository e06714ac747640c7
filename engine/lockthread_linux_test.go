//go:build linux

package engine

import (
	"io"
	"runtime"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// tidHandler echoes input and records, per connection, the OS threads its
// OnData ran on.
type tidHandler struct {
	mu   sync.Mutex
	tids map[*Conn]map[int]int // connection -> thread id -> calls
}

func (h *tidHandler) OnData(c *Conn, in []byte) int {
	tid := unix.Gettid()
	h.mu.Lock()
	m := h.tids[c]
	if m == nil {
		m = map[int]int{}
		h.tids[c] = m
	}
	m[tid]++
	h.mu.Unlock()
	c.Write(in)
	return len(in)
}

func (h *tidHandler) OnClose(*Conn, CloseReason, error) {}

// With Config.LockOSThread every loop runs on one OS thread for its whole
// life: an inline handler sees the same thread id at every call of a
// connection, through busy stretches and idle spells (the loop blocks in
// epoll_wait between bursts) while other goroutines keep the scheduler
// busy, and the two loops' threads differ.
func TestLockOSThread(t *testing.T) {
	h := &tidHandler{tids: map[*Conn]map[int]int{}}
	cfg := Config{Loops: 2, Inline: true, BlockingPoll: true, FixedLoops: true, LockOSThread: true}
	_, addr := startEngine(t, cfg, h)

	// Goroutines that yield all the time, so unlocked goroutines would be
	// moved between threads.
	var stop atomic.Bool
	var churn sync.WaitGroup
	for range runtime.GOMAXPROCS(0) + 1 {
		churn.Add(1)
		go func() {
			defer churn.Done()
			for !stop.Load() {
				runtime.Gosched()
			}
		}()
	}
	defer func() {
		stop.Store(true)
		churn.Wait()
	}()

	const conns, rounds, burst = 4, 20, 30
	var wg sync.WaitGroup
	errs := make(chan error, conns)
	for range conns {
		c := dial(t, addr)
		wg.Add(1)
		go func() {
			defer wg.Done()
			defer c.Close()
			msg := []byte("ping")
			got := make([]byte, len(msg))
			for range rounds {
				for range burst {
					if _, err := c.Write(msg); err != nil {
						errs <- err
						return
					}
					if _, err := io.ReadFull(c, got); err != nil {
						errs <- err
						return
					}
				}
				time.Sleep(2 * time.Millisecond) // an idle spell: the loop blocks
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}

	h.mu.Lock()
	defer h.mu.Unlock()
	if len(h.tids) != conns {
		t.Fatalf("%d connections seen, want %d", len(h.tids), conns)
	}
	loopTids := map[int]bool{}
	for c, m := range h.tids {
		calls := 0
		for tid, n := range m {
			calls += n
			loopTids[tid] = true
		}
		if len(m) != 1 {
			t.Errorf("connection %p ran on %d threads: %v", c, len(m), m)
		}
		if calls < rounds {
			t.Errorf("connection %p: %d calls, want at least %d", c, calls, rounds)
		}
	}
	if len(loopTids) != 2 {
		t.Errorf("2 loops ran on %d threads, want 2: %v", len(loopTids), loopTids)
	}
}
