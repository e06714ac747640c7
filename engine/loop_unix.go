//go:build linux || darwin || freebsd

package engine

import (
	"errors"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

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
	opLinger
)

// op is a request posted to a loop's mailbox by another goroutine.
type op struct {
	kind opKind
	c    *Conn
	buf  []byte
	fn   func()
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
	lns    []*listener
	wheel  *timerwheel.Wheel // Conn.timer entries
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

	// uring is Config.IOUring where supported (immutable); ring is the
	// loop's io_uring once its goroutine has set it up, and ringUp says so
	// to writers on other goroutines (uring_linux.go).
	uring   bool
	ring    *ringLoop
	ringUp  atomic.Bool
	folding // fold_unix.go
	scratch acceptScratch

	// injc is the connection InjectInput was called for from its own
	// OnData (fInOnData), and inj (a buffer from internal/pool, at most
	// MaxInputBytes) the bytes it injected, delivered once that OnData
	// returns (rw_unix.go: inject).
	injc *Conn
	inj  []byte

	// yields counts the loop's runtime.Gosched calls (for tests).
	yields atomic.Int64

	// now is the round's time for Conn.Now while process runs (read after
	// the wait; the system clock only), zero otherwise. Loop goroutine only.
	now time.Time
}

// startLoops creates the loops and starts them, without listeners.
func startLoops(e *Engine) error {
	cfg := &e.cfg
	n := cfg.Loops
	loops := make([]*loop, n)
	now := e.tickAt(cfg.Clock.Now())
	useRing := (cfg.IOUring || ringForced) && ringSupported
	for i := range loops {
		p, err := poll.New(1024, !cfg.BlockingPoll && !useRing)
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
			wheel:   timerwheel.New(1024, now),
			stopped: make(chan struct{}),
			uring:   useRing,
		}
		l.tick.Store(now)
		l.initFolding(n)
		loops[i] = l
	}
	e.loops = loops
	if (cfg.BlockingPoll || loops[0].uring) && !loops[0].poller.Parks() {
		reserveSpareP(n)
	}
	for _, l := range loops {
		go l.run()
	}
	return nil
}

// spareP is the GOMAXPROCS the engine set to keep a P spare, 0 if none.
var spareP struct {
	mu  sync.Mutex
	set int
}

// reserveSpareP raises GOMAXPROCS to loops+1 when it is loops
// (Config.BlockingPoll): the loops block their threads in epoll_wait, each
// holding its P in a system call, and with no P idle the runtime's monitor
// takes a blocked loop's P away within tens of microseconds and wakes
// another thread to look for work — a hand-off and a futex wake-up per
// idle spell (about 8% more CPU per proxied request, docs/benchmarks.md
// section 43). With one P idle it leaves a blocked P alone for 10 ms and
// the loop takes its own P back on return. More loops than CPUs get no
// spare: they oversubscribe the cores already.
func reserveSpareP(loops int) {
	spareP.mu.Lock()
	defer spareP.mu.Unlock()
	if n := runtime.GOMAXPROCS(0); n == loops && loops <= runtime.NumCPU() {
		runtime.GOMAXPROCS(loops + 1)
		spareP.set = loops + 1
	}
}

// defaultLoops is Config.Loops' default: GOMAXPROCS, less the spare P if
// an engine added it (so a second engine does not take the spare for a
// loop and raise GOMAXPROCS again).
func defaultLoops() int {
	spareP.mu.Lock()
	defer spareP.mu.Unlock()
	n := runtime.GOMAXPROCS(0)
	if n == spareP.set && n > 1 {
		n--
	}
	return n
}

// yieldAfter is how long a loop that never finds itself idle runs before
// it lets the Go scheduler run other goroutines on its P.
const yieldAfter = time.Millisecond

// refreshAfter is how long a blocking loop at work runs without passing
// through the Go scheduler before it yields anyway. A loop that blocks its
// thread in a system call (Config.BlockingPoll, io_uring, macOS, FreeBSD)
// between short busy spells never reschedules by itself, and the runtime's
// sysmon takes a goroutine that has not been rescheduled for runawayAfter
// for a runaway: from then on it asks for a preemption whenever it finds it
// running and takes its P whenever it finds it in the wait, and resets
// itself to polling every 20 µs at each take. A take does not reschedule
// the goroutine (it gets an idle P back on leaving the system call), so
// that goes on for as long as the loop stays busy, each take a thread
// hand-off (docs/benchmarks.md section 97). A yield every 5 ms is a
// hand-off every 5 ms instead. A wait of runawayAfter or more was
// idleness: sysmon has taken the P during it whatever the loop does, so no
// yield follows it.
const refreshAfter = runawayAfter / 2

// runawayAfter is the Go runtime's forcePreemptNS.
const runawayAfter = 10 * time.Millisecond

