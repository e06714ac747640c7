package http1

import (
	"strconv"
	"sync/atomic"
	"time"
)

// statusText holds the reason phrases of RFC 9110 §15 and a few registered
// extensions, indexed by status code.
var statusText = [...]string{
	100: "Continue",
	101: "Switching Protocols",
	102: "Processing",
	103: "Early Hints",

	200: "OK",
	201: "Created",
	202: "Accepted",
	203: "Non-Authoritative Information",
	204: "No Content",
	205: "Reset Content",
	206: "Partial Content",
	207: "Multi-Status",
	208: "Already Reported",
	226: "IM Used",

	300: "Multiple Choices",
	301: "Moved Permanently",
	302: "Found",
	303: "See Other",
	304: "Not Modified",
	305: "Use Proxy",
	307: "Temporary Redirect",
	308: "Permanent Redirect",

	400: "Bad Request",
	401: "Unauthorized",
	402: "Payment Required",
	403: "Forbidden",
	404: "Not Found",
	405: "Method Not Allowed",
	406: "Not Acceptable",
	407: "Proxy Authentication Required",
	408: "Request Timeout",
	409: "Conflict",
	410: "Gone",
	411: "Length Required",
	412: "Precondition Failed",
	413: "Content Too Large",
	414: "URI Too Long",
	415: "Unsupported Media Type",
	416: "Range Not Satisfiable",
	417: "Expectation Failed",
	418: "I'm a teapot",
	421: "Misdirected Request",
	422: "Unprocessable Content",
	423: "Locked",
	424: "Failed Dependency",
	425: "Too Early",
	426: "Upgrade Required",
	428: "Precondition Required",
	429: "Too Many Requests",
	431: "Request Header Fields Too Large",
	451: "Unavailable For Legal Reasons",

	500: "Internal Server Error",
	501: "Not Implemented",
	502: "Bad Gateway",
	503: "Service Unavailable",
	504: "Gateway Timeout",
	505: "HTTP Version Not Supported",
	506: "Variant Also Negotiates",
	507: "Insufficient Storage",
	508: "Loop Detected",
	510: "Not Extended",
	511: "Network Authentication Required",
}

// statusLines holds the precomputed status lines, CRLF included, of the
// codes in statusText: statusLines[1][code] is "HTTP/1.1 code reason\r\n",
// statusLines[0] the same for HTTP/1.0.
var statusLines [2][len(statusText)]string

func init() {
	for code, text := range statusText {
		if text == "" {
			continue
		}
		rest := " " + strconv.Itoa(code) + " " + text + "\r\n"
		statusLines[0][code] = "HTTP/1.0" + rest
		statusLines[1][code] = "HTTP/1.1" + rest
	}
}

// StatusText returns the reason phrase of an HTTP status code, such as "Not
// Found" for 404, or "" if the code is not registered.
func StatusText(code int) string {
	if code < 0 || code >= len(statusText) {
		return ""
	}
	return statusText[code]
}

// AppendStatusLine appends the status line "HTTP/1.minor status reason\r\n"
// to dst and returns the extended buffer. minor is 0 for HTTP/1.0, anything
// else writes HTTP/1.1; a server answers with the minor version of the
// request, or 1 when it could not parse one. The line of a registered code
// is precomputed; an unregistered one has an empty reason phrase, which RFC
// 9112 §4 allows. It panics if status is not a three-digit code, like
// net/http's WriteHeader.
func AppendStatusLine(dst []byte, minor int, status int) []byte {
	if minor != 0 {
		minor = 1
	}
	if status >= 100 && status < len(statusText) {
		if s := statusLines[minor][status]; s != "" {
			return append(dst, s...)
		}
	}
	if status < 100 || status > 999 {
		panic("http1: invalid status code " + strconv.Itoa(status))
	}
	dst = append(dst, "HTTP/1.0 "...)
	if minor == 1 {
		dst[len(dst)-2] = '1'
	}
	dst = strconv.AppendInt(dst, int64(status), 10)
	return append(dst, " \r\n"...)
}

// TimeFormat is the layout of an IMF-fixdate (RFC 9110 §5.6.7), the format
// of the Date header field. Times must be in UTC.
const TimeFormat = "Mon, 02 Jan 2006 15:04:05 GMT"

// DateCache formats the Date header field value at most once per second.
// The zero value is ready to use. It is safe for concurrent use: the current
// value is an immutable string behind an atomic pointer, replaced when a
// caller passes a time in another second. It must not be copied after first
// use.
type DateCache struct {
	cur atomic.Pointer[dateValue]
}

type dateValue struct {
	sec int64
	b   []byte
}

// Value returns now formatted as an IMF-fixdate, for example "Sun, 06 Nov
// 1994 08:49:37 GMT". The slice is shared and must not be modified. It
// allocates only when the second changes.
func (c *DateCache) Value(now time.Time) []byte {
	sec := now.Unix()
	if v := c.cur.Load(); v != nil && v.sec == sec {
		return v.b
	}
	b := now.UTC().AppendFormat(make([]byte, 0, len(TimeFormat)), TimeFormat)
	v := &dateValue{sec: sec, b: b[:len(b):len(b)]}
	c.cur.Store(v)
	return v.b
}

// AppendHeader appends the field line "Date: <now as IMF-fixdate>\r\n" to
// dst and returns the extended buffer.
func (c *DateCache) AppendHeader(dst []byte, now time.Time) []byte {
	dst = append(dst, "Date: "...)
	dst = append(dst, c.Value(now)...)
	return append(dst, "\r\n"...)
}

// AppendChunk appends p as one chunk of a chunked response body (RFC 9112
// §7.1): its size in hex, CRLF, p, CRLF. An empty p appends nothing, since
// an empty chunk would end the body; end it with AppendLastChunk.
func AppendChunk(dst, p []byte) []byte {
	if len(p) == 0 {
		return dst
	}
	dst = AppendChunkHeader(dst, len(p))
	dst = append(dst, p...)
	return append(dst, "\r\n"...)
}

// AppendChunkHeader appends the size line of an n-byte chunk, for a writer
// that sends the data from its own buffer (with writev) followed by CRLF.
// n <= 0 appends nothing.
func AppendChunkHeader(dst []byte, n int) []byte {
	if n <= 0 {
		return dst
	}
	dst = strconv.AppendInt(dst, int64(n), 16)
	return append(dst, "\r\n"...)
}

// LastChunk is the last chunk and the empty trailer section that end a
// chunked body.
const LastChunk = "0\r\n\r\n"

// AppendLastChunk appends LastChunk to dst and returns the extended buffer.
func AppendLastChunk(dst []byte) []byte { return append(dst, LastChunk...) }
