package loadgen

import (
	"errors"
	"fmt"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/websocket"
)

// handler is the client engine's handler.
type handler struct{ r *runner }

var (
	_ engine.OpenHandler  = handler{}
	_ engine.CloseHandler = handler{}
)

// connOf returns the conn behind c, waiting for the dialer to attach it
// when the connection's first callback beat it.
func (h handler) connOf(c *engine.Conn) *conn {
	if cs, ok := c.Context().(*conn); ok {
		return cs
	}
	h.r.dialMu.Lock() // the dialer holds it until the context is set
	h.r.dialMu.Unlock()
	cs, _ := c.Context().(*conn)
	return cs
}

func (h handler) OnOpen(c *engine.Conn) {
	r := h.r
	cs := h.connOf(c)
	if cs == nil {
		c.Abort(engine.ReasonLocal)
		return
	}
	cs.p.reset()
	cs.mu.Lock()
	defer cs.mu.Unlock()
	cs.ec = c
	if !r.tgt.ws {
		r.openedLocked(cs, r.now())
		return
	}
	if cs.ws == nil {
		cs.ws = &websocket.Reader{Role: websocket.RoleClient, MaxMessageSize: max(2*r.cfg.MsgSize, 1<<20),
			Pool: bufferPool{}}
	}
	copy(cs.key[:], websocket.NewKey())
	hs := fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"+
		"Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\nUser-Agent: warren-load\r\n\r\n",
		r.tgt.path, r.tgt.host, cs.key[:])
	cs.state = csHandshake
	if n, err := c.Write(hs); err == nil {
		r.bytesOut.Add(int64(n))
	}
}

func (h handler) OnData(c *engine.Conn, in []byte) int {
	cs := h.connOf(c)
	if cs == nil {
		return len(in)
	}
	var used int
	if h.r.tgt.ws {
		used = h.r.onWS(cs, c, in)
	} else {
		used = h.r.onHTTP(cs, c, in)
	}
	h.r.bytesIn.Add(int64(used))
	return used
}

// completions collects the latencies of the responses parsed in one call
// and records them in one go.
type completions struct {
	n   int
	lat [32]int64
}

func (r *runner) flush(c *engine.Conn, cp *completions) {
	if cp.n == 0 {
		return
	}
	sh := r.shardOf(c.Loop())
	sh.mu.Lock()
	for _, l := range cp.lat[:cp.n] {
		sh.lat.Record(time.Duration(l))
	}
	sh.mu.Unlock()
	r.done.Add(int64(cp.n))
	r.outstanding.Add(-int64(cp.n))
	cp.n = 0
}

// completeLocked takes the oldest outstanding request off cs's queue and
// notes its latency. It reports false for a response nobody asked for.
func (r *runner) completeLocked(cs *conn, c *engine.Conn, cp *completions, now int64) bool {
	if cs.q.len() == 0 {
		return false
	}
	cp.lat[cp.n] = now - cs.q.pop()
	cp.n++
	if cp.n == len(cp.lat) {
		r.flush(c, cp)
	}
	return true
}

// protocolErrorLocked counts a protocol error and closes cs.
func (r *runner) protocolErrorLocked(cs *conn, c *engine.Conn, k ErrorKind) {
	r.fail(k)
	switch cs.state {
	case csHandshake, csConnecting:
		r.endConnectLocked(cs, false)
	case csOpen:
		r.failed.Add(1)
		r.open.Add(-1)
	}
	cs.state = csClosing
	c.Abort(engine.ReasonProtocolError)
}

func (r *runner) onHTTP(cs *conn, c *engine.Conn, in []byte) int {
	now := r.now()
	var cp completions
	used := 0
	answered := 0
	cs.mu.Lock()
	for cs.state == csOpen {
		n, done, err := cs.p.parse(in[used:])
		used += n
		if err != nil {
			r.protocolErrorLocked(cs, c, KindProtocol)
			break
		}
		if !done {
			break
		}
		if !r.completeLocked(cs, c, &cp, now) {
			r.protocolErrorLocked(cs, c, KindProtocol)
			break
		}
		answered++
		if cs.p.status >= 400 {
			r.fail(KindBadStatus)
		}
		if cs.p.close {
			cs.announced = true
		}
	}
	if answered > 0 && r.closedLoop.Load() {
		r.sendLocked(cs, answered, now, nil)
	}
	closing := cs.state == csClosing
	cs.mu.Unlock()
	r.flush(c, &cp)
	if closing {
		return len(in)
	}
	return used
}

