//go:build linux || darwin || freebsd

package engine

import (
	"testing"
	"time"
)

// A loop that blocks its thread in a system call (BlockingPoll, io_uring)
// and is kept busy by a trickle of input, a short spell between short
// waits, still passes through the Go scheduler every refreshAfter. Else
// the runtime's sysmon takes the goroutine for a runaway 10 ms after its
// last reschedule, and preempts it with a signal or takes its P at every
// sysmon tick (docs/benchmarks.md section 97). A loop that parks in Go's
// netpoller reschedules at each park and makes no such yields.
func TestBlockingLoopReschedulesUnderTrickle(t *testing.T) {
	for _, k := range []engineKind{
		{"blocking", func(c *Config) { c.BlockingPoll = true }},
		{"locked", func(c *Config) { c.BlockingPoll, c.LockOSThread = true, true }},
		{"uring-locked", func(c *Config) { c.IOUring, c.LockOSThread = true, true }},
		{"netpoller", func(c *Config) {}},
	} {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Loops: 1, Inline: true, FixedLoops: true}
			k.cfg(&cfg)
			e, addr := startEngine(t, cfg, newEcho())
			c := dial(t, addr)
			defer c.Close()
			l := e.loops[0]
			before := l.yields.Load()
			// A byte every millisecond for 80 ms: each wait lasts about a
			// millisecond, so the loop is never busy for yieldAfter in a
			// row and only refreshAfter makes it yield.
			buf := make([]byte, 1)
			start := time.Now()
			for time.Since(start) < 80*time.Millisecond {
				if _, err := c.Write([]byte{'x'}); err != nil {
					t.Fatal(err)
				}
				if _, err := c.Read(buf); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			got := l.yields.Load() - before
			if k.name == "netpoller" {
				t.Logf("netpoller loop: %d yields in 80 ms", got)
				return
			}
			// 80 ms / refreshAfter (5 ms) = 16; a slow machine stretches
			// the trickle, and an early yield resets the clock.
			if got < 4 {
				t.Fatalf("blocking loop yielded %d times in 80 ms of trickle, want >= 4 (one per refreshAfter)", got)
			}
		})
	}
}
