package engine

import (
	"context"
	"errors"
	"io"
	"net"
	"net/netip"
	"os"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenhq/warren/internal/pool"
)

// The portable engine runs on Go's net package: one goroutine per connection
// reads, calls the handler and applies timeouts through deadlines. Writes
// are synchronous, bounded by WriteTimeout, so there is no user-space output
// queue and no watermark: a peer that stops reading is closed with
// ReasonWriteTimeout. It exists for platforms without epoll or kqueue and as
// a reference the tests compare the loops against.

// portableReadSize is the read buffer each connection's goroutine holds.
const portableReadSize = 16 << 10

type portableEngine struct {
	e     *Engine
	stats loopStats

	// mu guards conns and lns.
	mu    sync.Mutex
	conns map[*Conn]struct{}
	lns   []net.Listener

	wg       sync.WaitGroup
	acceptWG sync.WaitGroup

	// readHook, for tests, runs on a reader once its next read is armed,
	// just before it reads.
	readHook atomic.Pointer[func(*Conn)]
}

// pconn is the portable engine's per-connection state.
type pconn struct {
	e     *Engine
	pe    *portableEngine
	nc    net.Conn
	local netip.AddrPort

	// mu guards the fields below.
	mu           sync.Mutex
	cond         *sync.Cond
	paused       bool
	drain        bool
	redeliver    bool
	retime       bool     // a timeout changed: recompute the read deadline
	posted       []func() // Conn.Post functions for the reader to run
	drainStarted bool     // OnDrain has run
	drainQuiet   bool     // draining: close once quiet
	linger       bool     // CloseLinger: linger before closing (linger_portable.go)
	// wakes counts the wake-ups (wakeLocked): a read that times out
	// while it is what arm recorded timed out on its own deadline.
	wakes uint64

	// readAt and wroteAt are the last read and the last write that moved
	// bytes on Config.Clock, unix nanoseconds, for observers on other
	// goroutines: ConnInfo.LastActive is the later, as on the loops, on
	// the clock Created is on. readAt starts at c's creation; wroteAt is
	// 0 until a write. With a Config.Clock other than the system clock,
	// each read and each write that moves bytes calls its Now once
	// (clockNanos), where the loops read it once per turn; the system
	// clock costs nothing more. The stamps below are wall time, for
	// deadlines.
	readAt, wroteAt atomic.Int64
	// lastWrite is the last write that moved bytes, unix nanoseconds, 0
	// if none: the idle timeout counts writes too, unless c's is
	// input-only (SetInputIdleTimeout).
	lastWrite atomic.Int64

	// Owned by the reader goroutine, unix nanoseconds (deadlines on a
	// net.Conn are wall time; the poll engine keeps these in the Conn, as
	// ticks): the last read, and the start of the pending message, 0 if
	// none.
	lastRead int64
	msgStart int64
	// msgs counts the starts of c's pending message (startMessage): a
	// message begun (SetMessagePending, unconsumed input), and restarted
	// by the handler's progress (it consumed some of its input, on a read
	// or a redelivery) or by OnTimeout keeping c open. A read timeout that
	// expired stands if the message it timed has not restarted and is
	// still pending when the input found with its expiry has been handled
	// (readTimeoutStands).
	msgs uint64
	// proto mirrors the handler's protocol name for observers.
	proto atomic.Pointer[protoBox]

	// Owned by the reader goroutine: inOnData is set while OnData runs
	// there, and inj (a buffer from internal/pool, at most MaxInputBytes)
	// holds what InjectInput was given meanwhile, delivered once OnData
	// returns (pconn.inject).
	inOnData bool
	inj      []byte
}

func newPortable(e *Engine) *portableEngine {
	return &portableEngine{e: e, conns: make(map[*Conn]struct{})}
}

// listen opens sp (on addr, or sp.ln) and starts its accept goroutine.
func (pe *portableEngine) listen(sp *Listener, addr string) error {
	ln := sp.ln
	if ln == nil {
		var err error
		if ln, err = net.Listen("tcp", addr); err != nil {
			return err
		}
	}
	sp.ln = nil
	sp.addr = ln.Addr()
	pe.mu.Lock()
	pe.lns = append(pe.lns, ln)
	pe.mu.Unlock()
	pe.acceptWG.Add(1)
	go pe.acceptLoop(ln, sp)
	return nil
}

