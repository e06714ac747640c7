package engine

import (
	"log/slog"
	"time"
)

// Config configures an Engine. The zero value is ready to use: every field
// documents what zero means.
type Config struct {
	// Loops is the number of event loops. Zero means GOMAXPROCS. Each loop
	// wakes for its own connections, and every wake-up costs a thread
	// switch, so at a steady, moderate message rate fewer loops cost less
	// CPU per message while at saturation one loop per core does more
	// work. The engine adapts (Linux): a loop whose share of time awake,
	// added to loop 0's, is under 30% folds into loop 0, which then runs
	// its connections besides its own; loop 0 hands one folded loop back
	// when it is awake more than 60% of the time, all of them above 90%.
	// Connections never move between loops.
	Loops int
	// BlockingPoll makes a loop with nothing to do block its thread in
	// epoll_wait (Linux) instead of parking its goroutine in Go's
	// netpoller. A parked loop is woken only when some thread polls the
	// netpoller, and the one thread blocked there takes the first loop
	// with events, so under load one loop's events can wait for another
	// loop's busy spell: for latency under load (the reverse proxy sets
	// it: its p99 under wrk fell from 1.6x nginx's to nginx's), not for
	// many short idle spells, where parking costs less CPU (WebSocket echo
	// at 10k msg/s: about 20% less). Zero means false. Loops always block
	// on macOS and FreeBSD. A blocked loop holds its P in a system call:
	// so that the Go runtime does not take it away and wake another
	// thread at each idle spell, starting an engine with BlockingPoll
	// whose Loops equal GOMAXPROCS (and the CPUs or fewer) raises
	// GOMAXPROCS by one, once per process (runtime.GOMAXPROCS: Go then
	// stops adjusting it to CPU limits itself); zero Loops still means the
	// GOMAXPROCS before the raise. A blocking loop (this, IOUring, macOS,
	// FreeBSD) also yields to the Go scheduler at least every 5 ms while
	// it is at work (woken within 10 ms): a goroutine that has not been rescheduled for 10 ms
	// is taken by the runtime's sysmon for a runaway, preempted with a
	// signal or stripped of its P at each of sysmon's ticks (up to every
	// 20 µs), which cost the reverse proxy with IOUring about 9% of its
	// CPU per request (docs/benchmarks.md section 97).
	BlockingPoll bool
	// LockOSThread locks each loop's goroutine to its own OS thread
	// (runtime.LockOSThread) for the loop's life, so that a loop's work
	// stays on one thread instead of moving to another at each of its
	// yields. A locked loop's once-per-busy-millisecond yield then hands
	// its P to another thread and back, two thread wake-ups, during which
	// its thread sleeps and leaves the core to others: under the reverse
	// proxy's load this gave a better p99 than unlocked loops and than
	// locked loops that do not yield (docs/benchmarks.md section 57). A
	// locked loop that parks (in Go's netpoller without BlockingPoll, or
	// folded into loop 0) hands its P to another thread and is handed one
	// back when it wakes, a thread switch each way, so it is meant for use
	// with BlockingPoll. Zero means false. Ignored by the portable engine.
	LockOSThread bool
	// IOUring makes each loop wait through its own io_uring (Linux 6.15
	// or later): the wait is an IORING_OP_EPOLL_WAIT on the loop's epoll
	// set, so readiness works as without it; a round's readable
	// connections (up to 32) are read with one IORING_OP_RECV each, all
	// in one io_uring_enter, into a per-loop arena of 32 slots of 16 KiB
	// (512 KiB a loop; a recv reads at most 16 KiB where read() reads up
	// to ReadBufferSize); and the writes a round makes while its loop is awake
	// are deferred (copied into the connection's output queue) and go out
	// as IORING_OP_SEND/SENDMSG entries submitted in the same
	// io_uring_enter as the next wait: fewer transitions into the kernel
	// per request (README "Raw connections", docs/benchmarks.md §87). A
	// deferral that would pass WriteHighWater, take the queued bytes
	// plus those its loop holds deferred past MaxQueuedBytes, or take
	// its loop's deferred bytes past the loop's share of a quarter of
	// MaxQueuedBytes (MaxQueuedBytes/4/Loops; zero, so no deferral, when
	// that quarter is smaller than Loops) is written at once instead;
	// deferred bytes whose sends wait for room count as queued from then
	// on, so queued output can pass MaxQueuedBytes by up to that quarter.
	// A send completes with what the socket took; only the rest counts
	// as queued, against the watermarks and MaxQueuedBytes, as with
	// epoll. Loops then block their threads in the wait, as with
	// BlockingPoll, and do not fold (FixedLoops). When the kernel refuses
	// (no io_uring, or no IORING_OP_EPOLL_WAIT), the loops fall back to
	// epoll, the engine logs it once, and Stats.IOUringLoops says how
	// many loops use a ring; the loops that fell back still block their
	// threads in the wait and do not fold, as with the ring. Zero means
	// false. Ignored off Linux and by the portable engine.
	IOUring bool
	// FixedLoops keeps every loop on its own goroutine whatever the load
	// (no folding). Loops never fold off Linux or with Portable.
	FixedLoops bool
	// Balance picks the loop for each new connection. Zero means RoundRobin.
	// Ignored with ReusePort, where the kernel spreads connections.
	Balance Balance
	// ReusePort gives every loop its own listening socket bound with
	// SO_REUSEPORT, so loops accept in parallel.
	ReusePort bool
	// Portable runs the portable engine (Go's net package, one goroutine per
	// connection) instead of event loops. It is forced on platforms without
	// epoll or kqueue. It keeps the Conn/Handler API but none of the
	// memory properties of the loops.
	Portable bool
	// Inline runs OnData (and OnOpen, OnClose) on the event loop. The handler
	// promises never to block. Zero means handlers run on the worker pool.
	Inline bool

	// MaxConns bounds open connections. Zero means 1,000,000; negative means
	// no bound.
	MaxConns int
	// MaxConnsPerIP bounds open connections from one remote IP. Zero or
	// negative means no bound.
	MaxConnsPerIP int
	// PerIPv6Prefix is the prefix length an IPv6 client is counted by for
	// MaxConnsPerIP: every address of one /64 is one client by default,
	// since a subscriber or a host is usually given a whole /64. Zero means
	// 64; 128 counts each address on its own. IPv4 clients are counted by
	// their address.
	PerIPv6Prefix int
	// AcceptRate bounds accepted connections per second (token bucket).
	// Zero or negative means no bound.
	AcceptRate float64
	// AcceptBurst is the token bucket's depth. Zero means max(1, AcceptRate).
	AcceptBurst int

	// IdleTimeout closes a connection with nothing in progress and no bytes
	// moved for this long. Zero means 5 minutes; negative disables it.
	IdleTimeout time.Duration
	// ReadTimeout closes a connection whose message, once started, is not
	// received whole (consumed by OnData) within this long. Zero means 30 s;
	// negative disables it.
	ReadTimeout time.Duration
	// WriteTimeout closes a connection whose queued output makes no progress
	// for this long. Zero means 30 s; negative disables it.
	WriteTimeout time.Duration
	// LingerTimeout bounds a lingering close (Conn.CloseLinger, which the
	// WebSocket and HTTP/1.1 servers use when they close on a peer that
	// may still be sending): once the output is flushed and the write side
	// shut, input is read and thrown away for at most this long while the
	// peer has not closed its side; then the connection is reset. Zero
	// means 2 s: a peer hears of the close one round trip after it is sent
	// and answers at once, and 2 s covers a slow path's round trip with a
	// lost segment's first retransmission (1 s) besides. Negative turns
	// lingering off: CloseLinger is a plain close.
	LingerTimeout time.Duration
	// LingerBytes bounds the input a lingering close reads and throws away;
	// past it the connection is no longer read (the peer's sending stalls,
	// its reading of the answer does not) until the peer's end of stream
	// or LingerTimeout. The poll engine still sees a peer that closes then
	// (Stats.Lingers eof); the portable engine, which would have to read
	// to see it, holds the connection to LingerTimeout and resets it
	// (bytes). Zero means 4 MiB: what a peer may still have on its
	// way when it hears of the close, its socket's send buffer (Linux
	// autotunes it up to 4 MiB) and the rest of a message it must finish
	// before it can answer (a peer stalled in that send never reads the
	// answer: with 64 KiB, 2 of 50 Python WebSocket peers got their 1009,
	// docs/benchmarks.md section 80); throwing 4 MiB away costs about 64
	// reads. Negative means no bound but LingerTimeout.
	LingerBytes int
	// TickInterval is the resolution of the per-loop timing wheel: a timeout
	// fires within one tick after its deadline. Zero means 100 ms. A
	// timeout is capped at 2^30 ticks (3.4 years at 100 ms, 12 days at
	// 1 ms): a connection keeps its activity times as 32-bit tick stamps.
	TickInterval time.Duration

	// WriteHighWater is the per-connection queued output, in bytes, past
	// which SlowPolicy applies. Zero means 4 MiB.
	WriteHighWater int
	// WriteLowWater is where a connection paused by SlowPause resumes
	// reading. Zero means WriteHighWater/4.
	WriteLowWater int
	// SlowPolicy is what passing the high watermark does. Zero means
	// SlowClose.
	SlowPolicy SlowPolicy
	// MaxQueuedBytes bounds queued output across all connections; a write
	// that would pass it closes its connection as a slow consumer. Zero
	// means 1 GiB; negative means no bound.
	MaxQueuedBytes int64
	// MaxInputBytes bounds the unconsumed input kept for one connection; past
	// it the connection is closed with ReasonLimitReached. Zero means 4 MiB.
	MaxInputBytes int

	// Workers bounds the worker pool's goroutines. Zero means 1024.
	Workers int
	// WorkerQueue bounds tasks waiting for a worker (Dispatch fails with
	// ErrWorkerQueueFull past it; protocols answer 503 or close). Zero
	// means 65536. The lifecycle calls of handlers on the pool — OnOpen,
	// also after SetHandler, and OnClose — are queued past it: they must
	// run, and MaxConns bounds them.
	WorkerQueue int

	// ReadBufferSize is each loop's shared read buffer. Zero means 64 KiB.
	ReadBufferSize int
	// Backlog is the listen backlog. Zero means 4096.
	Backlog int

	// Logger receives the engine's logs. Nil means slog.Default().
	Logger *slog.Logger
	// Clock drives timeouts and the accept rate. Nil means the system clock.
	// The portable engine (Portable, and every platform without epoll or
	// kqueue) times its connections with read deadlines on Go's net.Conn,
	// so its idle, read and write timeouts run on the real clock whatever
	// Clock is; Clock still drives its accept rate and reported times.
	Clock Clock
}

