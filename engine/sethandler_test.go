package engine

import (
	"testing"
	"time"
)

// opener is a handler on the worker pool whose OnOpen reports.
type opener struct {
	NopHandler
	opened chan struct{}
}

func (o *opener) OnOpen(*Conn) { o.opened <- struct{}{} }

// onLoop hands each connection to the test, on the loop.
type onLoop struct {
	NopHandler
	conns chan *Conn
}

func (h onLoop) OnData(c *Conn, in []byte) int { h.conns <- c; return len(in) }
func (onLoop) Inline() bool                    { return true }

// TestSetHandlerOnOpenWithFullQueue: the OnOpen of a handler that takes
// over an open connection runs even when the worker queue is full, as a
// new connection's does.
func TestSetHandlerOnOpenWithFullQueue(t *testing.T) {
	cfg := Config{Workers: 1, WorkerQueue: 1, Loops: 1} // handlers on the pool, but for onLoop
	conns := make(chan *Conn, 1)
	_, addr := startEngine(t, cfg, onLoop{conns: conns})
	dial(t, addr).Write([]byte("x"))
	c := <-conns
	gate, started := make(chan struct{}), make(chan struct{})
	defer close(gate)
	if err := c.Dispatch(func() { close(started); <-gate }); err != nil {
		t.Fatal(err)
	}
	<-started // the one worker is busy
	if err := c.Dispatch(func() {}); err != nil {
		t.Fatal(err) // the queue's one place
	}
	if err := c.Dispatch(func() {}); err != ErrWorkerQueueFull {
		t.Fatalf("third task: %v, want the queue full", err)
	}
	o := &opener{opened: make(chan struct{}, 1)}
	c.Post(func() { c.SetHandler(o) })
	time.Sleep(50 * time.Millisecond) // the hand-over ran with the queue full
	gate <- struct{}{}
	select {
	case <-o.opened:
	case <-time.After(10 * time.Second):
		t.Fatal("the new handler's OnOpen never ran: dropped with the queue full")
	}
}