func (pe *portableEngine) acceptLoop(ln net.Listener, sp *Listener) {
	defer pe.acceptWG.Done()
	e := pe.e
	var backoff time.Duration
	for {
		nc, err := ln.Accept()
		if err != nil {
			if errors.Is(err, net.ErrClosed) {
				return
			}
			pe.stats.rejected[BoundDescriptors].Add(1)
			e.errLog.Log("engine: accept", err)
			if backoff == 0 {
				backoff = 5 * time.Millisecond
			} else if backoff *= 2; backoff > time.Second {
				backoff = time.Second
			}
			time.Sleep(backoff)
			continue
		}
		backoff = 0
		remote, _ := netip.ParseAddrPort(nc.RemoteAddr().String())
		remote = netip.AddrPortFrom(remote.Addr().Unmap(), remote.Port())
		if b, ok := e.admit(remote.Addr()); !ok {
			pe.stats.rejected[b].Add(1)
			pe.stats.closed[ReasonLimitReached].Add(1)
			nc.Close()
			continue
		}
		pe.adopt(nc, remote, sp.h, sp.inline, sp.idx, nil)
	}
}

// adopt wraps an established net.Conn and starts its goroutine.
func (pe *portableEngine) adopt(nc net.Conn, remote netip.AddrPort, h Handler, inline bool, lnIdx uint8, value any) *Conn {
	e := pe.e
	c := e.newConn(-1, remote, h, inline)
	c.ln = lnIdx
	if lnIdx == 0 {
		c.flags |= fOutbound
	}
	if value != nil {
		c.SetContext(value)
	}
	local, _ := netip.ParseAddrPort(nc.LocalAddr().String())
	pc := &pconn{e: e, pe: pe, nc: nc, local: local}
	pc.cond = sync.NewCond(&pc.mu)
	pc.readAt.Store(c.created)
	pc.proto.Store(&protoBox{protocolOf(h)})
	c.host = pc
	pe.mu.Lock()
	pe.conns[c] = struct{}{}
	pe.mu.Unlock()
	pe.stats.accepted.Add(1)
	pe.stats.conns.Add(1)
	pe.stats.states[StateNew].Add(1)
	pe.wg.Add(1)
	go pe.serve(c)
	return c
}

// portable returns c's portable state; c must be on the portable engine.
func (c *Conn) portable() *pconn { return c.host.(*pconn) }

func (pe *portableEngine) dial(raddr netip.AddrPort, laddr netip.Addr, h Handler, value any) (*Conn, error) {
	e := pe.e
	if e.draining.Load() {
		return nil, ErrServerClosed
	}
	if n := e.conns.Add(1); e.cfg.MaxConns > 0 && n > int64(e.cfg.MaxConns) {
		e.conns.Add(-1)
		return nil, ErrLimit
	}
	d := net.Dialer{Timeout: e.cfg.WriteTimeout}
	if laddr.IsValid() {
		d.LocalAddr = &net.TCPAddr{IP: laddr.AsSlice()}
	}
	nc, err := d.Dial("tcp", raddr.String())
	if err != nil {
		e.conns.Add(-1)
		return nil, err
	}
	return pe.adopt(nc, raddr, h, e.cfg.Inline, 0, value), nil
}

func (pe *portableEngine) setState(c *Conn, to State) {
	from := State(c.state.Load())
	if from == to {
		return
	}
	c.state.Store(uint32(to))
	pe.stats.states[from].Add(-1)
	if to != StateClosed {
		pe.stats.states[to].Add(1)
	}
	pe.e.callOnStateChange(c, from, to)
}

