package engine

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"slices"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"

	"github.com/warrenhq/warren/internal/ipkey"
)

// Engine accepts connections and runs them on event loops. Create one with
// New, start it with Start or ListenAndServe, stop it with Shutdown or Close.
// Its methods are safe for concurrent use, but those that wait for the
// loops (Listen, ListenOn, Conns, CloseConn, Shutdown, Close) must not be
// called from code running on a loop, such as an inline handler's OnData
// or a function given to Conn.Post: see LOCKS.md.
type Engine struct {
	sysClock bool // cfg.Clock is the system clock: loops reuse their own time reads
	cfg      Config
	h        Handler // for Start and Serve; nil when New got none
	log      *slog.Logger
	errLog   *burstLogger

	loops    []*loop
	portable *portableEngine
	workers  *workerPool

	nextID atomic.Uint64
	rr     atomic.Uint64
	conns  atomic.Int64 // admitted and not yet closed
	// queued is the output bytes queued over all connections. The bytes
	// the io_uring mode holds for the round's end (outQueue.deferred) are
	// not in it: each loop counts its own (loopStats.deferred, at most
	// MaxQueuedBytes/4 over the loops), bytes epoll would have tried to
	// write already, most of which go out with the round's sends; a
	// deferred send that then waits for room moves its bytes here
	// (ringSendsWaiting), so queued output passes MaxQueuedBytes by at
	// most that quarter.
	queued atomic.Int64
	// ringLoops counts the loops running on an io_uring (Config.IOUring);
	// ringOnce logs the fallback to epoll once.
	ringLoops atomic.Int32
	ringOnce  sync.Once
	idleTO    atomic.Int64 // effective engine idle timeout, ns; <0 off
	start     time.Time
	tickDur   time.Duration
	limiter   *rate.Limiter

	// ipMu guards perIP: open connections by remote IP (MaxConnsPerIP;
	// an IPv6 client by its PerIPv6Prefix), keyed by the 16-byte form. A netip.Addr key would
	// take 24 bytes and hold a pointer (its zone), so the GC would scan
	// the whole table; this one has none, and a slot takes 20 bytes.
	ipMu  sync.Mutex
	perIP map[[16]byte]int32

	// detailMu guards details.
	detailMu sync.Mutex
	details  map[detailKey]uint64

	// mu guards the lifecycle fields below.
	mu       sync.Mutex
	started  bool
	stopping bool
	addr     net.Addr
	lns      []*Listener                 // every listener, in the order added; index+1 is Conn.ln
	lnView   atomic.Pointer[[]*Listener] // lns for lock-free readers (loops)

	// walkWait, when set (tests, before any walk), replaces ConnWalkTurn.
	walkWait time.Duration

	draining atomic.Bool
	drainCtx context.Context // cancelled when Shutdown begins
	drainEnd context.CancelCauseFunc
	drained  chan struct{} // closed when draining and no connection is left
	drainOne sync.Once
	done     chan struct{} // closed when fully stopped

	// lingers counts ended lingering closes by LingerOutcome (linger.go):
	// rare events, kept out of the loops' hot counters.
	lingers [numLingerOutcomes]atomic.Uint64
}

// New returns an engine with cfg. h, which may be nil, serves the listener
// of Start and Serve; Listen adds listeners with their own handlers, and
// DialHandler outbound connections with theirs. It does not listen yet.
func New(cfg Config, h Handler) (*Engine, error) {
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:     cfg,
		h:       h,
		log:     cfg.Logger,
		workers: newWorkerPool(cfg.Workers, cfg.WorkerQueue),
		start:   cfg.Clock.Now(),
		tickDur: cfg.TickInterval,
		perIP:   make(map[[16]byte]int32),
		details: make(map[detailKey]uint64),
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.errLog = newBurstLogger(e.log, time.Second)
	e.drainCtx, e.drainEnd = context.WithCancelCause(context.Background())
	_, e.sysClock = e.cfg.Clock.(systemClock)
	e.idleTO.Store(int64(cfg.IdleTimeout))
	if cfg.AcceptRate > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(cfg.AcceptRate), cfg.AcceptBurst)
	}
	return e, nil
}

