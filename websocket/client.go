package websocket

import (
	"bytes"
	"context"
	"crypto/rand"
	"encoding/base64"
	"errors"
	"fmt"
	"net"
	"net/netip"
	"net/url"
	"strconv"
	"strings"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/pool"
)

// DefaultHandshakeTimeout is the HandshakeTimeout of a zero DialConfig.
const DefaultHandshakeTimeout = 10 * time.Second

// Errors of Dial and of dialled connections.
var (
	// ErrBadURL is returned by Dial for a URL that is not
	// ws://host[:port][/path][?query], or whose host does not resolve. It
	// is wrapped with the details.
	ErrBadURL = errors.New("websocket: bad URL")
	// ErrBadDialConfig is returned by NewClient and Dial for a DialConfig
	// that cannot make a valid request. It is wrapped with the details.
	ErrBadDialConfig = errors.New("websocket: bad DialConfig")
	// ErrHandshakeTimeout is given to ErrorHandler.OnError when the server
	// did not answer the handshake within DialConfig.HandshakeTimeout.
	ErrHandshakeTimeout = errors.New("websocket: handshake timed out")
	// ErrHandshakeClosed is given to ErrorHandler.OnError, wrapped with the
	// engine's close reason and error, when the connection ended after the
	// connect and before the server's answer: the server closed or reset
	// it, or the engine closed it.
	ErrHandshakeClosed = errors.New("websocket: connection closed during the handshake")
)

// DialConfig configures the connections of a Client (or of one Dial). The
// zero value is ready to use: every field documents what zero means.
type DialConfig struct {
	// Header holds extra request header fields, sent in order, such as
	// {"Authorization", "Bearer ..."} or {"Origin", "https://example.com"}.
	// A Host field replaces the URL's host in the Host header. The fields
	// the handshake sets itself (Upgrade, Connection, Sec-WebSocket-Key,
	// -Version, -Protocol and -Extensions) are refused with
	// ErrBadDialConfig; use Subprotocols and Deflate. Nil sends none.
	Header [][2]string

	// Subprotocols lists the subprotocols to offer, most preferred first,
	// in Sec-WebSocket-Protocol. The server's choice is Conn.Subprotocol;
	// a server that chooses one not offered fails the handshake. Empty
	// offers none.
	Subprotocols []string

	// Deflate offers permessage-deflate (RFC 7692) when Enabled; the
	// server decides. The zero value does not offer it. A client's
	// compressor with context takeover holds ~819 KB per connection at
	// level 1 (see the package documentation): set
	// ClientNoContextTakeover for many connections.
	Deflate DeflateConfig

	// DeflateThreshold is the smallest message WriteMessage compresses on
	// a connection that negotiated permessage-deflate. Zero means 128;
	// negative compresses every message.
	DeflateThreshold int

	// MaxMessageSize bounds a received message, summed over its fragments
	// and after decompression; a larger one fails the connection with
	// 1009 (message too big). Zero means 1 MiB; negative means no bound.
	MaxMessageSize int

	// HandshakeTimeout bounds the wait for the server's answer to the
	// upgrade request, from the moment the TCP connection is established:
	// past it the connection fails with ErrHandshakeTimeout. The connect
	// itself is bounded by the engine's WriteTimeout. Zero means 10 s;
	// negative leaves the handshake to the engine's idle and read
	// timeouts.
	HandshakeTimeout time.Duration

	// PingInterval is how long an open connection may be quiet before the
	// client sends a ping; a server that then sends nothing for a further
	// PingInterval is closed with engine.ReasonDeadPeer. Zero (or
	// negative) means no pings, and no idle or read timeout once the
	// connection is open: the server's own pings keep it alive, and a load
	// generator's idle connections cost the server nothing.
	PingInterval time.Duration

	// CloseTimeout bounds the close handshake: after the client's Close
	// (or its echo of the server's), it waits this long at most for the
	// server to close the TCP connection. Zero means 5 s. A close the
	// server has not answered (a protocol error, or this timeout) lingers
	// after it (engine.Conn.CloseLinger): up to the engine's WriteTimeout
	// while the output flushes, then its LingerTimeout (2 s by default).
	// OnClose does not wait for the linger.
	CloseTimeout time.Duration

	// Inline runs the handler's callbacks on the event loop, with no
	// hand-off and no copy, for handlers that never block. Zero means the
	// engine's worker pool, one callback at a time per connection and in
	// order, as for a Server (Config.Inline).
	Inline bool

	// LocalAddr is the source address connections are made from, with the
	// port chosen at connect time. The zero value lets the kernel choose.
	LocalAddr netip.Addr

	// WrapConn, when set, wraps the handler each dialled connection starts
	// with: a TLS layer (tlsx.Client.Handler), which hands the connection
	// to the WebSocket handshake once its own is done. wss:// URLs need
	// it; nil dials plain TCP.
	WrapConn func(engine.Handler) engine.Handler
}