func (pe *portableEngine) serve(c *Conn) {
	defer pe.wg.Done()
	e, pc := pe.e, c.portable()
	e.callOnOpen(c)
	buf := make([]byte, portableReadSize)
	var why CloseReason
	var ioErr error
	eof := false
	refused := 0 // turns in a row arm refused for a signal
	// late counts the reads in a row, past a read timeout's deadline
	// (lateAt), that filled buf with bytes of the message it timed: more
	// was waiting, so the message is judged on the read that comes back
	// short, or on full read lateMax+1 (a peer streaming at full speed
	// cannot keep it open).
	late, lateMax, lateAt := 0, e.cfg.MaxInputBytes/len(buf)+1, time.Time{}
	for {
		if r := pe.closeRequested(c); r != ReasonNone {
			why = r
			break
		}
		pc.mu.Lock()
		// A paused reader still wakes for a drain or a close (lock order:
		// pc.mu before c.mu).
		for pc.paused && !pc.drain && len(pc.posted) == 0 && pe.closeRequested(c) == ReasonNone {
			pc.cond.Wait()
		}
		drain := pc.drain
		pc.drain, pc.retime = false, false
		posted := pc.posted
		pc.posted = nil
		pc.mu.Unlock()
		for _, fn := range posted {
			if pe.closeRequested(c) == ReasonNone {
				fn()
			}
		}
		if drain {
			pe.drainConn(c)
			continue
		}
		if pc.takeRedeliver() && c.in != nil && c.inflight.Load() == 0 {
			pe.input(c, nil)
			continue
		}
		state := StateIdle
		if c.pending() || c.inflight.Load() > 0 {
			state = StateActive
		}
		if e.draining.Load() {
			state = StateDraining
		}
		pe.setState(c, state)
		wrote := pc.lastWrite.Load()
		timeoutWhy, deadline, writesCount := pe.deadline(c)
		msgs := pc.msgs
		if !deadline.Equal(lateAt) {
			late, lateAt = 0, deadline
		}
		wakes, armed := pc.arm(deadline)
		if pe.closeRequested(c) != ReasonNone {
			continue
		}
		letThrough := false
		if !armed {
			// A redeliver, drain, timeout change, post or pause waits:
			// its wake-up (a deadline of now) is not to be overwritten.
			if refused++; refused < portableSignalTurns {
				continue
			}
			// Signals (a storm of posts) have kept the reader from
			// reading for portableSignalTurns turns in a row: let a
			// read through, so input and timeouts are not starved.
			letThrough = true
		}
		refused = 0
		var n int
		var err error
		if letThrough {
			var ok bool
			if n, ok, err = pc.probe(buf, 0, true); !ok {
				continue // paused
			}
		} else {
			if h := pe.readHook.Load(); h != nil {
				(*h)(c)
			}
			n, err = pc.nc.Read(buf)
		}
		if n > 0 {
			pe.input(c, buf[:n])
		}
		lateStands := false // the read let through expired the read timeout
		if err == nil && letThrough && n > 0 && timeoutWhy == ReasonReadTimeout &&
			!time.Now().Before(deadline) {
			// The read let through overwrote the deadline, and read
			// bytes once it had passed: if they leave the message it
			// timed pending, a storm of posts and a trickle kept it
			// open, unless the read filled buf (more is waiting).
			if lateStands = pe.lateReadStands(c, msgs, deadline, n == len(buf), &late, lateMax); lateStands {
				err = os.ErrDeadlineExceeded
			}
		}
		if err == nil {
			continue
		}
		if r := pe.closeRequested(c); r != ReasonNone {
			why = r
			break
		}
		var ne net.Error
		if errors.As(err, &ne) && ne.Timeout() {
			if pc.takeDrain() {
				pe.drainConn(c)
				continue
			}
			if letThrough {
				// The read let through waited only portableProbeWait:
				// its timeout is an expiry only past the deadline.
				if deadline.IsZero() || time.Now().Before(deadline) {
					continue
				}
			} else if pc.wokenSince(wakes) {
				// A post, redeliver, timeout change or close woke the
				// read (a deadline of now), not its own deadline. No
				// clock is read: a wall-clock step cannot make a
				// timeout a wake-up, or a wake-up a timeout.
				continue
			}
			if c.inflight.Load() > 0 {
				// Held (Hold) from another goroutine since the read was
				// armed: its timeouts wait for the hold to end, as on
				// the loops; the next turn arms no deadline.
				continue
			}
			if timeoutWhy == ReasonIdleTimeout && writesCount && pc.lastWrite.Load() != wrote {
				// Bytes went out since the read was armed: the next turn
				// counts the idle time from them. Not for an input-only
				// timeout, whose deadline writes do not move: the next
				// turn would arm the same passed deadline, and a busy
				// writer kept it from expiring for as long as it wrote.
				continue
			}
			if timeoutWhy != ReasonNone && n == 0 && !letThrough {
				// The deadline may have passed while the reader was busy
				// (a slow OnData, posts), and a read whose deadline has
				// passed returns without reading: input may be waiting.
				// One short read tells (and the next, if it fills buf:
				// lateReadStands); input is activity, unless the timeout
				// is a read timeout that still stands (readTimeoutStands):
				// a message's timeout runs from its start, and its bytes
				// do not move it, as on the loops.
				m, ok, perr := pc.probe(buf, wakes, false)
				if !ok {
					continue // woken meanwhile, or paused
				}
				if m > 0 {
					pe.input(c, buf[:m])
				}
				if perr != nil && !(errors.As(perr, &ne) && ne.Timeout()) {
					// The peer's end of stream or an error: the read's
					// own end (a later read would only find the deadline
					// passed again, and never see it).
					err = perr
					goto ended
				}
				// Bytes of the message a read timeout timed are not
				// activity (a peer trickling them kept it open), unless
				// the read filled buf: more is waiting, to be read first.
				// An empty probe leaves late as it is: it is judged
				// below, or it was woken (a post between the probe's
				// deadline and its read), and posts must not restart
				// the count of a peer's full reads.
				stands := false
				if m > 0 {
					stands = pe.lateReadStands(c, msgs, deadline, m == len(buf), &late, lateMax)
				}
				if !stands && (m > 0 || perr == nil || pc.wokenSince(wakes)) {
					continue // input is activity; or woken
				}
			} else if n > 0 && !lateStands && !pe.readTimeoutStands(c, msgs, deadline) {
				continue // input came in with the timeout: activity
			}
			if timeoutWhy != ReasonNone {
				if e.callOnTimeout(c, timeoutWhy) {
					pc.lastRead = time.Now().UnixNano()
					if c.pending() {
						pc.startMessage(pc.lastRead)
					}
					continue
				}
				why = timeoutWhy
				break
			}
			continue
		}
	ended:
		if r := pe.closeRequested(c); r != ReasonNone {
			why = r
			break
		}
		if err == io.EOF {
			eof = true
			e.callOnEOF(c)
			pe.drainAfterEOF(c)
			why = ReasonPeerClosed
		} else {
			why, ioErr = reasonForNet(err), err
		}
		break
	}
	if !eof && ioErr == nil {
		pe.linger(c, buf) // linger_portable.go: if CloseLinger asked for it
	}
	pe.finish(c, why, ioErr)
}

