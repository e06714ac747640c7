package http1

import (
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime/debug"
	"slices"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

// Config configures a Server. The zero value is ready to use; every field
// documents what zero means. The engine the server attaches to supplies the
// rest: its WriteTimeout is the response write timeout, its worker pool
// runs handlers not marked Inline, its bounds and clock apply.
type Config struct {
	// Limits bounds request heads and bodies. Zero fields take the
	// package defaults (64 KiB header section, 100 fields, 8 KiB target,
	// 10 MiB body).
	Limits Limits
	// IdleTimeout closes a keep-alive connection idle between requests for
	// this long; it is the idle timeout of the server's listeners, whatever
	// the engine's. Zero means 60 s; negative disables it. Under overload
	// the effective value shrinks (see Overload).
	IdleTimeout time.Duration
	// HeaderTimeout bounds receiving a request head once its first byte has
	// arrived (slowloris). The client gets 408 and the connection closes.
	// Zero means 10 s; negative disables it.
	HeaderTimeout time.Duration
	// BodyTimeout bounds receiving a request body once its head has been
	// parsed; the client gets 408. On StreamBody routes it bounds each wait
	// of the handler for more body bytes instead (like nginx's
	// client_body_timeout), so a long upload may take as long as it keeps
	// moving. Zero means 30 s; negative disables it.
	BodyTimeout time.Duration
	// MaxRequestsPerConn closes a connection after this many requests (its
	// last response carries Connection: close), like nginx's
	// keepalive_requests. Zero means 100,000; negative means no limit.
	MaxRequestsPerConn int
	// MaxConnAge closes a connection after its first response once it is
	// this old, like nginx's keepalive_time. Zero means 1 hour; negative
	// means no limit.
	MaxConnAge time.Duration
	// MaxStreams bounds the StreamBody requests in progress at once: each
	// holds a worker for as long as its body keeps arriving, so without a
	// bound slow uploads could occupy the whole worker pool. Beyond it a
	// request is answered 503 before its handler runs, and its connection
	// closes. Zero means half of Engine.Workers (512 by default);
	// negative means no limit.
	MaxStreams int
	// Overload adapts keep-alive to pressure on connections and memory.
	Overload Overload
	// Hooks observe and intercept requests.
	Hooks Hooks
	// Logger receives the server's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Hooks intercept the request lifecycle. Every field may be nil. Hooks run
// where the handler runs (a worker, or the event loop for Inline routes)
// except OnBadRequest, which runs on the event loop.
type Hooks struct {
	// OnRequest runs before the handler. Returning false short-circuits the
	// request: the handler is skipped and whatever OnRequest wrote is the
	// response (for example a 401 from an auth check).
	OnRequest func(c *Ctx) bool
	// OnResponse runs after a response has been handed to the engine, with
	// its status and the time since the request head was parsed.
	OnResponse func(c *Ctx, status int, elapsed time.Duration)
	// OnPanic runs when a handler panics, after the server has logged the
	// stack; the server then answers 500 (if nothing was sent yet) and
	// closes the connection.
	OnPanic func(c *Ctx, v any)
	// OnBadRequest runs when a request is refused as malformed or over a
	// limit, before the error response is sent.
	OnBadRequest func(conn *engine.Conn, err *Error)
}

// Server is an HTTP/1.1 server attached to an engine: it serves the
// listeners it opens with Listen (the engine may have others, for other
// protocols) and hands upgraded connections to their new protocol with
// engine.Conn.SetHandler. Create it with NewServer; its methods are safe
// for concurrent use. The engine's owner starts and shuts it down.
type Server struct {
	cfg    Config
	h      Handler
	eng    *engine.Engine
	lnMu   sync.Mutex
	lns    []*engine.Listener // guarded by lnMu
	log    *slog.Logger
	limits Limits
	// parseLim is limits with the body bound raised to what StreamBody
	// routes accept; streams tells whether there are any, and bodyMax is
	// the bound of every other route (negative: unlimited).
	parseLim  Limits
	streams   bool
	bodyMax   int64
	date      DateCache
	stats     serverStats
	ov        overloadState
	streaming atomic.Int64 // StreamBody requests in progress
	stopOv    chan struct{}
	stopped   sync.Once

	reqPool sync.Pool
	ctxPool sync.Pool
	hcPool  sync.Pool
}

// connHandler is the engine handler of a connection with no HTTP state (a
// new or idle keep-alive one); with nothing to release it has no OnClose or
// OnEOF, so the engine makes no call for them. It is the Server under another name, so the
// engine callbacks stay out of the Server's API.
type connHandler Server

var (
	_ engine.Handler        = (*connHandler)(nil)
	_ engine.DrainHandler   = (*connHandler)(nil)
	_ engine.TimeoutHandler = (*connHandler)(nil)
	_ engine.ProtocolNamer  = (*connHandler)(nil)
	_ engine.InlineHandler  = (*connHandler)(nil)
	_ engine.Handler        = (*httpConn)(nil)
	_ engine.CloseHandler   = (*httpConn)(nil)
	_ engine.DrainHandler   = (*httpConn)(nil)
	_ engine.TimeoutHandler = (*httpConn)(nil)
	_ engine.EOFHandler     = (*httpConn)(nil)
	_ engine.ProtocolNamer  = (*httpConn)(nil)
	_ engine.InlineHandler  = (*httpConn)(nil)
)

// ProtocolName is what HTTP connections are called in ConnInfo, metrics and
// logs.
const ProtocolName = "http1"

func (h *connHandler) OnData(c *engine.Conn, in []byte) int { return (*Server)(h).onData(c, nil, in) }
func (h *connHandler) OnDrain(c *engine.Conn) bool          { return (*Server)(h).onDrain(c, nil) }
func (h *connHandler) OnTimeout(c *engine.Conn, r engine.CloseReason) bool {
	return (*Server)(h).onTimeout(c, nil, r)
}
func (h *connHandler) Protocol() string { return ProtocolName }
func (h *connHandler) Inline() bool     { return true }

func (hc *httpConn) OnData(c *engine.Conn, in []byte) int { return hc.s.onData(c, hc, in) }
func (hc *httpConn) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	hc.s.onClose(c, hc)
}
func (hc *httpConn) OnEOF(c *engine.Conn)        { hc.s.onEOF(c, hc) }
func (hc *httpConn) OnDrain(c *engine.Conn) bool { return hc.s.onDrain(c, hc) }
func (hc *httpConn) OnTimeout(c *engine.Conn, r engine.CloseReason) bool {
	return hc.s.onTimeout(c, hc, r)
}
func (hc *httpConn) Protocol() string { return ProtocolName }
func (hc *httpConn) Inline() bool     { return true }

// NewServer returns a server that answers requests with h (often a
// *Router) on eng's connections. It does not listen yet: Listen opens its
// listeners on eng, which must have been started (eng.Start("")). The
// engine's owner shuts it down; requests in progress then get
// Connection: close, idle connections close at once.
func NewServer(eng *engine.Engine, cfg Config, h Handler) (*Server, error) {
	if eng == nil {
		return nil, errors.New("http1: NewServer: nil engine")
	}
	cfg = cfg.withDefaults(eng.Config())
	s := &Server{cfg: cfg, h: h, eng: eng, log: cfg.Logger, limits: cfg.Limits, stopOv: make(chan struct{})}
	s.reqPool.New = func() any { r := new(Request); r.Reset(); return r }
	s.ctxPool.New = func() any { return &Ctx{srv: s} }
	s.hcPool.New = func() any { return &httpConn{s: s} }
	s.ov.init(s)
	s.initRoutes()
	return s, nil
}

// Handler returns the engine handler that serves HTTP on a connection, for
// callers that open listeners themselves (eng.Listen(addr, s.Handler()))
// or hand a connection to HTTP with engine.Conn.SetHandler. Listeners
// opened that way keep the engine's timeouts; Listen applies the server's.
func (s *Server) Handler() engine.Handler { return (*connHandler)(s) }

// Listen opens a listener on addr ("host:port"; port 0 picks a free one)
// serving HTTP on the server's engine, with the server's idle and header
// timeouts, and returns it (its Addr is the bound address).
func (s *Server) Listen(addr string) (*engine.Listener, error) {
	s.initRoutes()
	ln, err := s.eng.Listen(addr, s.Handler())
	if err != nil {
		return nil, err
	}
	s.attach(ln)
	return ln, nil
}

// ListenOn is Listen on a listener the caller made (one inherited from a
// parent process); the engine takes it over.
func (s *Server) ListenOn(l net.Listener) (*engine.Listener, error) {
	s.initRoutes()
	ln, err := s.eng.ListenOn(l, s.Handler())
	if err != nil {
		return nil, err
	}
	s.attach(ln)
	return ln, nil
}

// attach applies the server's timeouts to ln and starts the overload
// monitor with the first listener.
func (s *Server) attach(ln *engine.Listener) {
	ln.SetReadTimeout(s.cfg.HeaderTimeout)
	ln.SetIdleTimeout(s.cfg.IdleTimeout)
	s.lnMu.Lock()
	s.lns = append(s.lns, ln)
	first := len(s.lns) == 1
	s.lnMu.Unlock()
	if first {
		go s.ov.run()
	}
}

// listeners returns the listeners the server opened.
func (s *Server) listeners() []*engine.Listener {
	s.lnMu.Lock()
	defer s.lnMu.Unlock()
	return slices.Clone(s.lns)
}

// initRoutes reads which body limits the handler's routes need. Routes are
// registered before serving, so Listen and ListenOn call it again.
func (s *Server) initRoutes() {
	s.bodyMax = s.limits.resolve().bodyBytes
	s.parseLim, s.streams = s.limits, false
	var max int64
	switch h := s.h.(type) {
	case *Router:
		if h.NotFound != nil {
			h.noteStream(modeOf(h.NotFound))
		}
		s.streams, max = h.stream, h.streamMax
	default:
		if m := modeOf(h); m.stream {
			s.streams, max = true, m.maxBody
		}
	}
	if !s.streams {
		return
	}
	if max == 0 {
		max = s.bodyMax
	}
	if s.bodyMax >= 0 && (max < 0 || max > s.bodyMax) {
		s.parseLim.MaxBodyBytes = max
	}
}

// DefaultConfig returns the configuration a zero Config stands for on an
// engine with ec, every default filled in (flags and docs read their
// defaults here).
func DefaultConfig(ec engine.Config) Config {
	c := Config{}.withDefaults(ec)
	c.Limits = Limits{MaxHeaderBytes: DefaultMaxHeaderBytes, MaxHeaders: DefaultMaxHeaders,
		MaxURIBytes: DefaultMaxURIBytes, MaxBodyBytes: DefaultMaxBodyBytes}
	c.Logger = nil
	return c
}

func (c Config) withDefaults(ec engine.Config) Config {
	if c.IdleTimeout == 0 {
		c.IdleTimeout = 60 * time.Second
	}
	if c.HeaderTimeout == 0 {
		c.HeaderTimeout = 10 * time.Second
	}
	if c.BodyTimeout == 0 {
		c.BodyTimeout = 30 * time.Second
	}
	if c.MaxRequestsPerConn == 0 {
		c.MaxRequestsPerConn = 100_000
	}
	if c.MaxConnAge == 0 {
		c.MaxConnAge = time.Hour
	}
	if c.MaxStreams == 0 {
		w := ec.Workers
		if w <= 0 {
			w = engine.DefaultConfig().Workers
		}
		c.MaxStreams = max(1, w/2)
	}

	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	c.Overload = c.Overload.withDefaults()
	return c
}

// Engine returns the engine underneath, for its stats and connections.
func (s *Server) Engine() *engine.Engine { return s.eng }

// Config returns the server's configuration with defaults filled in.
func (s *Server) Config() Config { return s.cfg }

// Close stops the server's background work (the overload monitor). It
// does not close connections: the engine's owner does, with Shutdown.
func (s *Server) Close() error {
	s.stopped.Do(func() { close(s.stopOv) })
	return nil
}

// httpConn is a connection's HTTP state, and its engine handler while it
// exists: only while a request is partly received or in flight. An idle
// keep-alive connection holds none (its handler is the connHandler), and an
// upgraded one has its new protocol's handler instead.
type httpConn struct {
	s      *Server
	parser Parser
	b      *bodyState  // a request whose body is being read, or nil
	stream *bodyPipe   // a body being streamed to its handler (loop-owned)
	busy   atomic.Bool // a request is running on a worker
	dead   atomic.Bool // refused or closing: ignore further input

	// curMu guards cur, the request running on a worker, whose context
	// OnClose cancels.
	curMu sync.Mutex
	cur   *Ctx
}

// bodyState is a request whose body spans reads. It is pooled and held only
// while the body arrives, so an upgraded or idle connection carries none.
type bodyState struct {
	bodyDecoder
	req  *Request // head, copied into head
	head []byte   // pooled copy of req's header section
	body []byte   // pooled body being accumulated
}

// bodyDecoder frames a request body that spans reads: the Content-Length
// bytes still to come, or the chunked coding. The buffered and the
// streamed (StreamBody) paths share it.
type bodyDecoder struct {
	want  int64
	chunk *ChunkedReader
	// trailers are a copy of a chunked body's trailer fields, kept when
	// the decoder goes back to its pool (Ctx.Trailers), for a collected
	// body only.
	trailers []Header
	// stream says the body goes to a StreamBody route, whose trailer
	// fields are not kept (Ctx.Trailers is nil there).
	stream bool
}

// decode consumes body bytes from in, handing each piece of data to emit
// (end set with the last), and reports how much of in was body and whether
// the body is complete.
func (d *bodyDecoder) decode(in []byte, emit func(data []byte, end bool)) (n int, done bool, err error) {
	if d.chunk == nil {
		k := min(int64(len(in)), d.want)
		d.want -= k
		emit(in[:k], d.want == 0)
		return int(k), d.want == 0, nil
	}
	for {
		m, data, fin, err := d.chunk.Next(in[n:])
		if err != nil {
			return n, false, err
		}
		n += m
		if len(data) > 0 || fin {
			emit(data, fin)
		}
		if fin {
			if tr := d.chunk.Trailers(); len(tr) > 0 && !d.stream {
				d.trailers = cloneHeaders(tr)
			}
			d.release()
			return n, true, nil
		}
		if m == 0 {
			return n, false, nil
		}
	}
}

// cloneHeaders copies fields into one new buffer.
func cloneHeaders(fields []Header) []Header {
	size := 0
	for _, h := range fields {
		size += len(h.Name) + len(h.Value)
	}
	buf := make([]byte, 0, size)
	out := make([]Header, len(fields))
	for i, h := range fields {
		buf = append(buf, h.Name...)
		out[i].Name = buf[len(buf)-len(h.Name):]
		buf = append(buf, h.Value...)
		out[i].Value = buf[len(buf)-len(h.Value):]
	}
	return out
}

// release returns the chunked decoder to its pool.
func (d *bodyDecoder) release() {
	if d.chunk != nil {
		chunkedPool.Put(d.chunk)
		d.chunk = nil
	}
}

var bodyStatePool = sync.Pool{New: func() any { return new(bodyState) }}

var continue100 = []byte("HTTP/1.1 100 Continue\r\n\r\n")

var chunkedPool = sync.Pool{New: func() any { return new(ChunkedReader) }}

// hcOf returns c's HTTP state, or nil. It runs on c's loop.
func hcOf(c *engine.Conn) *httpConn {
	hc, _ := c.Handler().(*httpConn)
	return hc
}

// ensureHC returns c's HTTP state, making it c's handler if it had none.
// It runs on c's loop.
func (s *Server) ensureHC(c *engine.Conn) *httpConn {
	if hc := hcOf(c); hc != nil {
		return hc
	}
	hc := s.hcPool.Get().(*httpConn)
	c.SetHandler(hc)
	return hc
}

// releaseHC frees a connection's HTTP state once nothing is in progress,
// handing the connection back to the stateless handler. It runs on c's
// loop.
func (s *Server) releaseHC(c *engine.Conn, hc *httpConn) {
	if hc == nil || hc.busy.Load() || hc.b != nil || hc.stream != nil || hc.dead.Load() || hc.parser.pos != 0 {
		return
	}
	if c.Handler() == engine.Handler(hc) {
		c.SetHandler(s.Handler())
	}
	hc.parser = Parser{}
	s.hcPool.Put(hc)
}

// onData parses requests from in and serves them in order, on the event
// loop; hc is c's HTTP state, or nil.
func (s *Server) onData(c *engine.Conn, hc *httpConn, in []byte) int {
	if hc != nil {
		if hc.dead.Load() {
			return len(in)
		}
		if hc.busy.Load() && hc.stream == nil {
			return 0 // resumed by the engine when the request is done
		}
	}
	off := 0
	for off < len(in) {
		if hc != nil && hc.stream != nil {
			n, done, err := hc.stream.feed(in[off:])
			off += n
			if err != nil {
				// The handler sees err from its reader; the server
				// answers with its status and closes (see finish).
				hc.dead.Store(true)
				return len(in)
			}
			if !done {
				return off
			}
			hc.stream.release()
			hc.stream = nil
		} else if hc != nil && hc.b != nil {
			n, done, err := s.readBody(hc, in[off:])
			off += n
			if err != nil {
				s.refuse(c, hc, err)
				return len(in)
			}
			if !done {
				return off
			}
			c.SetMessagePending(false)
			c.SetReadTimeout(0)
			b := hc.b
			req, body := b.req, b.body
			b.req, b.body = nil, nil
			s.serve(c, hc, req, body, true)
		} else {
			var local Parser
			p := &local
			if hc != nil {
				p = &hc.parser
			}
			req := s.reqPool.Get().(*Request)
			n, err := p.Parse(in[off:], req, &s.parseLim)
			if err != nil {
				s.reqPool.Put(req)
				hc = s.ensureHC(c)
				s.refuse(c, hc, err)
				return len(in)
			}
			if n == 0 {
				s.reqPool.Put(req)
				if hc == nil && p.pos > 0 {
					hc = s.ensureHC(c)
					hc.parser = *p
				}
				return off
			}
			bodyAt := off + n
			if s.streams && (req.ContentLength > 0 || req.Chunked) {
				h, mode, params := s.route(req)
				max := s.bodyMax
				if mode.stream && mode.maxBody != 0 {
					max = mode.maxBody
				}
				if max >= 0 && req.ContentLength > max {
					s.reqPool.Put(req)
					hc = s.ensureHC(c)
					s.refuse(c, hc, ErrBodyTooLarge)
					return len(in)
				}
				if mode.stream && s.cfg.MaxStreams > 0 && s.streaming.Load() >= int64(s.cfg.MaxStreams) {
					s.reqPool.Put(req)
					hc = s.ensureHC(c)
					s.refuse(c, hc, ErrTooManyStreams)
					return len(in)
				}
				if mode.stream {
					hc = s.ensureHC(c)
					n, err := s.startStream(c, hc, req, h, params, max, in[bodyAt:])
					if err != nil {
						hc.dead.Store(true)
						return len(in)
					}
					off = bodyAt + n
					if hc.stream != nil {
						continue // more body to come
					}
					if hc.dead.Load() {
						return len(in)
					}
					return off // the next request waits for the handler
				}
			}
			switch {
			case req.ContentLength > 0 && int64(len(in)-bodyAt) >= req.ContentLength:
				end := bodyAt + int(req.ContentLength)
				off = end
				s.serve(c, hc, req, in[bodyAt:end], false)
			case req.ContentLength > 0 || req.Chunked:
				// The body spans reads: keep a copy of the head and
				// collect the body in a pooled buffer.
				hc = s.ensureHC(c)
				b := bodyStatePool.Get().(*bodyState)
				hc.b = b
				b.head = req.CopyTo(req, pool.Get(len(req.Raw()))[:0])
				b.req = req
				if req.Chunked {
					b.chunk = chunkedPool.Get().(*ChunkedReader)
					b.chunk.Reset(&s.limits)
					b.body = pool.Get(4096)[:0]
				} else {
					b.want = req.ContentLength
					b.body = pool.Get(int(req.ContentLength))[:0]
				}
				if req.Expect100 && len(in) == bodyAt {
					c.Write(continue100)
				}
				c.SetReadTimeout(s.cfg.BodyTimeout)
				c.SetMessagePending(true)
				off = bodyAt
				continue
			default:
				off = bodyAt
				s.serve(c, hc, req, nil, false)
			}
		}
		h := c.Handler()
		hc, _ = h.(*httpConn)
		if hc == nil {
			if _, ok := h.(*connHandler); !ok {
				// Upgraded: the engine presents the rest of the input to
				// the new protocol.
				return off
			}
		} else {
			if hc.dead.Load() {
				return len(in)
			}
			if hc.busy.Load() {
				return off
			}
		}
	}
	s.releaseHC(c, hc)
	return off
}

// readBody moves body bytes from in into hc.b.body.
func (s *Server) readBody(hc *httpConn, in []byte) (int, bool, error) {
	b := hc.b
	return b.decode(in, func(data []byte, _ bool) {
		b.body = append(pool.Grow(b.body, len(data)), data...)
	})
}

// refuse answers a malformed or over-limit request with its status and
// closes the connection: what follows it cannot be trusted (no request
// smuggling). The close lingers (engine.Conn.CloseLinger): the client may
// still be sending the request's body, and a close with its bytes unread
// would reset the connection and lose the answer.
func (s *Server) refuse(c *engine.Conn, hc *httpConn, err error) {
	e, ok := err.(*Error)
	if !ok {
		e = &Error{Status: 400, Reason: err.Error()}
	}
	s.stats.refused.Add(1)
	if h := s.cfg.Hooks.OnBadRequest; h != nil {
		h(c, e)
	}
	hc.dead.Store(true)
	s.dropBody(hc)
	c.SetMessagePending(false)
	b := pool.Get(256)[:0]
	b = AppendStatusLine(b, 1, e.Status)
	b = s.date.AppendHeader(b, s.eng.Now())
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\nConnection: close\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(e.Reason)+1), 10)
	b = append(b, "\r\n\r\n"...)
	b = append(b, e.Reason...)
	b = append(b, '\n')
	// Count before sending, so a client that saw the answer sees it
	// counted.
	s.stats.countStatus(e.Status)
	c.Write(b)
	pool.Put(b)
	c.CloseLinger(engine.ReasonProtocolError, nil)
}