// HandshakeError is a dialled connection's handshake that the server
// answered with something else than a valid 101: it refused the upgrade
// (any status but 101), sent a 101 that fails a check, or a malformed
// response. It is given to ErrorHandler.OnError.
type HandshakeError struct {
	// StatusCode is the response's status: 101 for a Switching Protocols
	// response that failed a check, another code for a refusal, 0 for a
	// malformed response.
	StatusCode int
	// Reason says what was wrong: the status line's code and phrase for a
	// refusal ("403 Forbidden"), else the failed check ("wrong
	// Sec-WebSocket-Accept").
	Reason string
	// Header holds a refusal's header fields, in order (Retry-After,
	// WWW-Authenticate, ...); nil otherwise.
	Header [][2]string
	// Body holds the start of a refusal's body, at most 512 bytes.
	Body []byte
	// Err is the underlying error, if any: the response parser's for a
	// malformed response.
	Err error
}

// Error returns "websocket: handshake refused: 403 Forbidden: <first line
// of the body>" for a refusal, "websocket: bad handshake: <reason>"
// otherwise, followed by Err.
func (e *HandshakeError) Error() string {
	var b strings.Builder
	if e.StatusCode != 0 && e.StatusCode != 101 {
		b.WriteString("websocket: handshake refused: ")
	} else {
		b.WriteString("websocket: bad handshake: ")
	}
	b.WriteString(e.Reason)
	if line, _, _ := bytes.Cut(bytes.TrimSpace(e.Body), []byte("\n")); len(line) > 0 {
		b.WriteString(": ")
		b.Write(line[:min(len(line), 200)])
	}
	if e.Err != nil {
		b.WriteString(": ")
		b.WriteString(e.Err.Error())
	}
	return b.String()
}

// Unwrap returns e.Err.
func (e *HandshakeError) Unwrap() error { return e.Err }

// HeaderValue returns the value of the first field of a refusal's header
// named name (ASCII case-insensitive), or "".
func (e *HandshakeError) HeaderValue(name string) string {
	for _, h := range e.Header {
		if strings.EqualFold(h[0], name) {
			return h[1]
		}
	}
	return ""
}

// maxRefusalBody bounds the body kept from a refused handshake.
const maxRefusalBody = 512

// Client dials WebSocket connections on an engine's event loops. Its
// connections share its configuration, handler and counters, so that
// each costs only its Conn (the load generator holds 120,000 of them). A
// Client is safe for concurrent use.
//
// A dialled connection is a Conn like a server's, with the same methods
// and callbacks; it masks the frames it sends with a fresh key per frame
// (NewMask) and requires the server's frames unmasked. An idle one holds
// no goroutine, no buffer, no Reader and no timer object.
type Client struct {
	e         *engine.Engine
	srv       Server // configuration, handler and counters of the connections
	local     netip.Addr
	hsTimeout time.Duration
	host      string                              // Host header replacing the URL's, or ""
	extra     []byte                              // request lines after Sec-WebSocket-Version, each ending in CRLF
	wrap      func(engine.Handler) engine.Handler // DialConfig.WrapConn
}