func (r *runner) onWS(cs *conn, c *engine.Conn, in []byte) int {
	now := r.now()
	var cp completions
	used := 0
	answered := 0
	cs.mu.Lock()
	defer func() {
		if answered > 0 && r.closedLoop.Load() {
			r.sendLocked(cs, answered, now, nil)
		}
		cs.mu.Unlock()
		r.flush(c, &cp)
	}()
	if cs.state == csHandshake {
		end, kind, err := cs.p.upgrade(in, cs.key[:])
		if err != nil {
			r.protocolErrorLocked(cs, c, kind)
			return len(in)
		}
		if end == 0 {
			return 0
		}
		used = end
		cs.ws.Reset()
		r.openedLocked(cs, now)
	}
	for cs.state == csOpen {
		n, ev, err := cs.ws.Next(in[used:])
		used += n
		if err != nil {
			code := uint16(websocket.CloseProtocolError)
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			r.writeControlLocked(cs, websocket.OpClose, websocket.AppendClosePayload(nil, code, ""))
			r.protocolErrorLocked(cs, c, KindProtocol)
			return len(in)
		}
		switch ev.Op {
		case websocket.OpContinuation:
			return used
		case websocket.OpText, websocket.OpBinary:
			if !r.completeLocked(cs, c, &cp, now) {
				r.protocolErrorLocked(cs, c, KindProtocol)
				return len(in)
			}
			answered++
		case websocket.OpPing:
			r.writeControlLocked(cs, websocket.OpPong, ev.Payload)
		case websocket.OpClose:
			// The server is closing: answer and let it close.
			cs.announced = true
			r.writeControlLocked(cs, websocket.OpClose, websocket.AppendClosePayload(nil, ev.Code, ""))
			c.Close()
			return len(in)
		}
	}
	return len(in)
}

// writeControlLocked writes a masked control frame on cs.
func (r *runner) writeControlLocked(cs *conn, op websocket.Opcode, payload []byte) {
	if cs.ec == nil {
		return
	}
	var buf [websocket.MaxHeaderLen + websocket.MaxControlPayload]byte
	if len(payload) > websocket.MaxControlPayload {
		payload = payload[:websocket.MaxControlPayload]
	}
	b := websocket.AppendMaskedFrame(buf[:0], op, true, websocket.NewMask(), payload)
	if n, err := cs.ec.Write(b); err == nil {
		r.bytesOut.Add(int64(n))
	}
}

func (h handler) OnClose(c *engine.Conn, reason engine.CloseReason, err error) {
	r := h.r
	cs := h.connOf(c)
	if cs == nil {
		return
	}
	var cp completions
	now := r.now()
	cs.mu.Lock()
	if cs.ec != nil && cs.ec != c {
		cs.mu.Unlock() // a stale connection of this slot
		return
	}
	prev := cs.state
	if prev == csOpen && !r.tgt.ws && cs.p.eof() {
		r.completeLocked(cs, c, &cp, now) // a body delimited by the close
	}
	lost := cs.q.len()
	cs.q.clear()
	cs.state, cs.ec = csIdle, nil
	announced := cs.announced
	finished := r.finished.Load()
	switch prev {
	case csConnecting, csHandshake:
		r.endConnectLocked(cs, false)
		if !finished {
			if prev == csConnecting {
				r.fail(classifyConnect(reason, err))
			} else {
				r.fail(closeKind(reason))
			}
		}
	case csOpen:
		r.open.Add(-1)
		if !finished && !(announced && (reason == engine.ReasonPeerClosed || reason == engine.ReasonLocal ||
			reason == engine.ReasonPeerReset)) {
			r.fail(closeKind(reason))
			r.failed.Add(1)
		}
	}
	cs.mu.Unlock()
	if cs.ws != nil {
		cs.ws.Reset()
	}
	r.flush(c, &cp)
	if lost > 0 {
		r.outstanding.Add(-int64(lost))
		r.unanswered.Add(int64(lost))
	}
	// Redial a slot the server closed cleanly while traffic runs.
	if prev == csOpen && announced && !finished && r.traffic.Load() {
		select {
		case r.redial <- cs:
		default:
		}
	}
}

// closeKind classifies the unexpected end of an open connection.
func closeKind(reason engine.CloseReason) ErrorKind {
	switch reason {
	case engine.ReasonPeerClosed, engine.ReasonPeerReset:
		return KindClosed
	case engine.ReasonReadTimeout, engine.ReasonWriteTimeout, engine.ReasonIdleTimeout:
		return KindTimeout
	case engine.ReasonProtocolError:
		return KindProtocol
	}
	return KindIO
}
