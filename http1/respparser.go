package http1

import (
	"bytes"
	"io"
	"iter"
	"math"
	"strconv"
	"time"
)

// ErrBadStatusLine is a response whose status line is not HTTP-version SP
// three-digit status code [SP reason phrase], or whose reason phrase has
// control characters. Its Status, 502, is what a gateway answers when an
// upstream server sends it.
var ErrBadStatusLine = &Error{502, "malformed status line"}

// Framing says how the body of a response is delimited (RFC 9112 §6.3).
type Framing uint8

const (
	// FramingNone is a response without a body: one to a HEAD request, a
	// 1xx (Informational), 204 (No Content) or 304 (Not Modified), or a 2xx
	// to CONNECT, whatever its Content-Length or Transfer-Encoding say.
	FramingNone Framing = iota
	// FramingLength is a body of Response.ContentLength bytes.
	FramingLength
	// FramingChunked is a body in chunked transfer coding.
	FramingChunked
	// FramingClose is a body that ends when the server closes the
	// connection: a response with neither Content-Length nor chunked
	// Transfer-Encoding. Response.Close is then true.
	FramingClose
)

var framingNames = [...]string{"none", "length", "chunked", "close"}

// String returns the framing's name in lowercase: none, length, chunked or
// close.
func (f Framing) String() string {
	if int(f) < len(framingNames) {
		return framingNames[f]
	}
	return "framing(" + strconv.Itoa(int(f)) + ")"
}

// Response is a parsed HTTP/1.x response head.
//
// Like a Request, its byte-slice fields are read-only views into the input
// passed to ResponseParser.Parse, valid while those bytes are neither
// overwritten nor released; use Rebase when they have moved. Unlike a
// Request, a Response keeps no table of its header fields' views: only the
// offsets of the first eight (64 bytes), which Header and Headers read,
// scanning the header section (validated by Parse) for a head with more.
// That keeps a Response small enough to live on the stack, and parsing
// cheap for clients that, like a load generator, look at no field the
// parser does not already interpret.
//
// A Response is not safe for concurrent use. The zero value is an empty
// response, ready to be parsed into.
type Response struct {
	// ProtoMajor and ProtoMinor are the HTTP version: 1.0 or 1.1.
	ProtoMajor, ProtoMinor int
	// StatusCode is the three-digit status code, 100 to 999.
	StatusCode int
	// Reason is the reason phrase, possibly empty. RFC 9112 §4 says a
	// client should ignore it.
	Reason []byte
	// ContentLength is the Content-Length, or -1 when absent or overridden
	// by Transfer-Encoding. It is kept when Framing is FramingNone: the
	// Content-Length of a response to HEAD describes the representation a
	// GET would have returned.
	ContentLength int64
	// Framing says how the body that follows the head is delimited.
	Framing Framing
	// Close reports that the server will close the connection after this
	// response, so no other request may be sent on it (RFC 9112 §9.3):
	// for HTTP/1.1 when Connection has the close option, for HTTP/1.0
	// unless Connection has keep-alive and not close, and always for
	// FramingClose. It is also set for a response with both
	// Transfer-Encoding and Content-Length, whose framing RFC 9112 §6.3
	// says to distrust after this response.
	Close bool
	// KeepAlive is the timeout parameter of the Keep-Alive header field
	// ("Keep-Alive: timeout=5"): how long the server says it keeps an idle
	// connection open, a bound for a client pool's idle timeout. Zero when
	// absent, malformed or timeout=0.
	KeepAlive time.Duration
	// Coded reports a Transfer-Encoding that lists a coding other than
	// chunked (the gzip of "gzip, chunked"): the body Body delimits is
	// still in that coding, which the parser does not decode. A proxy
	// must not pass such a body on as if it were plain (RFC 9112 §6.1).
	Coded bool
	// HeaderLen is the length of the head: status line, field lines and
	// the final empty line. It equals the count Parse returns.
	HeaderLen int

	raw     []byte // input[:HeaderLen]
	hasConn bool   // a Connection field is among the header fields
	// fields holds where the first respFields field lines' names and
	// values are in raw, for Headers; nf counts them, or is -1 when the
	// head has more fields or is too long for the offsets, and Headers
	// scans raw instead.
	nf     int8
	fields [respFields]fieldPos
}

