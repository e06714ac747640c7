package http1

import (
	"bytes"
	"encoding/binary"
	"math/bits"
)

// Default limits, used where a Limits field is zero.
const (
	// DefaultMaxHeaderBytes is the default Limits.MaxHeaderBytes: 64 KiB.
	DefaultMaxHeaderBytes = 64 << 10
	// DefaultMaxHeaders is the default Limits.MaxHeaders.
	DefaultMaxHeaders = 100
	// DefaultMaxURIBytes is the default Limits.MaxURIBytes: 8 KiB.
	DefaultMaxURIBytes = 8 << 10
	// DefaultMaxBodyBytes is the default Limits.MaxBodyBytes: 10 MiB.
	DefaultMaxBodyBytes = 10 << 20
)

// Limits bounds what a request may make the server hold or process. The zero
// value, like a nil *Limits, applies the defaults. A Limits is only read, so
// one value may be shared by any number of goroutines.
type Limits struct {
	// MaxHeaderBytes bounds the header section: empty lines before the
	// request line, the request line, the field lines and the final empty
	// line. A longer section is refused with 431 as soon as more than
	// MaxHeaderBytes bytes have arrived without its end. It also bounds a
	// chunked body's trailer section. Zero or negative means
	// DefaultMaxHeaderBytes (64 KiB).
	MaxHeaderBytes int
	// MaxHeaders bounds the number of header field lines, refused with 431
	// as soon as one more starts. It also bounds the number of trailer
	// fields. Zero or negative means DefaultMaxHeaders (100).
	MaxHeaders int
	// MaxURIBytes bounds the request-target, refused with 414 as soon as it
	// grows longer, before the request line ends. The header section limit
	// applies too. Zero or negative means DefaultMaxURIBytes (8 KiB).
	MaxURIBytes int
	// MaxBodyBytes bounds the request body: a larger Content-Length is
	// refused with 413 when the header section is parsed, and a
	// ChunkedReader refuses a chunk that would take the body past it. Zero
	// means DefaultMaxBodyBytes (10 MiB); negative means unlimited.
	MaxBodyBytes int64
}

// limits is Limits with the defaults applied.
type limits struct {
	headerBytes int
	headers     int
	uriBytes    int
	bodyBytes   int64 // negative: unlimited
}

func (l *Limits) resolve() limits {
	r := limits{DefaultMaxHeaderBytes, DefaultMaxHeaders, DefaultMaxURIBytes, DefaultMaxBodyBytes}
	if l == nil {
		return r
	}
	if l.MaxHeaderBytes > 0 {
		r.headerBytes = l.MaxHeaderBytes
	}
	if l.MaxHeaders > 0 {
		r.headers = l.MaxHeaders
	}
	if l.MaxURIBytes > 0 {
		r.uriBytes = l.MaxURIBytes
	}
	if l.MaxBodyBytes != 0 {
		r.bodyBytes = l.MaxBodyBytes
	}
	return r
}

// Header is one header field line. Name and Value are views into the input
// the request was parsed from; Value has no leading or trailing whitespace.
type Header struct {
	Name, Value []byte
}

// inlineHeaders is how many header fields a Request holds without
// allocating; a request with more spills into a slice kept across Reset.
const inlineHeaders = 32

// Request is a parsed HTTP/1.x request head.
//
// Its byte-slice fields are read-only views into the input passed to
// Parser.Parse: they stay valid while those bytes are neither overwritten
// nor released, and must not be modified. Use CopyTo to keep a request
// beyond that, or Rebase when the bytes have moved.
//
// A Request is meant to be reused: parsing into the same Request again
// allocates nothing unless the request has more than 32 header fields. It is
// not safe for concurrent use.
type Request struct {
	// Method is the request method, a token such as GET; it is case
	// sensitive.
	Method []byte
	// Target is the request-target exactly as received.
	Target []byte
	// Path is the path of the target: for origin-form (/p?q) and
	// absolute-form (http://host/p?q) the part before '?', "/" when an
	// absolute-form target has an empty path, "*" for asterisk-form
	// (OPTIONS *), and nil for authority-form (CONNECT host:port). It is
	// not percent-decoded.
	Path []byte
	// RawQuery is the part of the target after the first '?', without the
	// '?'; nil when there is none.
	RawQuery []byte
	// ProtoMajor and ProtoMinor are the HTTP version: 1.0 or 1.1.
	ProtoMajor, ProtoMinor int
	// Host is the authority of an absolute-form target if the target is in
	// that form (RFC 9112 §3.2.2), else the Host header field value; nil if
	// neither is present, which only HTTP/1.0 allows.
	Host []byte
	// ContentLength is the Content-Length, or -1 when absent. A request
	// with neither Content-Length nor chunked Transfer-Encoding has no body.
	ContentLength int64
	// Chunked reports a body in chunked transfer coding; read it with a
	// ChunkedReader. ContentLength is then -1.
	Chunked bool
	// Close reports that the connection must close after the response to
	// this request (RFC 9112 §9.3): for HTTP/1.1 when Connection has the
	// close option, for HTTP/1.0 unless Connection has keep-alive and not
	// close.
	Close bool
	// Expect100 reports an HTTP/1.1 request with "Expect: 100-continue": the
	// client may wait for a 100 (Continue) response before sending the body.
	Expect100 bool
	// Upgrade is the Upgrade header field value when the Connection header
	// field has the upgrade option in an HTTP/1.1 request (RFC 9110 §7.8),
	// else nil.
	Upgrade []byte
	// HeaderLen is the length of the header section, counted from the start
	// of the input: any skipped empty lines, the request line, the field
	// lines and the final empty line. It equals the count Parse returns.
	HeaderLen int

	raw  []byte // input[:HeaderLen]; anchor for Rebase
	nhdr int
	hdr  [inlineHeaders]Header
	// hdrHigh counts the entries of hdr written since the last Reset:
	// those from hdrHigh on are zero, so Reset clears only hdr[:hdrHigh].
	hdrHigh int
	// spill holds all headers once there are more than inlineHeaders.
	// Its entries past len(spill) are zero: reset clears the ones a
	// parse wrote before it shortens the slice.
	spill  []Header
	absURI bool // target in absolute-form; Host came from it
}

