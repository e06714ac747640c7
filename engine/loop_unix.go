//go:build linux || darwin || freebsd

package engine

import (
	"context"
	"errors"
	"net"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"

	"github.com/warrenhq/warren/internal/poll"
	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/internal/timerwheel"
)

const pollSupported = true

type opKind uint8

const (
	opFunc opKind = iota
	opRegister
	opClose
	opArmWrite
	opPause
	opResume
	opRetime
	opQuiet
	opDataDone
	opAdopt // fn adopts a folding loop: fold_unix.go
	opPost  // fn runs for a live c: Conn.Post
)

// op is a request posted to a loop's mailbox by another goroutine.
type op struct {
	kind opKind
	c    *Conn
	buf  []byte
	fn   func()
}

// listener is one listening socket on a loop.
type listener struct {
	fd      int
	spec    *Listener
	paused  bool
	backoff time.Duration
}

// loop is one event loop: a poller, the connections it owns, a shared read
// buffer, a timing wheel and a mailbox. Everything but the mailbox, the
// counters and tick is touched only by the loop's goroutine.
type loop struct {
	e      *Engine
	idx    int
	poller *poll.Poller
	events []poll.Event
	buf    []byte
	conns  []*Conn // indexed by descriptor
	lns    []*listener
	wheel  *timerwheel.Wheel[*Conn]
	tick   atomic.Int64
	stats  loopStats

	// mbMu guards mb; mbLen mirrors len(mb) for the lock-free check before
	// the loop sleeps.
	mbMu     sync.Mutex
	mb       []op
	spare    []op
	mbLen    atomic.Int32
	sleeping atomic.Bool
	closedMB bool // guarded by mbMu: the loop has stopped

	stopping bool
	stopped  chan struct{}
	folding  // fold_unix.go
	scratch  acceptScratch
}

// startLoops creates the loops and starts them, without listeners.
func startLoops(e *Engine) error {
	cfg := &e.cfg
	n := cfg.Loops
	loops := make([]*loop, n)
	now := e.tickAt(cfg.Clock.Now())
	for i := range loops {
		p, err := poll.New(1024)
		if err != nil {
			for _, l := range loops[:i] {
				l.poller.Close()
			}
			return err
		}
		l := &loop{
			e: e, idx: i, poller: p,
			events:  make([]poll.Event, 1024),
			buf:     make([]byte, cfg.ReadBufferSize),
			wheel:   timerwheel.New[*Conn](1024, now),
			stopped: make(chan struct{}),
		}
		l.tick.Store(now)
		l.initFolding(n)
		loops[i] = l
	}
	e.loops = loops
	for _, l := range loops {
		go l.run()
	}
	return nil
}

// listenLoops opens sp's sockets — one per loop with ReusePort, else one on
// loop 0, which hands accepted connections out with pick — and adds them
// to the running loops. It sets sp.addr.
func listenLoops(e *Engine, sp *Listener, addr string) error {
	cfg := &e.cfg
	var fds []int
	fail := func(err error) error {
		for _, fd := range fds {
			unix.Close(fd)
		}
		return err
	}
	var bound net.Addr
	if sp.ln != nil {
		fd, err := dupListener(sp.ln, cfg.Backlog)
		bound = sp.ln.Addr()
		sp.ln.Close()
		sp.ln = nil
		if err != nil {
			return fail(err)
		}
		fds = append(fds, fd)
	} else {
		count := 1
		if cfg.ReusePort {
			count = len(e.loops)
		}
		for i := 0; i < count; i++ {
			fd, a, err := listenFD(addr, cfg.ReusePort, cfg.Backlog)
			if err != nil {
				return fail(err)
			}
			if bound == nil {
				bound = a
				addr = a.String() // later reuse-port sockets bind the chosen port
			}
			fds = append(fds, fd)
		}
	}
	// Each loop adds its socket to its own poller: the loops are running.
	errs := make(chan error, len(fds))
	for i, fd := range fds {
		l := e.loops[i]
		ln := &listener{fd: fd, spec: sp}
		if !l.postFunc(func() {
			if l.stopping {
				unix.Close(ln.fd)
				errs <- ErrServerClosed
				return
			}
			if err := l.poller.Add(ln.fd, true, false); err != nil {
				unix.Close(ln.fd)
				errs <- err
				return
			}
			l.lns = append(l.lns, ln)
			errs <- nil
		}) {
			unix.Close(fd)
			errs <- ErrServerClosed
		}
	}
	var first error
	for range fds {
		if err := <-errs; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		// Sockets already added stay until the engine stops; none accept
		// for long, since the caller sees the error.
		return first
	}
	sp.fds = fds
	sp.addr = bound
	return nil
}

