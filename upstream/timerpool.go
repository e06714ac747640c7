package upstream

import (
	"sync"
	"sync/atomic"
	"time"
)

// timerPool hands out timers that call fire with their target when they
// expire. A timer stopped before it fires goes back to the pool and is
// re-armed (Reset) by a later arm: a time.AfterFunc per request would be
// two allocations on the request path.
type timerPool[T any] struct {
	pool sync.Pool
	fire func(*T)
}

// pooledTimer is one timer of a timerPool.
type pooledTimer[T any] struct {
	t      *time.Timer
	target atomic.Pointer[T]
	p      *timerPool[T]
}

// arm starts a timer that calls p.fire(target) after d.
func (p *timerPool[T]) arm(target *T, d time.Duration) *pooledTimer[T] {
	pt, _ := p.pool.Get().(*pooledTimer[T])
	if pt == nil {
		pt = &pooledTimer[T]{p: p}
		pt.target.Store(target)
		pt.t = time.AfterFunc(d, pt.run)
		return pt
	}
	pt.target.Store(target)
	pt.t.Reset(d)
	return pt
}

func (pt *pooledTimer[T]) run() {
	if x := pt.target.Load(); x != nil {
		pt.p.fire(x)
	}
}

// stop stops the timer and pools it when it had not fired (after Stop
// reports true its function does not run, so no one holds it). Call it
// once: a pooled timer may belong to another target after. It reports
// whether the timer was stopped before it fired.
func (pt *pooledTimer[T]) stop() bool {
	if pt.t.Stop() {
		pt.target.Store(nil)
		pt.p.pool.Put(pt)
		return true
	}
	return false
}
