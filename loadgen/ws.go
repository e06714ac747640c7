package loadgen

import (
	"errors"
	"net/netip"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/websocket"
)

// WebSocket connections are websocket.Client connections on the runner's
// engine: the package does the handshake, the masking, the frame decoding
// and the control frames, and the client keeps only the request queue and
// the accounting. One Client per source address, since the source is part
// of its configuration; their connections share it.

// newWSClients makes the runner's WebSocket clients, one per source
// address (one when there are none).
func (r *runner) newWSClients() error {
	srcs := r.cfg.Sources
	if len(srcs) == 0 {
		srcs = []netip.Addr{{}}
	}
	r.wsURL = "ws://" + r.tgt.addr.String() + r.tgt.path
	var wrap func(engine.Handler) engine.Handler
	if r.tlsc != nil { // wss://
		r.wsURL = "wss://" + r.tgt.addr.String() + r.tgt.path
		wrap = r.tlsc.Handler
	}
	for _, src := range srcs {
		cl, err := websocket.NewClient(r.eng, websocket.DialConfig{
			Header:           [][2]string{{"Host", r.tgt.host}, {"User-Agent", "warren-load"}},
			MaxMessageSize:   max(2*r.cfg.MsgSize, 1<<20),
			HandshakeTimeout: r.cfg.Timeout, // the connect is bounded by the engine's WriteTimeout
			Inline:           true,
			LocalAddr:        src,
			WrapConn:         wrap,
		}, wsHandler{r})
		if err != nil {
			return err
		}
		r.ws = append(r.ws, cl)
	}
	return nil
}

// dialWS starts a WebSocket connect for cs from source i; cs.mu is not
// held.
func (r *runner) dialWS(cs *conn) (*websocket.Conn, error) {
	return r.ws[int(cs.idx)%len(r.ws)].DialWith(r.wsURL, cs)
}

// serverFrameLen and clientFrameLen are the wire sizes of one message of
// n bytes from the server (unmasked) and from the client (masked), for
// the byte counters.
func serverFrameLen(n int) int64 {
	return int64(websocket.HeaderLen(websocket.FrameHeader{Length: int64(n)}) + n)
}

func clientFrameLen(n int) int64 {
	return int64(websocket.HeaderLen(websocket.FrameHeader{Masked: true, Length: int64(n)}) + n)
}

// wsHandler is the handler of the runner's WebSocket connections. It runs
// inline, on the engine's loops.
type wsHandler struct{ r *runner }

var (
	_ websocket.Handler      = wsHandler{}
	_ websocket.OpenHandler  = wsHandler{}
	_ websocket.CloseHandler = wsHandler{}
	_ websocket.ErrorHandler = wsHandler{}
)

func (h wsHandler) OnOpen(c *websocket.Conn) {
	r := h.r
	cs, _ := c.Context().(*conn)
	ec := c.Engine()
	r.bytesOut.Add(int64(ec.BytesOut())) // the handshake
	r.bytesIn.Add(int64(ec.BytesIn()))
	cs.mu.Lock()
	defer cs.mu.Unlock()
	if cs.state != csConnecting {
		return // timed out meanwhile, and being closed
	}
	cs.ec, cs.wc = ec, c // the dialer may not have stored them yet
	r.openedLocked(cs, r.now())
}

func (h wsHandler) OnMessage(c *websocket.Conn, op websocket.Opcode, data []byte) {
	r := h.r
	cs, _ := c.Context().(*conn)
	ec := c.Engine()
	now := r.now()
	r.bytesIn.Add(serverFrameLen(len(data)))
	var cp completions
	cs.mu.Lock()
	switch {
	case cs.state != csOpen || cs.wc != c:
	case !r.completeLocked(cs, ec, &cp, now):
		// An answer nobody asked for.
		r.failLocked(cs, KindProtocol)
		c.Close(websocket.CloseProtocolError, "unexpected message")
	case r.closedLoop.Load():
		r.sendLocked(cs, 1, now, nil)
	}
	cs.mu.Unlock()
	r.flush(ec, &cp)
}

// OnError counts what the close reason alone cannot tell: a refused
// handshake (bad status), an invalid one or a server's protocol violation
// (protocol), a handshake timeout, and why a connect failed. Other errors
// are left to OnClose, which follows.
func (h wsHandler) OnError(c *websocket.Conn, err error) {
	r := h.r
	cs, _ := c.Context().(*conn)
	var he *websocket.HandshakeError
	var ce *websocket.CloseError
	cs.mu.Lock()
	defer cs.mu.Unlock()
	var k ErrorKind
	switch {
	case cs.state != csConnecting && cs.state != csOpen:
		return // already counted
	case r.finished.Load():
		return // the run's end closes everything: OnClose settles it
	case errors.As(err, &he) && he.StatusCode != 0 && he.StatusCode != 101:
		k = KindBadStatus
	case errors.As(err, &he), errors.As(err, &ce):
		k = KindProtocol
	case errors.Is(err, websocket.ErrHandshakeTimeout):
		k = KindTimeout
	case errors.Is(err, websocket.ErrHandshakeClosed), cs.state == csOpen:
		return // OnClose classifies by the reason
	default:
		k = classifyConnect(engine.ReasonIOError, err)
	}
	r.failLocked(cs, k)
}

func (h wsHandler) OnClose(c *websocket.Conn, reason engine.CloseReason, code uint16) {
	r := h.r
	cs, _ := c.Context().(*conn)
	cs.mu.Lock()
	if cs.wc != nil && cs.wc != c {
		cs.mu.Unlock() // a stale connection of this slot
		return
	}
	if cs.state == csOpen && reason == engine.ReasonPeerClosed && code != websocket.CloseAbnormal {
		cs.announced = true // the server closed with a close handshake
	}
	// A failed connect was counted by OnError; what is left is a close
	// before the server's answer.
	r.closedLocked(cs, reason, closeKind(reason), nil, nil)
}