// Reset clears r, keeping the memory it allocated for header fields.
func (r *Request) Reset() {
	clear(r.hdr[:r.hdrHigh])
	r.hdrHigh = 0
	r.reset()
}

// reset clears the fields Parse sets, without clearing the inline header
// array, which parsing overwrites.
func (r *Request) reset() {
	r.Method, r.Target, r.Path, r.RawQuery = nil, nil, nil, nil
	r.ProtoMajor, r.ProtoMinor = 0, 0
	r.Host = nil
	r.ContentLength = -1
	r.Chunked, r.Close, r.Expect100, r.absURI = false, false, false, false
	r.Upgrade = nil
	r.HeaderLen = 0
	r.raw = nil
	r.nhdr = 0
	clear(r.spill)
	r.spill = r.spill[:0]
}

// Spilled reports whether r's field storage has grown past the 32 fields
// it holds inline: a request with more fields was parsed into it. Reset
// keeps the grown storage for reuse, so it stays true; a pool of requests
// may use it to keep only small ones.
func (r *Request) Spilled() bool { return cap(r.spill) > 0 }

// Headers returns the header fields in the order received. The slice is
// r's own storage: valid until r is next parsed into or reset, and not to be
// modified.
func (r *Request) Headers() []Header {
	if r.nhdr > inlineHeaders {
		return r.spill
	}
	return r.hdr[:r.nhdr]
}

// Header returns the value of the first header field whose name equals name
// case-insensitively, or nil if there is none. A present but empty field
// yields an empty, non-nil slice. It does not allocate.
func (r *Request) Header(name string) []byte {
	for _, h := range r.Headers() {
		if equalFold(h.Name, name) {
			return h.Value
		}
	}
	return nil
}

// Raw returns the header section r was parsed from, input[:HeaderLen].
func (r *Request) Raw() []byte { return r.raw }

// Rebase re-points r's views into b, which must begin with a copy of the
// header section r was parsed from (r.Raw()), for example after the engine
// moved the unconsumed input to a larger buffer. Slices assigned to r's
// fields by the caller, which are not views into that section, are left
// as they are. Rebase panics if b is shorter than the header section.
func (r *Request) Rebase(b []byte) {
	old := r.raw
	if len(b) < len(old) {
		panic("http1: Rebase buffer shorter than the header section")
	}
	r.Method = rebase(r.Method, old, b)
	r.Target = rebase(r.Target, old, b)
	r.Path = rebase(r.Path, old, b)
	r.RawQuery = rebase(r.RawQuery, old, b)
	r.Host = rebase(r.Host, old, b)
	r.Upgrade = rebase(r.Upgrade, old, b)
	hs := r.Headers()
	for i := range hs {
		hs[i].Name = rebase(hs[i].Name, old, b)
		hs[i].Value = rebase(hs[i].Value, old, b)
	}
	r.raw = b[:len(old)]
}

// CopyTo makes dst a copy of r that does not share memory with r or with
// the input r was parsed from, so that dst stays valid after that input is
// reused, for example when a request goes to a worker goroutine. It copies
// the header section into buf, growing it if its capacity is too small, and
// returns the buffer holding it; dst's views point into that buffer. dst may
// be r. CopyTo allocates only to grow buf or dst's header storage.
func (r *Request) CopyTo(dst *Request, buf []byte) []byte {
	buf = append(buf[:0], r.raw...)
	var spill []Header
	if dst != r {
		// dst.spill may share r's array (dst a value copy of r): then
		// dst takes an array of its own, or the two would keep sharing
		// it (r's next parse would rewrite dst's fields). Otherwise copy
		// into dst's, then clear what dst held past the copy's length,
		// keeping entries past len(spill) zero.
		if cap(dst.spill) > 0 && cap(r.spill) > 0 && &dst.spill[:1][0] == &r.spill[:1][0] {
			dst.spill = nil
		}
		old := len(dst.spill)
		spill = dst.spill[:0]
		if r.nhdr > inlineHeaders {
			spill = append(spill, r.spill...)
		}
		if old > len(spill) {
			clear(spill[len(spill):old]) // same array: append did not grow it
		}
		*dst = *r
	} else {
		spill = r.spill
	}
	dst.spill = spill
	dst.Rebase(buf)
	return buf
}

