package http1

import (
	"fmt"
	"strings"
)

// Handler serves one request. ServeHTTP1 writes the response through c and
// returns; the server sends it. Handlers run on the engine's worker pool
// (one request at a time per connection) unless wrapped with Inline.
type Handler interface {
	ServeHTTP1(c *Ctx)
}

// HandlerFunc adapts a function to Handler.
type HandlerFunc func(c *Ctx)

// ServeHTTP1 calls f(c).
func (f HandlerFunc) ServeHTTP1(c *Ctx) { f(c) }

// Middleware wraps a handler, for cross-cutting concerns such as logging or
// authentication.
type Middleware func(Handler) Handler

type inlineHandler struct{ Handler }

// Inline marks h as non-blocking: it runs on the event loop, skipping the
// hand-off to a worker. h must never block (no I/O, no locks held long, no
// sleeping); a blocked loop stalls every connection on it.
func Inline(h Handler) Handler { return inlineHandler{h} }

// InlineFunc is Inline for a function.
func InlineFunc(f func(c *Ctx)) Handler { return inlineHandler{HandlerFunc(f)} }

// Router dispatches requests by method and path pattern. Patterns are
// "METHOD /path" where segments may be literals, {name} (one segment) or a
// final {name...} (the rest of the path); "/path" alone matches any
// method. Literal routes win over parameter routes, which win over
// wildcards. A path that matches under another method gets 405 with an
// Allow header; HEAD falls back to GET. The zero value is not usable; call
// NewRouter. Register routes before serving; lookups are then safe for
// concurrent use.
type Router struct {
	methods  map[string]*routes // "" holds routes for any method
	mws      []Middleware
	NotFound Handler
	// stream is set once a StreamBody route is registered; streamMax is the
	// largest body such a route accepts (negative: unlimited).
	stream    bool
	streamMax int64
}

type routes struct {
	static  map[string]*route
	dynamic []*route
}

type route struct {
	pattern string
	segs    []segment
	h       Handler
	mode    routeMode
}

// routeMode is where and how a route's handler runs.
type routeMode struct {
	inline  bool  // on the event loop
	stream  bool  // as soon as the head arrives, reading the body as it comes
	maxBody int64 // stream: the body limit (0: Limits.MaxBodyBytes)
}

func modeOf(h Handler) routeMode {
	switch h := h.(type) {
	case inlineHandler:
		if sh, ok := h.Handler.(streamHandler); ok {
			return routeMode{stream: true, maxBody: sh.max} // streaming never runs inline
		}
		return routeMode{inline: true}
	case streamHandler:
		return routeMode{stream: true, maxBody: h.max}
	}
	return routeMode{}
}

type segment struct {
	lit      string
	param    string
	wildcard bool
}

// NewRouter returns an empty router.
func NewRouter() *Router {
	return &Router{methods: make(map[string]*routes)}
}

// Use adds middleware applied to every route registered after it, outermost
// first.
func (r *Router) Use(mw ...Middleware) { r.mws = append(r.mws, mw...) }

// Handle registers h for pattern. It panics on a malformed or duplicate
// pattern, like net/http's ServeMux.
func (r *Router) Handle(pattern string, h Handler) {
	method, path := "", pattern
	if i := strings.IndexByte(pattern, ' '); i >= 0 {
		method, path = pattern[:i], strings.TrimLeft(pattern[i+1:], " ")
	}
	if !strings.HasPrefix(path, "/") {
		panic(fmt.Sprintf("http1: pattern %q: path must start with /", pattern))
	}
	mode := modeOf(h)
	r.noteStream(mode)
	for i := len(r.mws) - 1; i >= 0; i-- {
		h = r.mws[i](h)
	}
	rt := &route{pattern: pattern, h: h, mode: mode}
	static := true
	parts := strings.Split(path[1:], "/")
	for i, p := range parts {
		switch {
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "...}"):
			if i != len(parts)-1 {
				panic(fmt.Sprintf("http1: pattern %q: wildcard must be last", pattern))
			}
			rt.segs = append(rt.segs, segment{param: p[1 : len(p)-4], wildcard: true})
			static = false
		case strings.HasPrefix(p, "{") && strings.HasSuffix(p, "}"):
			rt.segs = append(rt.segs, segment{param: p[1 : len(p)-1]})
			static = false
		default:
			rt.segs = append(rt.segs, segment{lit: p})
		}
	}
	rs := r.methods[method]
	if rs == nil {
		rs = &routes{static: make(map[string]*route)}
		r.methods[method] = rs
	}
	if static {
		if _, dup := rs.static[path]; dup {
			panic(fmt.Sprintf("http1: duplicate pattern %q", pattern))
		}
		rs.static[path] = rt
		return
	}
	for _, o := range rs.dynamic {
		if o.pattern == pattern {
			panic(fmt.Sprintf("http1: duplicate pattern %q", pattern))
		}
	}
	rs.dynamic = append(rs.dynamic, rt)
	// Parameter routes before wildcards; otherwise registration order.
	for i := len(rs.dynamic) - 1; i > 0 && !rs.dynamic[i].hasWildcard() && rs.dynamic[i-1].hasWildcard(); i-- {
		rs.dynamic[i], rs.dynamic[i-1] = rs.dynamic[i-1], rs.dynamic[i]
	}
}