func (s *Server) dropBody(hc *httpConn) {
	b := hc.b
	if b == nil {
		return
	}
	hc.b = nil
	if b.req != nil {
		s.reqPool.Put(b.req)
	}
	if b.head != nil {
		pool.Put(b.head)
	}
	if b.body != nil {
		pool.Put(b.body)
	}
	b.release()
	*b = bodyState{}
	bodyStatePool.Put(b)
}

// serve runs the handler for one complete request. owned reports that
// body and the request's head are already copies the loop does not reuse.
func (s *Server) serve(c *engine.Conn, hc *httpConn, req *Request, body []byte, owned bool) {
	h, mode, params := s.route(req)
	ctx := s.ctxPool.Get().(*Ctx)
	ctx.reset(c, req, body, params)
	ctx.start = s.eng.Now()
	ctx.keepAlive = s.keepAlive(c, req)
	if owned {
		ctx.head, ctx.ownBody, ctx.reqTrailers = hc.b.head, body, hc.b.trailers
		hc.b.head = nil
		s.dropBody(hc) // the rest of the body state goes back to its pool
	}
	if mode.inline {
		ctx.inline = true
		s.run(ctx, h)
		if !s.detached(ctx) {
			s.finish(ctx)
		}
		return
	}
	// Hand the request to a worker: it needs its own copy of whatever
	// lives in the loop's buffers.
	if !owned {
		ctx.head = req.CopyTo(req, pool.Get(len(req.Raw()))[:0])
		if len(body) > 0 {
			ctx.ownBody = append(pool.Get(len(body))[:0], body...)
			ctx.body = ctx.ownBody
		}
	}
	if hc == nil {
		hc = s.ensureHC(c)
	}
	s.dispatch(c, hc, ctx, h)
}

