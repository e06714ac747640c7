// Package engine is warren's connection core: per-core event loops that
// accept, read, write, time out, bound and drain TCP connections, with the
// same Conn/Handler API on a portable engine built on Go's net package.
//
// # Model
//
// An Engine owns Config.Loops event loops (epoll on Linux, kqueue on macOS
// and FreeBSD). Each Conn belongs to one loop for its whole life. A loop
// reads into one shared buffer and calls the Handler's OnData with every
// unconsumed byte of the connection; the handler returns how many it
// consumed and the engine keeps only the rest, in a pooled buffer, until the
// next read. An idle connection therefore holds no goroutine, no buffer and
// no timer object: timeouts live in a per-loop timing wheel and are checked
// lazily, so a read never resets a timer.
//
// Loops fold (Linux): a wake-up costs a thread switch, so under light load
// a mostly idle loop nests its poller in loop 0's and parks, and loop 0 runs
// its connections besides its own until it gets busy (see Config.Loops and
// Config.FixedLoops). Connections stay on their loop either way.
//
// An idle loop parks its goroutine in Go's netpoller (Linux), which is
// cheapest when waits are many and short; with Config.BlockingPoll it
// blocks its own thread in epoll_wait instead, so that under load one
// loop's events never wait for another loop's busy spell (the reverse
// proxy's choice; the engine then keeps one P spare). Config.LockOSThread
// locks each loop to its own OS thread, so that a loop's work is not moved
// between threads by the Go scheduler (the reverse proxy's choice too).
//
// With Config.Inline the handler runs on the loop and must never block.
// Otherwise it runs on a bounded worker pool, one call at a time per
// connection; protocols that parse on the loop hand blocking work to the pool
// with Conn.Dispatch.
//
// # Concurrency
//
// Each Conn belongs to one loop. Its inline handler's callbacks run there,
// and so do OnStateChange, OnDrain, OnTimeout and OnEOF for every handler;
// on the portable engine all of a connection's callbacks run on its reader
// goroutine. Conn.Write, Writev, Close, CloseWithReason, CloseWithDetail,
// Abort, AbortWithDetail, Dispatch, Post, PauseRead, ResumeRead,
// SetIdleTimeout, SetReadTimeout, SetContext, AddServed and the accessors
// of identity, addresses, state and counters are safe from any goroutine
// (the Conn documentation lists them). SetHandler, Handler, Protocol and
// SetMessagePending belong to the loop: call them from a callback that runs
// there, or from a function given to Conn.Post.
//
// A write goes straight to the socket when nothing is queued and the socket
// takes it; otherwise the rest is queued and flushed when the socket is
// writable. Other goroutines reach a loop through its mailbox, which wakes
// the loop with an eventfd (or EVFILT_USER) only when it sleeps. The output
// queue and the descriptor are guarded by a small per-connection mutex, so
// a writer never writes to a descriptor the loop has closed and reused.
// LOCKS.md lists the engine's locks and their order. Code running on a
// loop must not call the Engine methods that wait for the loops (Listen,
// ListenOn, Conns, CloseConn, Shutdown, Close).
//
// # Bounds and reasons
//
// Every bound has a default, a Config field and a typed reason when it is
// hit: MaxConns, MaxConnsPerIP and AcceptRate refuse connections at accept
// (counted in Stats.Rejected by Bound and closed with ReasonLimitReached);
// MaxInputBytes closes with ReasonLimitReached; WriteHighWater applies the
// SlowPolicy (ReasonSlowConsumer); MaxQueuedBytes bounds all queued output
// (ReasonSlowConsumer with detail DetailTotalQueueFull);
// IdleTimeout, ReadTimeout and WriteTimeout close with their reasons, within
// one TickInterval of the deadline. Accept errors such as EMFILE back off
// and are logged once per burst.
//
// # Shutdown
//
// Shutdown stops accepting, marks every connection Draining, calls the
// handler's OnDrain when it has one (HTTP answers with Connection: close,
// WebSocket sends close 1001) or else closes each connection as soon as it
// is quiet, waits for in-flight work, and closes whatever is left when the
// context ends.
package engine