// drainAfterEOF lets a half-closed connection finish: work in flight
// completes and pending input (pipelined requests) is still handled before
// the connection closes.
func (pe *portableEngine) drainAfterEOF(c *Conn) {
	pc := c.portable()
	for {
		pc.mu.Lock()
		for c.inflight.Load() > 0 && pe.closeRequested(c) == ReasonNone {
			pc.cond.Wait()
		}
		pc.redeliver = false
		pc.mu.Unlock()
		if pe.closeRequested(c) != ReasonNone || c.in == nil {
			return
		}
		before := len(c.input())
		pe.input(c, nil)
		if c.inflight.Load() == 0 && len(c.input()) == before {
			return // nothing more can be made of the pending bytes
		}
	}
}

func (pc *pconn) takeRedeliver() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	r := pc.redeliver
	pc.redeliver = false
	return r
}

// portableSignalTurns bounds the reader's turns in a row on signals
// (posts, redelivers, timeout changes) without a read: past it, one short
// read (probe) is let through, so a storm of posts starves neither input
// nor the timeouts.
const portableSignalTurns = 64

// portableProbeWait bounds a probe's read: a read whose deadline has
// passed returns at once without reading, so a probe gives the bytes
// already arrived this long to be read.
const portableProbeWait = time.Millisecond

// probe reads what has already arrived, waiting at most portableProbeWait
// (its deadline overwrites the armed one). Unless force is set, it does
// not read once the reader has been woken since arm returned wakes. It
// never reads while reading is paused; ok is false when it did not read.
func (pc *pconn) probe(buf []byte, wakes uint64, force bool) (n int, ok bool, err error) {
	pc.mu.Lock()
	if pc.paused || (!force && pc.wakes != wakes) {
		pc.mu.Unlock()
		return 0, false, nil
	}
	pc.nc.SetReadDeadline(time.Now().Add(portableProbeWait))
	pc.mu.Unlock()
	n, err = pc.nc.Read(buf)
	return n, true, err
}

// wokenSince reports whether the reader has been woken (wakeLocked) since
// arm returned wakes.
func (pc *pconn) wokenSince(wakes uint64) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	return pc.wakes != wakes
}

func (pc *pconn) signalledLocked() bool {
	return pc.redeliver || pc.drain || pc.retime || len(pc.posted) > 0
}

// arm sets the reader's deadline for its next read unless a signal waits
// or reading is paused (ok is false then), and returns the wake-up count it armed at. It holds
// pc.mu, as the wakers do from setting their signal to waking the read
// (wakeLocked): a wake-up cannot land after the reader has taken its
// signal and armed the next read unless it bumps the count, so a read
// that times out with the count unchanged timed out on deadline.
func (pc *pconn) arm(deadline time.Time) (wakes uint64, ok bool) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if pc.signalledLocked() || pc.paused {
		return pc.wakes, false
	}
	pc.nc.SetReadDeadline(deadline)
	return pc.wakes, true
}

// wakeLocked interrupts the reader's read (a deadline of now) for the
// signal just set, and counts the wake-up; pc.mu is held (see arm).
func (pc *pconn) wakeLocked() {
	pc.wakes++
	pc.cond.Broadcast()
	pc.nc.SetReadDeadline(time.Now())
}

func (pc *pconn) takeDrain() bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	d := pc.drain
	pc.drain = false
	return d
}