// rebase returns the view of b at the offset s has in old, if s is a view
// into old's backing array. Views are made by slicing the input without a
// capacity limit, so the capacities differ by the offset; the pointer
// comparison rules out slices that merely have a plausible capacity.
func rebase(s, old, b []byte) []byte {
	if cap(s) == 0 || cap(old) == 0 {
		return s
	}
	off := cap(old) - cap(s)
	if off < 0 || off+len(s) > len(old) || &old[:cap(old)][off] != &s[:cap(s)][0] {
		return s
	}
	return b[off : off+len(s)]
}

func (r *Request) addHeader(name, value []byte) {
	if r.nhdr < inlineHeaders {
		// Field by field: storing a composite literal goes through a
		// stack temporary and stalls store forwarding.
		h := &r.hdr[r.nhdr]
		h.Name, h.Value = name, value
		r.nhdr++
		r.hdrHigh = max(r.hdrHigh, r.nhdr)
		return
	}
	if r.nhdr == inlineHeaders {
		r.spill = append(r.spill[:0], r.hdr[:]...)
	}
	r.spill = append(r.spill, Header{name, value})
	r.nhdr++
}

// Scanner states of Parser.
const (
	scanBlank  = iota // before the request line; empty lines are skipped
	scanMethod        // in the method
	scanTarget        // in the request-target
	scanLine          // in the rest of the request line
	scanStart         // at the start of a field line or of the final empty line
	scanField         // in a field line
)

// Parser parses request heads incrementally; see Parse. The zero value is
// ready to use. A Parser holds only a few offsets of scan state and belongs to
// one connection; it is not safe for concurrent use.
type Parser struct {
	pos   int   // offset of the next byte to scan
	mark  int   // offset where the method (scanMethod) or target (scanTarget) starts
	lines int   // field lines started
	state uint8 // scan… constant
	// scanned counts the input bytes Parse examined, over the Parser's
	// lifetime; tests use it to check that parsing is linear.
	scanned int
}

// Reset returns p to its zero state, to parse a new request from the start
// of its input. Parse resets p itself after a complete request or an error;
// Reset is for abandoning a partial one.
func (p *Parser) Reset() { *p = Parser{} }

// restart is Reset keeping the work counter.
func (p *Parser) restart() { *p = Parser{scanned: p.scanned} }

// Parse parses the request head at the start of in into req.
//
// If the header section is incomplete, Parse returns (0, nil) and remembers
// how far it has scanned: the next call must pass the same bytes with more
// appended (in a slice that may live elsewhere), and resumes scanning where
// this one stopped, so that a head trickled in byte by byte costs linear
// time. When the section is complete, Parse fills req and returns the length
// of the section, req.HeaderLen; the body, if any, or the next pipelined
// request starts at in[n:], and p is ready for it.
//
// A request that is malformed or over a limit yields an *Error with the
// status code to respond with. Limit errors and a method that is not a token
// are reported as soon as they appear in the input, other errors once the
// header section is complete. After an error p is reset; the connection
// should be closed.
//
// lim may be nil for the defaults. The contents of req are unspecified after
// (0, nil) or an error. Parse keeps no reference to in; only req's views do.
func (p *Parser) Parse(in []byte, req *Request, lim *Limits) (n int, err error) {
	l := lim.resolve()
	if p.pos > len(in) {
		// The caller broke the contract by shrinking the input;
		// start over rather than trust stale offsets.
		p.restart()
	}
	if p.pos == 0 && p.state == scanBlank {
		// Fresh request: parse directly, the common case of a complete
		// head in one read, and fall back to the scanner for anything
		// else, so that incomplete input and errors are decided in one
		// place.
		n, e := parseHead(in, req, &l)
		if e == nil && n > 0 {
			p.scanned += n
			return n, nil
		}
		p.scanned += min(len(in), l.headerBytes)
	}
	from := p.pos
	end, e := p.scan(in, &l)
	if e != nil {
		p.restart()
		return 0, e
	}
	if end == 0 {
		p.scanned += p.pos - from
		return 0, nil
	}
	p.restart()
	p.scanned += end - from + end
	n, e = parseHead(in[:end], req, &l)
	if e != nil {
		return 0, e
	}
	if n != end {
		// Unreachable: scan and parseHead agree on where the section ends.
		return 0, ErrBadRequestLine
	}
	return n, nil
}

