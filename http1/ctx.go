package http1

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

// Ctx is one request and its response. The embedded Request gives
// zero-copy views of the method, path, query and headers; Body is the
// request body. Both are valid only until the handler returns.
//
// The response is buffered and sent when the handler returns, with a
// Content-Length; Flush switches to streaming (chunked for HTTP/1.1). A Ctx
// is used by one goroutine at a time and must not be kept after the handler
// returns.
type Ctx struct {
	reqState
	srv *Server

	// cmu guards the request's context, made on first use.
	cmu    sync.Mutex
	cctx   context.Context
	cancel context.CancelCauseFunc
	ended  error // why the context ended, once it has

	det atomic.Int32 // detach state (detNone...): detach.go
	rel func()       // the detached request's engine hold
}

// reqState is a Ctx's per-request part, zeroed between requests in one
// assignment.
type reqState struct {
	*Request
	body    []byte
	conn    *engine.Conn
	hc      *httpConn
	params  [8]param
	nparams int
	start   time.Time

	status    int
	hdrs      []kv
	out       []byte
	keepAlive bool
	streaming bool
	chunked   bool
	headOnly  bool
	// headLen is the Content-Length SetHeadLength declared for a
	// response to HEAD (negative: none), when headLenSet.
	headLen     int64
	headLenSet  bool
	noCT        bool     // OmitContentType: no default Content-Type
	trailers    []kv     // SetTrailer's fields
	reqTrailers []Header // the collected chunked body's trailer fields
	inline      bool
	panicked    bool
	raw         bool
	upgrade     engine.Handler
	head        []byte       // pooled copy of the request head, when owned
	ownBody     []byte       // pooled copy of the body, when owned
	pipe        *bodyPipe    // the body, when streamed (StreamBody)
	bodyR       bytes.Reader // BodyReader over body otherwise
}

// Context returns the request's context. It is cancelled when the client
// goes away (its connection closes), when the handler returns, and when the
// engine starts shutting down; context.Cause tells which (ErrClientGone,
// ErrHandlerDone, engine.ErrServerClosed). Upstream calls and device
// commands made for the request hang off it. It is made on first use, so
// handlers that never ask pay nothing.
func (c *Ctx) Context() context.Context {
	c.cmu.Lock()
	defer c.cmu.Unlock()
	if c.cctx == nil {
		c.cctx, c.cancel = context.WithCancelCause(c.srv.eng.Context())
		if c.ended != nil {
			c.cancel(c.ended)
		}
	}
	return c.cctx
}

// cancelContext ends the request's context with cause, once.
func (c *Ctx) cancelContext(cause error) {
	c.cmu.Lock()
	if c.ended == nil {
		c.ended = cause
		if c.cancel != nil {
			c.cancel(cause)
		}
	}
	c.cmu.Unlock()
}

// endContext ends the context when the handler is done with the request.
func (c *Ctx) endContext() {
	c.cancelContext(ErrHandlerDone)
}

type kv struct{ k, v string }

type param struct {
	name       string
	start, end int // offsets into Path
}

func (c *Ctx) reset(conn *engine.Conn, req *Request, body []byte, ps []param) {
	c.Request, c.body, c.conn = req, body, conn
	c.nparams = copy(c.params[:], ps)
	c.status = 200
	c.headOnly = len(req.Method) == 4 && string(req.Method) == "HEAD"
}

func (c *Ctx) resetResponse() {
	c.status = 200
	c.headLenSet, c.noCT = false, false
	c.trailers = nil
	c.hdrs = c.hdrs[:0]
	if c.out != nil {
		c.out = c.out[:0]
	}
}

func (c *Ctx) release() {
	if c.head != nil {
		pool.Put(c.head)
	}
	if c.ownBody != nil {
		pool.Put(c.ownBody)
	}
	if c.out != nil {
		pool.Put(c.out)
	}
	hdrs := c.hdrs[:0]
	clear(c.hdrs)
	// Nothing else reaches c now: OnClose lets go of it (httpConn.cur)
	// before the handler's context ends.
	c.cctx, c.cancel, c.ended = nil, nil, nil
	c.det.Store(detNone)
	c.rel = nil
	c.reqState = reqState{hdrs: hdrs}
}

