// Package http1 is warren's HTTP/1.1 server layer (RFC 9110, RFC 9112):
// a [Server] on the engine's event loops, a [Router], a native handler API
// ([Ctx]), an adapter for net/http handlers ([Adapt]), and underneath the
// HTTP/1 wire toolkit shared by the server, the load generator and clients:
// incremental, allocation-free request and response parsers, chunked and
// fixed-length body readers, and the primitives used to write messages.
//
// # Serving
//
// The server parses on the event loop: a connection's bytes go to the
// parser as they arrive, and a request head split at any byte boundary
// parses the same. A complete request is routed; its handler runs on the
// engine's worker pool (one request at a time per connection, so pipelined
// requests are answered in order) unless it is wrapped with [Inline], which
// runs it on the loop for handlers that never block. Responses are buffered
// and sent with a Content-Length in one write; [Ctx.Flush] switches to a
// streamed (chunked) body. Request bodies are collected, bounded by
// [Limits].MaxBodyBytes, before the handler runs, except on routes wrapped
// with [StreamBody]: their handler starts when the head arrives and reads
// the body as it comes with [Ctx.BodyReader], with its own size limit and
// backpressure (the server stops reading the socket while the handler
// lags), so uploads of any size cost a bounded window of memory.
//
// An idle keep-alive connection holds no HTTP state at all: per-connection
// state exists only while a request is partly received or in flight.
//
// Keep-alive follows RFC 9112 (HTTP/1.1 persistent unless Connection: close;
// HTTP/1.0 only with Connection: keep-alive) and [Config] bounds it: idle
// timeout, requests per connection and connection age. Under pressure on
// connections or memory the idle timeout shrinks and keep-alive can be
// switched off ([Overload]), returning to normal as pressure falls. Slow
// clients are cut by the header and body timeouts with 408. Every malformed
// request is answered with its status (see Errors below) and the connection
// is closed, so nothing pipelined after a refused request is ever served.
// Shutdown answers requests in progress with Connection: close and closes
// idle connections at once.
//
// Handlers may take over a connection for another protocol with
// [Ctx.UpgradeTo] (the websocket package does).
//
// # Parsing requests on an event loop
//
// The engine hands a protocol all the unconsumed input of a connection as one
// contiguous slice and expects back how many bytes were consumed. [Parser]
// fits that model: [Parser.Parse] returns (0, nil) while the header section
// is incomplete and remembers, as offsets, how far it has scanned, so the next
// call with the same bytes plus more appended resumes where it stopped. Input
// trickled one byte at a time is therefore scanned in linear time. When the
// section is complete, Parse fills a [Request] and returns the number of bytes
// it used; the caller slices those off and goes on with the body, or with the
// next pipelined request.
//
// A Request does not copy: its byte-slice fields are views into the input
// slice passed to Parse and stay valid only while those bytes are neither
// overwritten nor released. A server that hands a request to another goroutine
// after the loop reuses its buffer copies it first with [Request.CopyTo]; one
// whose buffer moves uses [Request.Rebase].
//
// # Parsing responses
//
// [ResponseParser] is the client side of the same model: [ResponseParser.Parse]
// reads a response head into a [Response], incrementally, and
// [ResponseParser.Body] then delimits the body by its [Framing]
// (Content-Length, chunked, or until the server closes, which
// [ResponseParser.EOF] reports), consuming it as it arrives and handing it
// out as views, until the next response. Responses to HEAD, 1xx, 204 and 304
// have no body; interim 1xx responses are returned before the final one.
// Response.Close and Response.KeepAlive tell a connection pool whether and
// for how long the connection may be reused. A ResponseParser is 32 bytes
// and a Response keeps no table of its header fields (Header and Headers scan
// the validated head), so a client holding many connections pays little
// for each.
//
// # Errors
//
// A malformed or refused request yields an [*Error] carrying the status code
// the server answers with before closing the connection: 400 for syntax
// errors, 414, 431 and 413 for limits (see [Limits]), 501 for transfer codings
// other than chunked and 505 for HTTP versions other than 1.0 and 1.1. Limit
// errors fire as soon as a limit is exceeded, before the header section is
// complete; syntax errors in the header section are reported once it is
// complete, except for a method that is not a token, which is refused at once
// so that non-HTTP traffic (a TLS handshake on a plain port) is rejected
// without waiting for a line end.
//
// # Leniency
//
// The parser follows RFC 9112 strictly where leniency enables request
// smuggling and accepts what RFC 9112 explicitly allows recipients to accept:
//
//   - A bare LF ends a line in the request line and header fields
//     (RFC 9112 §2.2); a bare CR anywhere is an error. In chunked framing,
//     where disagreement about line ends has been used to smuggle requests,
//     only CRLF is accepted.
//   - Empty lines before the request line are skipped (RFC 9112 §2.2).
//   - Field line folding (obs-fold), whitespace between a field name and its
//     colon, Content-Length together with Transfer-Encoding, and differing
//     Content-Length values are all errors.
//   - An absolute-form request-target sets Host from its authority, which
//     takes precedence over the Host header field (RFC 9112 §3.2.2); such a
//     request is accepted without a Host header field.
package http1
