package engine

import "sync/atomic"

// Hold counts work for c that runs outside the worker pool — a reply that
// will come from a message bus, a timer, another connection — as Dispatch
// counts a task: while c is held, its idle and read timeouts do not run, a
// half-closed c stays open, and a drain waits for it (up to the drain's
// deadline) before closing it. The work ends with release, which may be
// called from any goroutine; calls after the first do nothing. Input that
// arrives meanwhile is still presented to OnData, which may leave it (as
// HTTP leaves a request pipelined behind one in progress); what is left is
// presented again once the last hold and task end.
//
// Hold lets a protocol answer later without keeping a worker or the loop
// waiting: http1's [Ctx.Detach] is built on it. A hold that is never
// released keeps c busy until it closes, so release must be reached on
// every path, including c closing first (releasing a closed connection's
// hold is harmless).
func (c *Conn) Hold() (release func()) {
	c.inflight.Add(1)
	var done atomic.Bool
	return func() {
		if done.CompareAndSwap(false, true) {
			c.taskDone()
		}
	}
}