// NewClient returns a client that dials connections on e, configured by
// cfg, whose messages and events go to h. e must be started
// (engine.Start("") starts its loops without a listener). It fails with
// ErrBadDialConfig for a header field or subprotocol that cannot be sent.
func NewClient(e *engine.Engine, cfg DialConfig, h Handler) (*Client, error) {
	if h == nil {
		panic("websocket: nil Handler")
	}
	if e == nil {
		return nil, fmt.Errorf("%w: nil engine", ErrBadDialConfig)
	}
	cl := &Client{e: e, local: cfg.LocalAddr, hsTimeout: cfg.HandshakeTimeout, wrap: cfg.WrapConn}
	if cl.hsTimeout == 0 {
		cl.hsTimeout = DefaultHandshakeTimeout
	}
	ping := cfg.PingInterval
	if ping <= 0 {
		ping = -1
	}
	cl.srv.cfg = Config{
		Subprotocols:     cfg.Subprotocols,
		MaxMessageSize:   cfg.MaxMessageSize,
		PingInterval:     ping,
		CloseTimeout:     cfg.CloseTimeout,
		Deflate:          cfg.Deflate,
		DeflateThreshold: cfg.DeflateThreshold,
		Inline:           cfg.Inline,
	}.withDefaults()
	cl.srv.client = true
	cl.srv.setHandler(h)

	if len(cfg.Subprotocols) > 255 {
		return nil, fmt.Errorf("%w: more than 255 subprotocols", ErrBadDialConfig)
	}
	if len(cfg.Subprotocols) > 0 {
		cl.extra = append(cl.extra, "Sec-WebSocket-Protocol: "...)
		for i, p := range cfg.Subprotocols {
			if !http1.IsToken(p) {
				return nil, fmt.Errorf("%w: subprotocol %q is not a token", ErrBadDialConfig, p)
			}
			if i > 0 {
				cl.extra = append(cl.extra, ", "...)
			}
			cl.extra = append(cl.extra, p...)
		}
		cl.extra = append(cl.extra, "\r\n"...)
	}
	if cfg.Deflate.Enabled {
		cl.extra = append(cl.extra, "Sec-WebSocket-Extensions: "...)
		cl.extra = cfg.Deflate.AppendOffer(cl.extra)
		cl.extra = append(cl.extra, "\r\n"...)
	}
	for _, f := range cfg.Header {
		name, value := f[0], f[1]
		if !http1.IsToken(name) || strings.ContainsAny(value, "\r\n\x00") {
			return nil, fmt.Errorf("%w: header field %q", ErrBadDialConfig, name)
		}
		switch strings.ToLower(name) {
		case "upgrade", "connection", "sec-websocket-key", "sec-websocket-version",
			"sec-websocket-protocol", "sec-websocket-extensions":
			return nil, fmt.Errorf("%w: the handshake sets %s itself", ErrBadDialConfig, name)
		case "host":
			cl.host = value
			continue
		}
		cl.extra = append(cl.extra, name...)
		cl.extra = append(cl.extra, ": "...)
		cl.extra = append(cl.extra, value...)
		cl.extra = append(cl.extra, "\r\n"...)
	}
	return cl, nil
}

// Dial opens a WebSocket connection to rawURL (ws://host[:port]/path?query)
// on e's event loops, configured by cfg, with h for its messages and
// events. It is NewClient followed by Client.Dial; a program that opens
// many connections with one configuration should keep a Client, whose
// connections share it.
func Dial(e *engine.Engine, rawURL string, cfg DialConfig, h Handler) (*Conn, error) {
	cl, err := NewClient(e, cfg, h)
	if err != nil {
		return nil, err
	}
	return cl.Dial(rawURL)
}