// deadline picks the read deadline: the read timeout while a message is
// pending, else the idle timeout. writes reports whether writes move it
// (an idle timeout that is not input-only).
func (pe *portableEngine) deadline(c *Conn) (why CloseReason, at time.Time, writes bool) {
	e := pe.e
	pc := c.portable()
	if pc.lastRead == 0 {
		pc.lastRead = time.Now().UnixNano()
	}
	if c.inflight.Load() > 0 {
		return ReasonNone, time.Time{}, false
	}
	idleDef, readDef := e.timeouts(c.ln)
	if c.pending() {
		d := msDuration(c.readTO.Load(), readDef)
		if d <= 0 {
			return ReasonNone, time.Time{}, false
		}
		return ReasonReadTimeout, time.Unix(0, pc.msgStart).Add(d), false
	}
	ms, inputOnly := c.idleTimeout()
	d := msDuration(ms, idleDef)
	if d <= 0 {
		return ReasonNone, time.Time{}, false
	}
	last := pc.lastRead
	if !inputOnly {
		last = max(last, pc.lastWrite.Load())
	}
	return ReasonIdleTimeout, time.Unix(0, last).Add(d), !inputOnly
}

// readTimeoutStands reports whether a read timeout whose deadline
// (deadline, when c had started msgs messages) has passed still applies
// now that the input read with its expiry has been handled: c is open,
// not held, and the same message is still pending with a deadline no
// later (OnData may have raised the read timeout, or ended the message).
// It runs on c's reader.
func (pe *portableEngine) readTimeoutStands(c *Conn, msgs uint64, deadline time.Time) bool {
	pc := c.portable()
	if pc.msgs != msgs || pe.closeRequested(c) != ReasonNone {
		return false
	}
	why, at, _ := pe.deadline(c)
	return why == ReasonReadTimeout && !at.After(deadline)
}

// lateReadStands is readTimeoutStands for input read past the deadline,
// once handled, unless the read was full (it filled the reader's buffer)
// and fewer than lateMax full reads in a row (*late) came before it: then
// more was already waiting, and the message is judged once that has been
// read too; the read is counted in *late and lateReadStands reports
// false. A read that is judged resets *late. It runs on c's reader.
func (pe *portableEngine) lateReadStands(c *Conn, msgs uint64, deadline time.Time, full bool, late *int, lateMax int) bool {
	if !pe.readTimeoutStands(c, msgs, deadline) {
		*late = 0
		return false
	}
	if full && *late < lateMax {
		*late++
		return false
	}
	*late = 0
	return true
}

// startMessage stamps the start of c's pending message, now (unix
// nanoseconds, wall time), and counts it; it runs on c's reader.
func (pc *pconn) startMessage(now int64) {
	pc.msgStart = now
	pc.msgs++
}

func msDuration(ms int32, def time.Duration) time.Duration {
	switch {
	case ms < 0:
		return -1
	case ms > 0:
		return time.Duration(ms) * time.Millisecond
	}
	return def
}

func (pe *portableEngine) input(c *Conn, data []byte) {
	e := pe.e
	now := time.Now().UnixNano() // deadlines on net.Conn are wall time
	if data == nil {             // redelivery of pending input
		c.flags &^= fNewHandler
		in := c.input()
		pc := c.portable()
		pc.inOnData = true
		used := e.callOnData(c, in)
		for c.flags&fNewHandler != 0 && used < len(in) && pc.inj == nil && pe.closeRequested(c) == ReasonNone {
			c.flags &^= fNewHandler
			used += e.callOnData(c, in[used:])
		}
		pc.inOnData = false
		if pc.inj != nil {
			pe.injected(c, in, used, true, now)
			return
		}
		if used > 0 {
			c.setInput(in[:copy(in, in[used:])]) // an emptied buffer goes back to the pool
			pc := c.portable()
			pc.startMessage(now)
			if c.in == nil {
				if c.flags&fMessage == 0 {
					pc.msgStart = 0
				}
			}
		}
		return
	}
	c.bytesIn.Add(uint64(len(data)))
	pe.stats.bytesIn.Add(uint64(len(data)))
	pc := c.portable()
	pc.lastRead = now
	pc.readAt.Store(pc.clockNanos(now))
	pe.deliver(c, data, now)
}