// scan resumes the search for the end of the header section at p.pos,
// enforcing the limits as it goes. It returns the section length once the
// section is complete and 0 while it is not.
func (p *Parser) scan(in []byte, l *limits) (int, *Error) {
	w := in
	if len(w) > l.headerBytes {
		w = w[:l.headerBytes]
	}
	i := p.pos
	for i < len(w) {
		switch p.state {
		case scanBlank:
			c := w[i]
			if c == '\n' {
				i++
				continue
			}
			if c == '\r' {
				if i+1 >= len(w) {
					return p.more(in, i, l)
				}
				if w[i+1] != '\n' {
					return 0, ErrBareCR
				}
				i += 2
				continue
			}
			p.state, p.mark = scanMethod, i
		case scanMethod:
			for i < len(w) && isToken[w[i]] {
				i++
			}
			if i == len(w) {
				return p.more(in, i, l)
			}
			switch c := w[i]; {
			case c == ' ' && i > p.mark:
				i++
				p.state, p.mark = scanTarget, i
			case c == ' ', c == '\r', c == '\n':
				return 0, ErrBadRequestLine
			default:
				return 0, ErrBadMethod
			}
		case scanTarget:
			for i < len(w) {
				if c := w[i]; c == ' ' || c == '\r' || c == '\n' {
					p.state = scanLine
					break
				}
				if i-p.mark >= l.uriBytes {
					return 0, ErrURITooLong
				}
				i++
			}
		case scanLine, scanField:
			j := bytes.IndexByte(w[i:], '\n')
			if j < 0 {
				return p.more(in, len(w), l)
			}
			i += j + 1
			p.state = scanStart
		case scanStart:
			c := w[i]
			if c == '\n' {
				return i + 1, nil
			}
			if c == '\r' {
				if i+1 >= len(w) {
					return p.more(in, i, l)
				}
				if w[i+1] == '\n' {
					return i + 2, nil
				}
			}
			p.lines++
			if p.lines > l.headers {
				return 0, ErrTooManyHeaders
			}
			p.state = scanField
		}
	}
	return p.more(in, i, l)
}

// more records that scanning stopped at i for lack of input, and reports
// whether the header section has already outgrown its limit.
func (p *Parser) more(in []byte, i int, l *limits) (int, *Error) {
	p.pos = i
	if len(in) > l.headerBytes {
		return 0, ErrHeaderTooLarge
	}
	return 0, nil
}

// parseHead parses a header section at the start of in into req. It returns
// (0, nil) when the section is incomplete or outgrows a limit, which the
// scanner then reports; otherwise the section length or the first error. It
// may report an error before the section is complete; Parse only trusts such
// an error once the scanner has found the section's end.
func parseHead(in []byte, req *Request, l *limits) (int, *Error) {
	req.reset()
	if len(in) > l.headerBytes {
		in = in[:l.headerBytes]
	}
	i := 0
	for { // Skip empty lines before the request line (RFC 9112 §2.2).
		if i >= len(in) {
			return 0, nil
		}
		c := in[i]
		if c == '\n' {
			i++
			continue
		}
		if c != '\r' {
			break
		}
		if i+1 >= len(in) {
			return 0, nil
		}
		if in[i+1] != '\n' {
			return 0, ErrBareCR
		}
		i += 2
	}

	// Method.
	start := i
	for i < len(in) && isToken[in[i]] {
		i++
	}
	if i >= len(in) {
		return 0, nil
	}
	if in[i] != ' ' {
		if i == start || in[i] == '\r' || in[i] == '\n' {
			return 0, ErrBadRequestLine
		}
		return 0, ErrBadMethod
	}
	if i == start {
		return 0, ErrBadRequestLine
	}
	req.Method = in[start:i]
	i++

	// Request-target.
	start = i
	for i < len(in) && isTarget[in[i]] {
		i++
	}
	if i-start > l.uriBytes {
		return 0, nil // the scanner reports 414
	}
	if i >= len(in) {
		return 0, nil
	}
	if in[i] != ' ' {
		if in[i] == '\r' || in[i] == '\n' {
			return 0, ErrBadRequestLine
		}
		return 0, ErrBadTarget
	}
	if i == start {
		return 0, ErrBadRequestLine
	}
	req.Target = in[start:i]
	i++

	// HTTP-version and the end of the request line.
	vstart := i
	if len(in)-i >= 10 && string(in[i:i+8]) == "HTTP/1.1" && in[i+8] == '\r' && in[i+9] == '\n' {
		req.ProtoMajor, req.ProtoMinor = 1, 1
		i += 10
	} else {
		for i < len(in) && in[i] != '\r' && in[i] != '\n' {
			i++
		}
		if i >= len(in) {
			return 0, nil
		}
		major, minor, e := parseVersion(in[vstart:i])
		if e != nil {
			return 0, e
		}
		req.ProtoMajor, req.ProtoMinor = major, minor
		if i = lineEnd(in, i); i <= 0 {
			return 0, errOf(i)
		}
	}

	// Header fields.
	var (
		hosts                   int
		hostValue               []byte
		clSeen                  bool
		te                      teState
		connClose, connKeepLive bool
		connUpgrade             bool
		upgrade, expect         []byte
	)
	for {
		n, e := sectionEnd(in, i)
		if n != 0 || e != nil {
			if n < 0 || e != nil {
				return 0, e // more input needed, or malformed
			}
			i += n
			break
		}
		if req.nhdr >= l.headers {
			return 0, nil // the scanner reports 431
		}

		name, value, next, e := parseField(in, i)
		if next == 0 {
			return 0, e
		}
		i = next
		req.addHeader(name, value)

		switch len(name) {
		case 4:
			if lowerIs(name, "host") {
				hosts++
				hostValue = value
			}
		case 6:
			if lowerIs(name, "expect") && expect == nil {
				expect = value
			}
		case 7:
			if lowerIs(name, "upgrade") && upgrade == nil {
				upgrade = value
			}
		case 10:
			if lowerIsLong(name, "connection") {
				c, k, u := connectionOptions(value)
				connClose, connKeepLive, connUpgrade = connClose || c, connKeepLive || k, connUpgrade || u
			}
		case 14:
			if lowerIsLong(name, "content-length") {
				n, ok := parseContentLength(value)
				if !ok || clSeen && n != req.ContentLength {
					return 0, ErrBadContentLength
				}
				clSeen, req.ContentLength = true, n
			}
		case 17:
			if lowerIsLong(name, "transfer-encoding") {
				if e := te.add(value); e != nil {
					return 0, e
				}
			}
		}
	}
	req.HeaderLen = i
	req.raw = in[:i]
	http11 := req.ProtoMinor == 1

	// Host (RFC 9112 §3.2) and the form of the target (RFC 9112 §3.2.1-4).
	if hosts > 1 {
		return 0, ErrDuplicateHost
	}
	if hosts == 1 {
		if !validHost(hostValue) {
			return 0, ErrBadHost
		}
		req.Host = hostValue
	}
	// The '/' of "HTTP/" is the path of an absolute-form target that has
	// none, keeping every field a view into the input.
	if e := req.splitTarget(in[vstart+4 : vstart+5]); e != nil {
		return 0, e
	}
	if hosts == 0 && http11 && !req.absURI {
		return 0, ErrMissingHost
	}

	// Framing (RFC 9112 §6).
	if te.seen {
		switch {
		case !http11:
			return 0, ErrTransferEncodingHTTP10
		case clSeen:
			return 0, ErrLengthAndChunked
		case te.chunked != 1 || !te.lastChunked:
			return 0, ErrBadTransferEncoding
		case te.unknown:
			return 0, ErrUnsupportedTransferEncoding
		}
		req.Chunked = true
	}
	if l.bodyBytes >= 0 && req.ContentLength > l.bodyBytes {
		return 0, ErrBodyTooLarge
	}

	// Connection options (RFC 9112 §9.3, RFC 9110 §7.6.1, §7.8, §10.1.1).
	if http11 {
		req.Close = connClose
		if connUpgrade {
			req.Upgrade = upgrade
		}
		req.Expect100 = expect != nil && lowerIs100Continue(expect)
	} else {
		req.Close = connClose || !connKeepLive
	}
	return i, nil
}

