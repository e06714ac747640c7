package main

import (
	"flag"
	"fmt"
	"strings"

	"github.com/warrenhq/warren/engine"
)

// engineFlags registers a flag for every engine.Config field. Defaults shown
// by -h are the engine's own.
func engineFlags(fs *flag.FlagSet, c *engine.Config) {
	d := engine.DefaultConfig()
	fs.IntVar(&c.Loops, "loops", 0, "event loops (0: GOMAXPROCS)")
	fs.BoolVar(&c.FixedLoops, "fixed-loops", false, "keep every loop on its own goroutine whatever the load (no folding of idle loops into loop 0)")
	fs.Var(balanceFlag{&c.Balance}, "balance", "how new connections are spread over loops: round-robin or least-connections")
	fs.BoolVar(&c.ReusePort, "reuseport", false, "one SO_REUSEPORT listening socket per loop")
	fs.BoolVar(&c.Portable, "portable", false, "use the portable engine (Go net package, goroutine per connection)")
	fs.BoolVar(&c.Inline, "inline", false, "run handlers on the event loop (they must never block)")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns, "maximum open connections (negative: unbounded)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "maximum open connections per remote IP (0: unbounded)")
	fs.Float64Var(&c.AcceptRate, "accept-rate", 0, "maximum accepted connections per second (0: unbounded)")
	fs.IntVar(&c.AcceptBurst, "accept-burst", 0, "accept-rate token bucket depth (0: the rate)")
	fs.DurationVar(&c.IdleTimeout, "conn-idle-timeout", d.IdleTimeout, "close connections idle this long (negative: never)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", d.ReadTimeout, "close connections whose started message is not complete within this (negative: never)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", d.WriteTimeout, "close connections whose queued output makes no progress this long (negative: never)")
	fs.DurationVar(&c.TickInterval, "tick", d.TickInterval, "timer wheel resolution")
	fs.IntVar(&c.WriteHighWater, "write-high-water", d.WriteHighWater, "per-connection queued output bytes where the slow-consumer policy applies")
	fs.IntVar(&c.WriteLowWater, "write-low-water", 0, "queued bytes where a paused connection resumes reading (0: high/4)")
	fs.Var(slowFlag{&c.SlowPolicy}, "slow-policy", "past the high watermark: close or pause")
	fs.Int64Var(&c.MaxQueuedBytes, "max-queued-bytes", d.MaxQueuedBytes, "queued output bytes over all connections (negative: unbounded)")
	fs.IntVar(&c.MaxInputBytes, "max-input-bytes", d.MaxInputBytes, "unconsumed input bytes kept per connection")
	fs.IntVar(&c.Workers, "workers", d.Workers, "maximum worker goroutines for blocking handlers")
	fs.IntVar(&c.WorkerQueue, "worker-queue", d.WorkerQueue, "maximum tasks waiting for a worker")
	fs.IntVar(&c.ReadBufferSize, "read-buffer", d.ReadBufferSize, "per-loop shared read buffer bytes")
	fs.IntVar(&c.Backlog, "backlog", d.Backlog, "listen backlog")
}

type balanceFlag struct{ b *engine.Balance }

func (f balanceFlag) String() string {
	if f.b == nil {
		return engine.RoundRobin.String()
	}
	return f.b.String()
}

func (f balanceFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "round-robin", "rr":
		*f.b = engine.RoundRobin
	case "least-connections", "least-conns", "lc":
		*f.b = engine.LeastConnections
	default:
		return fmt.Errorf("want round-robin or least-connections")
	}
	return nil
}

type slowFlag struct{ p *engine.SlowPolicy }

func (f slowFlag) String() string {
	if f.p == nil {
		return engine.SlowClose.String()
	}
	return f.p.String()
}

func (f slowFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "close":
		*f.p = engine.SlowClose
	case "pause":
		*f.p = engine.SlowPause
	default:
		return fmt.Errorf("want close or pause")
	}
	return nil
}
