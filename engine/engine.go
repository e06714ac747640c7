package engine

import (
	"context"
	"fmt"
	"log/slog"
	"net"
	"net/netip"
	"runtime/debug"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/time/rate"
)

// Engine accepts connections and runs them on event loops. Create one with
// New, start it with Start or ListenAndServe, stop it with Shutdown or Close.
// Its methods are safe for concurrent use.
type Engine struct {
	sysClock bool // cfg.Clock is the system clock: loops reuse their own time reads
	cfg      Config
	h        Handler
	hOpen    OpenHandler
	hClose   CloseHandler
	hState   StateHandler
	hDrain   DrainHandler
	hTimeout TimeoutHandler
	hEOF     EOFHandler
	log      *slog.Logger
	errLog   *burstLogger

	loops    []*loop
	portable *portableEngine
	workers  *workerPool

	nextID  atomic.Uint64
	rr      atomic.Uint64
	conns   atomic.Int64 // admitted and not yet closed
	queued  atomic.Int64 // output bytes queued over all connections
	idleTO  atomic.Int64 // effective engine idle timeout, ns; <0 off
	start   time.Time
	tickDur time.Duration
	limiter *rate.Limiter

	// ipMu guards perIP.
	ipMu  sync.Mutex
	perIP map[netip.Addr]int32

	// mu guards the lifecycle fields below.
	mu       sync.Mutex
	started  bool
	stopping bool
	addr     net.Addr

	draining atomic.Bool
	drained  chan struct{} // closed when draining and no connection is left
	drainOne sync.Once
	done     chan struct{} // closed when fully stopped
}

