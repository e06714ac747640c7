package testutil

import (
	"net"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// LoopHolder is a handler, meant to run inline (engine.Config.Inline),
// that echoes what it reads, except that a read starting "hold" keeps the
// connection's loop busy until Release: a loop that misses its turns, as a
// handler blocking on it would make it.
type LoopHolder struct {
	engine.NopHandler
	held    chan struct{}
	release chan struct{}
	once    sync.Once
}

// NewLoopHolder returns a LoopHolder released when the test ends (before
// the engines the test started earlier are closed).
func NewLoopHolder(t testing.TB) *LoopHolder {
	h := &LoopHolder{held: make(chan struct{}, 1), release: make(chan struct{})}
	t.Cleanup(h.Release)
	return h
}

// OnData echoes in, after holding the loop if in starts "hold".
func (h *LoopHolder) OnData(c *engine.Conn, in []byte) int {
	if strings.HasPrefix(string(in), "hold") {
		h.held <- struct{}{}
		<-h.release
	}
	c.Write(in)
	return len(in)
}

// Hold has c's server side hold its loop, and returns once it does.
func (h *LoopHolder) Hold(t testing.TB, c net.Conn) {
	t.Helper()
	if _, err := c.Write([]byte("hold")); err != nil {
		t.Fatal(err)
	}
	select {
	case <-h.held:
	case <-time.After(10 * time.Second):
		t.Fatal("the loop was not held")
	}
}

// Release frees the held loop (and every later hold: it is once).
func (h *LoopHolder) Release() { h.once.Do(func() { close(h.release) }) }