// run is l's goroutine: it polls, handles the events, the mailbox and the
// timers, runs the loops folded into it, yields now and then and adapts
// its folding, until l stops.
func (l *loop) run() {
	defer close(l.stopped)
	e := l.e
	if e.cfg.LockOSThread {
		// Deferred after close(l.stopped), so it runs first: the thread
		// is released before Stop's waiters return.
		runtime.LockOSThread()
		defer runtime.UnlockOSThread()
	}
	if l.uring {
		l.startRing() // uring_linux.go; on the locked thread, if any
	}
	tickMS := int(e.tickDur / time.Millisecond)
	if tickMS < 1 {
		tickMS = 1
	}
	busySince := time.Now()
	lastYield := busySince
	blocks := !l.poller.Parks() // it waits in a system call holding its P
	l.load.start(busySince)
	for !l.stopping {
		timeout := tickMS
		l.sleeping.Store(true)
		if l.mbLen.Load() > 0 || (len(l.folded) > 0 && l.foldedMail()) {
			timeout = 0
		}
		waitStart := time.Now()
		l.load.idle(waitStart)
		var n int
		var err error
		if l.ring != nil {
			n, err = l.ringWait(timeout) // uring_linux.go
		} else {
			n, err = l.poller.Wait(l.events, timeout)
		}
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
		// refresh: a blocking loop at work (sockets or only mailbox posts
		// woke it within runawayAfter) that has not yielded for
		// refreshAfter.
		refresh := blocks && woke.Sub(lastYield) >= refreshAfter && woke.Sub(waitStart) < runawayAfter
		if n > 0 && woke.Sub(busySince) >= yieldAfter || refresh {
			// A loop with events every time it polls never parks, and the
			// Go scheduler would let it hold its P until its 10 ms forced
			// preemption while another loop or a worker readied onto the
			// same P waits (p99 under wrk -c128 on 2 cores: 14-32 ms).
			// Yielding after every batch fixed the tail but cost 10% CPU
			// per request; once per busy millisecond bounds the wait.
			// A locked loop (Config.LockOSThread) hands its P to another
			// thread here and sleeps until the P comes back: its thread
			// leaves the core to the other loop's, to the runtime's and
			// to other processes' for a moment (the proxy's p99 is
			// better with this yield than without it, docs/benchmarks.md
			// section 57).
			if l.ring != nil && !l.stopping { // a stopped loop's ring is closed
				l.ringFlush() // uring_linux.go: the round's sends go before the yield
			}
			runtime.Gosched()
			l.yields.Add(1)
			busySince = time.Now()
			lastYield = busySince
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
	} else {
		l.now = now // Conn.Now for the round's callbacks
	}
	l.tick.Store(e.tickAt(now))
	for i := 0; i < n; i++ {
		ev := &l.events[i]
		if ln := l.listenerOf(ev.Fd); ln != nil {
			l.accept(ln)
			continue
		}
		c := l.owned(ev.Fd)
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
				if l.ring == nil || !l.ringRecvLater(c) { // uring_linux.go
					l.onReadable(c)
				}
			} else if ev.Hangup {
				// Not reading, but the socket is dead (RST or both
				// directions shut): level-triggered hang-ups would
				// otherwise repeat forever.
				err := sockError(int(c.fd))
				if err == nil && c.flags&fLinger != 0 {
					// A linger past LingerBytes, no longer read: the
					// peer closed its side, as a linger waits for.
					l.lingerEnd(c, LingerEOF)
				} else {
					l.closeNow(c, reasonFor(err), err)
				}
			}
		}
	}
	if l.ring != nil {
		l.ringRecvs() // uring_linux.go: the reads ringRecvLater took
	}
	l.runMailbox()
	t := l.tick.Load()
	if l.restampDue(t) {
		l.restamp(t) // timeout_unix.go
	}
	l.wheel.Advance(t, l.expire)
	l.now = time.Time{}
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

// postFunc queues fn to run on l; it reports false once l has stopped.
func (l *loop) postFunc(fn func()) bool { return l.post(op{kind: opFunc, fn: fn}) }

// runMailbox handles the ops posted since the last round.
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

// handle carries out one posted op. Ops for a connection that has closed
// since are dropped, but for opRegister and opDataDone, which hand
// resources over.
func (l *loop) handle(o *op) {
	c := o.c
	switch o.kind {
	case opFunc, opAdopt:
		o.fn()
		return
	case opPost:
		if c.flags&(fRegistered|fLinger) == fRegistered {
			c.flags &^= fNewHandler
			o.fn()
			if c.flags&fNewHandler != 0 {
				c.flags &^= fNewHandler
				l.redeliver(c) // input the old handler left is the new one's
			}
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
	case opLinger:
		l.startLinger(c) // linger_unix.go
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