// parts returns the loops or the portable engine, published by Start under mu.
func (e *Engine) parts() ([]*loop, *portableEngine) {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.loops, e.portable
}

// Config returns the engine's configuration with defaults filled in.
func (e *Engine) Config() Config { return e.cfg }

// Now returns the engine's time: Config.Clock's. Every layer on the engine
// (protocols, policies, the gateway) reads time here, so a test that
// injects a clock controls all of them.
func (e *Engine) Now() time.Time { return e.cfg.Clock.Now() }

// SystemClock reports whether the engine's clock is the system clock
// (Config.Clock nil): a time from Now is then a time.Now reading, monotonic
// clock included, so a layer that also needs real time (a time.Timer's
// deadline) may reuse one instead of reading the clock again.
func (e *Engine) SystemClock() bool { return e.sysClock }

// EventLoops reports whether the engine runs (or, before Start, will run)
// event loops: not Config.Portable, on a platform with a poller (Linux,
// macOS, FreeBSD). A connection's Loop then names the one goroutine that
// runs its callbacks, so state kept per loop index is touched by that
// loop alone; on the portable engine every connection has its own
// goroutine and Loop is 0 for all of them.
func (e *Engine) EventLoops() bool { return !e.cfg.Portable && pollSupported }

// Listener is one of an engine's listeners (Engine.Listen): where it
// listens, the handler its connections get, and the timeouts they start
// with. Its sockets live on the loops (or, on the portable engine, in an
// accept goroutine) and close when the engine shuts down. Its methods are
// safe for concurrent use.
type Listener struct {
	e      *Engine
	h      Handler
	inline bool           // cfg.Inline, for handlers that do not say
	local  netip.AddrPort // the bound address when it is one IP, for LocalAddr
	addr   net.Addr
	idx    uint8 // index+1 in Engine.lns, stored in Conn.ln
	ln     net.Listener
	fds    []int        // poll engine: the listening sockets, one per ReusePort loop
	idleTO atomic.Int64 // ns; 0: the engine's; <0 off
	readTO atomic.Int64 // ns; 0: the engine's; <0 off
}

// Addr returns the address l is bound to.
func (l *Listener) Addr() net.Addr { return l.addr }

// Handler returns the handler l's connections start with.
func (l *Listener) Handler() Handler { return l.h }

// SetIdleTimeout sets the idle timeout of l's connections, in place of
// Config.IdleTimeout: zero restores the engine's, negative disables it. A
// connection's own Conn.SetIdleTimeout still overrides it. Open
// connections are re-timed at once; protocols use it to shrink keep-alive
// under load without touching other listeners.
func (l *Listener) SetIdleTimeout(d time.Duration) {
	if l.idleTO.Swap(int64(d)) != int64(d) {
		l.e.retimeAll()
	}
}

// IdleTimeout returns l's effective idle timeout (negative: off).
func (l *Listener) IdleTimeout() time.Duration {
	if d := l.idleTO.Load(); d != 0 {
		return time.Duration(d)
	}
	return l.e.IdleTimeout()
}

// SetReadTimeout sets the read timeout of l's connections (a message that
// does not arrive whole in time: an HTTP request head), in place of
// Config.ReadTimeout, as SetIdleTimeout does for the idle timeout.
func (l *Listener) SetReadTimeout(d time.Duration) {
	if l.readTO.Swap(int64(d)) != int64(d) {
		l.e.retimeAll()
	}
}

// timeouts returns the idle and read timeouts for a connection of listener
// i (0: none), before the connection's own overrides.
func (e *Engine) timeouts(i uint8) (idle, read time.Duration) {
	idle, read = time.Duration(e.idleTO.Load()), e.cfg.ReadTimeout
	if l := e.listenerAt(i); l != nil {
		if d := l.idleTO.Load(); d != 0 {
			idle = time.Duration(d)
		}
		if d := l.readTO.Load(); d != 0 {
			read = time.Duration(d)
		}
	}
	return idle, read
}

