// Package poll is warren's thin readiness-notification layer: epoll on Linux,
// kqueue on macOS and FreeBSD. Each event loop owns one Poller.
//
// Pollers are level-triggered: a readable descriptor is reported on every Wait
// until it has been drained, so a loop may read once per wake-up and stay fair
// between connections. Write interest is switched on only while a connection
// has queued output.
//
// Add, Mod, Del and Wake are safe to call from any goroutine; Wait is called by
// the owning loop only.
package poll

import "errors"

// ErrClosed is returned by a Poller that has been closed.
var ErrClosed = errors.New("poll: poller closed")

// Event is one readiness notification.
type Event struct {
	// Fd is the descriptor the event is for.
	Fd int
	// Readable reports input, a pending accept, end of file or an error.
	Readable bool
	// Writable reports room in the send buffer.
	Writable bool
	// Hangup reports that the peer closed or the socket is in error; a read
	// tells which.
	Hangup bool
}