// Dial opens a WebSocket connection to rawURL: ws://host[:port][/path]
// [?query], port 80 by default. It does not wait: it returns the Conn as
// soon as the connect has started (on the portable engine, once it is
// established), and the handshake goes on on the event loop. OnOpen runs
// once the server's 101 response has been checked (status, Upgrade,
// Connection, Sec-WebSocket-Accept, subprotocol and extensions); until
// then writes fail with ErrNotOpen. A connection that fails before that
// gets OnError with the reason (see ErrorHandler), then OnClose, and
// never OnOpen. Callbacks may run before Dial returns; DialWith attaches a
// value first.
//
// An error from Dial itself means no connection and no callback: a bad
// URL or configuration (ErrBadURL, ErrBadDialConfig), or one of
// engine.DialHandler's errors. A host that is not an IP address is
// resolved with net.DefaultResolver, which blocks for up to the handshake
// timeout: do not dial host names from the event loop. wss:// is not
// supported, as the engine does not speak TLS. Dial is safe for
// concurrent use.
func (cl *Client) Dial(rawURL string) (*Conn, error) { return cl.DialWith(rawURL, nil) }

// DialWith is Dial with value stored on the connection (Conn.SetContext)
// before any callback can run.
func (cl *Client) DialWith(rawURL string, value any) (*Conn, error) {
	t, err := parseTarget(rawURL, cl.hsTimeout)
	if err != nil {
		return nil, err
	}
	if t.tls && cl.wrap == nil {
		return nil, fmt.Errorf("%w: %s: wss:// needs DialConfig.WrapConn (a TLS layer)", ErrBadURL, rawURL)
	}
	hs := &handshake{cl: cl}
	newKey(&hs.key)
	c := &Conn{srv: &cl.srv, dialing: true, ctx: value}
	hs.c = c
	host := t.host
	if cl.host != "" {
		host = cl.host
	}
	b := pool.Get(256 + len(t.uri) + len(host) + len(cl.extra))[:0]
	b = append(b, "GET "...)
	b = append(b, t.uri...)
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, hs.key[:]...)
	b = append(b, "\r\nSec-WebSocket-Version: 13\r\n"...)
	b = append(b, cl.extra...)
	hs.req = append(b, "\r\n"...)
	// The handshake's callbacks take c.mu before they use c.ec, so they
	// see it set even when they win the race with DialHandler's return.
	c.mu.Lock()
	var first engine.Handler = hs
	if cl.wrap != nil {
		first = cl.wrap(hs)
	}
	ec, err := cl.e.DialHandler(t.addr, cl.local, first)
	if err != nil {
		c.mu.Unlock()
		pool.Put(hs.req)
		return nil, fmt.Errorf("websocket: dial %s: %w", rawURL, err)
	}
	c.ec = ec
	c.mu.Unlock()
	return c, nil
}

// Stats returns a snapshot of the counters of the client's connections.
// Upgrades counts handshakes completed, Refused handshakes that failed
// once connected (refused, invalid, timed out or cut short), PingsSent the
// client's pings and ProtocolErrors the servers' violations.
func (cl *Client) Stats() Stats { return cl.srv.Stats() }

// target is a parsed, resolved WebSocket URL.
type target struct {
	addr netip.AddrPort
	host string // Host header: the URL's host[:port]
	uri  string // request target: path and query
	tls  bool   // wss://
}

