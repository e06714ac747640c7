package engine

import "net/netip"

// connHost runs a Conn: one of the event loops (*loop) or, on the portable
// engine, the connection's own reader goroutine (*pconn). The Conn methods
// whose work differs between the two engines go through it; conn.go names
// *loop only in Loop and on the write path, and never names *pconn.
//
// The poll engine's write path does not make the interface call: Write and
// Writev assert c.host to *loop first, which costs what the nil check on
// the portable engine's pointer used to (one compare of the interface's
// type word; the loop pointer is its data word, in Conn like the pointer
// it replaces), and then call the loop's write path directly, which keeps
// its buffers on the stack. The calls that do go through the interface
// are once per request or rarer, never per read or write: Post, PauseRead,
// ResumeRead, the timeout setters, close, SetMessagePending, SetHandler,
// LocalAddr, Dispatch's engine lookup and the quiet notice after dispatched
// work; each costs an indirect call where a branch was, about a
// nanosecond.
//
// One interface field also keeps Conn small: it takes the two words
// of the loop and portable pointers it replaces.
type connHost interface {
	// engine returns the engine c belongs to.
	engine() *Engine
	// localAddr returns c's local address (Conn.LocalAddr).
	localAddr(c *Conn) netip.AddrPort
	// postOp hands kind for c to where c's callbacks run.
	postOp(c *Conn, kind opKind)
	// postFn runs fn where c's callbacks run, unless c closes first
	// (Conn.Post); it reports false when it cannot queue fn.
	postFn(c *Conn, fn func()) bool
	// setMessagePending is Conn.SetMessagePending.
	setMessagePending(c *Conn, pending bool)
	// handlerChanged tells the host that c has a new handler.
	handlerChanged(c *Conn)
	// writev writes bufs, total bytes in all, or queues what the socket
	// does not take (Conn.Writev).
	writev(c *Conn, bufs [][]byte, total int) (int, error)
	// inject runs bytes already read through c's transform to its
	// handler (Conn.InjectInput).
	inject(c *Conn, pending []byte)
	// finalLocked sends a transform's last bytes as c starts to close
	// gracefully; c.mu is held.
	finalLocked(c *Conn, b []byte)
	// oneGoroutine reports whether every callback of a connection runs
	// where SetHandler runs, whatever its handler's mode (the portable
	// engine's reader goroutine), so a new handler's OnOpen must run
	// there too: dispatched, it could run after the first OnData.
	oneGoroutine() bool
}

var (
	_ connHost = (*loop)(nil)
	_ connHost = (*pconn)(nil)
)

// The event loop as a connection's host. Its write path is Conn.writev
// (conn.go); the rest of its connections' work is in the *_unix.go files.

func (l *loop) engine() *Engine { return l.e }

// localAddr returns the listener's address when it is bound to one IP,
// otherwise c's own, looked up on demand.
func (l *loop) localAddr(c *Conn) netip.AddrPort {
	if sp := l.e.listenerAt(c.ln); sp != nil && sp.local.IsValid() {
		return sp.local
	}
	return sockName(c)
}

func (l *loop) postOp(c *Conn, kind opKind) { l.post(op{kind: kind, c: c}) }

func (l *loop) postFn(c *Conn, fn func()) bool { return l.post(op{kind: opPost, c: c, fn: fn}) }

// setMessagePending applies only on the loop: OnData of a handler on the
// worker pool must not touch loop-owned fields.
func (l *loop) setMessagePending(c *Conn, pending bool) {
	if !c.inline() || !c.markMessage(pending) {
		return
	}
	c.msgStart = stampOf(l.tick.Load())
	l.retime(c)
}

func (l *loop) handlerChanged(*Conn) {}

func (l *loop) oneGoroutine() bool { return false }

func (l *loop) writev(c *Conn, bufs [][]byte, total int) (int, error) {
	return c.writev(l, bufs, total)
}

// finalLocked queues b; the close that follows (handleClose) polls for
// writability and flushes it. Over a bound, b is dropped: c is closing
// anyway.
func (l *loop) finalLocked(c *Conn, b []byte) {
	one := [1][]byte{b}
	_ = c.enqueueLocked(l, one[:], 0, len(b))
}