// yieldAfter is how long a loop that never finds itself idle runs before
// it lets the Go scheduler run other goroutines on its P.
const yieldAfter = time.Millisecond

func (l *loop) run() {
	defer close(l.stopped)
	e := l.e
	tickMS := int(e.tickDur / time.Millisecond)
	if tickMS < 1 {
		tickMS = 1
	}
	busySince := time.Now()
	l.load.start(busySince)
	for !l.stopping {
		timeout := tickMS
		l.sleeping.Store(true)
		if l.mbLen.Load() > 0 || (len(l.folded) > 0 && l.foldedMail()) {
			timeout = 0
		}
		waitStart := time.Now()
		l.load.idle(waitStart)
		n, err := l.poller.Wait(l.events, timeout)
		l.sleeping.Store(false)
		woke := time.Now()
		l.load.wake(woke)
		if timeout != 0 && woke.Sub(waitStart) > 100*time.Microsecond {
			// It slept: a new busy stretch starts. (A poll that returned
			// nothing at once, or only a mailbox wake-up, is not idleness:
			// a loop kept busy by its mailbox must yield too.)
			busySince = woke
		}
		if err != nil {
			if errors.Is(err, poll.ErrClosed) {
				break
			}
			e.errLog.Log("engine: poll wait", err)
			time.Sleep(time.Millisecond)
			continue
		}
		l.process(n, woke)
		if len(l.folded) > 0 {
			l.runFolded(woke)
		}
		if n > 0 && woke.Sub(busySince) >= yieldAfter {
			// A loop with events every time it polls never parks, and the
			// Go scheduler would let it hold its P until its 10 ms forced
			// preemption while another loop or a worker readied onto the
			// same P waits (p99 under wrk -c128 on 2 cores: 14-32 ms).
			// Yielding after every batch fixed the tail but cost 10% CPU
			// per request; once per busy millisecond bounds the wait.
			runtime.Gosched()
			busySince = time.Now()
		}
		if woke.Sub(l.load.since) >= foldWindow {
			l.adapt(woke)
		}
	}
	l.unfoldAll()
}

// process handles n polled events, the mailbox and the timers due at now.
func (l *loop) process(n int, now time.Time) {
	e := l.e
	if !e.sysClock {
		now = e.cfg.Clock.Now() // the caller's clock read serves otherwise
	}
	l.tick.Store(e.tickAt(now))
	for i := 0; i < n; i++ {
		ev := &l.events[i]
		if ln := l.listenerOf(ev.Fd); ln != nil {
			l.accept(ln)
			continue
		}
		var c *Conn
		if ev.Fd < len(l.conns) {
			c = l.conns[ev.Fd]
		}
		if c == nil {
			if len(l.folded) > 0 {
				l.markFolded(ev.Fd)
			}
			continue
		}
		if ev.Writable {
			l.onWritable(c)
		}
		if ev.Readable && c.flags&fRegistered != 0 {
			if c.interest&ioRead != 0 {
				l.onReadable(c)
			} else if ev.Hangup {
				// Not reading, but the socket is dead (RST or both
				// directions shut): level-triggered hang-ups would
				// otherwise repeat forever.
				err := sockError(int(c.fd))
				l.closeNow(c, reasonFor(err), err)
			}
		}
	}
	l.runMailbox()
	l.wheel.Advance(l.tick.Load(), l.expire)
}

func (l *loop) listenerOf(fd int) *listener {
	for _, ln := range l.lns {
		if ln.fd == fd {
			return ln
		}
	}
	return nil
}

// post queues o for the loop and wakes it if it sleeps. It reports false
// once the loop has stopped.
func (l *loop) post(o op) bool {
	l.mbMu.Lock()
	if l.closedMB {
		l.mbMu.Unlock()
		if o.buf != nil {
			pool.Put(o.buf)
		}
		return false
	}
	l.mb = append(l.mb, o)
	l.mbLen.Add(1)
	// Wake under mbMu: stop closes the poller after marking the mailbox
	// closed under the same lock, so the eventfd cannot be closed (and
	// its number reused) under this write.
	if l.mustWake() {
		l.poller.Wake()
	}
	l.mbMu.Unlock()
	return true
}

func (l *loop) postFunc(fn func()) bool { return l.post(op{kind: opFunc, fn: fn}) }

