package engine

import (
	"errors"
	"io"
	"net"
	"os"
	"time"
)

// linger is the portable engine's lingering close (linger.go), run by c's
// reader once the close is asked for, when CloseLinger asked for it and no
// Abort came since. Writes are synchronous here, so nothing is queued:
// once a write in progress is done (c.mu), the write side is shut and the
// input is read and thrown away until the peer's end of stream or a bound.
// Wake-ups meant for the reader (a drain, a post) do not end it; an Abort
// closes the socket under it.
func (pe *portableEngine) linger(c *Conn, buf []byte) {
	e, pc := pe.e, c.portable()
	pc.mu.Lock()
	asked := pc.linger
	pc.mu.Unlock()
	c.mu.Lock()
	abort := c.cs&csAbort != 0
	c.mu.Unlock()
	cw, ok := pc.nc.(interface{ CloseWrite() error })
	if !asked || abort || !ok {
		return
	}
	pe.setState(c, StateLingering)
	c.dropInput()
	if err := cw.CloseWrite(); err != nil {
		pe.e.lingers[pe.cutOutcome(c)].Add(1)
		return
	}
	until := time.Now().Add(e.cfg.LingerTimeout)
	var discarded int64
	for {
		pc.nc.SetReadDeadline(until)
		n, err := pc.nc.Read(buf)
		if n > 0 {
			c.bytesIn.Add(uint64(n))
			pe.stats.bytesIn.Add(uint64(n))
			discarded += int64(n)
			if e.cfg.LingerBytes > 0 && discarded > int64(e.cfg.LingerBytes) {
				pe.lingerStalled(c, until)
				return
			}
		}
		switch {
		case err == nil:
		case err == io.EOF:
			pe.e.lingers[LingerEOF].Add(1)
			return
		case errors.Is(err, os.ErrDeadlineExceeded):
			if time.Now().Before(until) {
				continue // a wake-up meant for the reader: a drain, a post
			}
			pe.lingerReset(c, LingerTimeout)
			return
		default:
			pe.e.lingers[pe.cutOutcome(c)].Add(1)
			return
		}
	}
}

// lingerStalled stops reading a lingering c that has thrown LingerBytes
// away — the peer's sending stalls, not its reading of what c sent — and
// resets it at until, unless an Abort comes first. A peer that closes
// meanwhile is not seen (that takes a read, which would take its input
// too): it is held to until and counted LingerBytes, where the poll
// engine sees the hang-up and counts LingerEOF (Config.LingerBytes).
func (pe *portableEngine) lingerStalled(c *Conn, until time.Time) {
	pc := c.portable()
	t := time.AfterFunc(time.Until(until), func() {
		pc.mu.Lock()
		pc.cond.Broadcast()
		pc.mu.Unlock()
	})
	defer t.Stop()
	pc.mu.Lock()
	for time.Now().Before(until) && pe.cutOutcome(c) != LingerAborted { // lock order: pc.mu, then c.mu
		pc.cond.Wait()
	}
	pc.mu.Unlock()
	if pe.cutOutcome(c) == LingerAborted {
		pe.e.lingers[LingerAborted].Add(1)
		return
	}
	pe.lingerReset(c, LingerBytes)
}

// cutOutcome is how a linger that failed ended: aborted when an Abort
// closed the socket under it, else an error.
func (pe *portableEngine) cutOutcome(c *Conn) LingerOutcome {
	c.mu.Lock()
	defer c.mu.Unlock()
	if c.cs&csAbort != 0 {
		return LingerAborted
	}
	return LingerError
}

// lingerReset counts a linger that hit bound o and makes the close that
// follows a reset.
func (pe *portableEngine) lingerReset(c *Conn, o LingerOutcome) {
	pe.e.lingers[o].Add(1)
	if tc, ok := c.portable().nc.(*net.TCPConn); ok {
		tc.SetLinger(0)
	}
}