// retimeAll re-times every connection after a timeout changed.
func (e *Engine) retimeAll() {
	loops, pe := e.parts()
	for _, l := range loops {
		l.postFunc(l.retimeAll)
	}
	if pe != nil {
		pe.retimeAll()
	}
}

// maxListeners bounds the listeners of one engine (Conn.ln is a byte).
const maxListeners = 255

// Start listens on addr ("host:port"; port 0 picks a free one) with the
// handler given to New, and starts serving in the background. Use Addr for
// the bound address. An empty addr starts the loops without a listener, for
// connections made with Dial and listeners added with Listen.
func (e *Engine) Start(addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return ErrStarted
	}
	if addr != "" && e.h == nil {
		return fmt.Errorf("engine: Start(%q) without a handler: pass one to New, or use Listen", addr)
	}
	var err error
	if e.cfg.Portable || !pollSupported {
		e.portable = newPortable(e)
	} else {
		err = startLoops(e)
	}
	if err != nil {
		return err
	}
	e.started = true
	if addr != "" {
		l, err := e.listenLocked(addr, nil, e.h)
		if err != nil {
			e.abortStartLocked()
			return err
		}
		e.addr = l.addr
	}
	return nil
}

// abortStartLocked stops loops started by a Start that then failed.
func (e *Engine) abortStartLocked() {
	e.started = false
	if e.portable != nil {
		e.portable = nil
		return
	}
	for _, l := range e.loops {
		l.postFunc(l.stop)
	}
	for _, l := range e.loops {
		<-l.stopped
	}
	e.loops = nil
}