// parseField parses the field line at in[i:], which starts with neither
// whitespace nor a line end: it returns the name, the value without
// surrounding whitespace and the offset after the line end, or next == 0
// and a nil error while the line is incomplete, or next == 0 and the error.
// The request and response parsers share it.
func parseField(in []byte, i int) (name, value []byte, next int, e *Error) {
	start := i
	i = skipName(in, i)
	if i >= len(in) {
		return nil, nil, 0, nil
	}
	if in[i] != ':' {
		if in[i] == ' ' || in[i] == '\t' {
			return nil, nil, 0, ErrSpaceBeforeColon
		}
		return nil, nil, 0, ErrBadHeaderName
	}
	if i == start {
		return nil, nil, 0, ErrBadHeaderName
	}
	name = in[start:i]
	i++
	for i < len(in) && (in[i] == ' ' || in[i] == '\t') {
		i++
	}
	vstart := i
	i = skipValue(in, i)
	if i >= len(in) {
		return nil, nil, 0, nil
	}
	if in[i] != '\r' && in[i] != '\n' {
		return nil, nil, 0, ErrBadHeaderValue
	}
	vend := i
	for vend > vstart && (in[vend-1] == ' ' || in[vend-1] == '\t') {
		vend--
	}
	if i = lineEnd(in, i); i <= 0 {
		return nil, nil, 0, errOf(i)
	}
	return name, in[vstart:vend], i, nil
}

// sectionEnd looks at the start of a header line, in[i:]: n > 0 is the
// length of the empty line that ends the section (CRLF or a bare LF), n < 0
// means more input is needed, and n == 0 a field line starts there. A bare
// CR is an error, and so is a line starting with a space or tab (obs-fold,
// RFC 9112 §5.2: a proxy must refuse or rewrite it, and views cannot be
// rewritten).
func sectionEnd(in []byte, i int) (n int, err *Error) {
	if i >= len(in) {
		return -1, nil
	}
	switch in[i] {
	case '\r':
		if i+1 >= len(in) {
			return -1, nil
		}
		if in[i+1] != '\n' {
			return 0, ErrBareCR
		}
		return 2, nil
	case '\n':
		return 1, nil
	case ' ', '\t':
		return 0, ErrObsFold
	}
	return 0, nil
}