func (c *Conn) post(kind opKind, buf []byte) {
	if c.p != nil {
		c.p.post(c, kind)
		return
	}
	c.l.post(op{kind: kind, c: c, buf: buf})
}

func (l *loop) runMailbox() {
	if l.mbLen.Load() == 0 {
		return
	}
	l.mbMu.Lock()
	ops := l.mb
	l.mb = l.spare[:0]
	l.mbLen.Store(0)
	l.mbMu.Unlock()
	for i := range ops {
		o := &ops[i]
		l.handle(o)
		*o = op{}
	}
	l.spare = ops[:0]
}

func (l *loop) handle(o *op) {
	c := o.c
	switch o.kind {
	case opFunc, opAdopt:
		o.fn()
		return
	case opPost:
		if c.flags&fRegistered != 0 {
			o.fn()
		}
		return
	case opRegister:
		l.register(c)
		return
	case opDataDone:
		l.dataDone(c, o.buf, o.fn != nil)
		return
	}
	if c.flags&fRegistered == 0 {
		return
	}
	switch o.kind {
	case opClose:
		l.handleClose(c)
	case opArmWrite:
		l.armWrite(c)
	case opPause:
		c.flags |= fUserPaused
		l.updateInterest(c)
	case opResume:
		c.flags &^= fUserPaused
		l.updateInterest(c)
	case opRetime:
		l.retime(c)
	case opQuiet:
		l.redeliver(c)
		l.updateState(c)
		l.retime(c) // timers are not kept while work is in flight
	}
}

// redeliver calls OnData again with pending input once dispatched work is
// done: a protocol that stopped parsing while a request was in flight (HTTP
// pipelining) resumes where it left off without waiting for new bytes.
func (l *loop) redeliver(c *Conn) {
	if !c.inline() || len(c.in) == 0 || c.inflight.Load() > 0 || c.flags&fRegistered == 0 {
		return
	}
	used := l.e.callOnData(c, c.in)
	if c.flags&fRegistered == 0 || used == 0 {
		return
	}
	l.keepRest(c, c.in, used, true)
	l.updateState(c)
}

// accept takes pending connections off ln, applies admission and hands each
// to a loop. A bounded batch keeps connections on this loop served.
func (l *loop) accept(ln *listener) {
	e := l.e
	for i := 0; i < 256; i++ {
		fd, remote, err := l.acceptConn(ln.fd)
		if err != nil {
			switch err {
			case unix.EAGAIN:
				ln.backoff = 0
				return
			case unix.EINTR, unix.ECONNABORTED, unix.EPROTO:
				continue
			case unix.EMFILE, unix.ENFILE, unix.ENOBUFS, unix.ENOMEM:
				l.stats.rejected[BoundDescriptors].Add(1)
				e.errLog.Log("engine: accept: out of descriptors or memory; backing off", err)
				l.pauseListener(ln)
				return
			default:
				e.errLog.Log("engine: accept", err)
				l.pauseListener(ln)
				return
			}
		}
		ln.backoff = 0
		if b, ok := e.admit(remote.Addr()); !ok {
			// Count before closing, so a peer that saw the close sees it
			// counted.
			l.stats.rejected[b].Add(1)
			l.stats.closed[ReasonLimitReached].Add(1)
			unix.Close(fd)
			continue
		}
		unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
		c := e.newConn(fd, remote, ln.spec.h, ln.spec.inline)
		c.ln = ln.spec.idx
		target := l.pick()
		c.l = target
		if target == l {
			l.register(c)
		} else if !target.post(op{kind: opRegister, c: c}) {
			unix.Close(fd)
			e.release(c)
		}
	}
}

// pauseListener stops polling ln for a while after an accept error, so a
// descriptor shortage never turns into a busy loop.
func (l *loop) pauseListener(ln *listener) {
	if ln.paused {
		return
	}
	if ln.backoff == 0 {
		ln.backoff = 5 * time.Millisecond
	} else if ln.backoff *= 2; ln.backoff > time.Second {
		ln.backoff = time.Second
	}
	ln.paused = true
	l.poller.Del(ln.fd)
	time.AfterFunc(ln.backoff, func() {
		l.postFunc(func() {
			if ln.paused && ln.fd >= 0 {
				ln.paused = false
				l.poller.Add(ln.fd, true, false)
			}
		})
	})
}

func (l *loop) pick() *loop {
	e := l.e
	if e.cfg.ReusePort || len(e.loops) == 1 {
		return l
	}
	if e.cfg.Balance == LeastConnections {
		best := e.loops[0]
		for _, o := range e.loops[1:] {
			if o.stats.conns.Load() < best.stats.conns.Load() {
				best = o
			}
		}
		return best
	}
	return e.loops[e.rr.Add(1)%uint64(len(e.loops))]
}