// respFields is how many field lines a Response notes the place of.
const respFields = 8

// fieldPos is where a field line's name and value are in a head.
type fieldPos struct{ name, nameEnd, value, valueEnd uint16 }

// HasConnectionField reports whether the head has a Connection header
// field. When it has none, a proxy has no connection options to look
// for among the fields (RFC 9110 §7.6.1) and can skip that scan.
func (r *Response) HasConnectionField() bool { return r.hasConn }

// Raw returns the head r was parsed from, input[:HeaderLen].
func (r *Response) Raw() []byte { return r.raw }

// Headers returns an iterator over the header fields in the order received.
// The names and values are views into the input, as r's fields are; values
// have no surrounding whitespace. It does not allocate.
func (r *Response) Headers() iter.Seq[Header] {
	return func(yield func(Header) bool) {
		if r.nf >= 0 {
			raw := r.raw
			for _, f := range r.fields[:r.nf] {
				if !yield(Header{Name: raw[f.name:f.nameEnd], Value: raw[f.value:f.valueEnd]}) {
					return
				}
			}
			return
		}
		b := r.raw
		i := bytes.IndexByte(b, '\n') // end of the status line
		if i < 0 {
			return
		}
		for b = b[i+1:]; len(b) > 0 && b[0] != '\r' && b[0] != '\n'; {
			// The head was validated: every field line is
			// name ":" OWS value OWS line-end.
			end := bytes.IndexByte(b, '\n')
			line := b[:end]
			b = b[end+1:]
			if line[len(line)-1] == '\r' {
				line = line[:len(line)-1]
			}
			colon := bytes.IndexByte(line, ':')
			if !yield(Header{Name: line[:colon], Value: trimOWS(line[colon+1:])}) {
				return
			}
		}
	}
}

// Header returns the value of the first header field whose name equals name
// case-insensitively, or nil if there is none. A present but empty field
// yields an empty, non-nil slice. It does not allocate.
func (r *Response) Header(name string) []byte {
	for h := range r.Headers() {
		if equalFold(h.Name, name) {
			return h.Value
		}
	}
	return nil
}

// Rebase re-points r's views into b, which must begin with a copy of the
// head r was parsed from (r.Raw()), for example after the engine moved the
// unconsumed input to a larger buffer. It panics if b is shorter than the
// head.
func (r *Response) Rebase(b []byte) {
	old := r.raw
	if len(b) < len(old) {
		panic("http1: Rebase buffer shorter than the response head")
	}
	r.Reason = rebase(r.Reason, old, b)
	r.raw = b[:len(old)]
}

// reset clears the fields Parse sets.
func (r *Response) reset() { *r = Response{ContentLength: -1} }

// ResponseParser states.
const (
	respHead    uint8 = iota // expecting a response head
	respLength               // in a Content-Length body; remain bytes left
	respChunked              // in a chunked body, decoded by chunked
	respClose                // in a body delimited by the close; remain bytes allowed, or -1
)

// Head scanner states of ResponseParser.
const (
	headLine  uint8 = iota // in the status line or a field line
	headStart              // at the start of a field line or of the final empty line
)