// lineEnd returns the offset after the line terminator at in[i], which is
// '\r' or '\n': 0 if in ends first, or -1 for a bare CR.
func lineEnd(in []byte, i int) int {
	if in[i] == '\n' {
		return i + 1
	}
	if i+1 >= len(in) {
		return 0
	}
	if in[i+1] != '\n' {
		return -1
	}
	return i + 2
}

// errOf maps a lineEnd failure to parseHead's result.
func errOf(i int) *Error {
	if i < 0 {
		return ErrBareCR
	}
	return nil
}

// skipName returns the offset of the first byte at or after i that is not
// a tchar (isToken), or len(in). It checks eight bytes at a time: a word of
// ASCII letters and '-' (what field names are made of) is skipped whole, and
// a word with any other byte jumps to the first such byte, which ends the
// name unless isToken says it is one of the rarer tchars (a digit, '_', ...).
func skipName(in []byte, i int) int {
	for i+8 <= len(in) {
		x := binary.LittleEndian.Uint64(in[i:])
		// Per byte, exact (no carry crosses a byte: a 7-bit value plus at
		// most 0x80 stays below 0x100): the high bit of v+(0x80-m) is
		// set iff v >= m. Letters are 'a'..'z' once 0x20 is set (which
		// maps nothing else into that range), '-' is 0x2d; bytes with
		// the high bit are not tchars.
		v := x & 0x7f7f7f7f7f7f7f7f
		lo := v | 0x2020202020202020
		letter := (lo + 0x1f1f1f1f1f1f1f1f) &^ (lo + 0x0505050505050505)
		dash := (v + 0x5353535353535353) &^ (v + 0x5252525252525252)
		other := ^((letter | dash) &^ x) & 0x8080808080808080
		if other == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(other) >> 3
		if !isToken[in[i]] {
			return i
		}
		i++
	}
	for i < len(in) && isToken[in[i]] {
		i++
	}
	return i
}

// skipValue returns the offset of the first byte at or after i that cannot
// be in a field value, or len(in). It checks eight bytes at a time: a word
// of visible ASCII, SP and obs-text is skipped whole, and a word with
// anything else jumps to the first such byte, which ends the value unless
// it is an HTAB.
func skipValue(in []byte, i int) int {
	for i+8 <= len(in) {
		x := binary.LittleEndian.Uint64(in[i:])
		// Bytes below 0x20 (Hacker's Delight "hasless"), and DEL, a zero
		// byte in x^0x7f...; bytes >= 0x80 never match. A borrow only
		// flags bytes above one that matches, so the lowest flagged byte
		// is the first that matches.
		y := x ^ 0x7f7f7f7f7f7f7f7f
		m := ((x-0x2020202020202020)&^x | (y-0x0101010101010101)&^y) & 0x8080808080808080
		if m == 0 {
			i += 8
			continue
		}
		i += bits.TrailingZeros64(m) >> 3
		if in[i] != '\t' {
			return i
		}
		i++
	}
	for i < len(in) && isValue[in[i]] {
		i++
	}
	return i
}

// parseVersion parses an HTTP-version (RFC 9112 §2.3). Anything that looks
// like a version but is not 1.0 or 1.1 is 505; anything else is 400.
func parseVersion(v []byte) (major, minor int, e *Error) {
	if len(v) == 8 && string(v[:5]) == "HTTP/" && v[6] == '.' {
		if v[5] == '1' && (v[7] == '0' || v[7] == '1') {
			return 1, int(v[7] - '0'), nil
		}
	}
	if len(v) < 6 || string(v[:5]) != "HTTP/" {
		return 0, 0, ErrBadVersion
	}
	// "HTTP/" 1*DIGIT [ "." 1*DIGIT ], as in HTTP/2, HTTP/2.0 or HTTP/3.
	d := v[5:]
	i := 0
	for i < len(d) && isDigit(d[i]) {
		i++
	}
	if i == 0 {
		return 0, 0, ErrBadVersion
	}
	if i < len(d) {
		if d[i] != '.' || i+1 == len(d) {
			return 0, 0, ErrBadVersion
		}
		for i++; i < len(d); i++ {
			if !isDigit(d[i]) {
				return 0, 0, ErrBadVersion
			}
		}
	}
	return 0, 0, ErrVersionNotSupported
}