func (l *loop) register(c *Conn) {
	e := l.e
	if l.stopping {
		unix.Close(int(c.fd))
		e.release(c)
		return
	}
	for int(c.fd) >= len(l.conns) {
		n := 2 * len(l.conns)
		if n < 1024 {
			n = 1024
		}
		grown := make([]*Conn, n)
		copy(grown, l.conns)
		l.conns = grown
	}
	dialing := c.flags&fDialing != 0
	if err := l.poller.Add(int(c.fd), !dialing, dialing); err != nil {
		unix.Close(int(c.fd))
		e.release(c)
		l.stats.closed[ReasonIOError].Add(1)
		return
	}
	l.conns[int(c.fd)] = c
	c.interest = ioRead
	if dialing {
		c.interest = ioWrite
	}
	c.flags |= fRegistered
	now := l.tick.Load()
	c.lastRead = now
	c.timer.Value = c
	l.stats.accepted.Add(1)
	l.stats.conns.Add(1)
	l.stats.states[StateNew].Add(1)
	if dialing {
		l.retime(c) // the connect timeout
		return
	}
	l.opened(c)
}

// opened runs OnOpen for a connection that is ready for I/O.
func (l *loop) opened(c *Conn) {
	e := l.e
	if c.hcaps&capOpen != 0 {
		if c.inline() {
			e.callOnOpen(c)
		} else {
			c.inflight.Add(1)
			e.workers.submit(c, func() {
				defer c.taskDone()
				e.callOnOpen(c)
			}, true)
		}
	}
	if c.flags&fRegistered == 0 {
		return // closed by OnOpen
	}
	if e.draining.Load() {
		l.drainConn(c)
	}
	l.updateState(c)
	l.retime(c)
}

func (l *loop) onReadable(c *Conn) {
	n, err := readFD(int(c.fd), l.buf)
	if n > 0 {
		l.onInput(c, l.buf[:n])
		return
	}
	if err == unix.EAGAIN {
		return
	}
	if err == nil { // end of file
		c.flags |= fReadEOF
		l.updateInterest(c)
		l.e.callOnEOF(c)
		if c.flags&fRegistered == 0 {
			return
		}
		if c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
			return // updateState closes it once the work in flight is done
		}
		if l.quiet(c) {
			l.closeNow(c, ReasonPeerClosed, nil)
		} else {
			c.requestClose(ReasonPeerClosed, nil, false) // flush queued output first
		}
		return
	}
	l.closeNow(c, reasonFor(err), err)
}

func (l *loop) onInput(c *Conn, data []byte) {
	e := l.e
	n := len(data)
	c.bytesIn.Add(uint64(n))
	l.stats.bytesIn.Add(uint64(n))
	c.lastRead = l.tick.Load()
	fromIn := false
	if len(c.in) > 0 {
		if len(c.in)+n > e.cfg.MaxInputBytes {
			l.closeNow(c, ReasonLimitReached, nil)
			return
		}
		c.in = append(pool.Grow(c.in, n), data...)
		data, fromIn = c.in, true
	}
	if !c.inline() {
		buf := data
		if !fromIn {
			buf = append(pool.Get(len(data))[:0], data...)
		}
		c.in = nil
		c.flags |= fWorkerBusy
		l.updateInterest(c)
		l.updateState(c)
		e.workers.submit(c, func() {
			used := e.callOnData(c, buf)
			var rest []byte
			if used < len(buf) {
				rest = buf[:copy(buf, buf[used:])]
			} else {
				pool.Put(buf)
			}
			c.l.post(op{kind: opDataDone, c: c, buf: rest, fn: progressMark(used > 0)})
		}, true)
		return
	}
	used := e.callOnData(c, data)
	if c.flags&fRegistered == 0 {
		return // closed during OnData; closeNow released c.in
	}
	l.keepRest(c, data, used, fromIn)
	l.updateState(c)
}

// progressMark encodes "the handler consumed something" in an op without
// widening it: a non-nil fn.
func progressMark(progress bool) func() {
	if progress {
		return noop
	}
	return nil
}

func noop() {}