// Body returns the request body: nil when there is none, or when the route
// streams it (see StreamBody; use BodyReader).
func (c *Ctx) Body() []byte { return c.body }

// Trailers returns the trailer fields of a chunked request body, in the
// order received, or nil when it had none. They are kept for a body the
// server collects (Body), not for a StreamBody route's, and are valid
// until the handler returns. The server's head limits bound them.
func (c *Ctx) Trailers() []Header { return c.reqTrailers }

// BodyReader returns the request body as a reader. On a StreamBody route it
// reads the body as it arrives, blocking for more, and returns the error
// that ended the body early, if any (ErrBodyTooLarge, ErrBodyTimeout, a
// chunked-coding error, or io.ErrUnexpectedEOF when the connection ended);
// elsewhere it reads Body from memory. It is valid until the handler
// returns.
func (c *Ctx) BodyReader() io.Reader {
	if c.pipe != nil {
		return c.pipe
	}
	c.bodyR.Reset(c.body)
	return &c.bodyR
}

// Conn returns the engine connection the request arrived on.
func (c *Ctx) Conn() *engine.Conn { return c.conn }

// RemoteAddr returns the client's address.
func (c *Ctx) RemoteAddr() netip.AddrPort { return c.conn.RemoteAddr() }

// Param returns the value of the router parameter name ({name} in the
// pattern), or "" when there is none.
func (c *Ctx) Param(name string) string {
	for _, p := range c.params[:c.nparams] {
		if p.name == name {
			return string(c.Path[p.start:p.end])
		}
	}
	return ""
}

// Query returns the raw (not percent-decoded) value of the first query
// parameter called name, or nil. It does not allocate.
func (c *Ctx) Query(name string) []byte {
	q := c.RawQuery
	for len(q) > 0 {
		var part []byte
		part, q, _ = bytes.Cut(q, []byte{'&'})
		k, v, _ := bytes.Cut(part, []byte{'='})
		if v == nil {
			v = []byte{}
		}
		if string(k) == name {
			return v
		}
	}
	return nil
}

// SetStatus sets the response status code (default 200).
func (c *Ctx) SetStatus(code int) { c.status = code }

// Status returns the response status code set so far.
func (c *Ctx) Status() int { return c.status }

// SetHeader sets a response header, replacing any value it had. The
// server writes Date, Content-Length, Transfer-Encoding and Connection
// itself; setting them is ignored.
func (c *Ctx) SetHeader(name, value string) {
	for i := range c.hdrs {
		if equalFold([]byte(c.hdrs[i].k), name) {
			c.hdrs[i].v = value
			return
		}
	}
	c.hdrs = append(c.hdrs, kv{name, value})
}

// AddHeader adds a response header line, keeping existing ones.
func (c *Ctx) AddHeader(name, value string) { c.hdrs = append(c.hdrs, kv{name, value}) }

// Write appends p to the response body. After Flush it is sent as it is
// written.
func (c *Ctx) Write(p []byte) (int, error) {
	if c.streaming {
		return c.writeStream(p)
	}
	if c.out == nil {
		c.out = pool.Get(len(p) + 512)[:0]
	}
	c.out = append(pool.Grow(c.out, len(p)), p...)
	return len(p), nil
}

// WriteString is Write for a string.
func (c *Ctx) WriteString(s string) (int, error) {
	if c.streaming {
		return c.writeStream([]byte(s))
	}
	if c.out == nil {
		c.out = pool.Get(len(s) + 512)[:0]
	}
	c.out = append(pool.Grow(c.out, len(s)), s...)
	return len(s), nil
}

// SetClose makes this the connection's last response.
func (c *Ctx) SetClose() { c.keepAlive = false }

// Inline reports whether the handler runs on the event loop.
func (c *Ctx) Inline() bool { return c.inline }

