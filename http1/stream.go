package http1

import (
	"io"
	"sync"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

type streamHandler struct {
	Handler
	max int64
}

// StreamBody marks h as reading its request body as it arrives, for
// uploads too large to hold in memory or to wait for. The handler starts on
// a worker as soon as the request head has been parsed and reads the body
// with Ctx.BodyReader; Ctx.Body is nil. At most a window of 256 KiB (plus
// one read) is buffered: while the handler does not read, the server stops
// reading the socket, so a slow consumer holds back the client instead of
// filling memory.
//
// maxBytes bounds the body for this route instead of Limits.MaxBodyBytes:
// zero means Limits.MaxBodyBytes, negative means unlimited. A larger
// Content-Length is refused with 413 before the handler runs; a chunked
// body that grows past it makes BodyReader fail with ErrBodyTooLarge.
//
// Server.BodyTimeout bounds each wait for more body bytes while the handler
// reads (not the whole body). When reading fails (timeout, malformed
// chunked coding, limit, connection lost) the server answers with the
// error's status if the response has not started, and closes the
// connection. So does a handler that returns before the body has arrived
// whole; one that returns without reading a body that has arrived keeps the
// connection.
//
// Each streaming request holds a worker while its body arrives, so
// Config.MaxStreams bounds how many are in progress (503 beyond).
//
// Expect: 100-continue is answered when the handler first reads, so a
// handler that refuses a request without reading never invites its body.
// Streaming handlers always run on the worker pool, even when h is Inline.
func StreamBody(h Handler, maxBytes int64) Handler {
	if ih, ok := h.(inlineHandler); ok {
		h = ih.Handler
	}
	return streamHandler{Handler: h, max: maxBytes}
}

// streamWindow is how much unread body the server buffers before it stops
// reading the connection.
const streamWindow = 256 << 10

// bodyPipe carries a streamed request body from the event loop, which
// decodes it, to the handler reading it on a worker.
type bodyPipe struct {
	conn    *engine.Conn
	timeout time.Duration

	mu      sync.Mutex
	buf     []byte // pooled; the unread data is buf[r:]
	r       int
	got     int64 // body bytes received so far
	eof     bool  // the whole body has arrived
	err     error // receiving failed
	closed  bool  // the handler is done: discard further input
	expect  bool  // answer 100 Continue on the first read
	waiting bool
	paused  bool
	ready   chan struct{}
	timer   *time.Timer

	bodyDecoder // loop-owned
}

func newBodyPipe(c *engine.Conn, req *Request, lim Limits, max int64, timeout time.Duration) *bodyPipe {
	p := &bodyPipe{conn: c, timeout: timeout, ready: make(chan struct{}, 1), expect: req.Expect100}
	p.stream = true
	if req.Chunked {
		p.chunk = chunkedPool.Get().(*ChunkedReader)
		lim.MaxBodyBytes = max
		if max == 0 {
			lim.MaxBodyBytes = -1 // 0 would mean the default; max is resolved already
		}
		p.chunk.Reset(&lim)
	} else {
		p.want = req.ContentLength
	}
	return p
}

// feed decodes body bytes from in on the event loop. It reports how much of
// in belonged to the body and whether the body is complete; a malformed or
// over-limit body fails the pipe and is returned as err.
func (p *bodyPipe) feed(in []byte) (n int, done bool, err error) {
	n, done, err = p.decode(in, p.push)
	if err != nil {
		p.fail(err)
	}
	return n, done, err
}

// push appends data (possibly none) and marks the end of the body.
func (p *bodyPipe) push(data []byte, eof bool) {
	p.mu.Lock()
	if p.closed || p.err != nil {
		p.mu.Unlock()
		return
	}
	if len(data) > 0 {
		if p.buf == nil {
			p.buf = pool.Get(streamWindow)[:0]
		}
		if p.r > 0 && len(p.buf)+len(data) > cap(p.buf) {
			// Move the unread part to the front rather than grow: the
			// buffer stays within the window plus one read.
			p.buf = p.buf[:copy(p.buf, p.buf[p.r:])]
			p.r = 0
		}
		p.buf = append(pool.Grow(p.buf, len(data)), data...)
		p.got += int64(len(data))
		p.expect = false // the client did not wait for 100 Continue
	}
	p.eof = p.eof || eof
	if !p.eof && !p.paused && len(p.buf)-p.r >= streamWindow {
		// Pause and resume are posted under mu, so they reach the
		// engine in the order they were decided.
		p.paused = true
		p.conn.PauseRead()
	}
	p.wakeLocked()
	p.mu.Unlock()
}

// noContinue drops a pending 100 Continue: the response has started.
func (p *bodyPipe) noContinue() {
	p.mu.Lock()
	p.expect = false
	p.mu.Unlock()
}

// fail ends the body with err unless it already ended.
func (p *bodyPipe) fail(err error) {
	p.mu.Lock()
	if !p.eof && p.err == nil {
		p.err = err
		p.wakeLocked()
	}
	p.mu.Unlock()
}

func (p *bodyPipe) wakeLocked() {
	if p.waiting {
		select {
		case p.ready <- struct{}{}:
		default:
		}
	}
}

// Read reads the body as it arrives. It returns io.EOF at its end, or the
// error that ended it early: ErrBodyTooLarge, ErrBadChunkSize and the other chunked-coding errors, ErrBodyTimeout
// or io.ErrUnexpectedEOF when the connection ended first.
func (p *bodyPipe) Read(b []byte) (int, error) {
	if len(b) == 0 {
		return 0, nil
	}
	p.mu.Lock()
	for p.r == len(p.buf) && !p.eof && p.err == nil && !p.closed {
		if p.expect {
			p.expect = false
			p.mu.Unlock()
			p.conn.Write(continue100)
			p.mu.Lock()
			continue
		}
		p.waiting = true
		p.mu.Unlock()
		timedOut := p.wait()
		p.mu.Lock()
		p.waiting = false
		if timedOut && p.r == len(p.buf) && !p.eof && p.err == nil {
			p.err = ErrBodyTimeout
		}
	}
	if p.r < len(p.buf) {
		n := copy(b, p.buf[p.r:])
		p.r += n
		if p.paused && len(p.buf)-p.r < streamWindow/2 {
			p.paused = false
			p.conn.ResumeRead()
		}
		p.mu.Unlock()
		return n, nil
	}
	err := p.err
	switch {
	case p.closed:
		err = io.ErrClosedPipe
	case err == nil:
		err = io.EOF
	}
	p.mu.Unlock()
	return 0, err
}

// wait blocks until push or fail signal, or the body timeout passes.
func (p *bodyPipe) wait() (timedOut bool) {
	if p.timeout <= 0 {
		<-p.ready
		return false
	}
	if p.timer == nil {
		p.timer = time.NewTimer(p.timeout)
	} else {
		p.timer.Reset(p.timeout)
	}
	select {
	case <-p.ready:
		p.timer.Stop()
		return false
	case <-p.timer.C:
		return true
	}
}

// finish is called when the handler has returned. It reports whether the
// whole body arrived (the connection may then serve another request) and
// the error that ended the body early, if any.
func (p *bodyPipe) finish() (complete bool, err error) {
	p.mu.Lock()
	p.closed = true
	complete, err = p.eof, p.err
	if p.buf != nil {
		pool.Put(p.buf)
		p.buf, p.r = nil, 0
	}
	if p.timer != nil {
		p.timer.Stop()
	}
	if p.paused {
		p.paused = false
		p.conn.ResumeRead()
	}
	p.mu.Unlock()
	return complete, err
}
