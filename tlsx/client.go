package tlsx

import (
	"context"
	"crypto/tls"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

// Client runs the client side of TLS for connections dialled on an
// engine (engine.DialHandler): the handshake on a bounded set of
// goroutines, then the same record layers as the Server — warren's own for
// TLS 1.3 and for TLS 1.2 on an ECDHE AEAD suite, crypto/tls driven from
// the loop for other TLS 1.2 connections (CBC suites) — below the
// protocol handler. It is safe for concurrent use.
type Client struct {
	cfg     *tls.Config
	timeout time.Duration
	sem     chan struct{}
}

// NewClient returns a Client using cfg (cloned per handshake; its
// KeyLogWriter is replaced). workers bounds the handshakes in progress
// (zero: 64); timeout bounds each (zero: DefaultHandshakeTimeout).
func NewClient(cfg *tls.Config, workers int, timeout time.Duration) *Client {
	if cfg == nil {
		cfg = &tls.Config{}
	}
	if workers <= 0 {
		workers = 64
	}
	if timeout <= 0 {
		timeout = DefaultHandshakeTimeout
	}
	return &Client{cfg: cfg, timeout: timeout, sem: make(chan struct{}, workers)}
}

// Handler returns the handler to dial with: once the handshake is done it
// hands the connection to inner (whose OnOpen runs then). If the
// connection closes first, inner's OnClose, when it has one, is told: a
// connect that failed or timed out (engine.ReasonIOError, as for a plain
// dial), or a close during the handshake (engine.ReasonProtocolError
// when the handshake failed on this side, else the peer's close or reset).
func (cl *Client) Handler(inner engine.Handler) engine.Handler {
	return &clientHandler{cl: cl, inner: inner}
}

type clientHandler struct {
	cl    *Client
	inner engine.Handler
}

var (
	_ engine.OpenHandler  = (*clientHandler)(nil)
	_ engine.CloseHandler = (*clientHandler)(nil)
	_ engine.Handler      = (*clientConn)(nil)
)

// Inline runs the client handshake handler on the loop.
func (*clientHandler) Inline() bool { return true }

// Protocol names the connection "tls" until its handshake is done.
func (*clientHandler) Protocol() string { return ProtoTLS }

// OnOpen starts the handshake.
func (h *clientHandler) OnOpen(c *engine.Conn) {
	hs := &hsConn{c: c}
	hs.cond.L = &hs.mu
	cc := &clientConn{h: h, hs: hs}
	c.SetHandler(cc)
	go h.cl.handshake(cc)
}

// OnData is never called: OnOpen replaces the handler.
func (h *clientHandler) OnData(c *engine.Conn, in []byte) int { return 0 }

// OnClose runs for a connect that never opened (refused, unreachable,
// timed out): inner is told, as it would be without TLS.
func (h *clientHandler) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	if ch, ok := h.inner.(engine.CloseHandler); ok {
		ch.OnClose(c, r, err)
	}
}

// clientConn is a dialled connection in its handshake.
type clientConn struct {
	h  *clientHandler
	hs *hsConn
}

// Inline: it only copies bytes.
func (*clientConn) Inline() bool { return true }

// Protocol names the connection "tls" during the handshake.
func (*clientConn) Protocol() string { return ProtoTLS }

// OnData passes the bytes to the handshake.
func (cc *clientConn) OnData(c *engine.Conn, in []byte) int {
	hs := cc.hs
	hs.mu.Lock()
	if !hs.closed {
		hs.in = append(pool.Grow(hs.in, len(in)), in...)
		hs.cond.Broadcast()
	}
	hs.mu.Unlock()
	return len(in)
}

// OnClose ends the handshake and tells the wrapped handler.
func (cc *clientConn) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	cc.hs.shut()
	if ch, ok := cc.h.inner.(engine.CloseHandler); ok {
		ch.OnClose(c, r, err)
	}
}

// connKey is the context key of a handshake's engine connection.
type connKey struct{}