// New returns an engine serving h with cfg. It does not listen yet.
func New(cfg Config, h Handler) (*Engine, error) {
	if h == nil {
		return nil, fmt.Errorf("engine: nil handler")
	}
	cfg = cfg.withDefaults()
	e := &Engine{
		cfg:     cfg,
		h:       h,
		log:     cfg.Logger,
		workers: newWorkerPool(cfg.Workers, cfg.WorkerQueue),
		start:   cfg.Clock.Now(),
		tickDur: cfg.TickInterval,
		perIP:   make(map[netip.Addr]int32),
		drained: make(chan struct{}),
		done:    make(chan struct{}),
	}
	e.errLog = newBurstLogger(e.log, time.Second)
	e.hOpen, _ = h.(OpenHandler)
	e.hClose, _ = h.(CloseHandler)
	e.hState, _ = h.(StateHandler)
	e.hDrain, _ = h.(DrainHandler)
	e.hTimeout, _ = h.(TimeoutHandler)
	e.hEOF, _ = h.(EOFHandler)
	_, e.sysClock = e.cfg.Clock.(systemClock)
	e.idleTO.Store(int64(cfg.IdleTimeout))
	if cfg.AcceptRate > 0 {
		e.limiter = rate.NewLimiter(rate.Limit(cfg.AcceptRate), cfg.AcceptBurst)
	}
	raiseFileLimit(e.log)
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

// Start listens on addr ("host:port"; port 0 picks a free one) and starts
// serving in the background. Use Addr for the bound address. An empty addr
// starts the loops without a listener, for connections made with Dial.
func (e *Engine) Start(addr string) error {
	e.mu.Lock()
	defer e.mu.Unlock()
	if e.started {
		return ErrStarted
	}
	var err error
	if e.cfg.Portable || !pollSupported {
		e.portable, err = startPortable(e, addr)
		if err == nil && e.portable.ln != nil {
			e.addr = e.portable.ln.Addr()
		}
	} else {
		e.addr, err = startLoops(e, addr, nil)
	}
	if err != nil {
		return err
	}
	e.started = true
	return nil
}

// Dial opens an outbound TCP connection to raddr, from the local address
// laddr when it is valid (with the port chosen at connect time, so many
// connections can share one source address), and hands it to a loop. The
// engine's handler serves it like an accepted connection: OnOpen runs once
// the connection is established, and a failed or timed-out connect (bounded
// by WriteTimeout) ends in OnClose with ReasonIOError. On the event loops
// Dial returns at once; on the portable engine it blocks until connected.
// The engine must have been started (Start("") starts loops without a
// listener, for a client).
func (e *Engine) Dial(raddr netip.AddrPort, laddr netip.Addr) (*Conn, error) {
	return e.DialWith(raddr, laddr, nil)
}

// DialWith is Dial with value stored on the connection (Conn.SetContext)
// before it is registered, so OnOpen and OnClose, which may run before
// DialWith returns, already see it. A nil value stores nothing.
func (e *Engine) DialWith(raddr netip.AddrPort, laddr netip.Addr, value any) (*Conn, error) {
	loops, pe := e.parts()
	if pe != nil {
		return pe.dial(raddr, laddr, value)
	}
	return e.dial(loops, raddr, laddr, value)
}

// Serve is Start on a listener the caller made (for example one inherited
// from a parent process). The engine takes it over and closes it.
func (e *Engine) Serve(ln net.Listener) error {
	e.mu.Lock()
	if e.started {
		e.mu.Unlock()
		return ErrStarted
	}
	var err error
	if e.cfg.Portable || !pollSupported {
		e.portable, err = servePortable(e, ln)
	} else {
		e.addr, err = startLoops(e, ln.Addr().String(), ln)
	}
	if err == nil {
		e.started = true
		if e.addr == nil {
			e.addr = ln.Addr()
		}
	}
	e.mu.Unlock()
	if err != nil {
		return err
	}
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
	loops, _ := e.parts()
	for _, l := range loops {
		l.postFunc(l.retimeAll)
	}
}

// Stats returns a snapshot of the engine's counters.
func (e *Engine) Stats() Stats {
	var s Stats
	loops, pe := e.parts()
	if pe != nil {
		s.add(&pe.stats)
	}
	for _, l := range loops {
		s.add(&l.stats)
	}
	s.QueuedBytes = e.queued.Load()
	s.WorkersBusy = e.workers.busy.Load()
	s.WorkerQueue = e.workers.waiting()
	s.IdleTimeout = e.IdleTimeout()
	return s
}

// ConnInfo describes one live connection for introspection.
type ConnInfo struct {
	ID          uint64
	Loop        int
	Remote      netip.AddrPort
	Local       netip.AddrPort
	State       State
	Protocol    Protocol
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

// CloseConn closes the live connection with the given ID with reason r and
// reports whether it was found.
func (e *Engine) CloseConn(id uint64, r CloseReason) bool {
	loops, pe := e.parts()
	if pe != nil {
		return pe.closeByID(id, r)
	}
	found := make(chan bool, len(loops))
	n := 0
	for _, l := range loops {
		if l.postFunc(func() {
			for _, c := range l.conns {
				if c != nil && c.id == id {
					c.CloseWithReason(r)
					found <- true
					return
				}
			}
			found <- false
		}) {
			n++
		}
	}
	ok := false
	for i := 0; i < n; i++ {
		select {
		case f := <-found:
			ok = ok || f
		case <-e.done:
			return ok
		}
	}
	return ok
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

// ticks converts a duration to whole ticks, rounding up.
func (e *Engine) ticks(d time.Duration) int64 {
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
		e.ipMu.Lock()
		n := e.perIP[ip]
		if int(n) >= e.cfg.MaxConnsPerIP {
			e.ipMu.Unlock()
			e.conns.Add(-1)
			return BoundPerIP, false
		}
		e.perIP[ip] = n + 1
		e.ipMu.Unlock()
	}
	return 0, true
}

// release undoes admit for a closed connection.
func (e *Engine) release(c *Conn) {
	if e.cfg.MaxConnsPerIP > 0 {
		ip := c.RemoteAddr().Addr()
		e.ipMu.Lock()
		if n := e.perIP[ip]; n <= 1 {
			delete(e.perIP, ip)
		} else {
			e.perIP[ip] = n - 1
		}
		e.ipMu.Unlock()
	}
	e.conns.Add(-1)
	e.checkDrained()
}

func (e *Engine) newConn(fd int, remote netip.AddrPort) *Conn {
	c := &Conn{fd: int32(fd), id: e.nextID.Add(1), created: e.cfg.Clock.Now().UnixNano()}
	c.setRemote(remote)
	return c
}

// recoverPanic, deferred around handler calls, logs a panic with its stack
// and aborts only the connection concerned.
func (e *Engine) recoverPanic(c *Conn) {
	if v := recover(); v != nil {
		e.log.LogAttrs(context.Background(), slog.LevelError, "engine: handler panic",
			slog.Uint64("conn", c.id), slog.String("remote", c.RemoteAddr().String()),
			slog.Any("panic", v), slog.String("stack", string(debug.Stack())))
		c.requestClose(ReasonPanic, fmt.Errorf("engine: handler panic: %v", v), true)
	}
}

func (e *Engine) callOnData(c *Conn, in []byte) (n int) {
	defer e.recoverPanic(c)
	n = e.h.OnData(c, in)
	if n < 0 {
		n = 0
	} else if n > len(in) {
		n = len(in)
	}
	return n
}

func (e *Engine) callOnOpen(c *Conn) {
	defer e.recoverPanic(c)
	e.hOpen.OnOpen(c)
}

func (e *Engine) callOnClose(c *Conn, r CloseReason, err error) {
	defer func() {
		if v := recover(); v != nil {
			e.log.Error("engine: OnClose panic", "conn", c.id, "panic", v, "stack", string(debug.Stack()))
		}
	}()
	e.hClose.OnClose(c, r, err)
}

func (e *Engine) callOnTimeout(c *Conn, r CloseReason) (keep bool) {
	defer e.recoverPanic(c)
	return e.hTimeout.OnTimeout(c, r)
}

func (e *Engine) callOnEOF(c *Conn) {
	if e.hEOF == nil {
		return
	}
	defer e.recoverPanic(c)
	e.hEOF.OnEOF(c)
}

func (e *Engine) callOnDrain(c *Conn) {
	defer e.recoverPanic(c)
	e.hDrain.OnDrain(c)
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
