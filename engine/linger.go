package engine

// A lingering close (Conn.CloseLinger) is how a server closes a connection
// whose peer may still be sending, as RFC 9112 section 9.6 asks of an HTTP
// server and as a WebSocket server needs after its Close frame: closing the
// socket while the peer's bytes are unread makes the kernel reset the
// connection, and the reset throws away what the peer has not read yet —
// on Linux the output still in the server's socket, on other systems the
// peer's own receive buffer — so the peer never sees the Close frame or the
// error response that explains the close. The engine instead flushes the
// connection's output, shuts its write side (the peer reads the end of
// stream after the last byte), reads and throws away what still arrives
// until the peer closes its side, and only then closes. Past
// Config.LingerBytes it stops reading (the peer's sending stalls, not its
// reading of the answer); a peer that has not closed within
// Config.LingerTimeout is reset.
//
// An open connection pays nothing for it: the state is a flag bit
// (fLinger), the connection's existing timer entry carries the deadline,
// and the progress (lingerBox) sits in the close's errBox, made when the
// close starts. The poll engine's part is in linger_unix.go, the portable
// engine's in linger_portable.go.

// LingerOutcome says how a lingering close (Conn.CloseLinger) ended. The
// same values label metrics (Stats.Lingers).
type LingerOutcome uint8

const (
	// LingerEOF is a peer that closed its side within the bounds: the
	// connection closed cleanly, everything sent.
	LingerEOF LingerOutcome = iota
	// LingerBytes is a peer that sent more than Config.LingerBytes after
	// the close began and had not closed its side when LingerTimeout
	// ended: the connection was reset.
	LingerBytes
	// LingerTimeout is output not flushed within the write timeout, or a
	// peer that did not close within Config.LingerTimeout of the write
	// side's shutdown: the connection was reset.
	LingerTimeout
	// LingerError is a read, write or shutdown that failed during the
	// linger (the peer reset the connection, say).
	LingerError
	// LingerAborted is a linger cut short by Abort or by the engine's
	// shutdown deadline.
	LingerAborted
	numLingerOutcomes
)

var lingerNames = [...]string{"eof", "bytes", "timeout", "error", "aborted"}

// String returns the lower-case name used in metrics and logs.
func (o LingerOutcome) String() string {
	if int(o) < len(lingerNames) {
		return lingerNames[o]
	}
	return "unknown"
}

// LingerOutcomes lists every LingerOutcome, in order, for metric labels.
func LingerOutcomes() []LingerOutcome {
	return []LingerOutcome{LingerEOF, LingerBytes, LingerTimeout, LingerError, LingerAborted}
}

// lingerBox is a lingering close's progress on the poll engine, kept in
// the close's errBox (made when the close starts, so an open connection
// pays nothing) and touched only by the connection's loop, under Conn.mu:
// the tick its write side was shut (0 while its output is flushed) and the
// input bytes thrown away so far.
type lingerBox struct {
	shutAt    int64
	discarded int64
}

// CloseLinger closes c gracefully for a peer that may still be sending (a
// lingering close, RFC 9112 section 9.6): c's queued output is flushed,
// bounded by Config.WriteTimeout; then its write side is shut, so the peer
// reads the end of stream after the last byte; the input that still
// arrives, from the start, is read and thrown away until the peer closes
// its side or Config.LingerTimeout has passed since the shutdown. Past
// Config.LingerBytes thrown away, c is no longer read: the peer's sending
// stalls, while it can still read what c sent. c closes at the peer's end
// of stream, or with a reset (no orphaned socket left behind) at the
// timeout. A plain Close in that state
// would reset the connection at once and lose what the peer had not read:
// the WebSocket Close frame or the HTTP error response that explains the
// close.
//
// r and d (which may be nil) are recorded as with CloseWithDetail; the
// first close asked for wins, and a later Abort cuts the linger short. Once
// the loop takes the close the handler gets no callback but OnStateChange
// (to StateLingering, then StateClosed) and OnClose, which runs when the
// descriptor closes; Post functions no longer run. Until then, as with
// Close, a Shutdown's OnDrain or input read in the same batch (OnData,
// OnEOF) may still come. The connection
// is in StateLingering meanwhile; Stats.Lingers counts how each linger
// ended. A peer that has already closed its side gets a plain close. A
// negative Config.LingerTimeout makes CloseLinger CloseWithDetail. It is
// safe for concurrent use.
func (c *Conn) CloseLinger(r CloseReason, d CloseDetail) {
	if c.engine().cfg.LingerTimeout < 0 {
		c.CloseWithDetail(r, d)
		return
	}
	c.requestCloseOp(r, nil, d, false, opLinger)
}