// keepRest stores the unconsumed tail of data as c's pending input.
func (l *loop) keepRest(c *Conn, data []byte, used int, fromIn bool) {
	rest := len(data) - used
	if rest == 0 {
		if c.in != nil {
			pool.Put(c.in)
			c.in = nil
		}
		if c.flags&fMessage == 0 {
			c.msgStart = 0
		}
		return
	}
	if rest > l.e.cfg.MaxInputBytes {
		l.closeNow(c, ReasonLimitReached, nil)
		return
	}
	if fromIn {
		c.in = c.in[:copy(c.in, c.in[used:])]
	} else {
		c.in = append(pool.Get(rest)[:0], data[used:]...)
	}
	if c.msgStart == 0 || used > 0 {
		c.msgStart = l.tick.Load()
		l.retime(c)
	}
}

// dataDone takes back a connection whose OnData ran on the worker pool.
func (l *loop) dataDone(c *Conn, rest []byte, progress bool) {
	c.flags &^= fWorkerBusy
	if c.flags&fRegistered == 0 {
		if rest != nil {
			pool.Put(rest)
		}
		return
	}
	c.in = rest
	if len(rest) == 0 {
		if rest != nil {
			pool.Put(rest)
			c.in = nil
		}
		c.msgStart = 0
	} else if c.msgStart == 0 || progress {
		c.msgStart = l.tick.Load()
	}
	l.updateInterest(c)
	l.updateState(c)
	l.retime(c)
}

func (l *loop) onWritable(c *Conn) {
	e := l.e
	if c.flags&fDialing != 0 {
		if err := sockError(int(c.fd)); err != nil {
			l.closeNow(c, ReasonIOError, err)
			return
		}
		c.flags &^= fDialing
		c.lastRead = l.tick.Load()
		l.updateInterest(c)
		l.opened(c)
		return
	}
	c.mu.Lock()
	empty, err := c.flushLocked()
	queued := c.out.len()
	c.mu.Unlock()
	if err != nil {
		l.closeNow(c, reasonFor(err), err)
		return
	}
	if empty && c.flags&fFlushClose != 0 {
		l.finishClose(c)
		return
	}
	if c.flags&fSlowPaused != 0 && queued <= e.cfg.WriteLowWater {
		c.flags &^= fSlowPaused
	}
	if empty || c.flags&fSlowPaused == 0 {
		l.updateInterest(c)
	}
	if empty {
		l.updateState(c)
	}
}

func (l *loop) armWrite(c *Conn) {
	e := l.e
	c.mu.Lock()
	c.armPending = false
	queued := c.out.len()
	c.mu.Unlock()
	if queued > e.cfg.WriteHighWater && e.cfg.SlowPolicy == SlowPause {
		c.flags |= fSlowPaused
	}
	l.updateInterest(c)
	l.retime(c)
}

// updateInterest registers the poll interest c needs now.
func (l *loop) updateInterest(c *Conn) {
	if c.flags&fRegistered == 0 {
		return
	}
	if c.flags&fDialing != 0 {
		return
	}
	var want uint8
	if c.flags&(fUserPaused|fSlowPaused|fWorkerBusy|fReadEOF|fFlushClose) == 0 {
		want = ioRead
	}
	c.mu.Lock()
	if c.out != nil {
		want |= ioWrite
	}
	c.mu.Unlock()
	if want == c.interest {
		return
	}
	c.interest = want
	if err := l.poller.Mod(int(c.fd), want&ioRead != 0, want&ioWrite != 0); err != nil {
		l.closeNow(c, ReasonIOError, err)
	}
}

// quiet reports whether c has nothing in progress: no pending input, no
// handler work and no queued output.
func (l *loop) quiet(c *Conn) bool {
	if c.pending() || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
		return false
	}
	c.mu.Lock()
	empty := c.out == nil
	c.mu.Unlock()
	return empty
}

// updateState moves c between Active and Idle (or Draining), and closes a
// draining connection as soon as it is quiet, or a half-closed one once
// its last work is done.
func (l *loop) updateState(c *Conn) {
	if c.flags&fRegistered == 0 {
		return
	}
	busy := c.pending() || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0
	to := StateIdle
	if c.flags&fDrainQuiet != 0 || (l.e.draining.Load() && c.State() == StateDraining) {
		to = StateDraining
	} else if busy {
		to = StateActive
	}
	l.setState(c, to)
	working := c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0
	switch {
	case c.flags&fReadEOF != 0 && !working:
		// Half-closed and nothing left to answer: a partial message can
		// no longer complete.
		c.requestClose(ReasonPeerClosed, nil, false)
	case c.flags&fDrainQuiet != 0 && !busy:
		c.requestClose(ReasonShutdown, nil, false)
	}
}

