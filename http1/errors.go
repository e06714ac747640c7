package http1

import "errors"

// Error is a request the server refuses. Status is the response status code
// to answer with, after which the server closes the connection, because the
// framing of anything that follows on it can no longer be trusted.
//
// The package returns the Err… values below, so errors.Is and == work on
// them; they must not be modified.
type Error struct {
	// Status is the HTTP status code to respond with: 400, 408
	// (ErrBodyTimeout), 413, 414, 431, 501, 503 (ErrTooManyStreams) or
	// 505. The package doc lists every status the server sends itself.
	Status int
	// Reason says what was wrong, in a few lowercase words; it is safe to
	// send to the client and to use as a log attribute.
	Reason string
}

// Error returns "http1: " followed by the reason.
func (e *Error) Error() string { return "http1: " + e.Reason }

// Errors in the request line.
var (
	// ErrBadRequestLine is a request line that is not method SP target SP
	// version.
	ErrBadRequestLine = &Error{400, "malformed request line"}
	// ErrBadMethod is a method that is not a token.
	ErrBadMethod = &Error{400, "invalid method"}
	// ErrBadTarget is a request-target with control characters or of a form
	// the method does not allow.
	ErrBadTarget = &Error{400, "invalid request target"}
	// ErrBadVersion is an HTTP version that is not HTTP-version syntax, such
	// as HTTX/1.1 or http/1.1.
	ErrBadVersion = &Error{400, "malformed HTTP version"}
	// ErrVersionNotSupported is a well-formed HTTP version other than 1.0
	// and 1.1, such as HTTP/2.0 or HTTP/3.
	ErrVersionNotSupported = &Error{505, "HTTP version not supported"}
	// ErrURITooLong is a request-target longer than Limits.MaxURIBytes.
	ErrURITooLong = &Error{414, "request target too long"}
)

// Errors in the header section.
var (
	// ErrBareCR is a CR not followed by LF in the request line, the header
	// section or chunked framing.
	ErrBareCR = &Error{400, "bare CR"}
	// ErrBadHeaderName is a field line whose name is empty, is not a token
	// or is not followed by a colon.
	ErrBadHeaderName = &Error{400, "invalid header field name"}
	// ErrSpaceBeforeColon is whitespace between a field name and its colon,
	// which RFC 9112 §5.1 requires a server to reject.
	ErrSpaceBeforeColon = &Error{400, "whitespace before colon in header field"}
	// ErrObsFold is a field line starting with whitespace (obsolete line
	// folding, RFC 9112 §5.2).
	ErrObsFold = &Error{400, "obsolete line folding"}
	// ErrBadHeaderValue is a field value with a control character other
	// than HTAB.
	ErrBadHeaderValue = &Error{400, "invalid header field value"}
	// ErrMissingHost is an HTTP/1.1 request without a Host header field and
	// without an absolute-form target.
	ErrMissingHost = &Error{400, "missing Host header"}
	// ErrDuplicateHost is a request with more than one Host field line.
	ErrDuplicateHost = &Error{400, "duplicate Host header"}
	// ErrBadHost is a Host field value or absolute-form authority with
	// characters a host cannot have, or with userinfo.
	ErrBadHost = &Error{400, "invalid host"}
	// ErrHeaderTooLarge is a header section longer than
	// Limits.MaxHeaderBytes.
	ErrHeaderTooLarge = &Error{431, "header section too large"}
	// ErrTooManyHeaders is a header section with more than Limits.MaxHeaders
	// field lines.
	ErrTooManyHeaders = &Error{431, "too many header fields"}
)

// Errors in message framing (RFC 9112 §6).
var (
	// ErrBadContentLength is a Content-Length that is not a non-negative
	// decimal number fitting an int64, or that has differing values.
	ErrBadContentLength = &Error{400, "invalid Content-Length"}
	// ErrLengthAndChunked is a request with both Content-Length and
	// Transfer-Encoding, a classic request smuggling vector.
	ErrLengthAndChunked = &Error{400, "both Content-Length and Transfer-Encoding"}
	// ErrBadTransferEncoding is a Transfer-Encoding whose final coding is not
	// chunked, that applies chunked twice, or that is not a list of tokens.
	ErrBadTransferEncoding = &Error{400, "invalid Transfer-Encoding"}
	// ErrTransferEncodingHTTP10 is a Transfer-Encoding in an HTTP/1.0
	// request, which cannot be framed reliably (RFC 9112 §6.1).
	ErrTransferEncodingHTTP10 = &Error{400, "Transfer-Encoding in HTTP/1.0 request"}
	// ErrUnsupportedTransferEncoding is a transfer coding other than chunked,
	// for example the gzip in "gzip, chunked".
	ErrUnsupportedTransferEncoding = &Error{501, "unsupported transfer coding"}
	// ErrBodyTooLarge is a body longer than Limits.MaxBodyBytes, announced by
	// Content-Length or found while reading chunks.
	ErrBodyTooLarge = &Error{413, "request body too large"}
	// ErrBodyTimeout is a streamed request body (see StreamBody) that sent
	// nothing for Config.BodyTimeout while its handler waited to read.
	ErrBodyTimeout = &Error{408, "request body timeout"}
	// ErrTooManyStreams is a StreamBody request refused because
	// Config.MaxStreams are already in progress.
	ErrTooManyStreams = &Error{503, "too many streamed requests in progress"}
)

// Errors in chunked bodies (RFC 9112 §7.1).
var (
	// ErrBadChunkSize is a chunk size that is empty, not hexadecimal, larger
	// than 2^62, or not ended by CRLF.
	ErrBadChunkSize = &Error{400, "invalid chunk size"}
	// ErrBadChunkExtension is a chunk extension with control characters.
	ErrBadChunkExtension = &Error{400, "invalid chunk extension"}
	// ErrChunkLineTooLong is a chunk-size line, extensions included, longer
	// than 4 KiB.
	ErrChunkLineTooLong = &Error{400, "chunk size line too long"}
	// ErrChunkOverhead is chunked framing with much more extension and size
	// overhead than data, the pattern of a resource exhaustion attack.
	ErrChunkOverhead = &Error{400, "too much chunk framing overhead"}
	// ErrBadChunkData is chunk data not followed by CRLF.
	ErrBadChunkData = &Error{400, "chunk data not followed by CRLF"}
	// ErrBadTrailer is a malformed trailer field line.
	ErrBadTrailer = &Error{400, "invalid trailer field"}
	// ErrTrailerTooLarge is a trailer section longer than
	// Limits.MaxHeaderBytes or with more than Limits.MaxHeaders fields.
	ErrTrailerTooLarge = &Error{431, "trailer section too large"}
)

// Causes of a request context's end (Ctx.Context, context.Cause).
var (
	// ErrClientGone is the cause when the request's connection closed
	// while its handler ran.
	ErrClientGone = errors.New("http1: client went away")
	// ErrHandlerDone is the cause when the handler returned.
	ErrHandlerDone = errors.New("http1: handler returned")
)