// ResponseParser parses the responses arriving on one client connection,
// heads and body framing, incrementally and without allocating: Parse reads
// a head into a Response, then Body delimits the body that follows, if any,
// and the next Parse reads the next response. Like Parser, it is fed all
// the connection's unconsumed input each time and consumes a head only once
// it is complete, remembering how far it has scanned, so that a head
// trickled in byte by byte costs linear time.
//
// The zero value is ready to use. A ResponseParser holds a few offsets (32
// bytes on 64-bit platforms) and no buffer, so a client may keep one per
// connection, idle ones included; the first chunked body it meets makes it
// allocate a ChunkedReader, which it keeps for the next ones. It belongs to
// one connection and is not safe for concurrent use.
//
// Errors are the package's *Error values: field lines and framing follow
// the rules of requests and yield the same errors (ErrBadHeaderName,
// ErrObsFold, ErrBadContentLength, ErrHeaderTooLarge, ErrBadChunkSize, …),
// with the Status a server would answer a request with; a gateway answers
// 502 to any of them. The status line yields ErrBadStatusLine,
// ErrVersionNotSupported or ErrBadVersion, the last as soon as the input
// does not start with "HTTP/", so that a reply in another protocol is
// refused without waiting for a line end. Other errors in the head are
// reported once it is complete, limit errors as soon as a limit is
// exceeded. After an error the parser is reset and the connection must be
// closed.
type ResponseParser struct {
	chunked *ChunkedReader // allocated on the first chunked body
	remain  int64          // see the states
	pos     int32          // offset of the next head byte to scan
	lines   int32          // field lines started in the head being scanned
	state   uint8          // resp… constant
	scan    uint8          // head… constant
}

// Reset returns p to its zero state for a new connection, keeping its
// ChunkedReader.
func (p *ResponseParser) Reset() { *p = ResponseParser{chunked: p.chunked} }

// InBody reports whether the body of the last response Parse returned is
// still to be read with Body.
func (p *ResponseParser) InBody() bool { return p.state != respHead }

// Parse parses the response head at the start of in into resp. method is
// the method of the request the response answers, which decides the
// framing of a response to HEAD or CONNECT.
//
// If the head is incomplete, Parse returns (0, nil) and remembers how far it
// has scanned: the next call must pass the same bytes with more appended (in
// a slice that may live elsewhere). When the head is complete, Parse fills
// resp and returns its length, resp.HeaderLen. Then:
//
//   - For a 1xx (Informational) response other than 101, the final
//     response follows: call Parse again with in[n:].
//   - For a 101 (Switching Protocols) or a 2xx to CONNECT, the bytes after
//     the head belong to another protocol, or a tunnel; the connection is
//     no longer p's.
//   - Otherwise, when resp.Framing is not FramingNone, read the body with
//     Body, starting at in[n:], until it reports done; then Parse the next
//     response.
//
// lim bounds the head (Limits.MaxHeaderBytes, Limits.MaxHeaders) and the
// body (Limits.MaxBodyBytes, which a client that streams bodies through
// usually sets negative, for no limit); nil means the defaults. Parse
// panics if called while InBody is true. It keeps no reference to in or
// resp; the contents of resp are unspecified after (0, nil) or an error.
func (p *ResponseParser) Parse(in []byte, method string, resp *Response, lim *Limits) (n int, err error) {
	if p.state != respHead {
		panic("http1: ResponseParser.Parse called before the body was read")
	}
	l := lim.resolve()
	l.headerBytes = min(l.headerBytes, math.MaxInt32) // p.pos is an int32
	if int(p.pos) > len(in) {
		// The caller broke the contract by shrinking the input;
		// start over rather than trust stale offsets.
		p.restart()
	}
	if p.pos == 0 {
		// The common case, a whole head in one read, is parsed directly;
		// incomplete input and errors go through the scanner, so that
		// they are decided in one place.
		n, e := parseResponseHead(in, resp, &l)
		if e == nil && n > 0 {
			if e = p.frame(resp, method, &l); e != nil {
				return 0, e
			}
			return n, nil
		}
	}
	end, e := p.scanHead(in, &l)
	if e != nil {
		p.restart()
		return 0, e
	}
	if end == 0 {
		return 0, nil
	}
	p.restart()
	n, e = parseResponseHead(in[:end], resp, &l)
	if e != nil {
		return 0, e
	}
	if n != end {
		// Unreachable: scanHead and parseResponseHead agree on where
		// the head ends.
		return 0, ErrBadStatusLine
	}
	if e = p.frame(resp, method, &l); e != nil {
		return 0, e
	}
	return n, nil
}