// dispatch runs h for ctx on the worker pool; the connection's next
// request waits until it is done. A full pool is answered 503.
func (s *Server) dispatch(c *engine.Conn, hc *httpConn, ctx *Ctx, h Handler) {
	hc.busy.Store(true)
	ctx.hc = hc
	hc.curMu.Lock()
	hc.cur = ctx
	hc.curMu.Unlock()
	err := c.Dispatch(func() {
		s.run(ctx, h)
		if s.detached(ctx) {
			return // busy until Finish
		}
		upgrading := ctx.upgrade != nil
		s.finish(ctx)
		if !upgrading {
			// An upgrading connection stays busy: input that arrives
			// before finish's posted hand-over runs (a client that
			// speaks first after the 101) waits for the new handler
			// instead of being parsed as HTTP.
			hc.busy.Store(false)
		}
	})
	if err != nil {
		hc.busy.Store(false)
		hc.curMu.Lock()
		hc.cur = nil
		hc.curMu.Unlock()
		ctx.SetStatus(503)
		ctx.keepAlive = false
		ctx.WriteString("server busy\n")
		s.finish(ctx)
	}
}

// startStream runs h for req on a worker while the loop goes on decoding
// the body into a pipe the handler reads (see StreamBody). The part of the
// body already in rest is fed first, so a handler that returns at once
// finds a body that arrived with its head complete; it returns how much of
// rest was body.
func (s *Server) startStream(c *engine.Conn, hc *httpConn, req *Request, h Handler, params []param, max int64, rest []byte) (int, error) {
	p := newBodyPipe(c, req, s.limits, max, s.cfg.BodyTimeout)
	hc.stream = p
	s.streaming.Add(1)
	n, done, ferr := p.feed(rest)
	if done {
		p.release()
		hc.stream = nil
	}
	ctx := s.ctxPool.Get().(*Ctx)
	ctx.reset(c, req, nil, params)
	ctx.start = s.eng.Now()
	ctx.keepAlive = s.keepAlive(c, req)
	ctx.pipe = p
	ctx.head = req.CopyTo(req, pool.Get(len(req.Raw()))[:0])
	s.dispatch(c, hc, ctx, h)
	return n, ferr
}

