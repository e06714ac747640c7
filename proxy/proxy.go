// Package proxy is warren's HTTP/1.1 reverse proxy on the engine: client
// connections parsed on the event loops, forwarded through an
// upstream.Cluster (pools, balancing, health, outlier ejection, breaker,
// retries), responses streamed back, and WebSocket upgrades spliced byte
// for byte between the two engine connections, with no goroutine per
// connection or per pair.
//
// The proxy adds X-Forwarded-For, X-Forwarded-Proto and Via, strips the
// hop-by-hop header fields (Connection and the fields it names,
// Keep-Alive, Proxy-Connection, TE, Trailer but with a chunked body whose
// trailer fields go on, Upgrade but for upgrades, Proxy-Authorization,
// Proxy-Authenticate) from heads and trailer sections (with the fields a
// trailer section must not carry: framing, routing, authentication,
// request and response control, content format, and the forwarding
// fields the proxy sets; see controlField), and answers a request it
// cannot forward with 502, 503 or 504 and an X-Warren-Reason header
// naming the upstream.Failure (connect_failure, upstream_timeout,
// no_healthy_upstream, overflow, breaker_open, ...).
//
// A backend's 100 Continue goes on to an HTTP/1.1 client; other interim
// (1xx) responses but 101 (103 Early Hints) only when Config.MaxInterim
// opts in, bounded per request by it and Config.MaxInterimBytes.
//
// Config.RatePerIP limits the requests of each client address (a token
// bucket per IP in a bounded table), and Config.RouteLimits those of a
// path prefix per client address or per header value (a device id): over
// either the proxy answers 429 itself, with the reason "rate_limited" and
// a Retry-After computed from the bucket.
//
// Bodies stream both ways without being held whole: a request body goes
// to the backend as it arrives (chunked bytes as received), a response
// body to the client as it arrives (a chunked or close-delimited one
// re-chunked for an HTTP/1.1 client). When one side reads slower than
// the other sends, the proxy stops reading the fast side once
// Config.MaxBacklog bytes are queued toward the slow one, and resumes it
// when the queue falls under a quarter of that.
package proxy