// deliver is input after the counting: data goes through c's transform,
// if it has one, and on to OnData.
func (pe *portableEngine) deliver(c *Conn, data []byte, now int64) {
	e := pe.e
	if c.flags&fTransform != 0 {
		t := c.Transform()
		plain, err := t.Open(c, data)
		defer t.OpenDone()
		if err != nil {
			defer c.transformFailed(err)
		}
		if len(plain) == 0 {
			return
		}
		data = plain
	}
	fromIn := false
	if in := c.input(); in != nil {
		if len(in)+len(data) > e.cfg.MaxInputBytes {
			c.requestClose(ReasonLimitReached, nil, true)
			return
		}
		in = append(pool.Grow(in, len(data)), data...)
		c.setInput(in)
		data, fromIn = in, true
	}
	c.flags &^= fNewHandler
	pc := c.portable()
	pc.inOnData = true // InjectInput from this OnData waits for it
	used := e.callOnData(c, data)
	// A handler that handed c to another (SetHandler) leaves the rest of
	// the input to the new one.
	for c.flags&fNewHandler != 0 && used < len(data) && pc.inj == nil && pe.closeRequested(c) == ReasonNone {
		c.flags &^= fNewHandler
		used += e.callOnData(c, data[used:])
	}
	pc.inOnData = false
	if pc.inj != nil {
		pe.injected(c, data, used, fromIn, now)
		return
	}
	rest := len(data) - used
	if rest == 0 {
		c.dropInput()
		if c.flags&fMessage == 0 {
			c.portable().msgStart = 0
		}
		return
	}
	if rest > e.cfg.MaxInputBytes {
		c.requestClose(ReasonLimitReached, nil, true)
		return
	}
	if fromIn {
		c.setInput(data[:copy(data, data[used:])])
	} else {
		c.newInput(data[used:])
	}
	if pc := c.portable(); pc.msgStart == 0 || used > 0 {
		pc.startMessage(now)
	}
}

func (pe *portableEngine) closeRequested(c *Conn) CloseReason {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs&csClosing != 0 {
		if c.why() == ReasonNone {
			return ReasonLocal
		}
		return c.why()
	}
	return ReasonNone
}

func (pe *portableEngine) finish(c *Conn, why CloseReason, err error) {
	e := pe.e
	c.mu.Lock()
	if c.why() != ReasonNone {
		why, err = c.why(), c.closeError()
	} else {
		c.setWhy(why)
		c.setCloseError(err)
	}
	detail := c.closeDetail()
	c.cs |= csClosed | csClosing
	c.mu.Unlock()
	pe.stats.conns.Add(-1)
	pe.stats.closed[why].Add(1)
	if detail != nil {
		e.countDetail(c, why, detail)
	}
	c.portable().nc.Close()
	c.dropInput()
	pe.mu.Lock()
	delete(pe.conns, c)
	pe.mu.Unlock()
	pe.stats.observeDuration(time.Duration(e.Now().UnixNano() - c.created))
	pe.setState(c, StateClosed)
	e.release(c)
	if c.hcaps&capClose != 0 {
		e.callOnClose(c, c.h, why, err)
	}
}

// drainConn starts c's goodbye: OnDrain, then, unless the protocol closes
// c itself, a close as soon as it is quiet (here, or when its work in
// flight is done: see postOp's opQuiet).
func (pe *portableEngine) drainConn(c *Conn) {
	e, pc := pe.e, c.portable()
	pc.mu.Lock()
	first := !pc.drainStarted
	pc.drainStarted = true
	quiet := pc.drainQuiet
	pc.mu.Unlock()
	if first {
		pe.setState(c, StateDraining)
		if e.callOnDrain(c) {
			return
		}
		pc.mu.Lock()
		pc.drainQuiet = true
		pc.mu.Unlock()
	} else if !quiet {
		return
	}
	if !c.pending() && c.inflight.Load() == 0 {
		c.requestClose(ReasonShutdown, nil, false)
	}
}

// The portable reader as a connection's host (connHost, host.go).

func (pc *pconn) engine() *Engine { return pc.e }

func (pc *pconn) localAddr(*Conn) netip.AddrPort { return pc.local }

func (pc *pconn) postOp(c *Conn, kind opKind) {
	switch kind {
	case opClose:
		pc.requestClose(c)
	case opLinger:
		pc.mu.Lock()
		pc.linger = true
		pc.mu.Unlock()
		pc.requestClose(c)
	case opPause:
		pc.mu.Lock()
		pc.paused = true
		pc.wakeLocked() // a read in progress stops (arm re-arms none while paused)
		pc.mu.Unlock()
	case opResume:
		pc.mu.Lock()
		pc.paused = false
		pc.cond.Broadcast()
		pc.mu.Unlock()
	case opQuiet:
		pc.mu.Lock()
		if pc.drainQuiet {
			pc.drain = true // the reader re-checks quiet in drainConn
		}
		pc.redeliver = true // the reader resumes pending input
		pc.wakeLocked()
		pc.mu.Unlock()
	case opRetime:
		pc.mu.Lock()
		pc.retime = true // re-evaluated by the reader
		pc.wakeLocked()
		pc.mu.Unlock()
	}
}

// postFn queues fn for the reader and wakes it.
func (pc *pconn) postFn(_ *Conn, fn func()) bool {
	pc.mu.Lock()
	pc.posted = append(pc.posted, fn)
	pc.wakeLocked()
	pc.mu.Unlock()
	return true
}