// UpgradeTo hands the connection to another protocol once the handler
// returns: the handler writes the protocol's switching response with
// WriteRaw, and every byte after this request goes to p. The server makes
// p the engine connection's handler (engine.Conn.SetHandler) and drops its
// own state, so p's optional hooks (OnStateChange, OnDrain, OnTimeout,
// OnEOF, OnClose) are called by the engine directly; OnOpen is not, since
// the connection is already open. The engine connection's Context stays
// the application's. A handler on the worker pool may upgrade too: input
// that arrives before the switch waits for p. (The request's Upgrade
// header is the embedded Request.Upgrade field.)
func (c *Ctx) UpgradeTo(p engine.Handler) {
	if c.det.Load() != detNone {
		return // not on a detached request (Detach)
	}
	c.upgrade = p
	c.keepAlive = true
}

// SetHeadLength declares the Content-Length of a response to HEAD: the
// length of the body a GET would have had (RFC 9110 §9.3.2), which the
// server cannot count, as it sends no body. A negative n sends no
// Content-Length at all (the length is unknown: a GET would have been
// chunked). Without it, a response to HEAD carries the length of what the
// handler wrote (and discarded). A reverse proxy passes its backend's
// length on with it. It has no effect on a response to another method.
func (c *Ctx) SetHeadLength(n int64) {
	if c.headOnly {
		c.headLen, c.headLenSet = n, true
	}
}

// OmitContentType sends the response without the default Content-Type
// (text/plain; charset=utf-8) the server adds to a body when the handler
// set none: the body's type stays unknown, as RFC 9110 §8.3 allows. A
// reverse proxy passes a backend's response on as it came with it.
func (c *Ctx) OmitContentType() { c.noCT = true }

// SetTrailer adds a trailer field, sent after the body of a response that
// is streamed chunked (Flush, to an HTTP/1.1 client; RFC 9112 §7.1.2): a
// checksum or status known only once the body is written. Elsewhere (a
// buffered response, an HTTP/1.0 client) there is no trailer section and
// the field is not sent. Announce it with a Trailer header field before
// Flush. Names and values are written as given; they must be valid (no CR
// or LF) and not fields a trailer may not carry (RFC 9110 §6.5.1).
func (c *Ctx) SetTrailer(name, value string) {
	c.trailers = append(c.trailers, kv{name, value})
}

// ErrInterimNotAllowed is an interim response (Ctx.WriteInterim) with a
// status outside 100, 102-199, after the final response has started, or on
// a detached request.
var ErrInterimNotAllowed = errors.New("http1: interim response not allowed")

// WriteInterim sends an interim (1xx) response ahead of the final one, at
// once: code 100, or 102 to 199 (a protocol switch goes through UpgradeTo
// and WriteRaw), with fields, such as the Link fields of 103 Early Hints
// (RFC 8297). A client that sent HTTP/1.0 gets nothing (RFC 9110 §15.2);
// that is not an error. It returns ErrInterimNotAllowed for another code,
// once the response has started (Flush, WriteRaw) or on a detached
// request. Field names and values are written as given; they must be
// valid (no CR or LF).
func (c *Ctx) WriteInterim(code int, fields []Header) error {
	if code < 100 || code > 199 || code == 101 || c.streaming || c.raw || c.det.Load() != detNone {
		return ErrInterimNotAllowed
	}
	if c.ProtoMinor == 0 {
		return nil
	}
	b := AppendStatusLine(pool.Get(256)[:0], 1, code)
	for _, h := range fields {
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "\r\n"...)
	_, err := c.conn.Write(b)
	pool.Put(b)
	return err
}

// WriteRaw writes p to the connection as is, bypassing the response (for a
// protocol switch). After WriteRaw the server sends no response of its own.
func (c *Ctx) WriteRaw(p []byte) (int, error) {
	if c.det.Load() != detNone {
		return 0, ErrNotDetachable // a protocol switch cannot follow Detach
	}
	c.streaming, c.chunked = true, false
	c.status = 101
	c.hdrs = c.hdrs[:0]
	c.raw = true
	return c.conn.Write(p)
}