// splitTarget sets Path, RawQuery and, for absolute-form, Host from the
// request-target. slash is a view of a "/" for an empty absolute path.
func (r *Request) splitTarget(slash []byte) *Error {
	t := r.Target
	switch {
	case t[0] == '/': // origin-form
	case len(t) == 1 && t[0] == '*': // asterisk-form
		if string(r.Method) != "OPTIONS" {
			return ErrBadTarget
		}
		r.Path = t
		return nil
	case string(r.Method) == "CONNECT": // authority-form
		if !validHost(t) || bytes.IndexByte(t, ':') < 0 {
			return ErrBadTarget
		}
		return nil
	default: // absolute-form: scheme "://" authority path-abempty [ "?" query ]
		i := 0
		for i < len(t) && isScheme(t[i], i) {
			i++
		}
		if i == 0 || len(t)-i < 3 || string(t[i:i+3]) != "://" {
			return ErrBadTarget
		}
		t = t[i+3:]
		i = 0
		for i < len(t) && t[i] != '/' && t[i] != '?' && t[i] != '#' {
			i++
		}
		auth := t[:i]
		if len(auth) == 0 {
			return ErrBadTarget
		}
		if !validHost(auth) { // includes userinfo, which RFC 9110 §4.2.4 calls an error
			return ErrBadHost
		}
		r.Host, r.absURI = auth, true
		t = t[i:]
		if len(t) == 0 || t[0] != '/' {
			r.Path = slash
			if len(t) > 0 && t[0] == '?' {
				r.RawQuery = t[1:]
			}
			return nil
		}
	}
	if q := bytes.IndexByte(t, '?'); q >= 0 {
		r.Path, r.RawQuery = t[:q], t[q+1:]
	} else {
		r.Path = t
	}
	return nil
}

// teState accumulates the transfer codings of all Transfer-Encoding field
// lines, in order (RFC 9112 §6.1).
type teState struct {
	seen        bool
	chunked     int  // times chunked appears
	lastChunked bool // the final coding so far is chunked
	unknown     bool // a coding other than chunked appears
}

func (t *teState) add(v []byte) *Error {
	t.seen = true
	for {
		c := bytes.IndexByte(v, ',')
		m := v
		if c >= 0 {
			m = v[:c]
		}
		m = trimOWS(m)
		if len(m) > 0 { // empty list elements are allowed (RFC 9110 §5.6.1)
			name := m
			if s := bytes.IndexByte(m, ';'); s >= 0 {
				name = trimOWS(m[:s]) // a coding with parameters
			}
			if !isTokenString(name) {
				return ErrBadTransferEncoding
			}
			if equalFold(name, "chunked") {
				if len(name) != len(m) {
					return ErrBadTransferEncoding // chunked takes no parameters
				}
				t.chunked++
				t.lastChunked = true
			} else {
				t.unknown = true
				t.lastChunked = false
			}
		}
		if c < 0 {
			break
		}
		v = v[c+1:]
	}
	if t.chunked == 0 && !t.unknown {
		return ErrBadTransferEncoding // no coding at all yet
	}
	return nil
}

// parseContentLength parses a Content-Length value. A list of identical
// values, as in "5, 5", is accepted as that value (RFC 9110 §8.6).
func parseContentLength(v []byte) (int64, bool) {
	if n, ok := parseShortDecimal(v); ok {
		return n, true // the common case: one value, digits only
	}
	return parseContentLengthList(v)
}

// parseContentLengthList is parseContentLength's general path: a list of
// values with optional whitespace, all equal.
func parseContentLengthList(v []byte) (int64, bool) {
	n := int64(-1)
	for {
		c := bytes.IndexByte(v, ',')
		m := v
		if c >= 0 {
			m = v[:c]
		}
		x, ok := parseDecimal(trimOWS(m))
		if !ok || n >= 0 && x != n {
			return 0, false
		}
		n = x
		if c < 0 {
			return n, true
		}
		v = v[c+1:]
	}
}

// parseShortDecimal parses 1 to 18 digits, too few to overflow an int64;
// it reports false for anything else, which parseDecimal and its callers
// then decide.
func parseShortDecimal(b []byte) (int64, bool) {
	if len(b) == 0 || len(b) > 18 {
		return 0, false
	}
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		n = n*10 + int64(c-'0')
	}
	return n, true
}

// parseDecimal parses 1*DIGIT into a non-negative int64.
func parseDecimal(b []byte) (int64, bool) {
	if len(b) == 0 {
		return 0, false
	}
	const maxInt64 = 1<<63 - 1
	var n int64
	for _, c := range b {
		if !isDigit(c) {
			return 0, false
		}
		d := int64(c - '0')
		if n > (maxInt64-d)/10 {
			return 0, false
		}
		n = n*10 + d
	}
	return n, true
}

// connectionOptions reports which of the close, keep-alive and upgrade
// options a Connection field value lists.
func connectionOptions(v []byte) (closeOpt, keepAlive, upgrade bool) {
	for len(v) > 0 {
		c := bytes.IndexByte(v, ',')
		m := v
		if c >= 0 {
			m, v = v[:c], v[c+1:]
		} else {
			v = nil
		}
		m = trimOWS(m)
		switch len(m) {
		case 5:
			closeOpt = closeOpt || lowerIs(m, "close")
		case 7:
			upgrade = upgrade || lowerIs(m, "upgrade")
		case 10:
			keepAlive = keepAlive || lowerIsLong(m, "keep-alive")
		}
	}
	return closeOpt, keepAlive, upgrade
}

func lowerIs100Continue(v []byte) bool {
	return len(v) == len("100-continue") && lowerIsLong(v, "100-continue")
}