// HandshakeConn returns the engine connection a handshake's ctx belongs
// to, or nil: ctx is the Context of the tls.ClientHelloInfo or
// tls.CertificateRequestInfo crypto/tls passes to a tls.Config's callbacks
// during a Server's or a Client's handshake. With it a Client can pick a
// client certificate per connection (GetClientCertificate), say from what
// the dialler attached with engine.Conn.SetContext.
func HandshakeConn(ctx context.Context) *engine.Conn {
	c, _ := ctx.Value(connKey{}).(*engine.Conn)
	return c
}

func (cl *Client) handshake(cc *clientConn) {
	hs := cc.hs
	cl.sem <- struct{}{}
	defer func() { <-cl.sem }()
	ctx, cancel := context.WithTimeout(context.WithValue(context.Background(), connKey{}, hs.c), cl.timeout)
	defer cancel()
	cfg := cl.cfg.Clone()
	cfg.KeyLogWriter = keyLog{hs}
	if cfg.ClientSessionCache != nil {
		cfg.ClientSessionCache = masterCache{cl.cfg.ClientSessionCache, hs}
	}
	tc := tls.Client(hs, cfg)
	if err := tc.HandshakeContext(ctx); err != nil {
		hs.shut()
		hs.c.CloseWithDetail(engine.ReasonProtocolError, DetailHandshakeFailed)
		return
	}
	st := tc.ConnectionState()
	info := ConnState{Version: st.Version, CipherSuite: st.CipherSuite, NegotiatedProtocol: st.NegotiatedProtocol, ServerName: st.ServerName}
	var t engine.Transform
	ours := true
	if st.Version == tls.VersionTLS13 {
		suite := suiteByID(st.CipherSuite)
		if suite == nil || hs.clientTS == nil || hs.serverTS == nil {
			hs.shut()
			hs.c.AbortWithDetail(engine.ReasonProtocolError, DetailHandshakeFailed)
			return
		}
		r := &recordLayer{suite: suite, client: true, info: info}
		r.in.set(suite, hs.serverTS)
		r.out.set(suite, hs.clientTS)
		t = r
	} else if r, err := record12For(hs, st.CipherSuite, false); err == nil {
		r.info = info
		t = r
	} else {
		// A CBC suite, or a session resumed from a ticket without a
		// master secret (crypto/tls logs none then): crypto/tls's record
		// layer stays.
		t, ours = &conn12{hs: hs, tc: tc, info: &info}, false
	}
	hs.handOver(ours, t, cc.h.inner, false)
}

// masterCache wraps a Client's tls.ClientSessionCache for one handshake:
// crypto/tls logs no master secret when it resumes a TLS 1.2 session, so
// the sessions this handshake stores carry the master secret the key log
// gave it (in SessionState.Extra, like the Server's tickets), and the one
// it resumes gives it back to warren's record layer.
type masterCache struct {
	inner tls.ClientSessionCache
	hs    *hsConn
}

// Get returns the cached session for key, and takes its master secret.
func (m masterCache) Get(key string) (*tls.ClientSessionState, bool) {
	cs, ok := m.inner.Get(key)
	if ok && cs != nil {
		if _, ss, err := cs.ResumptionState(); err == nil && ss != nil {
			if ms := ticketMaster(ss); ms != nil {
				m.hs.master, m.hs.crand = ms, nil
			}
		}
	}
	return cs, ok
}

// Put stores cs for key, with this handshake's master secret added.
func (m masterCache) Put(key string, cs *tls.ClientSessionState) {
	if cs != nil && len(m.hs.master) == 48 {
		if ticket, ss, err := cs.ResumptionState(); err == nil && ss != nil {
			ss.Extra = withTicketMaster(ss.Extra, m.hs.master)
			if ncs, err := tls.NewResumptionState(ticket, ss); err == nil {
				cs = ncs
			}
		}
	}
	m.inner.Put(key, cs)
}
