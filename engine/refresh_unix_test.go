//go:build linux || darwin || freebsd

package engine

import (
	"testing"
	"time"
)

// A loop that blocks its thread in a system call (BlockingPoll, io_uring)
// and is kept at work by a trickle, a short spell between short waits,
// still passes through the Go scheduler every refreshAfter, whether the
// trickle is input or only mailbox posts (a worker pool's writes, a
// gateway's fan-out). Else the runtime's sysmon takes the goroutine for a
// runaway 10 ms after its last reschedule, and preempts it or takes its P
// at every sysmon tick (docs/benchmarks.md section 97). A loop that parks
// in Go's netpoller reschedules at each park and makes no such yields.
func TestBlockingLoopReschedulesUnderTrickle(t *testing.T) {
	for _, k := range []engineKind{
		{"blocking", func(c *Config) { c.BlockingPoll = true }},
		{"locked", func(c *Config) { c.BlockingPoll, c.LockOSThread = true, true }},
		{"uring", func(c *Config) { c.IOUring = true }},
		{"uring-locked", func(c *Config) { c.IOUring, c.LockOSThread = true, true }},
		{"netpoller", func(c *Config) {}},
	} {
		for _, via := range []string{"input", "posts"} {
			t.Run(k.name+"/"+via, func(t *testing.T) {
				cfg := Config{Loops: 1, Inline: true, FixedLoops: true}
				k.cfg(&cfg)
				e, addr := startEngine(t, cfg, newEcho())
				c := dial(t, addr)
				defer c.Close()
				if err := c.SetDeadline(time.Now().Add(10 * time.Second)); err != nil {
					t.Fatal(err)
				}
				l := e.loops[0]
				before := l.yields.Load()
				// One wake-up a millisecond for 80 ms: each wait lasts about
				// a millisecond, so the loop is never busy for yieldAfter in
				// a row and only refreshAfter makes it yield.
				buf := make([]byte, 1)
				ran := make(chan struct{}, 1)
				start := time.Now()
				for time.Since(start) < 80*time.Millisecond {
					if via == "input" {
						if _, err := c.Write([]byte{'x'}); err != nil {
							t.Fatal(err)
						}
						if _, err := c.Read(buf); err != nil {
							t.Fatal(err)
						}
					} else {
						if !l.postFunc(func() { ran <- struct{}{} }) {
							t.Fatal("post refused")
						}
						<-ran
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
}