func (l *loop) setState(c *Conn, to State) {
	from := State(c.state.Load())
	if from == to {
		return
	}
	c.state.Store(uint32(to))
	l.stats.states[from].Add(-1)
	if to != StateClosed {
		l.stats.states[to].Add(1)
	}
	l.e.callOnStateChange(c, from, to)
}

// handleClose carries out a close requested with requestClose.
func (l *loop) handleClose(c *Conn) {
	c.mu.Lock()
	abort, empty := c.abort, c.out == nil
	c.mu.Unlock()
	if abort || empty {
		l.finishClose(c)
		return
	}
	c.flags |= fFlushClose
	l.updateInterest(c)
	l.retime(c)
}

func (l *loop) finishClose(c *Conn) {
	c.mu.Lock()
	r, err := c.closeWhy, c.closeError()
	c.mu.Unlock()
	if r == ReasonNone {
		r = ReasonLocal
	}
	l.closeNow(c, r, err)
}

// closeNow closes c's descriptor and runs OnClose. It is idempotent.
func (l *loop) closeNow(c *Conn, r CloseReason, err error) {
	if c.flags&fRegistered == 0 {
		return
	}
	e := l.e
	c.mu.Lock()
	if c.closeWhy != ReasonNone {
		r, err = c.closeWhy, c.closeError()
	} else {
		c.closeWhy = r
		c.setCloseError(err)
	}
	detail := c.closeDetail()
	c.closed, c.closing = true, true
	c.releaseOutLocked(e)
	c.mu.Unlock()

	c.flags &^= fRegistered
	l.conns[int(c.fd)] = nil
	// Counted before the descriptor closes, so a peer that saw the close
	// sees it counted.
	l.stats.conns.Add(-1)
	l.stats.closed[r].Add(1)
	if detail != nil {
		e.countDetail(c, r, detail)
	}
	unix.Close(int(c.fd))
	l.wheel.Remove(&c.timer)
	if c.in != nil {
		pool.Put(c.in)
		c.in = nil
	}
	l.stats.observeDuration(time.Duration(e.cfg.Clock.Now().UnixNano() - c.created))
	l.setState(c, StateClosed)
	e.release(c)
	if c.hcaps&capClose != 0 {
		if h := c.h; c.inline() {
			e.callOnClose(c, h, r, err)
		} else {
			e.workers.submit(c, func() { e.callOnClose(c, h, r, err) }, true)
		}
	}
}

// retime makes sure c's timer fires no later than its earliest deadline.
func (l *loop) retime(c *Conn) {
	if c.flags&fRegistered == 0 {
		return
	}
	dl, r := l.deadline(c)
	if r == ReasonNone {
		return // the entry, if any, finds nothing due and lapses
	}
	if !c.timer.Scheduled() || dl < c.timer.Deadline() {
		l.wheel.Schedule(&c.timer, dl)
	}
}

func (l *loop) retimeAll() {
	for _, c := range l.conns {
		if c != nil {
			l.retime(c)
		}
	}
}

func msTicks(e *Engine, ms int32, def time.Duration) int64 {
	switch {
	case ms < 0:
		return 0
	case ms > 0:
		return e.ticks(time.Duration(ms) * time.Millisecond)
	case def <= 0:
		return 0
	}
	return e.ticks(def)
}

// deadline returns c's earliest deadline in ticks and the reason it would
// close for, or ReasonNone when no timeout applies. Deadlines are one tick
// late rather than early: activity is stamped with the tick it happened in.
func (l *loop) deadline(c *Conn) (int64, CloseReason) {
	e := l.e
	c.mu.Lock()
	queued, lastWrite := c.out != nil, c.lastWrite
	c.mu.Unlock()
	best, why := int64(1<<62), ReasonNone
	if c.flags&fDialing != 0 {
		if e.cfg.WriteTimeout > 0 {
			return c.lastRead + e.ticks(e.cfg.WriteTimeout) + 1, ReasonWriteTimeout
		}
		return best, why
	}
	if queued && e.cfg.WriteTimeout > 0 {
		best, why = lastWrite+e.ticks(e.cfg.WriteTimeout)+1, ReasonWriteTimeout
	}
	if c.flags&fFlushClose != 0 || c.flags&fWorkerBusy != 0 || c.inflight.Load() > 0 {
		return best, why // closing, or the handler is working: only writes are timed
	}
	idleDef, readDef := e.timeouts(c.ln)
	if c.pending() {
		if t := msTicks(e, c.readTO.Load(), readDef); t > 0 && c.msgStart+t+1 < best {
			best, why = c.msgStart+t+1, ReasonReadTimeout
		}
	} else if t := msTicks(e, c.idleTO.Load(), idleDef); t > 0 {
		last := c.lastRead
		if lastWrite > last {
			last = lastWrite
		}
		if last+t+1 < best {
			best, why = last+t+1, ReasonIdleTimeout
		}
	}
	return best, why
}

