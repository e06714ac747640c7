package http1

import (
	"bytes"
	"context"
	"io"
	"net/http"
	"net/url"
	"strconv"
	"strings"
)

// Adapt serves a standard net/http Handler on the server, so existing
// services can move over gradually. It runs on the worker pool.
//
// What differs from net/http's server:
//   - The request body is read whole before the handler runs (bounded by
//     Limits.MaxBodyBytes) and Request.Body reads from memory, unless the
//     route is wrapped with StreamBody: StreamBody(Adapt(h), max) streams
//     Request.Body as it arrives, like net/http.
//   - The response is buffered until the handler returns or calls Flush
//     (http.Flusher is supported; the body is then chunked).
//   - Hijack (http.Hijacker) is not supported: use the websocket package
//     for upgrades.
//   - Request.Context is not cancelled when the client goes away; it is
//     cancelled when the handler returns.
//   - Trailers in responses, HTTP/2 and TLS are not supported.
//   - Header names keep the canonical form net/http gives them.
func Adapt(h http.Handler) Handler {
	return HandlerFunc(func(c *Ctx) {
		r, cancel := c.netRequest()
		defer cancel()
		w := &netResponse{c: c, header: make(http.Header)}
		h.ServeHTTP(w, r)
		w.finish()
	})
}

func (c *Ctx) netRequest() (*http.Request, context.CancelFunc) {
	ctx, cancel := context.WithCancel(context.Background())
	u, err := url.ParseRequestURI(string(c.Target))
	if err != nil {
		u = &url.URL{Path: string(c.Path), RawQuery: string(c.RawQuery)}
	}
	hdr := make(http.Header, len(c.Headers()))
	for _, h := range c.Headers() {
		k := http.CanonicalHeaderKey(string(h.Name))
		hdr[k] = append(hdr[k], string(h.Value))
	}
	r := &http.Request{
		Method:     string(c.Method),
		URL:        u,
		Proto:      "HTTP/1." + strconv.Itoa(c.ProtoMinor),
		ProtoMajor: 1,
		ProtoMinor: c.ProtoMinor,
		Header:     hdr,
		Host:       string(c.Host),
		RemoteAddr: c.RemoteAddr().String(),
		RequestURI: string(c.Target),
		Close:      !c.keepAlive,
	}
	if c.Chunked {
		r.TransferEncoding = []string{"chunked"}
	}
	switch body := c.Body(); {
	case c.pipe != nil:
		r.ContentLength = c.ContentLength
		if c.Chunked {
			r.ContentLength = -1
		}
		r.Body = io.NopCloser(c.pipe)
	case len(body) > 0:
		r.ContentLength = int64(len(body))
		r.Body = io.NopCloser(bytes.NewReader(body))
	default:
		r.Body = http.NoBody
	}
	return r.WithContext(ctx), cancel
}

type netResponse struct {
	c       *Ctx
	header  http.Header
	wrote   bool
	flushed bool
}

var _ http.Flusher = (*netResponse)(nil)

func (w *netResponse) Header() http.Header { return w.header }

func (w *netResponse) WriteHeader(code int) {
	if w.wrote {
		return
	}
	w.wrote = true
	w.c.SetStatus(code)
	for k, vs := range w.header {
		for _, v := range vs {
			w.c.AddHeader(k, v)
		}
	}
	if w.header.Get("Content-Type") == "" && bodyAllowed(code) {
		// net/http sniffs; we declare the common default instead of
		// guessing, unless the handler set one.
		w.c.SetHeader("Content-Type", "text/plain; charset=utf-8")
	}
	if strings.EqualFold(w.header.Get("Connection"), "close") {
		w.c.SetClose()
	}
}

func (w *netResponse) Write(p []byte) (int, error) {
	if !w.wrote {
		if w.header.Get("Content-Type") == "" && len(p) > 0 {
			w.header.Set("Content-Type", http.DetectContentType(p))
		}
		w.WriteHeader(http.StatusOK)
	}
	return w.c.Write(p)
}

func (w *netResponse) Flush() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
	w.c.Flush()
}

func (w *netResponse) finish() {
	if !w.wrote {
		w.WriteHeader(http.StatusOK)
	}
}