func trimOWS(b []byte) []byte {
	for len(b) > 0 && (b[0] == ' ' || b[0] == '\t') {
		b = b[1:]
	}
	for len(b) > 0 && (b[len(b)-1] == ' ' || b[len(b)-1] == '\t') {
		b = b[:len(b)-1]
	}
	return b
}

// lowerIs reports whether b equals the lowercase s ignoring ASCII case. It
// requires len(b) >= len(s). It is small enough to inline; lowerIsLong is
// faster for literals of eight bytes or more.
func lowerIs(b []byte, s string) bool {
	for i := 0; i < len(s); i++ {
		c := b[i]
		if c >= 'A' && c <= 'Z' {
			c += 'a' - 'A'
		}
		if c != s[i] {
			return false
		}
	}
	return true
}

// lowerIsLong is lowerIs for len(s) >= 8: it compares eight bytes at a
// time, the last word overlapping the one before.
func lowerIsLong(b []byte, s string) bool {
	n := len(s)
	b = b[:n]
	for i := 0; i < n-8; i += 8 {
		if !foldIs64(binary.LittleEndian.Uint64(b[i:]), str64(s[i:])) {
			return false
		}
	}
	return foldIs64(binary.LittleEndian.Uint64(b[n-8:]), str64(s[n-8:]))
}

// foldIs64 reports whether the bytes of x equal those of w, whose letters
// are lowercase ASCII, ignoring ASCII case: at a letter of w, x may have
// it or its uppercase (x|0x20 is the letter for exactly those two); every
// other byte must be equal.
func foldIs64(x, w uint64) bool {
	// 0x80 at the bytes of w from 'a' to 'z' (w's bytes are ASCII: no
	// carry crosses a byte), moved down to 0x20.
	letters := (w + 0x1f1f1f1f1f1f1f1f) &^ (w + 0x0505050505050505) & 0x8080808080808080
	return x|letters>>2 == w
}

// str64 loads the first eight bytes of s, little-endian.
func str64(s string) uint64 {
	_ = s[7]
	return uint64(s[0]) | uint64(s[1])<<8 | uint64(s[2])<<16 | uint64(s[3])<<24 |
		uint64(s[4])<<32 | uint64(s[5])<<40 | uint64(s[6])<<48 | uint64(s[7])<<56
}

// equalFold reports whether b and s are equal ignoring ASCII case.
func equalFold(b []byte, s string) bool {
	if len(b) != len(s) {
		return false
	}
	for i := 0; i < len(s); i++ {
		x, y := b[i], s[i]
		if x == y {
			continue
		}
		if x >= 'A' && x <= 'Z' {
			x += 'a' - 'A'
		}
		if y >= 'A' && y <= 'Z' {
			y += 'a' - 'A'
		}
		if x != y {
			return false
		}
	}
	return true
}

func isDigit(c byte) bool { return c >= '0' && c <= '9' }

// isScheme reports whether c may be the i-th byte of a URI scheme.
func isScheme(c byte, i int) bool {
	switch {
	case c >= 'a' && c <= 'z', c >= 'A' && c <= 'Z':
		return true
	case i > 0 && (isDigit(c) || c == '+' || c == '-' || c == '.'):
		return true
	}
	return false
}

// IsToken reports whether s is a non-empty token (RFC 9110 section
// 5.6.2): what a header field name, a method or an Upgrade protocol name
// must be.
func IsToken(s string) bool {
	if s == "" {
		return false
	}
	for i := 0; i < len(s); i++ {
		if !isToken[s[i]] {
			return false
		}
	}
	return true
}

func isTokenString(b []byte) bool {
	if len(b) == 0 {
		return false
	}
	for _, c := range b {
		if !isToken[c] {
			return false
		}
	}
	return true
}

func validHost(b []byte) bool {
	for _, c := range b {
		if !isHost[c] {
			return false
		}
	}
	return true
}

// Byte classes.
var (
	// isToken is tchar (RFC 9110 §5.6.2).
	isToken [256]bool
	// isValue is field-vchar, SP and HTAB (RFC 9110 §5.5): everything but
	// the other control characters and DEL.
	isValue [256]bool
	// isTarget is what a request-target may hold: visible ASCII and, as
	// many servers accept, obs-text; no whitespace, controls or DEL.
	isTarget [256]bool
	// isHost is what a Host value or authority may hold: reg-name,
	// IP-literal and port characters (RFC 3986 §3.2.2), no userinfo '@'.
	isHost [256]bool
)

func init() {
	for c := 0; c < 256; c++ {
		b := byte(c)
		alnum := b >= 'a' && b <= 'z' || b >= 'A' && b <= 'Z' || isDigit(b)
		isToken[c] = alnum || bytes.IndexByte([]byte("!#$%&'*+-.^_`|~"), b) >= 0
		isValue[c] = b == '\t' || b >= 0x20 && b != 0x7f
		isTarget[c] = b > 0x20 && b != 0x7f
		isHost[c] = alnum || bytes.IndexByte([]byte("!$&'()*+,;=-._~%:[]"), b) >= 0
	}
}