// expire runs when c's timer entry fires: it closes c if a deadline has
// passed, or re-arms the entry for the next one.
func (l *loop) expire(ent *timerwheel.Entry[*Conn]) {
	c := ent.Value
	if c.flags&fRegistered == 0 {
		return
	}
	now := l.tick.Load()
	dl, why := l.deadline(c)
	if why == ReasonNone {
		return
	}
	if dl > now {
		l.wheel.Schedule(&c.timer, dl)
		return
	}
	if why == ReasonWriteTimeout {
		if c.flags&fDialing != 0 {
			l.closeNow(c, ReasonIOError, syscall.ETIMEDOUT)
			return
		}
		l.closeNow(c, ReasonWriteTimeout, nil)
		return
	}
	if l.e.callOnTimeout(c, why) {
		if c.flags&fRegistered == 0 {
			return
		}
		c.lastRead = now
		if c.pending() {
			c.msgStart = now
		}
		l.retime(c)
		return
	}
	c.requestClose(why, nil, false)
}

// drainConn starts a connection's goodbye: its protocol's OnDrain, then,
// unless the protocol closes c itself, a close as soon as c is quiet. The
// engine tracks quiet for whichever handler is current, so a response
// finishing on a worker while the drain starts cannot leave c open.
func (l *loop) drainConn(c *Conn) {
	l.setState(c, StateDraining)
	if l.e.callOnDrain(c) {
		return
	}
	if c.flags&fRegistered == 0 {
		return
	}
	c.flags |= fDrainQuiet
	l.updateState(c)
}

func (l *loop) drainAll() {
	for _, c := range l.conns {
		if c != nil && c.flags&fRegistered != 0 {
			l.drainConn(c)
		}
	}
}

func (l *loop) stopAccepting() {
	for _, ln := range l.lns {
		if !ln.paused {
			l.poller.Del(ln.fd)
		}
		unix.Close(ln.fd)
		ln.fd, ln.paused = -1, true
	}
	l.lns = nil
}

func (l *loop) closeAll() {
	for _, c := range l.conns {
		if c != nil {
			l.closeNow(c, ReasonShutdown, nil)
		}
	}
}

func (l *loop) stop() {
	l.stopAccepting()
	l.closeAll()
	l.stopping = true
	l.mbMu.Lock()
	l.closedMB = true
	rest := l.mb
	l.mb = nil
	l.mbMu.Unlock()
	for i := range rest {
		o := &rest[i]
		if o.kind == opRegister {
			unix.Close(int(o.c.fd))
			l.e.release(o.c)
		} else if o.kind == opAdopt {
			o.fn() // hands the folding loop straight back
		} else if o.buf != nil {
			pool.Put(o.buf)
		}
	}
	l.poller.Close()
}

func (l *loop) snapshot() []ConnInfo {
	e := l.e
	var out []ConnInfo
	for _, c := range l.conns {
		if c == nil {
			continue
		}
		c.mu.Lock()
		queued, lw := c.out.len(), c.lastWrite
		c.mu.Unlock()
		last := c.lastRead
		if lw > last {
			last = lw
		}
		// Accepted connections on a listener bound to one address share
		// its local address: spare a getsockname per connection.
		local := c.LocalAddr()
		out = append(out, ConnInfo{
			ID: c.id, Loop: l.idx, Remote: c.RemoteAddr(), Local: local, State: c.State(),
			Protocol: c.Protocol(), Listener: int(c.ln), Outbound: c.flags&fOutbound != 0,
			Created:    time.Unix(0, c.created),
			LastActive: e.start.Add(time.Duration(last-1) * e.tickDur),
			BytesIn:    c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Served: c.served.Load(),
			ReadBuffer: len(c.in), WriteBuffer: queued,
		})
	}
	return out
}

// reasonFor maps an I/O error to a close reason.
func reasonFor(err error) CloseReason {
	switch {
	case err == nil:
		return ReasonPeerClosed
	case errors.Is(err, syscall.ECONNRESET), errors.Is(err, syscall.EPIPE):
		return ReasonPeerReset
	case errors.Is(err, syscall.ETIMEDOUT):
		return ReasonIOError
	}
	return ReasonIOError
}