// run calls the hooks and the handler, recovering a panic.
func (s *Server) run(ctx *Ctx, h Handler) {
	defer func() {
		if v := recover(); v != nil {
			s.log.Error("http1: handler panic", "conn", ctx.conn.ID(), "path", string(ctx.Path),
				"panic", v, "stack", string(debug.Stack()))
			if hook := s.cfg.Hooks.OnPanic; hook != nil {
				hook(ctx, v)
			}
			ctx.keepAlive = false
			ctx.panicked = true
			if ctx.det.Load() != detNone {
				// Detached: whatever was to answer it may never
				// Finish, so the connection closes now (its context
				// ends with it) and, unless Finish came already, the
				// request is abandoned: a later Finish does nothing.
				ctx.conn.CloseWithReason(engine.ReasonPanic)
				if ctx.det.CompareAndSwap(detRunning, detAbandoned) {
					s.abandonDetached(ctx)
				}
				return
			}
			if !ctx.streaming {
				ctx.resetResponse()
				ctx.SetStatus(500)
				ctx.WriteString("internal server error\n")
			}
		}
	}()
	if hook := s.cfg.Hooks.OnRequest; hook != nil && !hook(ctx) {
		return
	}
	h.ServeHTTP1(ctx)
}

// keepAlive decides whether the connection may serve another request after
// this one.
func (s *Server) keepAlive(c *engine.Conn, req *Request) bool {
	if req.Close || s.eng.Draining() || !s.ov.keepAlive.Load() {
		return false
	}
	if m := s.cfg.MaxRequestsPerConn; m > 0 && c.Served()+1 >= uint64(m) {
		return false
	}
	if a := s.cfg.MaxConnAge; a > 0 && s.eng.Now().Sub(c.Created()) >= a {
		return false
	}
	return true
}