// Flush sends the status and headers now and switches the response to
// streaming: later writes go out as they are made, chunked for HTTP/1.1
// clients; for HTTP/1.0 the connection closes to end the body.
func (c *Ctx) Flush() error {
	if c.streaming {
		return nil
	}
	if c.pipe != nil {
		c.pipe.noContinue() // an interim 100 cannot follow the response
	}
	c.streaming = true
	c.chunked = c.ProtoMinor >= 1 && !c.headOnly && bodyAllowed(c.status)
	if !c.chunked && c.ProtoMinor == 0 {
		c.keepAlive = false
	}
	b := c.appendHead(pool.Get(512)[:0], -1)
	if c.chunked && len(c.out) > 0 {
		b = AppendChunk(b, c.out)
	} else if !c.headOnly {
		b = append(b, c.out...)
	}
	if c.out != nil {
		c.out = c.out[:0]
	}
	_, err := c.conn.Write(b)
	pool.Put(b)
	return err
}

func (c *Ctx) writeStream(p []byte) (int, error) {
	if c.headOnly || len(p) == 0 {
		return len(p), nil
	}
	if !c.chunked {
		return c.conn.Write(p)
	}
	var hdr [20]byte
	bufs := [3][]byte{AppendChunkHeader(hdr[:0], len(p)), p, crlf}
	if _, err := c.conn.Writev(bufs[:]); err != nil {
		return 0, err
	}
	return len(p), nil
}

var crlf = []byte("\r\n")

func bodyAllowed(status int) bool {
	return !(status >= 100 && status < 200) && status != 204 && status != 304
}

// appendHead appends the status line and header section. length is the
// Content-Length, or -1 for a streamed body.
func (c *Ctx) appendHead(b []byte, length int) []byte {
	minor := 1
	if c.Request != nil && c.ProtoMinor == 0 {
		minor = 0
	}
	b = AppendStatusLine(b, minor, c.status)
	b = c.srv.date.AppendHeader(b, c.srv.eng.Now())
	hasCT := false
	for _, h := range c.hdrs {
		switch {
		case equalFold([]byte(h.k), "Content-Length"), equalFold([]byte(h.k), "Transfer-Encoding"),
			equalFold([]byte(h.k), "Connection"), equalFold([]byte(h.k), "Date"):
			continue
		case equalFold([]byte(h.k), "Content-Type"):
			hasCT = true
		}
		b = append(b, h.k...)
		b = append(b, ": "...)
		b = append(b, h.v...)
		b = append(b, "\r\n"...)
	}
	if c.headLenSet && bodyAllowed(c.status) {
		// A HEAD response whose length the handler declared: no
		// framing of the server's own, nor a default Content-Type.
		if c.headLen >= 0 {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, c.headLen, 10)
			b = append(b, "\r\n"...)
		}
	} else if bodyAllowed(c.status) {
		if !hasCT && !c.noCT && (length > 0 || length < 0) {
			b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
		}
		if length >= 0 {
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, int64(length), 10)
			b = append(b, "\r\n"...)
		} else if c.chunked {
			b = append(b, "Transfer-Encoding: chunked\r\n"...)
		}
	}
	switch {
	case !c.keepAlive:
		b = append(b, "Connection: close\r\n"...)
	case minor == 0:
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	return append(b, "\r\n"...)
}

// send writes the buffered response, or ends a streamed one.
func (c *Ctx) send() {
	if c.raw {
		return
	}
	if c.streaming {
		if c.chunked && len(c.trailers) > 0 {
			b := append(pool.Get(512)[:0], "0\r\n"...)
			for _, h := range c.trailers {
				b = append(b, h.k...)
				b = append(b, ": "...)
				b = append(b, h.v...)
				b = append(b, "\r\n"...)
			}
			b = append(b, "\r\n"...)
			c.conn.Write(b)
			pool.Put(b)
		} else if c.chunked {
			c.conn.Write([]byte(LastChunk))
		}
		return
	}
	n := len(c.out)
	if c.headOnly || !bodyAllowed(c.status) {
		head := c.appendHead(pool.Get(512)[:0], n)
		c.conn.Write(head)
		pool.Put(head)
		return
	}
	if n <= 16<<10 {
		// One contiguous write is cheaper than a two-buffer writev.
		b := c.appendHead(pool.Get(512 + n)[:0], n)
		b = append(b, c.out...)
		c.conn.Write(b)
		pool.Put(b)
		return
	}
	head := c.appendHead(pool.Get(512)[:0], n)
	bufs := [2][]byte{head, c.out}
	c.conn.Writev(bufs[:])
	pool.Put(head)
}