// noteStream records a StreamBody route's body limit: the server parses
// request heads with the largest one.
func (r *Router) noteStream(mode routeMode) {
	if !mode.stream {
		return
	}
	if !r.stream || (r.streamMax >= 0 && (mode.maxBody < 0 || mode.maxBody > r.streamMax)) {
		r.streamMax = mode.maxBody
	}
	r.stream = true
}

// HandleFunc registers f for pattern.
func (r *Router) HandleFunc(pattern string, f func(c *Ctx)) { r.Handle(pattern, HandlerFunc(f)) }

func (rt *route) hasWildcard() bool {
	return len(rt.segs) > 0 && rt.segs[len(rt.segs)-1].wildcard
}

// ServeHTTP1 makes a Router usable as a plain Handler (it then runs
// wherever the server runs it); the server normally calls lookup itself so
// that Inline routes run on the loop.
func (r *Router) ServeHTTP1(c *Ctx) {
	h, _, ps := r.lookup(c.Method, c.Path)
	c.nparams = copy(c.params[:], ps)
	h.ServeHTTP1(c)
}

// lookup finds the handler for method and path.
func (r *Router) lookup(method, path []byte) (Handler, routeMode, []param) {
	if rt, ps := r.match(method, path); rt != nil {
		return rt.h, rt.mode, ps
	}
	if string(method) == "HEAD" {
		if rt, ps := r.match([]byte("GET"), path); rt != nil {
			return rt.h, rt.mode, ps
		}
	}
	var allow []string
	for m, rs := range r.methods {
		if m != "" && rs.find(path) != nil {
			allow = append(allow, m)
		}
	}
	if len(allow) > 0 {
		return methodNotAllowed(strings.Join(allow, ", ")), routeMode{inline: true}, nil
	}
	if r.NotFound != nil {
		return r.NotFound, modeOf(r.NotFound), nil
	}
	return notFound, routeMode{inline: true}, nil
}

func (r *Router) match(method, path []byte) (*route, []param) {
	if rs := r.methods[string(method)]; rs != nil {
		if rt, ps := rs.findParams(path); rt != nil {
			return rt, ps
		}
	}
	if rs := r.methods[""]; rs != nil {
		return rs.findParams(path)
	}
	return nil, nil
}

func (rs *routes) find(path []byte) *route {
	rt, _ := rs.findParams(path)
	return rt
}

func (rs *routes) findParams(path []byte) (*route, []param) {
	if rt := rs.static[string(path)]; rt != nil {
		return rt, nil
	}
	for _, rt := range rs.dynamic {
		if ps, ok := rt.match(path); ok {
			return rt, ps
		}
	}
	return nil, nil
}

// match reports whether path matches rt, with the parameters' offsets.
func (rt *route) match(path []byte) ([]param, bool) {
	if len(path) == 0 || path[0] != '/' {
		return nil, false
	}
	var ps []param
	pos := 1
	for i, sg := range rt.segs {
		if sg.wildcard {
			ps = append(ps, param{sg.param, pos, len(path)})
			return ps, true
		}
		end := pos
		for end < len(path) && path[end] != '/' {
			end++
		}
		seg := path[pos:end]
		if sg.param != "" {
			if len(seg) == 0 {
				return nil, false
			}
			ps = append(ps, param{sg.param, pos, end})
		} else if string(seg) != sg.lit {
			return nil, false
		}
		last := i == len(rt.segs)-1
		if last {
			return ps, end == len(path)
		}
		if end == len(path) {
			return nil, false
		}
		pos = end + 1
	}
	return ps, pos >= len(path)
}

var notFound = InlineFunc(func(c *Ctx) {
	c.SetStatus(404)
	c.WriteString("404 page not found\n")
})

func methodNotAllowed(allow string) Handler {
	return HandlerFunc(func(c *Ctx) {
		c.SetStatus(405)
		c.SetHeader("Allow", allow)
		c.WriteString("405 method not allowed\n")
	})
}