// finish sends the response, releases the request, and closes the
// connection when keep-alive ends.
func (s *Server) finish(ctx *Ctx) {
	c := ctx.conn
	if ctx.keepAlive && ctx.upgrade == nil && s.eng.Draining() {
		ctx.keepAlive = false
	}
	closeWhy := engine.ReasonLocal
	if ctx.panicked {
		closeWhy = engine.ReasonPanic
	}
	if ctx.pipe != nil {
		if r := s.endStream(ctx); r != engine.ReasonNone {
			closeWhy = r
		}
	}
	// Count before sending, so a client that saw the response sees it
	// counted.
	status := ctx.status
	s.stats.countStatus(status)
	elapsed := s.eng.Now().Sub(ctx.start)
	s.stats.observe(elapsed)
	c.AddServed(1)
	// The handler is done: its context ends before the response goes out
	// (and before a close it causes could count as the client leaving).
	if hc := ctx.hc; hc != nil {
		hc.curMu.Lock()
		hc.cur = nil
		hc.curMu.Unlock()
	}
	ctx.endContext()
	if u := ctx.upgrade; u != nil && !ctx.inline {
		// Hand the connection over on its loop before the client can
		// answer the 101: what it sends next is the new protocol's.
		c.Post(func() { s.upgradeTo(c, u) })
	}
	ctx.send()
	if hook := s.cfg.Hooks.OnResponse; hook != nil {
		hook(ctx, status, elapsed)
	}
	if u := ctx.upgrade; u != nil {
		if ctx.inline {
			s.upgradeTo(c, u)
		}
	} else if !ctx.keepAlive {
		hc := ctx.hc // set for a request on a worker
		if hc == nil {
			hc = s.ensureHC(c) // inline: on the loop
		}
		hc.dead.Store(true)
		if closeWhy != engine.ReasonLocal || ctx.pipe != nil || status >= 400 {
			// An error, or a body the handler may have left unread: the
			// client may still be sending, so the close lingers and the
			// answer is not lost to a reset (RFC 9112 section 9.6).
			c.CloseLinger(closeWhy, nil)
		} else {
			c.CloseWithReason(closeWhy)
		}
	}
	s.reqPool.Put(ctx.Request)
	ctx.release()
	s.ctxPool.Put(ctx)
}