func sockError(fd int) error {
	v, err := unix.GetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_ERROR)
	if err != nil {
		return err
	}
	if v != 0 {
		return syscall.Errno(v)
	}
	return nil
}

func localAddr(c *Conn) netip.AddrPort {
	sa, err := unix.Getsockname(int(c.fd))
	if err != nil {
		return netip.AddrPort{}
	}
	return sockaddrToAddrPort(sa)
}

func sockaddrToAddrPort(sa unix.Sockaddr) netip.AddrPort {
	switch a := sa.(type) {
	case *unix.SockaddrInet4:
		return netip.AddrPortFrom(netip.AddrFrom4(a.Addr), uint16(a.Port))
	case *unix.SockaddrInet6:
		return netip.AddrPortFrom(netip.AddrFrom16(a.Addr).Unmap(), uint16(a.Port))
	}
	return netip.AddrPort{}
}

// listenFD opens a listening socket with Go's resolver and dials the
// options, then takes a non-blocking duplicate of its descriptor.
func listenFD(addr string, reusePort bool, backlog int) (int, net.Addr, error) {
	lc := net.ListenConfig{}
	if reusePort {
		lc.Control = func(network, address string, rc syscall.RawConn) error {
			var serr error
			err := rc.Control(func(fd uintptr) {
				serr = unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_REUSEPORT, 1)
			})
			if err != nil {
				return err
			}
			return serr
		}
	}
	ln, err := lc.Listen(context.Background(), "tcp", addr)
	if err != nil {
		return -1, nil, err
	}
	defer ln.Close()
	fd, err := dupListener(ln, backlog)
	return fd, ln.Addr(), err
}

func dupListener(ln net.Listener, backlog int) (int, error) {
	sc, ok := ln.(syscall.Conn)
	if !ok {
		return -1, errors.New("engine: listener has no descriptor")
	}
	rc, err := sc.SyscallConn()
	if err != nil {
		return -1, err
	}
	nfd := -1
	var derr error
	if err := rc.Control(func(fd uintptr) { nfd, derr = dupCloexec(int(fd)) }); err != nil {
		return -1, err
	}
	if derr != nil {
		return -1, derr
	}
	if err := unix.SetNonblock(nfd, true); err != nil {
		unix.Close(nfd)
		return -1, err
	}
	unix.Listen(nfd, backlog) // raise the backlog; harmless if refused
	return nfd, nil
}

// dial opens a non-blocking outbound connection and hands it to a loop.
func (e *Engine) dial(loops []*loop, raddr netip.AddrPort, laddr netip.Addr, h Handler, value any) (*Conn, error) {
	if len(loops) == 0 {
		return nil, errors.New("engine: Dial before Start")
	}
	if e.draining.Load() {
		return nil, ErrServerClosed
	}
	raddr = netip.AddrPortFrom(raddr.Addr().Unmap(), raddr.Port())
	family := unix.AF_INET
	if raddr.Addr().Is6() {
		family = unix.AF_INET6
	}
	fd, err := socketFD(family)
	if err != nil {
		return nil, err
	}
	fail := func(err error) (*Conn, error) {
		unix.Close(fd)
		return nil, err
	}
	if laddr.IsValid() {
		bindNoPort(fd)
		if err := unix.Bind(fd, toSockaddr(netip.AddrPortFrom(laddr.Unmap(), 0))); err != nil {
			return fail(err)
		}
	}
	if err := unix.Connect(fd, toSockaddr(raddr)); err != nil && err != unix.EINPROGRESS {
		return fail(err)
	}
	if n := e.conns.Add(1); e.cfg.MaxConns > 0 && n > int64(e.cfg.MaxConns) {
		e.conns.Add(-1)
		return fail(ErrLimit)
	}
	unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1)
	c := e.newConn(fd, raddr, h, e.cfg.Inline)
	c.flags |= fDialing | fOutbound
	if value != nil {
		c.SetContext(value)
	}
	target := loops[e.rr.Add(1)%uint64(len(loops))]
	c.l = target
	if !target.post(op{kind: opRegister, c: c}) {
		e.conns.Add(-1)
		return fail(ErrServerClosed)
	}
	return c, nil
}

func toSockaddr(ap netip.AddrPort) unix.Sockaddr {
	if ap.Addr().Is4() {
		return &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}
	}
	return &unix.SockaddrInet6{Port: int(ap.Port()), Addr: ap.Addr().As16()}
}
