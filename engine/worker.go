package engine

import (
	"sync"
	"sync/atomic"
	"time"
)

// workerIdle is how long an idle worker goroutine lingers before exiting.
const workerIdle = 10 * time.Second

// taskQueue is one connection's pending tasks. It exists only while the
// connection has work queued or running, so idle connections hold none
// (and Conn has no field for it: the pool finds it in its map).
type taskQueue struct {
	c         *Conn
	fns       []func()
	scheduled bool
}

var taskQueuePool = sync.Pool{New: func() any { return new(taskQueue) }}

// workerPool runs blocking work on a bounded set of goroutines, one task at a
// time per connection, in submission order.
type workerPool struct {
	max, maxQueue int

	// mu guards the fields below it and the task queues.
	mu      sync.Mutex
	queues  map[*Conn]*taskQueue // connections with tasks queued or running
	ready   []*taskQueue         // queues with tasks and no worker
	queued  int                  // tasks waiting, not running
	workers int
	idle    int
	closed  bool

	wake chan struct{}
	busy atomic.Int64
	wg   sync.WaitGroup
}

func newWorkerPool(max, maxQueue int) *workerPool {
	return &workerPool{max: max, maxQueue: maxQueue, wake: make(chan struct{}, max),
		queues: make(map[*Conn]*taskQueue)}
}

// submit queues fn behind c's earlier tasks. force bypasses the queue bound
// (used for OnClose, which must not be lost).
func (p *workerPool) submit(c *Conn, fn func(), force bool) error {
	p.mu.Lock()
	if p.closed && !force {
		p.mu.Unlock()
		return ErrClosed
	}
	if p.queued >= p.maxQueue && !force {
		p.mu.Unlock()
		return ErrWorkerQueueFull
	}
	q := p.queues[c]
	if q == nil {
		q = taskQueuePool.Get().(*taskQueue)
		q.c = c
		p.queues[c] = q
	}
	q.fns = append(q.fns, fn)
	p.queued++
	if !q.scheduled {
		q.scheduled = true
		p.ready = append(p.ready, q)
		if p.idle > 0 {
			select {
			case p.wake <- struct{}{}:
			default:
			}
		} else if p.workers < p.max {
			p.workers++
			p.wg.Add(1)
			go p.work()
		}
	}
	p.mu.Unlock()
	return nil
}

// maxBatch is how many tasks of one connection a worker runs before giving
// other connections a turn.
const maxBatch = 16

func (p *workerPool) work() {
	defer p.wg.Done()
	var timer *time.Timer
	p.mu.Lock()
	for {
		if len(p.ready) == 0 {
			if p.closed {
				p.workers--
				p.mu.Unlock()
				return
			}
			p.idle++
			p.mu.Unlock()
			if timer == nil {
				timer = time.NewTimer(workerIdle)
			} else {
				timer.Reset(workerIdle)
			}
			timedOut := false
			select {
			case <-p.wake:
				timer.Stop()
			case <-timer.C:
				timedOut = true
			}
			p.mu.Lock()
			p.idle--
			if timedOut && len(p.ready) == 0 {
				p.workers--
				p.mu.Unlock()
				return
			}
			continue
		}
		q := p.ready[0]
		p.ready[0] = nil
		p.ready = p.ready[1:]
		if len(p.ready) == 0 {
			p.ready = p.ready[:0:0]
		}
		for i := 0; ; i++ {
			fn := q.fns[0]
			q.fns[0] = nil
			q.fns = q.fns[1:]
			p.queued--
			p.mu.Unlock()
			p.busy.Add(1)
			fn()
			p.busy.Add(-1)
			p.mu.Lock()
			if len(q.fns) == 0 {
				q.scheduled = false
				q.fns = q.fns[:0:0]
				delete(p.queues, q.c)
				q.c = nil
				taskQueuePool.Put(q)
				break
			}
			if i+1 >= maxBatch {
				p.ready = append(p.ready, q)
				break
			}
		}
	}
}

// waiting returns the number of tasks waiting for a worker.
func (p *workerPool) waiting() int {
	p.mu.Lock()
	defer p.mu.Unlock()
	return p.queued
}

// close stops idle workers; busy ones exit when their tasks are done.
func (p *workerPool) close() {
	p.mu.Lock()
	p.closed = true
	n := p.idle
	p.mu.Unlock()
	for i := 0; i < n; i++ {
		select {
		case p.wake <- struct{}{}:
		default:
		}
	}
}

// wait blocks until every worker has exited or done is closed.
func (p *workerPool) wait(done <-chan struct{}) bool {
	ch := make(chan struct{})
	go func() { p.wg.Wait(); close(ch) }()
	select {
	case <-ch:
		return true
	case <-done:
		return false
	}
}
