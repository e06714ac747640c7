package engine

import (
	"errors"
	"io"

	"github.com/warrenhq/warren/internal/pool"
)

// Transform is a per-connection layer between the socket and the handler:
// a TLS record layer once its handshake is done. Bytes read from the
// socket go through Open before the handler's OnData sees them, and bytes
// the handler writes (Write, Writev) go through Seal before they reach the
// socket, so the protocol above — HTTP, WebSocket after an upgrade, MQTT —
// reads and writes plain bytes through its usual Conn calls and keeps
// working across SetHandler. A Conn without a transform pays one flag test
// per read and one nil test per write.
//
// warren's TLS package implements it; the contract is narrow on purpose.
type Transform interface {
	// Open turns bytes read from the connection into plaintext for the
	// handler. It runs where c's callbacks run (its loop), never
	// concurrently with itself. It may rewrite in (decrypt in place) and
	// must keep any incomplete tail itself. The plaintext it returns must
	// stay valid until OpenDone; nil or empty means nothing for the
	// handler yet. An error closes c gracefully, so output already queued
	// (an alert, through Final) is flushed first: an error that wraps
	// io.EOF (the peer's close_notify) closes with ReasonPeerClosed, any
	// other with ReasonProtocolError and, when the error is also a
	// CloseDetail, that detail.
	Open(c *Conn, in []byte) ([]byte, error)

	// OpenDone tells the transform the engine is done with the plaintext
	// Open returned (OnData ran, and what it left is copied), so a buffer
	// behind it can be released at once rather than kept while c idles.
	OpenDone()

	// Seal returns the wire bytes for the handler's plaintext bufs (total
	// bytes in all, possibly zero: FlushTransform asks for control output
	// the transform has pending, such as a KeyUpdate). It runs with c's
	// output lock held, so calls are serialised in the order their bytes
	// reach the socket; it must not call c's methods. Release gets the
	// result back once it is written or queued.
	Seal(bufs [][]byte, total int) ([]byte, error)

	// Final returns the last bytes to send when c closes gracefully (a
	// TLS close_notify, or the alert behind an Open error), or nil. It
	// runs like Seal, once.
	Final() []byte

	// Release takes back a slice Seal or Final returned.
	Release(b []byte)
}

// TransformCloser is an optional interface of a Transform that wants to
// know when its connection has closed, by any path (graceful close, abort,
// timeout, the peer): Closed runs once, with the close reason, where c's
// callbacks run, after the descriptor is closed and before the handler's
// OnClose. It must not block. The TLS layer uses it to count connections
// that end soon after they open (flapping clients).
type TransformCloser interface {
	Transform
	Closed(c *Conn, r CloseReason)
}

// ErrNoTransform is returned by FlushTransform on a connection without a
// Transform.
var ErrNoTransform = errors.New("engine: no transform")

// SetTransform installs t as c's transform from now on: every byte read
// goes through t.Open and every byte written through t.Seal. Install it
// before the handler that speaks through it (SetHandler), so that
// handler's OnOpen already writes through t; then hand it what was read
// ahead with InjectInput. SetTransform belongs to c's loop, like
// SetHandler: call it from a callback that runs there or from a function
// given to Post. A connection's transform cannot be removed or replaced; a
// nil t is ignored.
func (c *Conn) SetTransform(t Transform) {
	if t == nil || c.flags&fTransform != 0 {
		return
	}
	c.mu.Lock()
	if c.closeErr == nil {
		c.closeErr = &errBox{}
	}
	c.closeErr.tx = t
	c.mu.Unlock()
	c.flags |= fTransform
}

// InjectInput runs pending — bytes already read from the socket by a
// layer that held c before (what followed a TLS handshake) — through c's
// transform, if any, and on to its handler, as if just read (they are not
// counted again in BytesIn). pending may be reused when it returns. It
// belongs to c's loop, like SetTransform: a handler that runs on the
// worker pool cannot call it from its OnData. Called from c's own OnData
// (after SetHandler: a gate that hands c on), it keeps a copy of pending
// and returns; once that OnData has returned, pending goes to c's handler
// ahead of what that OnData left unconsumed. The copy is bounded by
// MaxInputBytes, like c's input; c closes with ReasonLimitReached past it.
func (c *Conn) InjectInput(pending []byte) {
	if len(pending) > 0 {
		c.host.inject(c, pending)
	}
}

// Transform returns c's transform, or nil. It is safe for concurrent use.
func (c *Conn) Transform() Transform {
	c.mu.Lock()
	defer c.mu.Unlock()
	return c.transformLocked()
}

// FlushTransform writes the control output c's transform has pending (it
// calls Seal with no plaintext). It is safe for concurrent use.
func (c *Conn) FlushTransform() error {
	if c.Transform() == nil {
		return ErrNoTransform
	}
	_, err := c.host.writev(c, nil, 0)
	return err
}

// transformLocked returns c's transform; c.mu must be held.
func (c *Conn) transformLocked() Transform {
	if c.closeErr == nil {
		return nil
	}
	return c.closeErr.tx
}

// transformFailed closes c gracefully after its transform's Open failed.
func (c *Conn) transformFailed(err error) {
	r := ReasonProtocolError
	if errors.Is(err, io.EOF) {
		r = ReasonPeerClosed
	}
	var d CloseDetail
	if cd, ok := err.(CloseDetail); ok {
		d = cd
	}
	c.requestClose2(r, err, d, false)
}

// writeSealedLocked is the write path of a connection with transform t:
// the wire bytes Seal makes of bufs go out through writeLocked. c.mu is
// held on entry and released on return, as writeLocked does.
func (c *Conn) writeSealedLocked(l *loop, t Transform, bufs [][]byte, total int) (int, error) {
	b, err := t.Seal(bufs, total)
	if err != nil {
		c.mu.Unlock()
		c.requestClose(ReasonProtocolError, err, true)
		return 0, err
	}
	if len(b) == 0 {
		c.mu.Unlock()
		t.Release(b)
		return total, nil
	}
	one := [1][]byte{b}
	_, err = c.writeLocked(l, one[:], len(b))
	t.Release(b)
	if err != nil {
		return 0, err
	}
	return total, nil
}

// joinInjected makes inj (bytes injected during OnData) followed by rest
// (what that OnData left of its input) c's unconsumed input, in one
// pooled buffer, none when both are empty; when fromIn, rest is part of
// c's input, which it lets go of once copied. It returns the input's
// length, or -1 past max, leaving c's input as it was (the caller closes
// c). Both engines' injected use it.
func (c *Conn) joinInjected(inj, rest []byte, fromIn bool, max int) int {
	n := len(inj) + len(rest)
	if n > max {
		return -1
	}
	var in []byte
	if n > 0 {
		in = append(append(pool.Get(n)[:0], inj...), rest...)
	}
	if fromIn {
		c.dropInput()
	}
	c.setInput(in)
	return n
}