// setMessagePending applies on any handler: OnData always runs on the
// reader here. The message starts on the real clock, as every portable
// timeout does (deadlines on a net.Conn), not on Config.Clock.
func (pc *pconn) setMessagePending(c *Conn, pending bool) {
	if c.markMessage(pending) {
		pc.startMessage(time.Now().UnixNano())
	}
}

// handlerChanged mirrors the new handler's protocol for snapshots.
func (pc *pconn) handlerChanged(c *Conn) { pc.proto.Store(&protoBox{protocolOf(c.h)}) }

func (pc *pconn) oneGoroutine() bool { return true }

// requestClose interrupts the reader, which finishes the close. Writes are
// synchronous, so nothing queued is lost.
func (pc *pconn) requestClose(c *Conn) {
	pc.mu.Lock()
	pc.wakeLocked()
	pc.mu.Unlock()
	c.mu.Lock()
	abort := c.cs&csAbort != 0
	c.mu.Unlock()
	if abort {
		pc.nc.Close()
	}
}

// writev writes synchronously, bounded by the write timeout.
func (pc *pconn) writev(c *Conn, b [][]byte, total int) (int, error) {
	c.mu.Lock()
	if c.cs&(csClosed|csClosing) != 0 {
		c.mu.Unlock()
		return 0, ErrClosed
	}
	if t := c.transformLocked(); t != nil {
		sealed, err := t.Seal(b, total)
		if err != nil {
			c.mu.Unlock()
			c.requestClose(ReasonProtocolError, err, true)
			return 0, err
		}
		if len(sealed) == 0 {
			c.mu.Unlock()
			t.Release(sealed)
			return total, nil
		}
		_, err = pc.writeLocked(c, [][]byte{sealed})
		t.Release(sealed)
		if err != nil {
			return 0, err
		}
		return total, nil
	}
	return pc.writeLocked(c, b)
}

// inject runs bytes already read through c's transform (InjectInput).
// Called from c's OnData, it keeps a copy of pending (pc.inj, bounded by
// MaxInputBytes) for deliver to hand on once OnData returns (injected).
func (pc *pconn) inject(c *Conn, pending []byte) {
	if !pc.inOnData {
		pc.pe.deliver(c, pending, time.Now().UnixNano())
		return
	}
	if len(pc.inj)+len(pending) > pc.e.cfg.MaxInputBytes {
		pool.Put(pc.inj)
		pc.inj = nil
		c.requestClose(ReasonLimitReached, nil, true)
		return
	}
	pc.inj = append(pool.Grow(pc.inj, len(pending)), pending...)
}

// injected hands on the bytes c's OnData injected (pc.inj) once it has
// returned, as the loop's injected does: through c's transform, then as
// c's input ahead of data[used:], what OnData left (c's input when
// fromIn), redelivered to c's handler.
func (pe *portableEngine) injected(c *Conn, data []byte, used int, fromIn bool, now int64) {
	pc := c.portable()
	inj := pc.inj
	pc.inj = nil
	defer pool.Put(inj)
	if pe.closeRequested(c) != ReasonNone {
		return
	}
	if c.flags&fTransform != 0 {
		t := c.Transform()
		plain, err := t.Open(c, inj)
		defer t.OpenDone()
		if err != nil {
			defer c.transformFailed(err)
		}
		inj = plain
	}
	n := c.joinInjected(inj, data[used:], fromIn, pe.e.cfg.MaxInputBytes)
	if n < 0 {
		c.requestClose(ReasonLimitReached, nil, true)
		return
	}
	if n == 0 {
		if c.flags&fMessage == 0 {
			pc.msgStart = 0
		}
		return
	}
	if pc.msgStart == 0 || used > 0 {
		pc.startMessage(now)
	}
	pe.input(c, nil)
}

// finalLocked writes a transform's last bytes, bounded by WriteTimeout;
// c.mu is held. An error is left to the close that follows.
func (pc *pconn) finalLocked(c *Conn, b []byte) {
	if d := pc.e.cfg.WriteTimeout; d > 0 {
		pc.nc.SetWriteDeadline(time.Now().Add(d))
	}
	if n, _ := pc.nc.Write(b); n > 0 {
		c.bytesOut.Add(uint64(n))
		pc.pe.stats.bytesOut.Add(uint64(n))
		pc.stampWrite()
	}
}

// stampWrite stamps a write that moved bytes, on both clocks.
func (pc *pconn) stampWrite() {
	now := time.Now().UnixNano()
	pc.lastWrite.Store(now)
	pc.wroteAt.Store(pc.clockNanos(now))
}