// parseTarget parses rawURL and resolves its host, waiting at most
// timeout (when positive) for a name.
func parseTarget(rawURL string, timeout time.Duration) (target, error) {
	u, err := url.Parse(rawURL)
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	switch {
	case u.Scheme != "ws" && u.Scheme != "wss":
		return target{}, fmt.Errorf("%w: %s: the scheme must be ws:// or wss://", ErrBadURL, rawURL)
	case u.Hostname() == "":
		return target{}, fmt.Errorf("%w: %s: no host", ErrBadURL, rawURL)
	case u.Fragment != "" || strings.Contains(rawURL, "#"):
		return target{}, fmt.Errorf("%w: %s: a WebSocket URL has no fragment", ErrBadURL, rawURL)
	}
	port := uint16(80)
	if u.Scheme == "wss" {
		port = 443
	}
	if p := u.Port(); p != "" {
		n, err := strconv.ParseUint(p, 10, 16)
		if err != nil || n == 0 {
			return target{}, fmt.Errorf("%w: %s: bad port", ErrBadURL, rawURL)
		}
		port = uint16(n)
	}
	ip, err := resolve(u.Hostname(), timeout)
	if err != nil {
		return target{}, fmt.Errorf("%w: %s: %v", ErrBadURL, rawURL, err)
	}
	return target{addr: netip.AddrPortFrom(ip, port), host: u.Host, uri: u.RequestURI(), tls: u.Scheme == "wss"}, nil
}

// resolve returns host's address: host itself when it is an IP address,
// else the first IPv4 address the resolver gives, or its first.
func resolve(host string, timeout time.Duration) (netip.Addr, error) {
	if ip, err := netip.ParseAddr(host); err == nil {
		return ip, nil
	}
	ctx := context.Background()
	if timeout > 0 {
		var cancel context.CancelFunc
		ctx, cancel = context.WithTimeout(ctx, timeout)
		defer cancel()
	}
	ips, err := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
	if err != nil {
		return netip.Addr{}, err
	}
	for _, ip := range ips {
		if ip.Unmap().Is4() {
			return ip.Unmap(), nil
		}
	}
	if len(ips) == 0 {
		return netip.Addr{}, fmt.Errorf("no address for %s", host)
	}
	return ips[0], nil
}

// newKey fills key with a random Sec-WebSocket-Key: 16 bytes from
// crypto/rand, base64-encoded, without allocating.
func newKey(key *[24]byte) {
	var raw [16]byte
	_, _ = rand.Read(raw[:]) // never fails; see crypto/rand.Read
	base64.StdEncoding.Encode(key[:], raw[:])
}

// handshake is a dialled connection's engine handler from the connect to
// the server's answer: it writes the upgrade request, parses and checks
// the response, then hands the connection to its Conn
// (engine.Conn.SetHandler) and is dropped, so an open connection keeps
// none of it.
type handshake struct {
	cl        *Client
	c         *Conn
	req       []byte // the request, until OnOpen writes it; pooled
	key       [24]byte
	p         http1.ResponseParser
	refused   *HandshakeError // a refusal whose body is being read
	err       error           // why the handshake failed
	connected bool            // OnOpen ran: the TCP connection was made
	over      bool            // the handshake failed: input is discarded
}

var (
	_ engine.OpenHandler    = (*handshake)(nil)
	_ engine.CloseHandler   = (*handshake)(nil)
	_ engine.TimeoutHandler = (*handshake)(nil)
	_ engine.InlineHandler  = (*handshake)(nil)
	_ engine.ProtocolNamer  = (*handshake)(nil)
)

// Inline says the handshake runs on the event loop.
func (h *handshake) Inline() bool { return true }

// Protocol names the connection for the engine's introspection.
func (h *handshake) Protocol() string { return ProtocolName }

// OnOpen sends the upgrade request once connected and starts the
// handshake timeout.
func (h *handshake) OnOpen(ec *engine.Conn) {
	h.connected = true
	if d := h.cl.hsTimeout; d > 0 {
		ec.SetIdleTimeout(d)
		ec.SetReadTimeout(d)
	}
	ec.Write(h.req) // on error the engine is closing ec: OnClose follows
	pool.Put(h.req)
	h.req = nil
}

