//go:build !(linux || darwin || freebsd)

package engine

import (
	"errors"
	"net/netip"
	"runtime"
	"time"
)

// defaultLoops is Config.Loops' default: GOMAXPROCS.
func defaultLoops() int { return runtime.GOMAXPROCS(0) }

// pollSupported is false here: Start always runs the portable engine.
const pollSupported = false

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
	opPost
	opLinger
)

// op is a request posted to a loop's mailbox; loops never run here.
type op struct {
	kind opKind
	c    *Conn
	fn   func()
}

// loop is never instantiated on this platform.
type loop struct {
	e       *Engine
	idx     int
	tick    atomicTick
	stats   loopStats
	stopped chan struct{}
	uring   bool      // always false: Config.IOUring is Linux's
	now     time.Time // always zero: Conn.Now reads the clock
}

type atomicTick struct{}

func (atomicTick) Load() int64 { return 0 }

func (l *loop) post(o op) bool                 { return false }
func (l *loop) postFunc(fn func()) bool        { return false }
func (l *loop) retimeAll()                     {}
func (l *loop) retime(*Conn)                   {}
func (l *loop) stopAccepting()                 {}
func (l *loop) drainAll()                      {}
func (l *loop) closeAll()                      {}
func (l *loop) stop()                          {}
func (l *loop) snapshot() []ConnInfo           { return nil }
func (l *loop) walkInfo(func(*ConnInfo) bool)  {}
func (l *loop) infoOf(*Conn, int64, *ConnInfo) {}
func (l *loop) owned(int) *Conn                { return nil }
func (l *loop) eachConn(func(*Conn))           {}

func (e *Engine) findConn(uint64) *Conn { return nil }
func (c *Conn) ringWriteLocked(*loop, [][]byte, int) (int, error, bool) {
	return 0, nil, false
}
func (l *loop) inject(*Conn, []byte) {}

func startLoops(e *Engine) error {
	return errors.New("engine: event loops are not supported on this platform")
}

func listenLoops(e *Engine, sp *Listener, addr string) error {
	return errors.New("engine: event loops are not supported on this platform")
}

func sockName(c *Conn) netip.AddrPort { return netip.AddrPort{} }

func writeFD(fd int, bufs [][]byte) (int, error) {
	return 0, errors.New("engine: no descriptors on this platform")
}

func reasonFor(err error) CloseReason { return reasonForNet(err) }

func (e *Engine) dial(loops []*loop, raddr netip.AddrPort, laddr netip.Addr, h Handler, value any) (*Conn, error) {
	return nil, errors.New("engine: Dial needs the portable engine here")
}