// clockNanos returns Config.Clock's time, unix nanoseconds, for a stamp
// taken at wall, a reading of the real clock: wall as is when Config.Clock
// is the system clock, else one call of the clock's Now, per read and per
// write, from c's goroutine or a writer's (as the loops call it from each
// of theirs).
func (pc *pconn) clockNanos(wall int64) int64 {
	if pc.e.sysClock {
		return wall
	}
	return pc.e.cfg.Clock.Now().UnixNano()
}

// writeLocked writes b; c.mu is held on entry and released on return.
func (pc *pconn) writeLocked(c *Conn, b [][]byte) (int, error) {
	bufs := net.Buffers(b)
	if d := pc.e.cfg.WriteTimeout; d > 0 {
		pc.nc.SetWriteDeadline(time.Now().Add(d))
	}
	n64, err := bufs.WriteTo(pc.nc)
	n := int(n64)
	c.mu.Unlock()
	if n > 0 {
		c.bytesOut.Add(uint64(n))
		pc.pe.stats.bytesOut.Add(uint64(n))
		pc.stampWrite()
	}
	if err != nil {
		r := reasonForNet(err)
		if errors.Is(err, os.ErrDeadlineExceeded) {
			r = ReasonWriteTimeout
		}
		c.requestClose(r, err, true)
		return n, err
	}
	return n, nil
}

// reasonForNet maps an error from Go's net package to a close reason.
func reasonForNet(err error) CloseReason {
	switch {
	case errors.Is(err, io.EOF):
		return ReasonPeerClosed
	case errors.Is(err, os.ErrDeadlineExceeded):
		return ReasonIOError
	case isPeerReset(err):
		return ReasonPeerReset
	}
	return ReasonIOError
}

// isPeerReset reports whether err says the peer reset the connection, or
// that it is gone under a write (EPIPE). Windows reports both with its own
// codes (peerResetOS), not with syscall.ECONNRESET or EPIPE.
func isPeerReset(err error) bool {
	return errors.Is(err, syscall.ECONNRESET) || errors.Is(err, syscall.EPIPE) || peerResetOS(err)
}

func (pe *portableEngine) all() []*Conn {
	pe.mu.Lock()
	defer pe.mu.Unlock()
	out := make([]*Conn, 0, len(pe.conns))
	for c := range pe.conns {
		out = append(out, c)
	}
	return out
}

func (pe *portableEngine) snapshot() []ConnInfo {
	var out []ConnInfo
	for _, c := range pe.all() {
		out = append(out, infoOfPortable(c))
	}
	return out
}

// infoByID describes the live connection id, looked up in pe's set
// without describing the others.
func (pe *portableEngine) infoByID(id uint64) (ConnInfo, bool) {
	pe.mu.Lock()
	var found *Conn
	for c := range pe.conns {
		if c.id == id {
			found = c
			break
		}
	}
	pe.mu.Unlock()
	if found == nil {
		return ConnInfo{}, false
	}
	return infoOfPortable(found), true
}

// infoOfPortable describes c, a portable engine's connection.
func infoOfPortable(c *Conn) ConnInfo {
	pc := c.portable()
	return ConnInfo{
		ID: c.id, Remote: c.RemoteAddr(), Local: pc.local, State: c.State(),
		Protocol: pc.proto.Load().name, Listener: int(c.ln), Outbound: c.ln == 0,
		Created:    time.Unix(0, c.created),
		LastActive: time.Unix(0, max(pc.readAt.Load(), pc.wroteAt.Load())),
		BytesIn:    c.bytesIn.Load(), BytesOut: c.bytesOut.Load(), Served: c.served.Load(),
	}
}

// retimeAll has every reader recompute its read deadline.
func (pe *portableEngine) retimeAll() {
	for _, c := range pe.all() {
		c.portable().postOp(c, opRetime)
	}
}

func (pe *portableEngine) closeByID(id uint64, r CloseReason) bool {
	for _, c := range pe.all() {
		if c.id == id {
			c.CloseWithReason(r)
			return true
		}
	}
	return false
}

func (pe *portableEngine) shutdown(ctx context.Context) error {
	e := pe.e
	pe.mu.Lock()
	for _, ln := range pe.lns {
		ln.Close()
	}
	pe.mu.Unlock()
	pe.acceptWG.Wait()
	for _, c := range pe.all() {
		pc := c.portable()
		pc.mu.Lock()
		pc.drain = true
		pc.wakeLocked()
		pc.mu.Unlock()
	}
	e.checkDrained()
	var err error
	select {
	case <-e.drained:
	case <-ctx.Done():
		err = ctx.Err()
		for _, c := range pe.all() {
			c.Abort(ReasonShutdown)
		}
	}
	pe.wg.Wait()
	e.workers.close()
	if err == nil {
		e.workers.wait(ctx.Done())
	}
	close(e.done)
	return err
}