// OnData parses the response to the upgrade request.
func (h *handshake) OnData(ec *engine.Conn, in []byte) int {
	if h.over {
		return len(in)
	}
	if h.refused != nil {
		return h.readBody(ec, in)
	}
	used := 0
	for {
		var resp http1.Response
		n, err := h.p.Parse(in[used:], "GET", &resp, nil)
		if err != nil {
			h.fail(ec, &HandshakeError{Reason: "malformed response", Err: err})
			return len(in)
		}
		if n == 0 {
			return used
		}
		used += n
		switch {
		case resp.StatusCode == 101:
			if !h.upgrade(ec, &resp) {
				return len(in)
			}
			return used // what follows is the Conn's, redelivered to it
		case resp.StatusCode < 200:
			continue // an interim response (100, 103): the answer follows
		}
		e := &HandshakeError{StatusCode: resp.StatusCode, Reason: strconv.Itoa(resp.StatusCode)}
		if len(resp.Reason) > 0 {
			e.Reason += " " + string(resp.Reason)
		}
		for f := range resp.Headers() {
			e.Header = append(e.Header, [2]string{string(f.Name), string(f.Value)})
		}
		h.refused = e
		return used + h.readBody(ec, in[used:])
	}
}

// readBody keeps the start of a refusal's body, then fails the handshake
// with it.
func (h *handshake) readBody(ec *engine.Conn, in []byte) int {
	used := 0
	for h.p.InBody() && len(h.refused.Body) < maxRefusalBody {
		n, data, done, err := h.p.Body(in[used:])
		used += n
		h.refused.Body = append(h.refused.Body, data[:min(len(data), maxRefusalBody-len(h.refused.Body))]...)
		if err != nil || done {
			break
		}
		if n == 0 {
			return used // more is coming; the close or the timeout ends the wait
		}
	}
	h.fail(ec, h.refused)
	return len(in)
}

// fail ends the handshake with err.
func (h *handshake) fail(ec *engine.Conn, err error) {
	h.over, h.err = true, err
	ec.Abort(engine.ReasonProtocolError)
}

// upgrade checks a 101 response and, when it is right, opens the
// connection: the Conn becomes the engine connection's handler. It
// reports false when the handshake failed instead.
func (h *handshake) upgrade(ec *engine.Conn, resp *http1.Response) bool {
	sub, params, deflate, err := h.cl.checkResponse(resp, h.key[:])
	if err != nil {
		h.fail(ec, err)
		return false
	}
	c, s := h.c, &h.cl.srv
	c.mu.Lock()
	if c.closeSent { // Close during the dial
		c.mu.Unlock()
		h.over = true
		ec.Abort(engine.ReasonLocal)
		return false
	}
	c.dialing = false
	c.sub = sub
	if deflate {
		c.cmp = newCompression(params, s.cfg.Deflate.Level, RoleClient)
	}
	c.mu.Unlock()
	h.over = true
	ec.SetHandler((*proto)(c))
	if d := s.cfg.PingInterval; d > 0 {
		ec.SetIdleTimeout(d)
		ec.SetReadTimeout(d)
	} else {
		ec.SetIdleTimeout(-1)
		ec.SetReadTimeout(-1)
	}
	s.stats.upgrades.Add(1)
	s.stats.open.Add(1)
	if s.hOpen != nil {
		if s.cfg.Inline {
			// Messages written in OnOpen leave in one write.
			c.cork()
			s.hOpen.OnOpen(c)
			c.uncork()
		} else {
			c.run(func() { s.hOpen.OnOpen(c) })
		}
	}
	return true
}

