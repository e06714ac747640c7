package proxy

import (
	"bytes"
	"strconv"
	"sync"
	"sync/atomic"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// Forward returns an http1.Handler that forwards its request to the
// proxy's cluster, for a route of an http1.Server that serves some paths
// itself and passes the rest on (warren serve in front of a legacy
// backend: router.NotFound = p.Forward(), or r.Handle("/legacy/{rest...}",
// p.Forward())). It runs on the engine's worker pool and blocks that
// worker until the response is passed on; the response streams (the
// upstream connection pauses while the worker lags by more than
// Config.MaxBacklog). The request body is the one the server collected
// (Ctx.Body, bounded by the server's Limits.MaxBodyBytes; StreamBody
// routes are not forwarded as streams yet). A WebSocket or other upgrade
// is spliced as by the proxy's own listener.
//
// The headers are rewritten as by the proxy (X-Forwarded-*, Via,
// hop-by-hop fields), and a request the cluster cannot serve is answered
// with 502, 503 or 504 and the reason header. As on the proxy's listener,
// interim responses (103 Early Hints) go on to an HTTP/1.1 client
// (Ctx.WriteInterim, within Config.MaxInterim and MaxInterimBytes), a
// chunked response's trailer fields too (Ctx.SetTrailer), and a response
// to HEAD keeps the backend's Content-Length (Ctx.SetHeadLength); a
// response without a Content-Type gets none (Ctx.OmitContentType). A
// request body with trailer fields (Ctx.Trailers) goes to the backend
// chunked, as one chunk and its trailer section; any other with a
// Content-Length.
func (p *Proxy) Forward() http1.Handler { return http1.HandlerFunc(p.forward) }

func (p *Proxy) forward(c *http1.Ctx) {
	req := c.Request
	if isConnect(req.Method) {
		p.st.badRequests.Add(1)
		c.SetStatus(errConnect.Status)
		c.SetHeader(p.reason, "bad_request")
		c.SetHeader("Via", string(p.via))
		c.SetClose()
		c.WriteString(http1.StatusText(errConnect.Status) + ": bad_request\n")
		return
	}
	upgrade := req.Upgrade != nil
	body := c.Body()
	// A chunked request's trailer fields go on: the body is sent chunked
	// again, as one chunk and the trailer section.
	trailers := c.Trailers()
	head := appendForwardHead(nil, p, req, c.RemoteAddr().Addr().Unmap().String(), p.proto(c.Conn()), upgrade, len(body), len(trailers) > 0)
	if len(trailers) > 0 {
		var optsBuf [4][]byte
		opts := reqConnOptions(optsBuf[:0], req)
		body = appendChunkedBody(nil, body, trailers, hopNames(nil).set(opts, true), &p.st.trailersDropped[trailerRequest])
	}
	f := &fwd{p: p, client: c.Conn(), wake: make(chan struct{}, 1), minor: c.ProtoMinor}
	p.st.requests.Add(1)
	if len(p.routes) > 0 {
		if le := p.checkLimits(c.RemoteAddr().Addr().Unmap(), req, p.eng.Now(), false); le != nil {
			p.st.errors.Add(1)
			c.SetStatus(429)
			c.SetHeader("Retry-After", strconv.FormatInt(retryAfterSeconds(le.retryAfter), 10))
			c.SetHeader(p.reason, "rate_limited")
			c.SetHeader("Via", string(p.via))
			c.WriteString("Too Many Requests: rate_limited\n")
			return
		}
	}
	p.st.active.Add(1)
	r := &upstream.Request{Method: string(req.Method), Head: head, Body: body, Upgrade: upgrade, Handler: f, Loop: -1}
	if p.cfg.HashClient {
		r.Key = p.hashKey(req, c.RemoteAddr().Addr())
	}
	x := p.cl.Do(r)
	ctx := c.Context()
	headDone := false
	for {
		f.mu.Lock()
		evs := f.events
		f.events = nil
		f.queued = 0
		paused := f.paused
		f.paused = false
		f.mu.Unlock()
		for _, ev := range evs {
			switch ev.kind {
			case evHead:
				c.SetStatus(ev.status)
				for _, h := range ev.headers {
					if c.ProtoMinor == 0 && eq([]byte(h[0]), "trailer") {
						continue // no trailer section for HTTP/1.0
					}
					c.AddHeader(h[0], h[1])
				}
				c.AddHeader("Via", string(p.via))
				// The backend's Content-Type goes on, and none when it
				// sent none (not the server's default).
				c.OmitContentType()
				// A response to HEAD keeps the backend's Content-Length
				// (the length a GET would have had), or has none.
				c.SetHeadLength(ev.length)
				if ev.stream {
					c.Flush()
				}
				headDone = true
			case evInterim:
				if headDone {
					break
				}
				fields := make([]http1.Header, 0, len(ev.headers))
				for _, h := range ev.headers {
					fields = append(fields, http1.Header{Name: []byte(h[0]), Value: []byte(h[1])})
				}
				if c.WriteInterim(ev.status, fields) == nil {
					p.st.interim.Add(1)
				}
			case evTrailers:
				for _, h := range ev.headers {
					c.SetTrailer(h[0], h[1])
				}
			case evBody:
				c.Write(ev.data)
			case evUpgrade:
				// The 101 goes out through the server's upgrade path, so
				// the client's first frames wait for the splice; then the
				// backend side, held and paused since the 101, is spliced
				// and resumed (its bytes after the 101 are redelivered).
				uc, client := ev.conn, c.Conn()
				c.WriteRaw(ev.data)
				c.UpgradeTo(&splice{p: p, peer: uc})
				if !uc.Post(func() { uc.SetHandler(&splice{p: p, peer: client}) }) {
					client.Close()
				}
				uc.ResumeRead()
				p.st.active.Add(-1)
				return
			case evDone:
				p.st.active.Add(-1)
				if ev.err == nil {
					p.st.responses.Add(1)
					return
				}
				p.st.errors.Add(1)
				p.st.countHeadLimit(ev.err, false)
				if headDone {
					c.Conn().Abort(engine.ReasonIOError) // cut short: the client must see it
					return
				}
				fl := upstream.FailureOf(ev.err)
				p.st.countFailure(fl)
				if fl == upstream.FailCanceled {
					// The client went away (its context ended): nothing
					// to answer, and 499 is a log code, not a status.
					c.Conn().Close()
					return
				}
				c.SetStatus(fl.Status())
				c.SetHeader(p.reason, fl.String())
				c.SetHeader("Via", string(p.via))
				c.WriteString(http1.StatusText(fl.Status()) + ": " + fl.String() + "\n")
				return
			}
		}
		if paused {
			if uc := x.Conn(); uc != nil {
				uc.ResumeRead()
			}
		}
		select {
		case <-f.wake:
		case <-ctx.Done():
			x.Cancel()
			<-f.wake
		}
	}
}

// Event kinds from the loop to the forwarding worker.
const (
	evHead uint8 = iota
	evBody
	evUpgrade
	evDone
	evInterim
	evTrailers
)

type fwdEvent struct {
	kind    uint8
	status  int
	length  int64 // the response's Content-Length, or -1
	stream  bool
	headers [][2]string
	data    []byte
	conn    *engine.Conn
	err     error
}

// fwd carries a response from the upstream loop to the worker that
// writes it to the http1 response.
type fwd struct {
	p      *Proxy
	client *engine.Conn
	wake   chan struct{}
	// minor is the client's HTTP minor version: an HTTP/1.0 client gets
	// no interim response, and none is counted for it.
	minor int

	mu     sync.Mutex
	events []fwdEvent
	queued int
	paused bool
	// interim counts the interim responses queued.
	interim interimBudget
	// respOpts are the response head's connection options, removed from
	// its trailer section (upstream loop).
	respOpts hopNames
}

func (f *fwd) push(ev fwdEvent) {
	f.mu.Lock()
	f.events = append(f.events, ev)
	f.queued += len(ev.data)
	if f.queued > f.p.cfg.MaxBacklog {
		f.paused = true
	}
	f.mu.Unlock()
	select {
	case f.wake <- struct{}{}:
	default:
	}
}

func (f *fwd) OnResponse(x *upstream.Exchange, resp *http1.Response) {
	ev := fwdEvent{kind: evHead, status: resp.StatusCode, length: resp.ContentLength,
		stream: resp.Framing == http1.FramingChunked || resp.Framing == http1.FramingClose ||
			resp.Framing == http1.FramingLength && resp.ContentLength > 64<<10}
	var optsBuf [4][]byte
	opts := respConnOptions(optsBuf[:0], resp)
	// A chunked body's Trailer field goes on with its trailer fields
	// (OnTrailers; the http1 server sends them after a chunked body).
	keepTrailer := resp.Framing == http1.FramingChunked
	f.respOpts = f.respOpts.set(opts, keepTrailer)
	for h := range resp.Headers() {
		if keepTrailer && eq(h.Name, "trailer") {
			// kept
		} else if hop(h.Name) || listed(opts, h.Name) || eq(h.Name, "content-length") {
			continue
		}
		ev.headers = append(ev.headers, [2]string{string(h.Name), string(h.Value)})
	}
	f.push(ev)
}

// OnTrailers queues a chunked response's trailer fields, but the
// hop-by-hop ones, for the worker (Ctx.SetTrailer).
func (f *fwd) OnTrailers(x *upstream.Exchange, tr []http1.Header) {
	ev := fwdEvent{kind: evTrailers}
	dropped := &f.p.st.trailersDropped[trailerResponse]
	if f.minor != 1 {
		// An HTTP/1.0 client's response has no trailer section: every
		// field is dropped for that.
		dropped[dropNoSection].Add(uint64(len(tr)))
		return
	}
	for _, h := range tr {
		if v := trailerVerdict(h.Name, f.respOpts); v != keepTrailer {
			dropped[v].Add(1)
			continue
		}
		ev.headers = append(ev.headers, [2]string{string(h.Name), string(h.Value)})
	}
	f.push(ev)
}

// OnInterim queues an interim response (100 Continue, and 103 Early
// Hints when Config.MaxInterim opts in) for the worker, its hop-by-hop
// fields removed, within Config.MaxInterim and MaxInterimBytes; as on the
// listener, an HTTP/1.0 client gets none and none is counted.
func (f *fwd) OnInterim(x *upstream.Exchange, resp *http1.Response) {
	p := f.p
	if f.minor != 1 {
		return
	}
	ev := fwdEvent{kind: evInterim, status: resp.StatusCode}
	size := 32 // status line, Via and the empty line
	var optsBuf [4][]byte
	opts := respConnOptions(optsBuf[:0], resp)
	var viaBuf [2][]byte
	via := viaBuf[:0]
	for h := range resp.Headers() {
		if hop(h.Name) || listed(opts, h.Name) || eq(h.Name, "content-length") {
			continue
		}
		if eq(h.Name, "via") {
			via = append(via, h.Value)
			continue
		}
		ev.headers = append(ev.headers, [2]string{string(h.Name), string(h.Value)})
		size += len(h.Name) + len(h.Value) + 4
	}
	v := string(append(appendList(nil, via), p.via...))
	ev.headers = append(ev.headers, [2]string{"Via", v})
	size += len(v)
	f.mu.Lock()
	ok := f.interim.admit(&p.cfg, resp.StatusCode, size)
	f.mu.Unlock()
	if !ok {
		p.st.interimDropped.Add(1)
		return
	}
	f.push(ev)
}

func (f *fwd) OnBody(x *upstream.Exchange, data []byte) {
	f.push(fwdEvent{kind: evBody, data: bytes.Clone(data)})
	f.mu.Lock()
	pause := f.paused
	f.mu.Unlock()
	if pause {
		if uc := x.Conn(); uc != nil {
			uc.PauseRead() // the worker resumes it once it has caught up
		}
	}
}

func (f *fwd) OnDone(x *upstream.Exchange, err error) { f.push(fwdEvent{kind: evDone, err: err}) }

// OnUpgrade holds the backend side (paused, its input kept) and hands the
// 101 to the worker, which answers the client and splices both sides.
func (f *fwd) OnUpgrade(x *upstream.Exchange, uc *engine.Conn, resp *http1.Response) {
	f.p.st.upgrades.Add(1)
	f.p.st.splices.Add(2)
	uc.SetHandler(holdHandler{})
	uc.PauseRead()
	f.push(fwdEvent{kind: evUpgrade, conn: uc, data: bytes.Clone(resp.Raw())})
}

// holdHandler keeps a connection's input unconsumed until another handler
// takes over (its bytes are then presented to the new handler).
type holdHandler struct{}

func (holdHandler) OnData(*engine.Conn, []byte) int { return 0 }
func (holdHandler) Inline() bool                    { return true }

// OnClose of a held backend connection needs nothing: the client side
// notices when its splice is installed and the peer is gone.
func (holdHandler) OnClose(*engine.Conn, engine.CloseReason, error) {}

var (
	_ upstream.ResponseHandler = (*fwd)(nil)
	_ upstream.UpgradeHandler  = (*fwd)(nil)
	_ upstream.InterimHandler  = (*fwd)(nil)
	_ upstream.TrailerHandler  = (*fwd)(nil)
)

// appendForwardHead writes the backend request head for a request the
// http1 server parsed (and whose body it collected: bodyLen bytes).
func appendForwardHead(b []byte, p *Proxy, req *http1.Request, remote, proto string, upgrade bool, bodyLen int, chunked bool) []byte {
	b = append(b, req.Method...)
	b = append(b, ' ')
	b = appendTarget(b, req)
	b = append(b, " HTTP/1.1\r\n"...)
	abs := absoluteForm(req)
	var optsBuf [4][]byte
	opts := reqConnOptions(optsBuf[:0], req)
	var xffBuf, viaBuf [2][]byte
	xff, via := xffBuf[:0], viaBuf[:0] // every line of each, in order (appendUpstreamHead)
	for _, h := range req.Headers() {
		switch {
		case upgrade && eq(h.Name, "upgrade"):
		case chunked && eq(h.Name, "trailer"):
			// Kept: the trailer fields it announces go on.
		case hop(h.Name) || listed(opts, h.Name) || eq(h.Name, "content-length") || eq(h.Name, "expect"):
			continue
		case eq(h.Name, "x-forwarded-for"):
			xff = append(xff, h.Value)
			continue
		case eq(h.Name, "x-forwarded-proto"):
			continue
		case eq(h.Name, "via"):
			via = append(via, h.Value)
			continue
		case abs && eq(h.Name, "host"):
			continue
		}
		b = append(b, h.Name...)
		b = append(b, ": "...)
		b = append(b, h.Value...)
		b = append(b, "\r\n"...)
	}
	if abs || req.Host == nil {
		// The target's authority, or (an HTTP/1.0 request without Host)
		// an empty Host, which HTTP/1.1 requires (RFC 9112 §3.2).
		b = append(b, "Host: "...)
		b = append(b, req.Host...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "X-Forwarded-For: "...)
	b = appendList(b, xff)
	b = append(b, remote...)
	b = append(b, "\r\nX-Forwarded-Proto: "...)
	b = append(b, proto...)
	b = append(b, "\r\nVia: "...)
	b = appendList(b, via)
	b = append(b, p.via...)
	b = append(b, "\r\n"...)
	if upgrade {
		b = append(b, "Connection: Upgrade\r\n"...)
	}
	if chunked {
		b = append(b, "Transfer-Encoding: chunked\r\n"...)
	} else if bodyLen > 0 || req.ContentLength >= 0 || req.Chunked {
		b = append(b, "Content-Length: "...)
		b = append(b, itoa(bodyLen)...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...)
}

// appendChunkedBody frames body as one chunk followed by the trailer
// fields the proxy passes on.
func appendChunkedBody(b, body []byte, trailers []http1.Header, opts hopNames, dropped *[numTrailerDrops]atomic.Uint64) []byte {
	if len(body) > 0 {
		b = strconv.AppendInt(b, int64(len(body)), 16)
		b = append(b, "\r\n"...)
		b = append(b, body...)
		b = append(b, "\r\n"...)
	}
	b = append(b, "0\r\n"...)
	return appendTrailerSection(b, trailers, opts, dropped)
}

func itoa(n int) string {
	if n == 0 {
		return "0"
	}
	var buf [20]byte
	i := len(buf)
	for n > 0 {
		i--
		buf[i] = byte('0' + n%10)
		n /= 10
	}
	return string(buf[i:])
}
