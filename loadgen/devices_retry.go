package loadgen

import (
	"math"
	"math/rand/v2"
	"time"
)

// Defaults of DeviceConfig's retry backoff.
const (
	defaultRetryBackoff    = time.Second
	defaultRetryBackoffMax = 30 * time.Second
)

// backoff returns the wait before retry n (counted from 1) of a failed
// connect: RetryBackoff doubled n-1 times, capped at RetryBackoffMax,
// then drawn at random between half of it and all of it. d has its
// defaults.
func (d DeviceConfig) backoff(n int) time.Duration {
	w := d.RetryBackoff
	for i := 1; i < n && w < d.RetryBackoffMax; i++ {
		w *= 2
	}
	w = min(w, d.RetryBackoffMax)
	half := w / 2
	return half + rand.N(w-half+1)
}

// retryBound is the most that a device's retries can add to its connect:
// every backoff at its longest, and a connect timeout per retry. d has its
// defaults.
func (d DeviceConfig) retryBound(timeout time.Duration) time.Duration {
	var b time.Duration
	w := d.RetryBackoff
	for range d.Retries {
		b += min(w, d.RetryBackoffMax) + timeout
		if w < d.RetryBackoffMax {
			w *= 2
		}
	}
	return b
}

// retryLocked decides whether d's failed connect is tried again: while
// the run goes on and d has retries left. If so it counts the retry and
// marks it due; the caller schedules it (retryLater) once d's connection
// is gone. The caller holds d.mu.
func (r *devRunner) retryLocked(d *devConn) bool {
	if r.finished.Load() || int(d.retries) >= min(r.dc.Retries, math.MaxUint16) {
		return false
	}
	d.retries++
	d.retryDue = true
	r.retried.Add(1)
	return true
}

// takeRetryLocked reports whether a retry is due for d, and clears it.
// The caller holds d.mu.
func (d *devConn) takeRetryLocked() bool {
	due := d.retryDue
	d.retryDue = false
	return due
}

// retryLater redials d after its backoff, through the ramper's redial
// queue (served once the ramp's first dials are made, each taking a
// connecting slot). d's connection is gone.
func (r *devRunner) retryLater(d *devConn) {
	d.mu.Lock()
	n := int(d.retries)
	d.mu.Unlock()
	r.redialAfter(r.dc.backoff(n), d, nil)
}

// redialAfter queues d on the ramper's redial queue after wait (a runtime
// timer, not a goroutine), unless the run has ended by then or ready,
// when set, says d is not to be redialled. The queue has room for every
// device.
func (r *devRunner) redialAfter(wait time.Duration, d *devConn, ready func() bool) {
	time.AfterFunc(wait, func() {
		if r.finished.Load() || (ready != nil && !ready()) {
			return
		}
		select {
		case r.redial <- d:
		case <-r.stop:
		}
	})
}

// unsettledRetries counts, at the end of a run, the devices still
// waiting to retry a failed connect: they never got in, so they count as
// failed.
func (r *devRunner) unsettledRetries() int64 {
	var n int64
	for i := range r.devs {
		d := &r.devs[i]
		d.mu.Lock()
		if d.retries > 0 && d.state == csIdle && !d.settled {
			n++
		}
		d.mu.Unlock()
	}
	return n
}