// Listen adds a listener on addr ("host:port"; port 0 picks a free one)
// whose connections get h as their handler, and returns the bound address.
// An engine may have many listeners (HTTP on one port, MQTT on another)
// sharing its loops, worker pool, bounds and counters. The engine must have
// been started (Start("") starts it without a listener); Listen fails with
// ErrServerClosed once Shutdown has begun. It is safe for concurrent use.
func (e *Engine) Listen(addr string, h Handler) (*Listener, error) {
	if h == nil {
		return nil, fmt.Errorf("engine: Listen(%q): nil handler", addr)
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listenLocked(addr, nil, h)
}

// ListenOn is Listen on a listener the caller made (one inherited from a
// parent process, say). The engine takes it over and closes it.
func (e *Engine) ListenOn(ln net.Listener, h Handler) (*Listener, error) {
	if h == nil {
		return nil, fmt.Errorf("engine: ListenOn: nil handler")
	}
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.listenLocked("", ln, h)
}

func (e *Engine) listenLocked(addr string, ln net.Listener, h Handler) (*Listener, error) {
	if e.stopping {
		if ln != nil {
			ln.Close()
		}
		return nil, ErrServerClosed
	}
	if len(e.lns) >= maxListeners {
		if ln != nil {
			ln.Close()
		}
		return nil, fmt.Errorf("engine: more than %d listeners", maxListeners)
	}
	if !e.started {
		if ln != nil {
			ln.Close()
		}
		return nil, errNotStarted
	}
	sp := &Listener{e: e, h: h, inline: e.cfg.Inline, ln: ln, idx: uint8(len(e.lns) + 1)}
	if err := e.openLocked(sp, addr); err != nil {
		return nil, err
	}
	e.addListenerLocked(sp)
	return sp, nil
}

// errNotStarted is returned by Listen, ListenOn and Dial before Start.
var errNotStarted = errors.New("engine: not started (call Start first; Start(\"\") starts without a listener)")

// openLocked opens sp's sockets on the running engine: on addr, or sp.ln.
func (e *Engine) openLocked(sp *Listener, addr string) error {
	var err error
	if e.portable != nil {
		err = e.portable.listen(sp, addr)
	} else {
		err = listenLoops(e, sp, addr)
	}
	if err != nil {
		return err
	}
	if ta, ok := sp.addr.(*net.TCPAddr); ok && !ta.IP.IsUnspecified() {
		ap := ta.AddrPort()
		sp.local = netip.AddrPortFrom(ap.Addr().Unmap(), ap.Port())
	}
	return nil
}

// listenerAt returns the listener a Conn.ln refers to, or nil. It takes no
// lock: loops call it.
func (e *Engine) listenerAt(i uint8) *Listener {
	v := e.lnView.Load()
	if i == 0 || v == nil || int(i) > len(*v) {
		return nil
	}
	return (*v)[i-1]
}

// addListenerLocked appends sp to the engine's listeners; e.mu is held.
func (e *Engine) addListenerLocked(sp *Listener) {
	e.lns = append(e.lns, sp)
	v := slices.Clone(e.lns)
	e.lnView.Store(&v)
}

// Dial opens an outbound TCP connection to raddr, from the local address
// laddr when it is valid (with the port chosen at connect time, so many
// connections can share one source address), and hands it to a loop,
// served by the handler given to New. See DialHandler.
func (e *Engine) Dial(raddr netip.AddrPort, laddr netip.Addr) (*Conn, error) {
	return e.DialWith(raddr, laddr, nil)
}

// DialWith is Dial with value stored on the connection (Conn.SetContext)
// before it is registered, so OnOpen and OnClose, which may run before
// DialWith returns, already see it. A nil value stores nothing.
func (e *Engine) DialWith(raddr netip.AddrPort, laddr netip.Addr, value any) (*Conn, error) {
	if e.h == nil {
		return nil, fmt.Errorf("engine: Dial without a handler: pass one to New, or use DialHandler")
	}
	return e.dialOne(raddr, laddr, e.h, value)
}

// DialHandler opens an outbound TCP connection to raddr (from laddr when it
// is valid, with the port chosen at connect time) on the engine's loops,
// served by h: an upstream pool's connections get their own handler beside
// the listeners'. OnOpen runs once the connection is established; a failed
// or timed-out connect (bounded by WriteTimeout) ends in OnClose with
// ReasonIOError. On the event loops DialHandler returns at once; on the
// portable engine it blocks until connected. The engine must have been
// started (Start("") starts loops without a listener). It is safe for
// concurrent use.
func (e *Engine) DialHandler(raddr netip.AddrPort, laddr netip.Addr, h Handler) (*Conn, error) {
	if h == nil {
		return nil, fmt.Errorf("engine: DialHandler: nil handler")
	}
	return e.dialOne(raddr, laddr, h, nil)
}

func (e *Engine) dialOne(raddr netip.AddrPort, laddr netip.Addr, h Handler, value any) (*Conn, error) {
	loops, pe := e.parts()
	if pe != nil {
		return pe.dial(raddr, laddr, h, value)
	}
	return e.dial(loops, raddr, laddr, h, value)
}

// Serve is Start on a listener the caller made (for example one inherited
// from a parent process), served by the handler given to New. The engine
// takes it over and closes it. Serve returns when the engine stops.
func (e *Engine) Serve(ln net.Listener) error {
	if err := e.Start(""); err != nil {
		ln.Close()
		return err
	}
	l, err := e.ListenOn(ln, e.h)
	if err != nil {
		e.Close()
		return err
	}
	e.mu.Lock()
	e.addr = l.addr
	e.mu.Unlock()
	return e.Wait()
}

// ListenAndServe is Start followed by Wait.
func (e *Engine) ListenAndServe(addr string) error {
	if err := e.Start(addr); err != nil {
		return err
	}
	return e.Wait()
}

// Wait blocks until the engine has stopped, then returns ErrServerClosed.
func (e *Engine) Wait() error {
	<-e.done
	return ErrServerClosed
}

// Done returns a channel closed when the engine has stopped.
func (e *Engine) Done() <-chan struct{} { return e.done }

// Addr returns the listening address, or nil before Start.
func (e *Engine) Addr() net.Addr {
	e.mu.Lock()
	defer e.mu.Unlock()
	return e.addr
}

// Context returns a context cancelled, with cause ErrServerClosed, when
// Shutdown begins: work done for connections (a request's upstream call, a
// device command) hangs off it to end with the engine.
func (e *Engine) Context() context.Context { return e.drainCtx }

// Draining reports whether Shutdown has begun.
func (e *Engine) Draining() bool { return e.draining.Load() }

// NumConns returns the number of open connections.
func (e *Engine) NumConns() int64 { return e.conns.Load() }

// IdleTimeout returns the engine's effective idle timeout (negative: off).
func (e *Engine) IdleTimeout() time.Duration { return time.Duration(e.idleTO.Load()) }

// SetIdleTimeout changes the engine's idle timeout at run time (negative
// disables it); protocols use it to shrink keep-alive under load. Open
// connections are re-timed at once.
func (e *Engine) SetIdleTimeout(d time.Duration) {
	if d == 0 {
		d = e.cfg.IdleTimeout
	}
	if e.idleTO.Swap(int64(d)) == int64(d) {
		return
	}
	e.retimeAll()
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	s := Stats{ByState: make([]int64, numStates), Closed: make([]uint64, numReasons),
		Rejected: make([]uint64, numBounds), Lingers: make([]uint64, numLingerOutcomes)}
	loops, pe := e.parts()
	if pe != nil {
		s.add(&pe.stats)
	}
	for _, l := range loops {
		s.add(&l.stats)
		s.QueuedBytes += l.stats.deferred.Load() // the io_uring mode's deferred bytes
	}
	// After the loops' deferred bytes: bytes moving from those to queued
	// are added here first, so the sum never undercounts.
	s.QueuedBytes += e.queued.Load()
	s.IOUringLoops = int(e.ringLoops.Load())
	s.WorkersBusy = e.workers.busy.Load()
	s.WorkerQueue = e.workers.waiting()
	s.IdleTimeout = e.IdleTimeout()
	s.Details = e.detailCounts()
	for i := range s.Lingers {
		s.Lingers[i] = e.lingers[i].Load()
	}
	return s
}

// ConnInfo describes one live connection for introspection.
type ConnInfo struct {
	ID       uint64
	Loop     int
	Remote   netip.AddrPort
	Local    netip.AddrPort
	State    State
	Protocol string // the handler's ProtocolNamer, or "tcp"
	// Listener is the 1-based index of the listener that accepted the
	// connection, in the order Start and Listen added them; 0 when dialled.
	Listener    int
	Outbound    bool   // made by Dial or DialHandler
	Label       string // the handler's Labeler (a device id), or ""; loop engines only
	Created     time.Time
	LastActive  time.Time
	BytesIn     uint64
	BytesOut    uint64
	Served      uint64
	ReadBuffer  int // unconsumed input held
	WriteBuffer int // queued output
}

// Conns returns a snapshot of the live connections, each loop's taken on
// that loop. It is meant for introspection, not hot paths.
func (e *Engine) Conns() []ConnInfo {
	loops, pe := e.parts()
	if pe != nil {
		return pe.snapshot()
	}
	var out []ConnInfo
	for _, l := range loops {
		ch := make(chan []ConnInfo, 1)
		if !l.postFunc(func() { ch <- l.snapshot() }) {
			continue
		}
		select {
		case s := <-ch:
			out = append(out, s...)
		case <-e.done:
		case <-time.After(5 * time.Second):
		}
	}
	return out
}

// ConnWalkTurn is how long EachConnInfo and ConnInfoByID wait for the
// loops to take up their turn before giving up on those that have not: a
// loop busy that long (a handler blocking on it, say) is left out rather
// than holding the caller. A caller that waits on them (the prefork
// parent's /debug/conns) must allow a little more than this.
const ConnWalkTurn = 5 * time.Second

// ErrWalkIncomplete is what a *WalkError matches (errors.Is): a walk of the
// connections left out some loops' connections.
var ErrWalkIncomplete = errors.New("engine: connection walk incomplete")

// WalkError is EachConnInfo's error when it left out loops: each of Loops
// (Conn's loop index, ConnInfo.Loop) had not begun its turn of the walk
// within ConnWalkTurn, or had stopped, so its connections were not
// described.
type WalkError struct {
	Loops []int
}

// Error names the loops left out.
func (we *WalkError) Error() string {
	s := make([]string, len(we.Loops))
	for i, l := range we.Loops {
		s[i] = strconv.Itoa(l)
	}
	return "engine: connection walk incomplete: loop(s) " + strings.Join(s, ", ") + " did not answer"
}

// Is reports whether target is ErrWalkIncomplete.
func (we *WalkError) Is(target error) bool { return target == ErrWalkIncomplete }

// EachConnInfo calls fn with a description of each live connection, each
// loop's taken on that loop: fn is never called concurrently, must not
// block, and ci is valid only during the call (copy what you keep).
// Unlike Conns it keeps nothing itself, so a caller that filters, counts
// or keeps a bounded page of the connections costs that page, not a copy
// of every connection (100,000 connections are ≈ 20 MB of ConnInfo). It is
// meant for introspection, not hot paths.
//
// Every loop is asked at once, and all get the same ConnWalkTurn (5 s) to
// begin their part: a loop that has not begun by then (busy in a handler,
// say) or has stopped is left out whole — fn is never called for any of
// its connections, then or later — and the error is a *WalkError naming
// the loops left out (errors.Is ErrWalkIncomplete), what fn saw being a
// partial list. A loop that has begun is walked to its end (it runs only
// the walk and fn by then), so a loop is either listed whole or not at
// all. Nil means every loop was walked. EachConnInfo returns within about
// ConnWalkTurn however many loops are busy.
func (e *Engine) EachConnInfo(fn func(ci *ConnInfo)) error {
	loops, pe := e.parts()
	if pe != nil {
		s := pe.snapshot()
		for i := range s {
			fn(&s[i])
		}
		return nil
	}
	// mu serialises fn and guards every turn's fn and started.
	var mu sync.Mutex
	type turn struct {
		done chan struct{}
		// fn is the caller's, set to nil when the loop is given up on:
		// the posted walk, which may sit in a stuck loop's mailbox for
		// long, then holds neither fn nor what fn holds.
		fn      func(ci *ConnInfo)
		started bool
		posted  bool
	}
	turns := make([]*turn, len(loops))
	for i, l := range loops {
		tn := &turn{done: make(chan struct{}), fn: fn}
		turns[i] = tn
		tn.posted = l.postFunc(func() {
			defer close(tn.done)
			mu.Lock()
			f := tn.fn
			tn.started = f != nil
			mu.Unlock()
			if f == nil {
				return
			}
			l.walkInfo(func(ci *ConnInfo) bool {
				mu.Lock()
				defer mu.Unlock()
				f(ci)
				return true
			})
		})
	}
	t := time.NewTimer(e.walkTurn())
	defer t.Stop()
	over := false
	for _, tn := range turns {
		if !tn.posted || over {
			continue
		}
		select {
		case <-tn.done:
		case <-e.done:
			over = true
		case <-t.C:
			over = true
		}
	}
	var missed []int
	var running []*turn
	mu.Lock()
	for i, tn := range turns {
		select {
		case <-tn.done:
			continue
		default:
		}
		if tn.posted && tn.started {
			running = append(running, tn)
			continue
		}
		tn.fn = nil
		missed = append(missed, i)
	}
	mu.Unlock()
	// A walk under way runs nothing but itself and fn on its loop: let
	// it end, so that fn is not called once EachConnInfo has returned.
	for _, tn := range running {
		<-tn.done
	}
	if missed != nil {
		return &WalkError{Loops: missed}
	}
	return nil
}

// walkTurn is ConnWalkTurn, or the shorter wait a test set.
func (e *Engine) walkTurn() time.Duration {
	if e.walkWait > 0 {
		return e.walkWait
	}
	return ConnWalkTurn
}

// ConnInfoByID describes the live connection with the given ID, taken on
// its loop, and reports whether it was found. It looks the connection up
// without describing the others (a walk of the descriptor table, which
// holds pointers, not descriptions), and is meant for introspection, not
// hot paths. A connection whose loop does not run the description within
// ConnWalkTurn (5 s) is reported with a *WalkError (errors.Is ErrWalkIncomplete).
func (e *Engine) ConnInfoByID(id uint64) (ConnInfo, bool, error) {
	loops, pe := e.parts()
	if pe != nil {
		ci, ok := pe.infoByID(id)
		return ci, ok, nil
	}
	if len(loops) == 0 {
		return ConnInfo{}, false, nil
	}
	c := e.findConn(id)
	if c == nil {
		return ConnInfo{}, false, nil
	}
	l, ok := c.host.(*loop)
	if !ok {
		return ConnInfo{}, false, nil
	}
	type answer struct {
		ci ConnInfo
		ok bool
	}
	ch := make(chan answer, 1)
	if !l.postFunc(func() {
		var a answer
		// Still l's and registered: not closed (nor its descriptor
		// reused) between the lookup and this turn.
		if a.ok = l.owned(int(c.fd)) == c; a.ok {
			l.infoOf(c, l.tick.Load(), &a.ci)
		}
		ch <- a
	}) {
		return ConnInfo{}, false, nil
	}
	t := time.NewTimer(e.walkTurn())
	defer t.Stop()
	select {
	case a := <-ch:
		return a.ci, a.ok, nil
	case <-e.done:
		return ConnInfo{}, false, nil
	case <-t.C:
		return ConnInfo{}, false, &WalkError{Loops: []int{l.idx}}
	}
}

// CloseConn closes the live connection with the given ID with reason r and
// reports whether it was found.
func (e *Engine) CloseConn(id uint64, r CloseReason) bool {
	loops, pe := e.parts()
	if pe != nil {
		return pe.closeByID(id, r)
	}
	if len(loops) == 0 {
		return false
	}
	// The descriptor table is the process's: one walk finds the
	// connection whichever loop owns it, and CloseWithReason is safe here.
	c := e.findConn(id)
	if c == nil {
		return false
	}
	c.CloseWithReason(r)
	return true
}

// Shutdown stops accepting, lets each connection finish (protocols say
// goodbye through DrainHandler), waits for in-flight work, and closes what
// is left when ctx ends. It returns ctx's error if it had to force-close.
func (e *Engine) Shutdown(ctx context.Context) error {
	e.mu.Lock()
	if !e.started || e.stopping {
		e.mu.Unlock()
		if e.started {
			<-e.done
		}
		return nil
	}
	e.stopping = true
	e.mu.Unlock()

	e.draining.Store(true)
	e.drainEnd(ErrServerClosed)
	if e.portable != nil {
		return e.portable.shutdown(ctx)
	}
	for _, l := range e.loops {
		l.postFunc(l.stopAccepting)
		l.postFunc(l.drainAll)
	}
	e.checkDrained()
	var err error
	select {
	case <-e.drained:
	case <-ctx.Done():
		err = ctx.Err()
		for _, l := range e.loops {
			l.postFunc(l.closeAll)
		}
		select {
		case <-e.drained:
		case <-time.After(5 * time.Second):
		}
	}
	for _, l := range e.loops {
		l.postFunc(l.stop)
	}
	for _, l := range e.loops {
		<-l.stopped
	}
	e.workers.close()
	if err == nil {
		e.workers.wait(ctx.Done())
	}
	close(e.done)
	return err
}

// Close closes every connection at once and stops the engine.
func (e *Engine) Close() error {
	ctx, cancel := context.WithCancel(context.Background())
	cancel()
	if err := e.Shutdown(ctx); err != nil && err != context.Canceled {
		return err
	}
	return nil
}

func (e *Engine) checkDrained() {
	if e.draining.Load() && e.conns.Load() == 0 {
		e.drainOne.Do(func() { close(e.drained) })
	}
}

// tickAt converts a time to the engine's tick count.
func (e *Engine) tickAt(t time.Time) int64 {
	return int64(t.Sub(e.start)/e.tickDur) + 1
}

// maxTimeoutTicks caps a timeout in ticks, so that a connection that can
// time out is looked at again while its activity stamps still read back
// exactly (stamp, conn.go): 2^30 ticks are 3.4 years at the default
// 100 ms tick, 12 days at a 1 ms tick.
const maxTimeoutTicks = 1 << 30

// ticks converts a timeout to whole ticks, rounding up, at most
// maxTimeoutTicks.
func (e *Engine) ticks(d time.Duration) int64 {
	if d/e.tickDur >= maxTimeoutTicks { // not d >= max*tick: that overflows past an 8.6 s tick
		return maxTimeoutTicks
	}
	return int64((d + e.tickDur - 1) / e.tickDur)
}

// admit applies the admission bounds to a new connection from ip.
func (e *Engine) admit(ip netip.Addr) (Bound, bool) {
	if e.limiter != nil && !e.limiter.AllowN(e.cfg.Clock.Now(), 1) {
		return BoundAcceptRate, false
	}
	if n := e.conns.Add(1); e.cfg.MaxConns > 0 && n > int64(e.cfg.MaxConns) {
		e.conns.Add(-1)
		return BoundMaxConns, false
	}
	if e.cfg.MaxConnsPerIP > 0 {
		key := ipkey.Of(ip, e.cfg.PerIPv6Prefix).As16()
		e.ipMu.Lock()
		n := e.perIP[key]
		if int(n) >= e.cfg.MaxConnsPerIP {
			e.ipMu.Unlock()
			e.conns.Add(-1)
			return BoundPerIP, false
		}
		e.perIP[key] = n + 1
		e.ipMu.Unlock()
	}
	return 0, true
}

// release undoes admit for a closed connection.
func (e *Engine) release(c *Conn) {
	if c.flags&fTransform != 0 {
		c.mu.Lock()
		t, r := c.transformLocked(), c.why()
		c.mu.Unlock()
		if tc, ok := t.(TransformCloser); ok {
			tc.Closed(c, r)
		}
	}
	if e.cfg.MaxConnsPerIP > 0 && c.ln != 0 { // admitted: accepted, not dialled
		key := ipkey.Of(netip.AddrFrom16(c.raddr), e.cfg.PerIPv6Prefix).As16()
		e.ipMu.Lock()
		if n := e.perIP[key]; n <= 1 {
			delete(e.perIP, key)
		} else {
			e.perIP[key] = n - 1
		}
		e.ipMu.Unlock()
	}
	e.conns.Add(-1)
	e.checkDrained()
}

func (e *Engine) newConn(fd int, remote netip.AddrPort, h Handler, inline bool) *Conn {
	c := &Conn{fd: int32(fd), id: e.nextID.Add(1), created: e.cfg.Clock.Now().UnixNano()}
	c.setRemote(remote)
	c.setHandler(h, inline)
	return c
}

// burstLogger logs the first error of a burst and summarises the rest, so a
// storm of accept errors costs one line a second.
type burstLogger struct {
	log    *slog.Logger
	window time.Duration
	mu     sync.Mutex
	last   time.Time
	count  int
}

func newBurstLogger(l *slog.Logger, window time.Duration) *burstLogger {
	return &burstLogger{log: l, window: window}
}

func (b *burstLogger) Log(msg string, err error) {
	b.mu.Lock()
	now := time.Now()
	if now.Sub(b.last) < b.window {
		b.count++
		b.mu.Unlock()
		return
	}
	suppressed := b.count
	b.last, b.count = now, 0
	b.mu.Unlock()
	b.log.LogAttrs(context.Background(), slog.LevelWarn, msg, slog.String("error", err.Error()),
		slog.Int("suppressed", suppressed))
}