// restart clears the head scanner.
func (p *ResponseParser) restart() { p.pos, p.lines, p.scan = 0, 0, headLine }

// frame sets the body framing of resp, whose head was just parsed, and p's
// state to read it (RFC 9112 §6.3).
func (p *ResponseParser) frame(resp *Response, method string, l *limits) *Error {
	if p.chunked != nil && p.chunked.state == chunkDone {
		p.chunked.Reset(nil) // the previous body's trailers are gone
	}
	code := resp.StatusCode
	switch {
	case code < 200 || code == 204 || code == 304 || method == "HEAD",
		method == "CONNECT" && code < 300:
		resp.Framing = FramingNone
	case resp.Framing == FramingChunked:
		if p.chunked == nil {
			p.chunked = new(ChunkedReader)
		}
		p.chunked.Reset(&Limits{MaxHeaderBytes: l.headerBytes, MaxHeaders: l.headers, MaxBodyBytes: l.bodyBytes})
		p.state = respChunked
	case resp.Framing == FramingLength:
		if l.bodyBytes >= 0 && resp.ContentLength > l.bodyBytes {
			return ErrBodyTooLarge
		}
		p.state, p.remain = respLength, resp.ContentLength
	default:
		resp.Framing, resp.Close = FramingClose, true
		p.state, p.remain = respClose, l.bodyBytes
	}
	return nil
}

// scanHead resumes the search for the end of the head at p.pos, enforcing
// the limits as it goes. It returns the head's length once it is complete
// and 0 while it is not.
func (p *ResponseParser) scanHead(in []byte, l *limits) (int, *Error) {
	w := in
	if len(w) > l.headerBytes {
		w = w[:l.headerBytes]
	}
	i := int(p.pos)
	if i < len("HTTP/") {
		// Refuse a reply that is not HTTP at once, rather than wait
		// for a line end that may never come.
		if n := min(len(w), len("HTTP/")); string(w[:n]) != "HTTP/"[:n] {
			return 0, ErrBadVersion
		}
	}
	for i < len(w) {
		if p.scan == headStart {
			c := w[i]
			if c == '\n' {
				return i + 1, nil
			}
			if c == '\r' {
				if i+1 >= len(w) {
					break
				}
				if w[i+1] == '\n' {
					return i + 2, nil
				}
			}
			p.lines++
			if int(p.lines) > l.headers {
				return 0, ErrTooManyHeaders
			}
			p.scan = headLine
		}
		j := bytes.IndexByte(w[i:], '\n')
		if j < 0 {
			i = len(w)
			break
		}
		i += j + 1
		p.scan = headStart
	}
	p.pos = int32(i)
	if len(in) > l.headerBytes {
		return 0, ErrHeaderTooLarge
	}
	return 0, nil
}