import (
	"log/slog"
	"net/netip"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// Config configures a Proxy. The zero value works.
type Config struct {
	// Limits bounds client request heads (431, 414 over them). Bodies are
	// streamed: Limits.MaxBodyBytes bounds a request body; zero means no
	// limit for the proxy (the backend decides).
	Limits http1.Limits
	// IdleTimeout closes a client keep-alive connection idle this long.
	// Zero means 60s; negative never. Keep it above the idle timeout of
	// any load balancer in front (docs/upstream.md).
	IdleTimeout time.Duration
	// HeaderTimeout bounds the arrival of a request head once started
	// (408 after). Zero means 10s; negative never.
	HeaderTimeout time.Duration
	// MaxBacklog is how many bytes may queue toward a slow peer before the
	// proxy stops reading the other side. Zero means 256 KiB.
	MaxBacklog int
	// Via is the pseudonym in the Via header ("1.1 warren"). Zero means
	// "warren".
	Via string
	// ReasonHeader names the header that carries the failure reason of a
	// 502, 503 or 504 the proxy answers itself. Zero means
	// "X-Warren-Reason".
	ReasonHeader string
	// Proto is the X-Forwarded-Proto value. Zero means "https" for a
	// request that came in over TLS (a connection with a transform, such
	// as warren serve's -tls-addr) and "http" otherwise.
	Proto string
	// HashClient balances ring hash and Maglev clusters by a key per
	// request (session affinity): the value of the HashHeader field when
	// it is set and the request carries it, else the client address.
	HashClient bool
	// HashHeader names the request header whose value is HashClient's key
	// (a device id: "X-Device-Id"). Behind a load balancer every request
	// comes from its address, so hashing that would send everything to
	// one backend. Empty: the client address.
	HashHeader string
	// RatePerIP limits the requests each client address may make through
	// the proxy's own listeners (inbound; not Forward): a token bucket per
	// IP in a bounded table (upstream.KeyedLimiter, 65536 addresses, the
	// least recently seen evicted). Over it the proxy answers 429 itself
	// with the reason header "rate_limited" and a Retry-After, without reaching the
	// cluster; a request without a body keeps its connection. Zero means
	// no limit.
	RatePerIP float64
	// BurstPerIP is the bucket size of RatePerIP. Zero means RatePerIP
	// rounded up, at least 1.
	BurstPerIP int
	// PerIPv6Prefix is the prefix length an IPv6 client is counted by,
	// for RatePerIP and for RouteLimits keyed by client address: every
	// address of one /64 is one client by default, since a subscriber or
	// a host is usually given a whole /64 and could otherwise step around
	// a limit by changing address. Zero means 64; 128 counts each address
	// on its own. IPv4 clients are counted by their address.
	PerIPv6Prefix int
	// RouteLimits are inbound rate limits by path prefix, keyed by client
	// address or a header (RouteLimit), checked after RatePerIP on the
	// proxy's listeners and on Forward routes: over one, the proxy
	// answers 429 with Retry-After itself. Invalid entries
	// (ValidateRouteLimits) are logged and skipped. None by default.
	RouteLimits []RouteLimit
	// MaxInterim bounds the interim (1xx) responses other than 100 Continue
	// and 101 passed on to a client per request (103 Early Hints, 102
	// Processing, any other a backend sends before its final response;
	// RFC 9110 §15.2 lets a proxy forward them, to HTTP/1.1 clients only).
	// Zero or negative, the default, passes none of them: they are
	// dropped and counted (warren_proxy_interim_dropped_total) and the
	// final response goes on. Forwarding them is an opt-in because
	// CPython's http.client (and so requests and urllib3) takes a 103 for
	// the final response and loses the real one; nginx too forwards them
	// only with early_hints. N > 0 passes up to N of them, within
	// MaxInterimBytes; those over either bound are dropped and counted.
	// The first 100 Continue of a request always goes on, outside both
	// bounds: a client that sent "Expect: 100-continue" waits for it.
	MaxInterim int
	// MaxInterimBytes bounds the bytes of the interim response heads
	// passed on per request under MaxInterim (each head is bounded by the
	// cluster's response head limit too). Zero or negative means 16 KiB.
	MaxInterimBytes int
	// Logger receives the proxy's logs. Nil means slog.Default().
	Logger *slog.Logger
}

// Defaults of Config.
const (
	DefaultIdleTimeout   = 60 * time.Second
	DefaultHeaderTimeout = 10 * time.Second
	DefaultMaxBacklog    = 256 << 10
	// DefaultMaxInterim is the default Config.MaxInterim: no interim
	// response but 100 Continue goes on.
	DefaultMaxInterim = 0
	// DefaultMaxInterimBytes is the default Config.MaxInterimBytes.
	DefaultMaxInterimBytes = 16 << 10
)

// Proxy is a reverse proxy from an engine's listeners to an
// upstream.Cluster. It is safe for concurrent use.
type Proxy struct {
	eng     *engine.Engine
	cl      *upstream.Cluster
	cfg     Config
	via     []byte
	reason  string
	res     resumer
	st      stats
	pcPool  sync.Pool
	bodyLim int64
	perIP   *upstream.KeyedLimiter[netip.Addr] // Config.RatePerIP; nil when off
	routes  []*routeLimiter                    // Config.RouteLimits, longest prefix first
	// protoAuto: Config.Proto was left empty; X-Forwarded-Proto follows
	// each client connection (see Proxy.proto).
	protoAuto bool

	// reqTail and reqTailTLS end a request head whose client sent no Via
	// ("\r\nX-Forwarded-Proto: " proto "\r\nVia: " via "\r\n"), for
	// Config.Proto and for a TLS client when it follows the connection;
	// respVia ends a response's ("Via: " via "\r\n"). Made once in New.
	reqTail, reqTailTLS, respVia []byte

	// pcFree are the free lists of pconns, one a loop (getPC).
	pcFree []pcFree
}

// pcFree is a proxy's free list of pconns for the client connections of
// one loop: up to pcFreeMax released pconns, taken back before pcPool's,
// whose round trip (pinning the P, a push on its deque, a pop) costs
// several times this list's uncontended lock. Only a pconn whose buffers
// are small goes on a list (pcSmall: head, trailer and hop-by-hop option
// buffers of at most 4 KiB each, no request that spilled past the
// parser's 32 inline fields, no chunked request body read), so the lists
// keep at most pcFreeMax × ~25 KiB a loop for the proxy's life, with the
// bytes of the heads they last carried until they are reused; others go
// to pcPool, which drops them over two GCs. A proxy has the lists only on
// an engine with event loops: on the portable engine every connection
// has its own goroutine and Conn.Loop is 0 for all, so one list would
// serialize them where pcPool is per P.
type pcFree struct {
	mu  sync.Mutex
	pcs []*pconn
	_   [64 - 8 - 24]byte // one list a cache line
}

// pcFreeMax bounds a pcFree list.
const pcFreeMax = 32

type stats struct {
	requests, responses, errors, upgrades, badRequests atomic.Uint64
	rateLimited                                        atomic.Uint64
	interim, interimDropped                            atomic.Uint64
	headLimits                                         [numHeadLimits]atomic.Uint64
	trailersDropped                                    [numTrailerDirs][numTrailerDrops]atomic.Uint64
	active, splices                                    atomic.Int64
	status                                             [6]atomic.Uint64
	failures                                           sync.Map // upstream.Failure → *atomic.Uint64
}

// New makes a proxy to cl for connections on eng.
func New(eng *engine.Engine, cl *upstream.Cluster, cfg Config) *Proxy {
	if cfg.IdleTimeout == 0 {
		cfg.IdleTimeout = DefaultIdleTimeout
	}
	if cfg.HeaderTimeout == 0 {
		cfg.HeaderTimeout = DefaultHeaderTimeout
	}
	if cfg.MaxBacklog <= 0 {
		cfg.MaxBacklog = DefaultMaxBacklog
	}
	if cfg.Via == "" {
		cfg.Via = "warren"
	}
	if cfg.MaxInterimBytes <= 0 {
		cfg.MaxInterimBytes = DefaultMaxInterimBytes
	}
	if cfg.ReasonHeader == "" {
		cfg.ReasonHeader = "X-Warren-Reason"
	}
	protoAuto := cfg.Proto == ""
	if protoAuto {
		cfg.Proto = "http"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	p := &Proxy{eng: eng, cl: cl, cfg: cfg, via: []byte("1.1 " + cfg.Via), reason: cfg.ReasonHeader,
		bodyLim: cfg.Limits.MaxBodyBytes, protoAuto: protoAuto}
	if p.bodyLim == 0 {
		p.bodyLim = -1
	}
	p.reqTail = []byte("\r\nX-Forwarded-Proto: " + cfg.Proto + "\r\nVia: " + string(p.via) + "\r\n")
	p.reqTailTLS = []byte("\r\nX-Forwarded-Proto: https\r\nVia: " + string(p.via) + "\r\n")
	p.respVia = []byte("Via: " + string(p.via) + "\r\n")
	if eng.EventLoops() {
		p.pcFree = make([]pcFree, max(1, eng.Config().Loops))
	}
	p.cfg.Limits.MaxBodyBytes = -1 // the parser checks Content-Length against bodyLim below
	p.res.init(cfg.MaxBacklog / 4)
	if cfg.RatePerIP > 0 {
		p.perIP = upstream.NewKeyedLimiter[netip.Addr](upstream.KeyedConfig{Rate: cfg.RatePerIP, Burst: cfg.BurstPerIP, EvictBusy: true})
	}
	var skipped []error
	p.routes, skipped = newRouteLimiters(cfg.RouteLimits)
	for _, err := range skipped {
		cfg.Logger.Error("route limit skipped", "error", err)
	}
	return p
}

// Handler returns the engine handler of client connections, for
// Engine.Listen or a connection handed over with Conn.SetHandler.
func (p *Proxy) Handler() engine.Handler { return (*idleHandler)(p) }

// Listen opens a listener on the proxy's engine whose connections are
// proxied, with the proxy's idle and header timeouts.
func (p *Proxy) Listen(addr string) (*engine.Listener, error) {
	return p.ListenWrapped(addr, nil)
}

// ListenWrapped is Listen with the proxy's handler wrapped by wrap (a TLS
// layer: tlsx.Server.Handler); a nil wrap is Listen.
func (p *Proxy) ListenWrapped(addr string, wrap func(engine.Handler) engine.Handler) (*engine.Listener, error) {
	h := p.Handler()
	if wrap != nil {
		h = wrap(h)
	}
	ln, err := p.eng.Listen(addr, h)
	if err != nil {
		return nil, err
	}
	ln.SetIdleTimeout(p.cfg.IdleTimeout)
	ln.SetReadTimeout(p.cfg.HeaderTimeout)
	return ln, nil
}

// Cluster returns the proxy's cluster.
func (p *Proxy) Cluster() *upstream.Cluster { return p.cl }

// Close stops the proxy's backpressure goroutine. Connections end with the
// engine.
func (p *Proxy) Close() { p.res.close() }

// idleHandler is a client connection with no request in progress: it
// holds no state. The first bytes of a request give it a pconn.
type idleHandler Proxy

func (h *idleHandler) OnData(c *engine.Conn, in []byte) int {
	p := (*Proxy)(h)
	pc := p.getPC(c)
	c.SetHandler(pc)
	return pc.OnData(c, in)
}

func (h *idleHandler) Inline() bool     { return true }
func (h *idleHandler) Protocol() string { return ProtocolName }

// ProtocolName is the protocol name of client connections.
const ProtocolName = "proxy"

func (p *Proxy) getPC(c *engine.Conn) *pconn {
	var pc *pconn
	if l := c.Loop(); uint(l) < uint(len(p.pcFree)) {
		f := &p.pcFree[l]
		f.mu.Lock()
		if n := len(f.pcs); n > 0 {
			pc = f.pcs[n-1]
			f.pcs[n-1] = nil
			f.pcs = f.pcs[:n-1]
		}
		f.mu.Unlock()
	}
	if pc == nil {
		pc, _ = p.pcPool.Get().(*pconn)
		if pc == nil {
			pc = &pconn{p: p}
		}
	}
	pc.c = c
	return pc
}

// pcSmallBuf bounds each head buffer of a pconn kept on a free list.
const pcSmallBuf = 4 << 10

// pcSmall reports whether pc may go on a free list: its buffers are small.
// A pconn that read a chunked request body is not: its chunk reader keeps
// the trailer section's buffer (up to MaxHeaderBytes) for its next body.
func (pc *pconn) pcSmall() bool {
	return !pc.req.Spilled() && !pc.chunkedRead && cap(pc.head) <= pcSmallBuf && cap(pc.rhead) <= pcSmallBuf &&
		cap(pc.rtrail) <= pcSmallBuf && cap(pc.reqOpts) <= pcSmallBuf && cap(pc.respOpts) <= pcSmallBuf
}

// putPC keeps pc, released, for the client connections of loop l.
func (p *Proxy) putPC(pc *pconn, l int) {
	if uint(l) < uint(len(p.pcFree)) && pc.pcSmall() {
		f := &p.pcFree[l]
		f.mu.Lock()
		if len(f.pcs) < pcFreeMax {
			f.pcs = append(f.pcs, pc)
			f.mu.Unlock()
			return
		}
		f.mu.Unlock()
	}
	p.pcPool.Put(pc)
}

// Request phases of a pconn.
const (
	phHead    uint8 = iota // reading a request head
	phBody                 // forwarding the request body
	phWait                 // body done, response in progress
	phUpgrade              // upgrade request sent, waiting for the backend
	phIdle                 // response done; waiting to hand the connection back to the idle handler
	phDone                 // closing
)

// pconn is a client connection with a request in progress. Its OnData
// runs on the client's loop; the response callbacks on the upstream
// connection's.
type pconn struct {
	p *Proxy
	c *engine.Conn

	// Client loop only.
	parser  http1.Parser
	req     http1.Request
	chunk   http1.ChunkedReader
	chunked bool
	remain  int64
	head    []byte // upstream request head; kept until the exchange ends
	rhead   []byte // response head being built (upstream loop)
	// rtrail is the last chunk and trailer section of a response whose
	// trailer fields go on (OnTrailers); empty otherwise (upstream loop).
	rtrail []byte
	// respOpts are the response head's connection options, removed from
	// its trailer section (upstream loop); reqOpts the request head's,
	// removed from the request's (client loop). Empty for a head without
	// any.
	respOpts, reqOpts hopNames
	// headPending says rhead has not been written yet (upstream loop).
	headPending bool
	wbufs       [4][]byte // OnBody's Writev slice (upstream loop)
	chunkHdr    [20]byte
	// xffText is xffAddr in text, the client address X-Forwarded-For
	// last named: kept across requests (and the connections the pooled
	// pc serves) so that a client seen again is not formatted again.
	xffAddr netip.Addr
	xffText []byte
	// chunkedRead: a chunked request body was read through chunk, whose
	// trailer buffer outlives the request (pcSmall).
	chunkedRead bool
	idleFn      func() // backToIdle, made once
	// held is the exchange Do returned, kept (client loop only) until the
	// client connection goes back to idle or closes, where it is released
	// (upstream.Exchange.Release) after the last use of pc.x there: OnClose
	// and badRequest may still cancel it up to then, on this same loop.
	held *upstream.Exchange

	mu          sync.Mutex // guards the fields below
	phase       uint8
	x           *upstream.Exchange
	reqDone     bool // request body fully forwarded
	keepAlive   bool // the client may send another request
	respStarted bool
	// answered says the proxy wrote a response of its own (an error or a
	// refusal) to this request: at most one goes out, whichever of
	// badRequest and OnDone comes first.
	answered    bool
	respChunked bool // re-chunking the body for the client
	closeAfter  bool // close the client connection after the response
	// eofHold keeps a client that half-closed after its request open
	// until its response is written (OnEOF); nil otherwise. finishing:
	// OnDone is writing the response.
	eofHold   func()
	finishing bool
	minor     int // the client's HTTP minor version
	method    string
	// interim counts the interim responses passed on for this request.
	interim interimBudget
}

var (
	_ engine.Handler          = (*pconn)(nil)
	_ engine.CloseHandler     = (*pconn)(nil)
	_ engine.TimeoutHandler   = (*pconn)(nil)
	_ engine.DrainHandler     = (*pconn)(nil)
	_ engine.EOFHandler       = (*pconn)(nil)
	_ engine.InlineHandler    = (*pconn)(nil)
	_ upstream.UpgradeHandler = (*pconn)(nil)
	_ upstream.InterimHandler = (*pconn)(nil)
	_ upstream.TrailerHandler = (*pconn)(nil)
)

func (pc *pconn) Inline() bool     { return true }
func (pc *pconn) Protocol() string { return ProtocolName }

// OnData parses a request head and forwards the body.
func (pc *pconn) OnData(c *engine.Conn, in []byte) int {
	used := 0
	for used < len(in) {
		pc.mu.Lock()
		ph := pc.phase
		pc.mu.Unlock()
		switch ph {
		case phHead:
			n, err := pc.parser.Parse(in[used:], &pc.req, &pc.p.cfg.Limits)
			if err != nil {
				pc.badRequest(err)
				return len(in)
			}
			if n == 0 {
				return used
			}
			if !pc.startRequest(in[used:used+n], n) {
				return len(in)
			}
			used += n
		case phBody:
			k, err := pc.forwardBody(in[used:])
			if err != nil {
				pc.badRequest(err)
				return len(in)
			}
			used += k
			if k == 0 {
				return used
			}
		default:
			return used // pipelined input waits for the response
		}
	}
	return used
}

// badRequest answers a malformed request and closes.
func (pc *pconn) badRequest(err error) {
	pc.p.st.badRequests.Add(1)
	pc.p.st.countHeadLimit(err, true)
	e, ok := err.(*http1.Error)
	if !ok {
		e = &http1.Error{Status: 400, Reason: err.Error()}
	}
	pc.mu.Lock()
	answer := !pc.respStarted && !pc.answered
	pc.answered = true
	x := pc.x
	pc.phase = phDone
	pc.mu.Unlock()
	// The answer goes out before the cancel: the exchange's OnDone (which
	// may run inside Cancel) then writes nothing and closes after it.
	if answer {
		pc.c.Write(pc.p.errorResponse(nil, e.Status, "bad_request", e.Reason, true))
	}
	if x != nil {
		x.Cancel()
	}
	pc.c.CloseWithReason(engine.ReasonProtocolError)
}

// startRequest forwards the head just parsed; it reports false when it
// answered the request itself.
func (pc *pconn) startRequest(raw []byte, n int) bool {
	p, req := pc.p, &pc.req
	if isConnect(req.Method) {
		pc.badRequest(errConnect)
		return false
	}
	hasBody := req.Chunked || req.ContentLength > 0
	if p.bodyLim >= 0 && req.ContentLength > p.bodyLim {
		pc.badRequest(http1.ErrBodyTooLarge)
		return false
	}
	upgrade := req.Upgrade != nil
	pc.head = pc.appendUpstreamHead(pc.head[:0], upgrade)
	pc.chunked, pc.remain = req.Chunked, req.ContentLength
	if req.Chunked {
		pc.chunkedRead = true
		// The trailer section is bounded as the head is.
		pc.chunk.Reset(&http1.Limits{MaxBodyBytes: p.bodyLim, MaxHeaderBytes: p.cfg.Limits.MaxHeaderBytes, MaxHeaders: p.cfg.Limits.MaxHeaders})
	}
	pc.mu.Lock()
	pc.keepAlive = !req.Close
	pc.minor = req.ProtoMinor
	pc.method = methodString(req.Method)
	pc.respStarted, pc.respChunked, pc.closeAfter, pc.answered = false, false, false, false
	pc.interim = interimBudget{}
	pc.rtrail = pc.rtrail[:0]
	pc.reqDone = !hasBody
	switch {
	case upgrade:
		pc.phase = phUpgrade
	case hasBody:
		pc.phase = phBody
	default:
		pc.phase = phWait
	}
	pc.mu.Unlock()
	p.st.requests.Add(1)
	p.st.active.Add(1)
	// The request's time: OnData runs inline, so this is the client
	// loop's round time (engine.Conn.Now), no clock read.
	now := pc.c.Now()
	if p.perIP != nil || len(p.routes) > 0 {
		if le := p.checkLimits(pc.c.RemoteAddr().Addr().Unmap(), req, now, true); le != nil {
			pc.OnDone(nil, le) // as a refusal inside Do: answered, the connection kept when it can be
			return true
		}
	}
	r := upstream.Request{Method: pc.method, Head: pc.head, Stream: hasBody, Upgrade: upgrade, Handler: pc,
		Loop: pc.c.Loop(), Now: now}
	if p.cfg.HashClient {
		r.Key = p.hashKey(req, pc.c.RemoteAddr().Addr())
	}
	x := p.cl.Do(&r)
	pc.held = x
	pc.mu.Lock()
	if pc.phase != phDone && pc.x == nil && !pc.respDoneLocked() {
		pc.x = x
	}
	pc.mu.Unlock()
	return true
}

// hashKey is req's key for a ring hash or Maglev cluster (HashClient):
// Config.HashHeader's value when req has one, else the client's address.
func (p *Proxy) hashKey(req *http1.Request, client netip.Addr) uint64 {
	if p.cfg.HashHeader != "" {
		if v := req.Header(p.cfg.HashHeader); len(v) > 0 {
			return upstream.HashKey(string(v))
		}
	}
	return upstream.HashKey(client.String())
}

// errConnect refuses CONNECT: the proxy forwards requests to its
// cluster, it does not open tunnels (a backend that is itself a forward
// proxy would otherwise be reachable through it), and a 2xx to a CONNECT
// is not spliced.
var errConnect = &http1.Error{Status: 405, Reason: "CONNECT is not proxied"}

// isConnect reports whether m is CONNECT.
func isConnect(m []byte) bool { return len(m) == 7 && string(m) == "CONNECT" }

// appendTarget writes the request-target for the backend: as received,
// but an absolute-form target (RFC 9112 §3.2.2) in origin-form, its
// authority going to the Host field instead (absoluteForm).
func appendTarget(b []byte, req *http1.Request) []byte {
	if !absoluteForm(req) {
		return append(b, req.Target...)
	}
	b = append(b, req.Path...)
	if req.RawQuery != nil {
		b = append(b, '?')
		b = append(b, req.RawQuery...)
	}
	return b
}

// absoluteForm reports a request-target in absolute-form: req.Host is
// then the target's authority, which replaces any Host field received
// (the origin server must ignore that one, RFC 9112 §3.2.2).
func absoluteForm(req *http1.Request) bool {
	return req.Target[0] != '/' && len(req.Path) > 0 && req.Path[0] == '/'
}

// methodString returns m as a string, without allocating for the
// common methods.
func methodString(m []byte) string {
	switch string(m) { // no allocation: the compiler compares in place
	case "GET":
		return "GET"
	case "HEAD":
		return "HEAD"
	case "POST":
		return "POST"
	case "PUT":
		return "PUT"
	case "DELETE":
		return "DELETE"
	case "OPTIONS":
		return "OPTIONS"
	case "PATCH":
		return "PATCH"
	}
	return string(m)
}

// respDoneLocked reports whether the exchange already ended (OnDone ran
// inside Do).
func (pc *pconn) respDoneLocked() bool { return pc.phase == phIdle || pc.phase == phDone }

// forwardBody forwards request body bytes at the start of in, raw (chunked
// coding as received); it returns how many it consumed.
func (pc *pconn) forwardBody(in []byte) (int, error) {
	var n, held int
	var done bool
	if pc.chunked {
		tb0 := pc.chunk.TrailerBytes()
		for n < len(in) {
			k, _, d, err := pc.chunk.Next(in[n:])
			if err != nil {
				return 0, err
			}
			n += k
			if d {
				done = true
				break
			}
			if k == 0 {
				break
			}
		}
		// The trailer section's bytes are the last ones consumed: held
		// back, and sent rendered from the fields kept (below) unless it
		// came whole in this piece with nothing to remove.
		held = pc.chunk.TrailerBytes() - tb0
		if done && tb0 == 0 && !dropsTrailer(pc.chunk.Trailers(), pc.reqOpts) {
			held = 0
		}
	} else {
		n = int(min(int64(len(in)), pc.remain))
		pc.remain -= int64(n)
		done = pc.remain == 0
	}
	pc.mu.Lock()
	x := pc.x
	pc.mu.Unlock()
	if x == nil {
		// The exchange ended (a refusal answered the client); drop the
		// body and close after it.
		if done {
			pc.mu.Lock()
			pc.phase = phDone
			pc.mu.Unlock()
			pc.c.Close()
		}
		return n, nil
	}
	if done {
		// Forwarded in full before the last bytes go out: the response
		// may complete on the backend's loop as soon as they do, and its
		// OnDone must find the request done (else it closes this
		// connection, and the client's next request meets a reset), as
		// the exchange must find its body ended (WriteEnd; else the
		// backend connection is closed rather than reused).
		pc.mu.Lock()
		pc.reqDone = true
		if pc.phase == phBody {
			pc.phase = phWait
		}
		pc.mu.Unlock()
		if held == 0 {
			x.WriteEnd(in[:n])
		} else {
			if n > held {
				x.Write(in[:n-held])
			}
			x.WriteEnd(appendTrailerSection(nil, pc.chunk.Trailers(), pc.reqOpts, &pc.p.st.trailersDropped[trailerRequest]))
		}
	} else if n > held {
		x.Write(in[:n-held])
	}
	if x.Backlog() > pc.p.cfg.MaxBacklog {
		pc.c.PauseRead()
		pc.p.res.add(pc.c, func() bool { return x.Backlog() <= pc.p.cfg.MaxBacklog/4 })
	}
	return n, nil
}

// appendList appends the non-empty values of a list field received on
// one or more lines, each followed by ", " (the proxy's own element
// comes after them).
func appendList(b []byte, vals [][]byte) []byte {
	for _, v := range vals {
		if len(v) > 0 {
			b = append(b, v...)
			b = append(b, ", "...)
		}
	}
	return b
}

// hop reports whether a header field is hop-by-hop.
func hop(name []byte) bool {
	switch len(name) {
	case 2:
		return eq(name, "te")
	case 7:
		return eq(name, "trailer") || eq(name, "upgrade")
	case 10:
		return eq(name, "connection") || eq(name, "keep-alive")
	case 16:
		return eq(name, "proxy-connection")
	case 17:
		return eq(name, "transfer-encoding")
	case 18:
		return eq(name, "proxy-authenticate")
	case 19:
		return eq(name, "proxy-authorization")
	}
	return false
}

// eq compares b with the lower-case s, ignoring ASCII case.
func eq(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := range b {
		c := b[i]
		if 'A' <= c && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// listed reports whether name is one of the Connection header's options.
func listed(conn [][]byte, name []byte) bool {
	for _, o := range conn {
		if len(o) == len(name) && eqFold(o, name) {
			return true
		}
	}
	return false
}

func eqFold(a, b []byte) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		x, y := a[i], b[i]
		if 'A' <= x && x <= 'Z' {
			x += 'a' - 'A'
		}
		if 'A' <= y && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

// reqConnOptions appends to dst the options req's Connection fields name
// (connOptions of each).
func reqConnOptions(dst [][]byte, req *http1.Request) [][]byte {
	for _, h := range req.Headers() {
		if eq(h.Name, "connection") {
			dst = connOptions(dst, h.Value)
		}
	}
	return dst
}

// respConnOptions is reqConnOptions for a response.
func respConnOptions(dst [][]byte, resp *http1.Response) [][]byte {
	if !resp.HasConnectionField() {
		return dst // no field to scan the head for
	}
	for h := range resp.Headers() {
		if eq(h.Name, "connection") {
			dst = connOptions(dst, h.Value)
		}
	}
	return dst
}

// connOptions splits a Connection header value into its options.
func connOptions(dst [][]byte, v []byte) [][]byte {
	for len(v) > 0 {
		i := 0
		for i < len(v) && v[i] != ',' {
			i++
		}
		o := trim(v[:i])
		if len(o) > 0 && !eq(o, "close") && !eq(o, "keep-alive") && !eq(o, "upgrade") {
			dst = append(dst, o)
		}
		if i == len(v) {
			break
		}
		v = v[i+1:]
	}
	return dst
}

func trim(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// appendUpstreamHead writes the request head for the backend.
func (pc *pconn) appendUpstreamHead(b []byte, upgrade bool) []byte {
	req := &pc.req
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = appendTarget(b, req)
	b = append(b, " HTTP/1.1\r\n"...)
	abs := absoluteForm(req)
	var optsBuf [4][]byte
	opts := reqConnOptions(optsBuf[:0], req)
	pc.reqOpts = pc.reqOpts.set(opts, req.Chunked)
	// X-Forwarded-For and Via may come on several field lines, one list
	// (RFC 9110 §5.3): all of them are kept, in order.
	var xffBuf, viaBuf [2][]byte
	xff, via := xffBuf[:0], viaBuf[:0]
	hostSeen, lengthSeen := false, false
	for _, h := range req.Headers() {
		switch {
		case eq(h.Name, "transfer-encoding"):
			// Kept: the body is forwarded as received.
		case req.Chunked && eq(h.Name, "trailer"):
			// Kept: the trailer fields it announces go on too.
		case upgrade && eq(h.Name, "upgrade"):
		case hop(h.Name) || listed(opts, h.Name):
			continue
		case eq(h.Name, "x-forwarded-for"):
			xff = append(xff, h.Value)
			continue
		case eq(h.Name, "x-forwarded-proto"):
			continue
		case eq(h.Name, "via"):
			via = append(via, h.Value)
			continue
		case eq(h.Name, "host"):
			if abs {
				continue
			}
			hostSeen = true
		case eq(h.Name, "content-length"):
			// Repeated or listed identical values (the parser refuses
			// different ones) go on as one field.
			if lengthSeen {
				continue
			}
			lengthSeen = true
			b = append(b, "Content-Length: "...)
			b = strconv.AppendInt(b, req.ContentLength, 10)
			b = append(b, "\r\n"...)
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if !hostSeen {
		// The target's authority, or (an HTTP/1.0 request without Host)
		// an empty Host, which HTTP/1.1 requires (RFC 9112 §3.2).
		b = append(b, "Host: "...)
		b = append(b, req.Host...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-For: "...)
	b = appendList(b, xff)
	if a := pc.c.RemoteAddr().Addr().Unmap(); a != pc.xffAddr || len(pc.xffText) == 0 {
		pc.xffAddr, pc.xffText = a, a.AppendTo(pc.xffText[:0])
	}
	b = append(b, pc.xffText...)
	if len(via) == 0 {
		b = append(b, pc.p.reqTailOf(pc.c)...)
	} else {
		b = append(b, "\r\nX-Forwarded-Proto: "...)
		b = append(b, pc.p.proto(pc.c)...)
		b = append(b, "\r\nVia: "...)
		b = appendList(b, via)
		b = append(b, pc.p.via...)
		b = append(b, "\r\n"...)
	}
	if upgrade {
		b = append(b, "Connection: Upgrade\r\n"...)
	}
	return append(b, "\r\n"...)
}

// OnInterim forwards an interim response (100 Continue, and 103 Early
// Hints when Config.MaxInterim opts in) to an HTTP/1.1 client, its
// hop-by-hop fields removed and Via added, within Config.MaxInterim and
// MaxInterimBytes; an HTTP/1.0 client gets none (RFC 9110 §15.2), and
// none is counted for it, passed on or dropped.
func (pc *pconn) OnInterim(x *upstream.Exchange, resp *http1.Response) {
	p := pc.p
	pc.mu.Lock()
	minor, answered, started := pc.minor, pc.answered, pc.respStarted
	pc.mu.Unlock()
	if minor != 1 || answered || started {
		return
	}
	b := appendInterim(nil, resp, p.via)
	pc.mu.Lock()
	ok := pc.interim.admit(&p.cfg, resp.StatusCode, len(b))
	pc.mu.Unlock()
	if !ok {
		p.st.interimDropped.Add(1)
		return
	}
	p.st.interim.Add(1)
	pc.c.Write(b)
}

// interimBudget counts the interim responses passed on to a client for
// one request. Its zero value is a request's start.
type interimBudget struct {
	continued bool // a 100 Continue went on
	n, bytes  int  // the other interim responses passed on, and their bytes
}

// admit reports whether an interim response with status code, size bytes
// long, goes on, and counts it. The first 100 Continue always does: a
// client that sent "Expect: 100-continue" waits for it before its body,
// and the backend waits for that body, so dropping it would stall both.
// Any other (and a repeated 100) goes on within Config.MaxInterim and
// MaxInterimBytes.
func (b *interimBudget) admit(cfg *Config, code, size int) bool {
	if code == 100 && !b.continued {
		b.continued = true
		return true
	}
	if b.n >= cfg.MaxInterim || b.bytes+size > cfg.MaxInterimBytes {
		return false
	}
	b.n++
	b.bytes += size
	return true
}

// appendInterim renders an interim response for the client: the
// backend's status and fields but the hop-by-hop ones, and Via.
func appendInterim(b []byte, resp *http1.Response, pvia []byte) []byte {
	b = append(b, "HTTP/1.1 "...)
	b = strconv.AppendInt(b, int64(resp.StatusCode), 10)
	b = append(b, ' ')
	b = append(b, resp.Reason...)
	b = append(b, "\r\n"...)
	var optsBuf [4][]byte
	opts := respConnOptions(optsBuf[:0], resp)
	var viaBuf [2][]byte
	via := viaBuf[:0]
	for h := range resp.Headers() {
		switch {
		case hop(h.Name) || listed(opts, h.Name) || eq(h.Name, "content-length"):
		case eq(h.Name, "via"):
			via = append(via, h.Value)
		default:
			b = append(b, h.Name...)
			b = append(b, ": "...)
			b = append(b, h.Value...)
			b = append(b, "\r\n"...)
		}
	}
	b = append(b, "Via: "...)
	b = appendList(b, via)
	b = append(b, pvia...)
	return append(b, "\r\n\r\n"...)
}

// OnResponse writes the response head to the client.
func (pc *pconn) OnResponse(x *upstream.Exchange, resp *http1.Response) {
	pc.mu.Lock()
	pc.respStarted = true
	minor := pc.minor
	closeAfter := !pc.keepAlive || pc.phase == phDone
	chunk := false
	switch resp.Framing {
	case http1.FramingChunked:
		if minor == 1 {
			chunk = true
		} else {
			closeAfter = true
		}
	case http1.FramingClose:
		if minor == 1 {
			chunk = true
		} else {
			closeAfter = true
		}
	}
	pc.respChunked, pc.closeAfter = chunk, closeAfter
	pc.mu.Unlock()

	b := pc.rhead[:0]
	// The parser gives a three-digit status code (100 to 999).
	code := resp.StatusCode
	b = append(b, 'H', 'T', 'T', 'P', '/', '1', '.', '0'+byte(min(minor, 1)), ' ',
		'0'+byte(code/100), '0'+byte(code/10%10), '0'+byte(code%10), ' ')
	b = append(b, resp.Reason...)
	b = append(b, "\r\n"...)
	var optsBuf [4][]byte
	opts := respConnOptions(optsBuf[:0], resp)
	// A chunked or close-delimited body is framed by the proxy itself: a
	// Content-Length beside it (RFC 9112 §6.3 lets Transfer-Encoding
	// override one) must not reach the client.
	// On a response without a body (HEAD, 204, 304) the Content-Length
	// goes on as the backend sent it, unless Transfer-Encoding overrode it
	// (the parser then reports none).
	dropLength := resp.Framing == http1.FramingChunked || resp.Framing == http1.FramingClose ||
		resp.Framing == http1.FramingNone && resp.ContentLength < 0
	// A chunked body's trailer fields go on to a client whose response is
	// chunked too, and so does the Trailer field announcing them.
	keepTrailer := chunk && resp.Framing == http1.FramingChunked
	pc.respOpts = pc.respOpts.set(opts, keepTrailer)
	var viaBuf [2][]byte
	via := viaBuf[:0]
	for h := range resp.Headers() {
		if keepTrailer && eq(h.Name, "trailer") {
			// kept
		} else if hop(h.Name) || listed(opts, h.Name) || dropLength && eq(h.Name, "content-length") {
			continue
		}
		if eq(h.Name, "via") {
			via = append(via, h.Value)
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if len(via) == 0 {
		b = append(b, pc.p.respVia...)
	} else {
		b = append(b, "Via: "...)
		b = appendList(b, via)
		b = append(b, pc.p.via...)
		b = append(b, "\r\n"...)
	}
	if chunk {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	}
	if closeAfter {
		b = append(b, "Connection: close\r\n"...)
	} else if minor == 0 {
		b = append(b, "Connection: keep-alive\r\n"...)
	}
	b = append(b, "\r\n"...)
	// The head goes out with the first piece of body, or at the end:
	// one write per small response instead of two.
	pc.rhead = b
	pc.headPending = true
	pc.p.st.countStatus(resp.StatusCode)
}

// OnBody forwards a piece of the response body.
func (pc *pconn) OnBody(x *upstream.Exchange, data []byte) {
	pc.mu.Lock()
	chunk := pc.respChunked
	pc.mu.Unlock()
	out := pc.wbufs[:0]
	if pc.headPending {
		out = append(out, pc.rhead)
		pc.headPending = false
	}
	if chunk {
		h := strconv.AppendInt(pc.chunkHdr[:0], int64(len(data)), 16)
		h = append(h, '\r', '\n')
		out = append(out, h, data, crlf)
	} else {
		out = append(out, data)
	}
	pc.c.Writev(out)
	clear(out)
	if pc.c.QueuedBytes() > pc.p.cfg.MaxBacklog {
		if uc := x.Conn(); uc != nil {
			uc.PauseRead()
			c := pc.c
			lim := pc.p.cfg.MaxBacklog / 4
			pc.p.res.add(uc, func() bool { return c.QueuedBytes() <= lim || c.State() == engine.StateClosed })
		}
	}
}

var (
	crlf      = []byte("\r\n")
	lastChunk = []byte("0\r\n\r\n")
)

// OnTrailers keeps a chunked response's trailer fields, but the
// hop-by-hop ones, for the end of a client response that is chunked too
// (OnDone writes them); an HTTP/1.0 client's response has no trailer
// section.
func (pc *pconn) OnTrailers(x *upstream.Exchange, tr []http1.Header) {
	pc.mu.Lock()
	chunk := pc.respChunked
	pc.mu.Unlock()
	if chunk {
		pc.rtrail = appendTrailerSection(append(pc.rtrail[:0], "0\r\n"...), tr, pc.respOpts, &pc.p.st.trailersDropped[trailerResponse])
	} else {
		// An HTTP/1.0 client's response has no trailer section: every
		// field is dropped for that.
		pc.p.st.trailersDropped[trailerResponse][dropNoSection].Add(uint64(len(tr)))
	}
}

// hopNames holds the connection options of a message head (the field
// names its Connection header lists), kept for its trailer section,
// where those fields are hop-by-hop too (RFC 9110 §7.6.1): each name
// followed by a comma. It is bounded by the head it came from, and empty,
// costing nothing, for the usual head without options; a reused one
// keeps its buffer.
type hopNames []byte

// set returns h holding opts when keep is true (the message has a
// trailer section to filter), empty otherwise.
func (h hopNames) set(opts [][]byte, keep bool) hopNames {
	h = h[:0]
	if !keep {
		return h
	}
	for _, o := range opts {
		h = append(h, o...)
		h = append(h, ',')
	}
	return h
}

// has reports whether name is one of the options.
func (h hopNames) has(name []byte) bool {
	for len(h) > 0 {
		i := 0
		for h[i] != ',' {
			i++
		}
		if eqFold(h[:i], name) {
			return true
		}
		h = h[i+1:]
	}
	return false
}

// dropsTrailer reports whether a trailer section has a field the proxy
// does not pass on.
func dropsTrailer(tr []http1.Header, opts hopNames) bool {
	for _, h := range tr {
		if !keptTrailer(h.Name, opts) {
			return true
		}
	}
	return false
}

// keptTrailer reports whether a trailer field goes on: not a hop-by-hop
// field (opts: the head's connection options), nor a control field.
func keptTrailer(name []byte, opts hopNames) bool {
	return trailerVerdict(name, opts) == keepTrailer
}

// trailerDrop is why a trailer field is not passed on: the reason label
// of warren_proxy_trailers_dropped_total.
type trailerDrop uint8

const (
	keepTrailer trailerDrop = iota // passed on, not counted
	// dropHopByHop: a hop-by-hop field, or one the head's Connection
	// field names (RFC 9110 §7.6.1).
	dropHopByHop
	// dropControl: a field that must not come in a trailer section
	// (controlField: framing, routing, authentication, forwarding...).
	dropControl
	// dropNoSection: the client's response can carry no trailer section
	// (an HTTP/1.0 client), so every field of the backend's is dropped.
	dropNoSection
	numTrailerDrops
)

// String returns the reason's label.
func (d trailerDrop) String() string {
	switch d {
	case dropHopByHop:
		return "hop_by_hop"
	case dropControl:
		return "control"
	case dropNoSection:
		return "no_trailer_section"
	}
	return "kept"
}

// The direction label of warren_proxy_trailers_dropped_total: a request's
// trailer fields (client to backend) or a response's (backend to client).
const (
	trailerRequest = iota
	trailerResponse
	numTrailerDirs
)

var trailerDirNames = [numTrailerDirs]string{"request", "response"}

// trailerVerdict says whether the trailer field name goes on, or why not.
func trailerVerdict(name []byte, opts hopNames) trailerDrop {
	switch {
	case hop(name) || opts.has(name):
		return dropHopByHop
	case controlField(name):
		return dropControl
	}
	return keepTrailer
}

// controlField reports whether a field must not come in a trailer
// section (RFC 9110 §6.5.1): framing (Content-Length), routing (Host),
// request modifiers (Cache-Control, Expect, Max-Forwards, Pragma, Range,
// If-*), authentication (Authorization, WWW-Authenticate, Cookie,
// Set-Cookie, Realm), response control (Age, Date, Expires, Location,
// Retry-After, Vary, Warning), content format (Content-Encoding,
// Content-Type, Content-Range), and the forwarding fields the proxy sets
// itself (X-Forwarded-*, Forwarded, Via). Hop-by-hop fields are hop's.
// A backend or client that merged such a trailer field into the head
// would take a spoofed Host, X-Forwarded-For or credentials.
func controlField(n []byte) bool {
	if len(n) > 3 && eq(n[:3], "if-") || len(n) > 12 && eq(n[:12], "x-forwarded-") {
		return true
	}
	switch len(n) {
	case 3:
		return eq(n, "age") || eq(n, "via")
	case 4:
		return eq(n, "host") || eq(n, "date") || eq(n, "vary")
	case 5:
		return eq(n, "range") || eq(n, "realm")
	case 6:
		return eq(n, "expect") || eq(n, "pragma") || eq(n, "cookie")
	case 7:
		return eq(n, "expires") || eq(n, "warning")
	case 8:
		return eq(n, "location")
	case 9:
		return eq(n, "forwarded")
	case 10:
		return eq(n, "set-cookie")
	case 11:
		return eq(n, "retry-after")
	case 12:
		return eq(n, "max-forwards") || eq(n, "content-type")
	case 13:
		return eq(n, "authorization") || eq(n, "cache-control") || eq(n, "content-range")
	case 14:
		return eq(n, "content-length")
	case 16:
		return eq(n, "content-encoding") || eq(n, "www-authenticate")
	}
	return false
}

// appendTrailerSection appends the trailer fields the proxy passes on and
// the empty line that ends the section, and counts those it drops in
// dropped, by reason.
func appendTrailerSection(b []byte, tr []http1.Header, opts hopNames, dropped *[numTrailerDrops]atomic.Uint64) []byte {
	for _, h := range tr {
		if v := trailerVerdict(h.Name, opts); v != keepTrailer {
			dropped[v].Add(1)
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// OnDone ends the response: the client connection goes back to idle, or
// closes; a failure before the response is answered with 502, 503 or 504.
func (pc *pconn) OnDone(x *upstream.Exchange, err error) {
	p := pc.p
	p.st.active.Add(-1)
	pc.mu.Lock()
	started, chunk, reqDone := pc.respStarted, pc.respChunked, pc.reqDone
	keep := pc.keepAlive && !pc.closeAfter && pc.phase != phDone
	minor := pc.minor
	pc.x = nil
	own := !pc.answered // no answer of the proxy's own went out yet
	if err != nil && !started {
		keep = keep && reqDone
		pc.answered = true
	}
	if !reqDone {
		keep = false // the rest of the request body is not worth reading
	}
	if keep {
		pc.phase = phIdle
	} else {
		pc.phase = phDone
	}
	// Until OnDone has written, a client's FIN must still be held
	// (OnEOF): the phase no longer says a response is coming. The hold,
	// whenever it was taken, is released when OnDone returns, after the
	// answer and any close were asked for.
	pc.finishing = true
	ended := false // endFinishing ran: pc may be another client's after the idle post
	defer func() {
		if !ended {
			pc.endFinishing()
		}
	}()
	pc.mu.Unlock()
	if err != nil && own {
		p.st.countHeadLimit(err, false)
	}
	c := pc.c
	switch {
	case err == nil:
		p.st.responses.Add(1)
		out := pc.wbufs[:0]
		if pc.headPending {
			out = append(out, pc.rhead)
			pc.headPending = false
		}
		if chunk && len(pc.rtrail) > 0 {
			out = append(out, pc.rtrail)
		} else if chunk {
			out = append(out, lastChunk)
		}
		if len(out) > 0 {
			c.Writev(out)
			clear(out)
		}
		pc.rtrail = pc.rtrail[:0]
	case !started && !own:
		// badRequest answered the client; the exchange it canceled
		// ends here.
	case !started && !reqDone && upstream.FailureOf(err) == upstream.FailTimeout:
		// The client had not sent its whole body when the request timed
		// out: its delay, not the backend's (the cluster does not hold it
		// against the backend either). Counted with the bad requests.
		p.st.badRequests.Add(1)
		c.Write(p.errorResponse(pc, 408, "body_timeout", err.Error(), true))
	case !started:
		p.st.errors.Add(1)
		if le, ok := err.(*limitError); ok {
			c.Write(p.limitResponse(le, !keep))
			break
		}
		f := upstream.FailureOf(err)
		p.st.countFailure(f)
		c.Write(p.errorResponse(pc, f.Status(), f.String(), err.Error(), !keep))
		_ = minor
	case pc.headPending:
		// The response broke before any of it went out (its head waits
		// for the first piece of body): answered as a failure before
		// the response, and closed (the backend's status was counted).
		pc.headPending = false
		p.st.errors.Add(1)
		f := upstream.FailureOf(err)
		p.st.countFailure(f)
		c.Write(p.errorResponse(pc, f.Status(), f.String(), err.Error(), true))
		c.Close()
		return
	default:
		// Cut short after the head was passed on: the client must see
		// the truncation.
		pc.headPending = false
		p.st.errors.Add(1)
		c.Abort(engine.ReasonIOError)
		return
	}
	if !keep {
		c.Close()
		return
	}
	// Back to idle on the client's loop; pipelined input left unconsumed
	// is handed to the idle handler at once.
	if pc.idleFn == nil {
		pc.idleFn = pc.backToIdle
	}
	// The answer is written: end the finishing (releasing a half-closed
	// client's hold) before the post, after which the client's loop may
	// release pc and give it to another client (review rv-upx2b).
	pc.endFinishing()
	ended = true
	c.Post(pc.idleFn)
}

// backToIdle makes the idle handler the client connection's again and
// returns pc to the pool; it runs on the client's loop.
func (pc *pconn) backToIdle() {
	pc.mu.Lock()
	ok := pc.phase == phIdle
	pc.mu.Unlock()
	if !ok {
		return
	}
	pc.c.SetHandler(pc.p.Handler())
	pc.release()
}

// release returns pc to the pool.
func (pc *pconn) release() {
	p := pc.p
	pc.releaseHeld()
	pc.parser.Reset()
	pc.req.Reset()
	loop := pc.c.Loop()
	pc.c = nil
	pc.mu.Lock()
	pc.x = nil
	pc.phase = phHead
	pc.reqDone, pc.keepAlive, pc.respStarted, pc.respChunked, pc.closeAfter, pc.answered = false, false, false, false, false, false
	pc.headPending = false
	pc.finishing = false
	if hold := pc.eofHold; hold != nil {
		pc.eofHold = nil
		hold()
	}
	pc.mu.Unlock()
	if cap(pc.head) > 16<<10 {
		pc.head = nil
	}
	if cap(pc.rhead) > 16<<10 {
		pc.rhead = nil
	}
	if cap(pc.rtrail) > 16<<10 {
		pc.rtrail = nil
	}
	p.putPC(pc, loop)
}

// OnUpgrade splices the client and the backend after a 101.
func (pc *pconn) OnUpgrade(x *upstream.Exchange, uc *engine.Conn, resp *http1.Response) {
	p := pc.p
	p.st.active.Add(-1)
	p.st.upgrades.Add(1)
	c := pc.c
	pc.mu.Lock()
	pc.x = nil
	pc.phase = phDone
	pc.mu.Unlock()
	c.Write(resp.Raw())
	p.st.countStatus(101)
	p.st.splices.Add(2) // two halves
	up := &splice{p: p, peer: c}
	down := &splice{p: p, peer: uc}
	uc.SetHandler(up)
	if !c.Post(func() { c.SetHandler(down) }) {
		uc.Close()
	}
}

// OnDrain (engine shutdown) lets a request in progress finish: its
// response goes out with Connection: close and the connection closes
// after it (the engine closes it at the drain deadline otherwise). A
// connection between requests is left to the engine, which closes it.
func (pc *pconn) OnDrain(c *engine.Conn) bool {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	switch pc.phase {
	case phBody, phWait, phUpgrade:
		pc.keepAlive = false
		return true
	}
	return false
}

// OnEOF keeps a client that half-closed its side after its whole request
// (RFC 9112 §9.6 lets it: some clients send, shut down and read) until
// its response is written, and closes after it; the engine would
// otherwise close it at once, with nothing in progress on its loop. A
// half-close before the request's end leaves the close to the engine
// (OnClose cancels the exchange).
func (pc *pconn) OnEOF(c *engine.Conn) {
	pc.mu.Lock()
	defer pc.mu.Unlock()
	if (pc.phase == phWait || pc.finishing) && pc.eofHold == nil {
		pc.keepAlive = false
		pc.eofHold = c.Hold()
	}
}

// endFinishing ends OnDone's writing and releases a half-closed client's
// hold, taken before or during it.
func (pc *pconn) endFinishing() {
	pc.mu.Lock()
	pc.finishing = false
	hold := pc.eofHold
	pc.eofHold = nil
	pc.mu.Unlock()
	if hold != nil {
		hold()
	}
}

// OnClose cancels the exchange of a client that went away.
func (pc *pconn) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	pc.mu.Lock()
	x := pc.x
	pc.x = nil
	pc.phase = phDone
	hold := pc.eofHold
	pc.eofHold = nil
	pc.mu.Unlock()
	if x != nil {
		x.Cancel()
	}
	if hold != nil {
		hold()
	}
	pc.releaseHeld()
}

// releaseHeld lets the cluster reuse the exchange of the request just
// served (upstream.Exchange.Release); client loop only.
func (pc *pconn) releaseHeld() {
	if pc.held != nil {
		pc.held.Release()
		pc.held = nil
	}
}

// OnTimeout keeps a client waiting for its response (the cluster's
// timeouts bound it); otherwise the idle or header timeout closes it, the
// latter with 408.
func (pc *pconn) OnTimeout(c *engine.Conn, r engine.CloseReason) bool {
	pc.mu.Lock()
	ph := pc.phase
	pc.mu.Unlock()
	switch ph {
	case phWait, phUpgrade, phBody:
		return true
	case phHead:
		if r == engine.ReasonReadTimeout && c.BytesIn() > 0 {
			c.Write(pc.p.errorResponse(nil, 408, "header_timeout", "request head not received in time", true))
		}
	}
	return false
}

// errorResponse renders a response the proxy answers itself.
func (p *Proxy) errorResponse(pc *pconn, status int, reason, detail string, close bool) []byte {
	return p.selfResponse(status, reason, -1, close)
}

// limitResponse is the 429 of a request over an inbound limit, with
// Retry-After from the bucket.
func (p *Proxy) limitResponse(le *limitError, close bool) []byte {
	return p.selfResponse(429, "rate_limited", retryAfterSeconds(le.retryAfter), close)
}

// selfResponse renders a response of the proxy's own: status, its reason
// in the reason header and the body, Retry-After when retryAfter is not
// negative.
func (p *Proxy) selfResponse(status int, reason string, retryAfter int64, close bool) []byte {
	body := http1.StatusText(status)
	if body == "" {
		body = "error"
	}
	body += ": " + reason + "\n"
	b := make([]byte, 0, 256)
	b = http1.AppendStatusLine(b, 1, status)
	b = append(b, "Content-Type: text/plain; charset=utf-8\r\n"...)
	if retryAfter >= 0 {
		b = append(b, "Retry-After: "...)
		b = strconv.AppendInt(b, retryAfter, 10)
		b = append(b, "\r\n"...)
	}
	b = append(b, p.reason...)
	b = append(b, ": "...)
	b = append(b, reason...)
	b = append(b, "\r\nVia: "...)
	b = append(b, p.via...)
	b = append(b, "\r\nContent-Length: "...)
	b = strconv.AppendInt(b, int64(len(body)), 10)
	if close {
		b = append(b, "\r\nConnection: close"...)
	}
	b = append(b, "\r\n\r\n"...)
	return append(b, body...)
}

// splice copies one direction of an upgraded connection pair: its OnData
// writes everything to the peer.
type splice struct {
	p    *Proxy
	peer *engine.Conn
}

func (s *splice) Inline() bool     { return true }
func (s *splice) Protocol() string { return "proxy_tunnel" }

func (s *splice) OnData(c *engine.Conn, in []byte) int {
	s.peer.Write(in)
	if s.peer.QueuedBytes() > s.p.cfg.MaxBacklog {
		c.PauseRead()
		peer, lim := s.peer, s.p.cfg.MaxBacklog/4
		s.p.res.add(c, func() bool { return peer.QueuedBytes() <= lim || peer.State() == engine.StateClosed })
	}
	return len(in)
}

func (s *splice) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	s.p.st.splices.Add(-1)
	s.peer.Close()
}

// OnTimeout keeps a tunnel open however quiet it is; the peers' own
// pings and the backend's timeouts govern it.
func (s *splice) OnTimeout(c *engine.Conn, r engine.CloseReason) bool { return true }

// resumer resumes connections paused for backpressure once their peer's
// queue has drained, checking every few milliseconds while any is paused.
type resumer struct {
	mu      sync.Mutex
	waiting []resumeEntry
	wake    chan struct{}
	quit    chan struct{}
	once    sync.Once
}

type resumeEntry struct {
	c     *engine.Conn
	ready func() bool
}

func (r *resumer) init(int) {
	r.wake = make(chan struct{}, 1)
	r.quit = make(chan struct{})
}

func (r *resumer) add(c *engine.Conn, ready func() bool) {
	r.once.Do(func() { go r.run() })
	r.mu.Lock()
	r.waiting = append(r.waiting, resumeEntry{c, ready})
	r.mu.Unlock()
	select {
	case r.wake <- struct{}{}:
	default:
	}
}

func (r *resumer) close() {
	select {
	case <-r.quit:
	default:
		close(r.quit)
	}
}

func (r *resumer) run() {
	t := time.NewTicker(2 * time.Millisecond)
	defer t.Stop()
	for {
		r.mu.Lock()
		n := len(r.waiting)
		r.mu.Unlock()
		if n == 0 {
			select {
			case <-r.wake:
			case <-r.quit:
				return
			}
		}
		select {
		case <-t.C:
		case <-r.quit:
			return
		}
		r.mu.Lock()
		keep := r.waiting[:0]
		var ready []*engine.Conn
		for _, e := range r.waiting {
			if e.ready() || e.c.State() == engine.StateClosed {
				ready = append(ready, e.c)
			} else {
				keep = append(keep, e)
			}
		}
		clear(r.waiting[len(keep):])
		r.waiting = keep
		r.mu.Unlock()
		for _, c := range ready {
			c.ResumeRead()
		}
	}
}

func (s *stats) countStatus(code int) {
	if k := code / 100; k >= 1 && k <= 5 {
		s.status[k].Add(1)
	}
}

func (s *stats) countFailure(f upstream.Failure) {
	v, _ := s.failures.LoadOrStore(f, new(atomic.Uint64))
	v.(*atomic.Uint64).Add(1)
}

// reqTailOf is reqTail or reqTailTLS, as proto(c) would choose.
func (p *Proxy) reqTailOf(c *engine.Conn) []byte {
	if p.protoAuto && c != nil && c.Transform() != nil {
		return p.reqTailTLS
	}
	return p.reqTail
}

// proto is the X-Forwarded-Proto value for a request from client
// connection c: Config.Proto, or, when that was left empty, "https" on a
// connection under TLS (one with a transform) and "http" otherwise.
func (p *Proxy) proto(c *engine.Conn) string {
	if p.protoAuto && c != nil && c.Transform() != nil {
		return "https"
	}
	return p.cfg.Proto
}