// upgradeTo hands c to the protocol u on c's loop. The HTTP state is
// dropped, not pooled: a worker may still be finishing with it.
func (s *Server) upgradeTo(c *engine.Conn, u engine.Handler) {
	c.SetHandler(u)
}

// endStream closes a streamed body's pipe when its handler has returned. A
// body that did not arrive whole leaves the connection unusable; one that
// failed is answered with its status unless the handler chose an error
// status itself, and gives the reason the connection closes for.
func (s *Server) endStream(ctx *Ctx) engine.CloseReason {
	s.streaming.Add(-1)
	complete, err := ctx.pipe.finish()
	if complete {
		return engine.ReasonNone
	}
	ctx.keepAlive = false
	e, ok := err.(*Error)
	if !ok {
		return engine.ReasonNone
	}
	why := engine.ReasonProtocolError
	if e.Status == 408 {
		why = engine.ReasonReadTimeout
		s.stats.timeouts.Add(1)
	} else {
		s.stats.refused.Add(1)
	}
	if !ctx.streaming && !ctx.panicked && ctx.status < 400 {
		ctx.resetResponse()
		ctx.SetStatus(e.Status)
		ctx.WriteString(e.Reason + "\n")
	}
	return why
}

// onClose releases a closed connection's HTTP state and cancels the
// context of a request still running on a worker.
func (s *Server) onClose(c *engine.Conn, hc *httpConn) {
	hc.curMu.Lock()
	if cur := hc.cur; cur != nil {
		cur.cancelContext(ErrClientGone)
	}
	hc.curMu.Unlock()
	if p := hc.stream; p != nil {
		p.fail(io.ErrUnexpectedEOF)
		p.release()
		hc.stream = nil
	}
	if !hc.busy.Load() {
		s.dropBody(hc)
	}
}