// withDefaults returns c with zero fields replaced by their defaults.
func (c Config) withDefaults() Config {
	if c.Loops <= 0 {
		c.Loops = defaultLoops()
	}
	if c.MaxConns == 0 {
		c.MaxConns = 1_000_000
	}
	if c.AcceptBurst <= 0 {
		c.AcceptBurst = int(c.AcceptRate)
		if c.AcceptBurst < 1 {
			c.AcceptBurst = 1
		}
	}
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 5 * time.Minute
	}
	if c.ReadTimeout == 0 {
		c.ReadTimeout = 30 * time.Second
	}
	if c.WriteTimeout == 0 {
		c.WriteTimeout = 30 * time.Second
	}
	if c.LingerTimeout == 0 {
		c.LingerTimeout = 2 * time.Second
	}
	if c.LingerBytes == 0 {
		c.LingerBytes = 4 << 20
	}
	if c.TickInterval <= 0 {
		c.TickInterval = 100 * time.Millisecond
	}
	if c.WriteHighWater <= 0 {
		c.WriteHighWater = 4 << 20
	}
	if c.WriteLowWater <= 0 || c.WriteLowWater > c.WriteHighWater {
		c.WriteLowWater = c.WriteHighWater / 4
	}
	if c.MaxQueuedBytes == 0 {
		c.MaxQueuedBytes = 1 << 30
	}
	if c.MaxInputBytes <= 0 {
		c.MaxInputBytes = 4 << 20
	}
	if c.Workers <= 0 {
		c.Workers = 1024
	}
	if c.WorkerQueue <= 0 {
		c.WorkerQueue = 65536
	}
	if c.ReadBufferSize <= 0 {
		c.ReadBufferSize = 64 << 10
	}
	if c.Backlog <= 0 {
		c.Backlog = 4096
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	if c.Clock == nil {
		c.Clock = systemClock{}
	}
	return c
}

// DefaultConfig returns a Config with every default filled in, as New would
// apply them (Logger and Clock left nil).
func DefaultConfig() Config {
	c := Config{}.withDefaults()
	c.Logger, c.Clock = nil, nil
	return c
}