// checkResponse validates a 101 response to a handshake sent with
// Sec-WebSocket-Key key (RFC 6455 §4.2.2, §4.1 steps 1-6 of the client's
// checks). It returns the chosen subprotocol as 1 + its index in the
// offer (0 for none) and the permessage-deflate parameters, if agreed.
func (cl *Client) checkResponse(resp *http1.Response, key []byte) (sub uint8, p DeflateParams, deflate bool, err error) {
	bad := func(reason string, err error) (uint8, DeflateParams, bool, error) {
		return 0, DeflateParams{}, false, &HandshakeError{StatusCode: 101, Reason: reason, Err: err}
	}
	if resp.ProtoMinor != 1 || resp.ProtoMajor != 1 {
		return bad("101 response on HTTP/1.0", nil)
	}
	var upgrade, connection bool
	var accept, proto []byte
	var exts [4][]byte
	nexts, nprotos := 0, 0
	for f := range resp.Headers() {
		switch n := f.Name; {
		case asciiEqualFold(n, "Upgrade"):
			upgrade = upgrade || HeaderContainsToken(f.Value, "websocket")
		case asciiEqualFold(n, "Connection"):
			connection = connection || HeaderContainsToken(f.Value, "upgrade")
		case asciiEqualFold(n, "Sec-WebSocket-Accept"):
			accept = f.Value
		case asciiEqualFold(n, "Sec-WebSocket-Protocol"):
			proto = f.Value
			nprotos++
		case asciiEqualFold(n, "Sec-WebSocket-Extensions"):
			if nexts == len(exts) {
				return bad("too many Sec-WebSocket-Extensions fields", nil)
			}
			exts[nexts] = f.Value
			nexts++
		}
	}
	switch {
	case !upgrade:
		return bad("response lacks Upgrade: websocket", nil)
	case !connection:
		return bad("response lacks Connection: Upgrade", nil)
	}
	var want [28]byte
	if !bytes.Equal(accept, AppendAcceptKey(want[:0], key)) {
		return bad("wrong Sec-WebSocket-Accept", nil)
	}
	if nprotos > 1 {
		return bad("more than one Sec-WebSocket-Protocol", nil)
	}
	if nprotos == 1 {
		for i, o := range cl.srv.cfg.Subprotocols {
			if string(proto) == o {
				sub = uint8(i + 1)
			}
		}
		if sub == 0 {
			return bad(fmt.Sprintf("server chose subprotocol %q, which was not offered", proto), nil)
		}
	}
	if nexts > 0 {
		p, deflate, err = ParseDeflateResponse(exts[:nexts]...)
		switch {
		case err != nil:
			return bad("bad Sec-WebSocket-Extensions", err)
		case deflate && !cl.srv.cfg.Deflate.Enabled:
			return bad("server chose permessage-deflate, which was not offered", nil)
		}
	}
	return sub, p, deflate, nil
}

// OnTimeout fails a handshake the server did not answer in time.
func (h *handshake) OnTimeout(ec *engine.Conn, _ engine.CloseReason) bool {
	if h.refused != nil {
		h.err = h.refused // the body did not come: the head says enough
	} else if h.err == nil {
		h.err = ErrHandshakeTimeout
	}
	h.over = true
	return false
}

// OnClose ends a dial that never opened: it tells the handler why.
func (h *handshake) OnClose(ec *engine.Conn, reason engine.CloseReason, err error) {
	if h.req != nil {
		pool.Put(h.req)
		h.req = nil
	}
	c, s := h.c, &h.cl.srv
	c.mu.Lock()
	c.closed = true
	cancelled := c.closeSent
	c.mu.Unlock()
	switch {
	case h.err != nil:
		err = h.err
	case h.refused != nil:
		err = h.refused
	case cancelled:
		err = nil // the application's own Close
	case !h.connected:
		if err == nil {
			err = errors.New(reason.String())
		}
		err = fmt.Errorf("websocket: dial %s: %w", ec.RemoteAddr(), err)
	case err != nil:
		err = fmt.Errorf("%w (%s): %w", ErrHandshakeClosed, reason, err)
	default:
		err = fmt.Errorf("%w (%s)", ErrHandshakeClosed, reason)
	}
	if h.connected && !cancelled {
		s.stats.refused.Add(1)
	}
	c.finish(reason, CloseAbnormal, err)
}
