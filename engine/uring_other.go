//go:build darwin || freebsd

package engine

// Config.IOUring is Linux's; elsewhere the loops always use their poller.
const (
	ringSupported = false
	ringForced    = false
)

// ringLoop is the io_uring state, never set off Linux.
type ringLoop struct{}

func (l *loop) startRing()                                              {}
func (l *loop) ringWait(int) (int, error)                               { return 0, nil }
func (l *loop) ringOrphan(*Conn)                                        {}
func (l *loop) ringQueue(*Conn)                                         {}
func (l *loop) stopRing()                                               {}
func (c *Conn) ringWriteLocked(*loop, [][]byte, int) (int, error, bool) { return 0, nil, false }
func (l *loop) ringRecvLater(*Conn) bool                                { return false }
func (l *loop) ringRecvs()                                              {}
func (l *loop) ringFlush()                                              {}