// Body delimits the body of the response whose head Parse returned last,
// at the start of in, with ChunkedReader.Next's calling convention: it
// returns how many bytes of in it consumed, a piece of body data (a view
// into in[:consumed], decoded from chunked coding if need be), and whether
// the body is complete. The caller calls it again with in[consumed:] until
// it reports done or consumes nothing, which means it needs more input;
// bytes it did not consume must be passed again with more appended.
//
// A FramingClose body is never done here: it ends with the connection; see
// EOF. When no body is pending (InBody is false), Body consumes nothing
// and reports done. A body over Limits.MaxBodyBytes yields ErrBodyTooLarge,
// malformed chunked framing the ChunkedReader's errors; after an error the
// parser is reset.
func (p *ResponseParser) Body(in []byte) (consumed int, data []byte, done bool, err error) {
	switch p.state {
	case respLength:
		n := len(in)
		if int64(n) > p.remain {
			n = int(p.remain)
		}
		p.remain -= int64(n)
		if p.remain == 0 {
			p.state = respHead
		}
		return n, in[:n], p.remain == 0, nil
	case respChunked:
		consumed, data, done, err = p.chunked.Next(in)
		if err != nil {
			p.Reset()
			return 0, nil, false, err
		}
		if done {
			p.state = respHead
		}
		return consumed, data, done, nil
	case respClose:
		if p.remain >= 0 {
			if int64(len(in)) > p.remain {
				p.Reset()
				return 0, nil, false, ErrBodyTooLarge
			}
			p.remain -= int64(len(in))
		}
		return len(in), in, false, nil
	}
	return 0, nil, true, nil
}

// Trailers returns the trailer fields of a chunked body once Body has
// reported it done, else nil. They are copies, valid until the next Parse.
func (p *ResponseParser) Trailers() []Header {
	if p.chunked == nil {
		return nil
	}
	return p.chunked.Trailers()
}

// EOF tells p that the connection has no more input: the server closed it.
// It reports done when that ends a FramingClose body, and
// io.ErrUnexpectedEOF when it cuts a head or another body short; between
// responses it returns (false, nil). Either way p is then ready for a new
// connection.
func (p *ResponseParser) EOF() (done bool, err error) {
	state, partial := p.state, p.pos > 0
	p.Reset()
	switch {
	case state == respClose:
		return true, nil
	case state != respHead || partial:
		return false, io.ErrUnexpectedEOF
	}
	return false, nil
}