// onEOF fails a streamed body whose client stopped sending before its end
// at once instead of at the body timeout, and, as net/http does, takes the
// end of the client's input as the client going away: the running
// request's context is cancelled.
func (s *Server) onEOF(c *engine.Conn, hc *httpConn) {
	if hc.stream != nil {
		hc.stream.fail(io.ErrUnexpectedEOF)
	}
	hc.curMu.Lock()
	if cur := hc.cur; cur != nil {
		cur.cancelContext(ErrClientGone)
	}
	hc.curMu.Unlock()
}

// onDrain closes an idle connection at once; a busy one is left to the
// engine, which closes it as soon as it is quiet: right after the response
// in progress, which carries Connection: close.
func (s *Server) onDrain(c *engine.Conn, hc *httpConn) bool {
	if hc == nil || (!hc.busy.Load() && hc.b == nil && hc.stream == nil && hc.parser.pos == 0) {
		c.CloseWithReason(engine.ReasonShutdown)
	}
	return false
}

// onTimeout answers a request head or body that did not arrive in time
// with 408 before the connection closes, lingering: the client may still
// be sending.
func (s *Server) onTimeout(c *engine.Conn, hc *httpConn, r engine.CloseReason) bool {
	if r == engine.ReasonReadTimeout && (hc == nil || !hc.busy.Load()) {
		s.stats.timeouts.Add(1)
		b := pool.Get(256)[:0]
		b = AppendStatusLine(b, 1, 408)
		b = s.date.AppendHeader(b, s.eng.Now())
		b = append(b, "Connection: close\r\nContent-Length: 0\r\n\r\n"...)
		s.stats.countStatus(408) // before sending, as refuse does
		c.Write(b)
		pool.Put(b)
		if hc != nil {
			hc.dead.Store(true)
			s.dropBody(hc)
		}
		c.SetMessagePending(false)
		c.CloseLinger(r, nil)
	}
	return false
}

// route picks the handler for req and whether it runs inline.
func (s *Server) route(req *Request) (Handler, routeMode, []param) {
	if r, ok := s.h.(*Router); ok {
		return r.lookup(req.Method, req.Path)
	}
	return s.h, modeOf(s.h), nil
}