// parseResponseHead parses a response head at the start of in into resp.
// Like parseHead, it returns (0, nil) when the head is incomplete or
// outgrows a limit, which the scanner then reports, and may report an error
// before the head is complete, which Parse only trusts once the scanner has
// found the head's end.
func parseResponseHead(in []byte, resp *Response, l *limits) (int, *Error) {
	resp.reset()
	if len(in) > l.headerBytes {
		in = in[:l.headerBytes]
	}

	// Status line: HTTP-version SP 3DIGIT SP [reason-phrase] (RFC 9112 §4);
	// the SP after the code is often left out when the reason is empty.
	i := 0
	if len(in) >= 9 && string(in[:9]) == "HTTP/1.1 " {
		resp.ProtoMajor, resp.ProtoMinor = 1, 1
		i = 9
	} else {
		for i < len(in) && in[i] != ' ' && in[i] != '\r' && in[i] != '\n' {
			i++
		}
		if i >= len(in) {
			return 0, nil
		}
		major, minor, e := parseVersion(in[:i])
		if e != nil {
			return 0, e
		}
		if in[i] != ' ' {
			return 0, ErrBadStatusLine
		}
		resp.ProtoMajor, resp.ProtoMinor = major, minor
		i++
	}
	if len(in)-i < 4 {
		return 0, nil
	}
	d0, d1, d2 := in[i], in[i+1], in[i+2]
	if d0 < '1' || d0 > '9' || !isDigit(d1) || !isDigit(d2) {
		return 0, ErrBadStatusLine
	}
	resp.StatusCode = int(d0-'0')*100 + int(d1-'0')*10 + int(d2-'0')
	i += 3
	switch in[i] {
	case ' ':
		i++
		start := i
		i = skipValue(in, i)
		if i >= len(in) {
			return 0, nil
		}
		if in[i] != '\r' && in[i] != '\n' {
			return 0, ErrBadStatusLine
		}
		resp.Reason = in[start:i]
	case '\r', '\n':
		resp.Reason = in[i:i]
	default:
		return 0, ErrBadStatusLine
	}
	if i = lineEnd(in, i); i <= 0 {
		return 0, errOf(i)
	}

	// Header fields.
	var (
		nhdr                    int
		nf                      int8 // resp.nf, set with resp.raw once the head is whole
		clSeen                  bool
		te                      teState
		connClose, connKeepLive bool
		keepAliveSeen           bool
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
		if nhdr >= l.headers {
			return 0, nil // the scanner reports 431
		}
		name, value, next, e := parseField(in, i)
		if next == 0 {
			return 0, e
		}
		if nf >= 0 && nhdr < respFields && next <= math.MaxUint16 {
			// value is in[vs:vs+len(value)], a view without a
			// capacity limit: its offset is what its capacity lacks.
			vs := cap(in) - cap(value)
			resp.fields[nhdr] = fieldPos{uint16(i), uint16(i + len(name)), uint16(vs), uint16(vs + len(value))}
			nf++
		} else {
			nf = -1
		}
		i = next
		nhdr++

		switch len(name) {
		case 10:
			if lowerIsLong(name, "connection") {
				resp.hasConn = true
				c, k, _ := connectionOptions(value)
				connClose, connKeepLive = connClose || c, connKeepLive || k
			} else if lowerIsLong(name, "keep-alive") && !keepAliveSeen {
				keepAliveSeen = true
				resp.KeepAlive = keepAliveTimeout(value)
			}
		case 14:
			if lowerIsLong(name, "content-length") {
				n, ok := parseContentLength(value)
				if !ok || clSeen && n != resp.ContentLength {
					return 0, ErrBadContentLength
				}
				clSeen, resp.ContentLength = true, n
			}
		case 17:
			if lowerIsLong(name, "transfer-encoding") {
				if e := te.add(value); e != nil {
					return 0, e
				}
			}
		}
	}
	resp.HeaderLen = i
	resp.raw, resp.nf = in[:i], nf

	// Framing (RFC 9112 §6.3); frame handles the cases that depend on the
	// status and the request method. A transfer coding other than chunked
	// is the client's to decode; only chunked framing matters here.
	switch {
	case te.seen:
		// Transfer-Encoding overrides Content-Length; with chunked last
		// the body is chunked, otherwise it runs to the close. Both
		// present, or Transfer-Encoding in HTTP/1.0, is faulty framing:
		// the connection is not reused.
		switch {
		case te.chunked > 1:
			return 0, ErrBadTransferEncoding // chunked twice
		case te.lastChunked:
			resp.Framing = FramingChunked
		default:
			resp.Framing = FramingClose
		}
		resp.Close = resp.Close || clSeen || resp.ProtoMinor == 0
		resp.ContentLength = -1
		resp.Coded = te.unknown
	case clSeen:
		resp.Framing = FramingLength
	default:
		resp.Framing = FramingClose
	}

	// Connection options (RFC 9112 §9.3).
	if resp.ProtoMinor == 1 {
		resp.Close = resp.Close || connClose
	} else {
		resp.Close = resp.Close || connClose || !connKeepLive
	}
	return i, nil
}

// keepAliveTimeout returns the timeout parameter of a Keep-Alive field
// value, a list of name=value parameters such as "timeout=5, max=100", or
// zero when it has none or it is malformed.
func keepAliveTimeout(v []byte) time.Duration {
	for len(v) > 0 {
		m := v
		if c := bytes.IndexByte(v, ','); c >= 0 {
			m, v = v[:c], v[c+1:]
		} else {
			v = nil
		}
		name, val, ok := bytes.Cut(trimOWS(m), []byte("="))
		if !ok || !equalFold(trimOWS(name), "timeout") {
			continue
		}
		val = trimOWS(val)
		if len(val) >= 2 && val[0] == '"' && val[len(val)-1] == '"' {
			val = val[1 : len(val)-1]
		}
		n, ok := parseDecimal(val)
		if !ok {
			return 0
		}
		const maxSeconds = math.MaxInt64 / int64(time.Second)
		return time.Duration(min(n, maxSeconds)) * time.Second
	}
	return 0
}
