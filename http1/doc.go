// Package http1 is warren's HTTP/1.1 server layer (RFC 9110, RFC 9112):
// a [Server] on the engine's event loops, a [Router], a native handler API
// ([Ctx]), an adapter for net/http handlers ([Adapt]), and underneath the
// HTTP/1 wire toolkit shared by the server, the load generator and clients:
// incremental, allocation-free request and response parsers, chunked and
// fixed-length body readers, and the primitives used to write messages.
//
// # Serving
//
// A Server does not own a network stack: it attaches to an engine that
// its owner creates, starts and shuts down. NewServer(eng, cfg, h) makes
// the server; Server.Listen(addr) opens a listener on that engine whose
// connections speak HTTP, with the server's idle and header timeouts.
// One engine carries many protocols, each on its own listeners (an HTTP
// port beside a raw TCP port, connections dialled with
// engine.Engine.DialHandler), sharing its event loops, worker pool,
// bounds and observability. Server.Handler returns the engine handler
// that speaks HTTP, for a listener opened with engine.Engine.Listen or a
// connection handed to HTTP with engine.Conn.SetHandler. Package stack
// assembles an engine with its admin listener, prefork and drain for a
// process.
//
//	eng, err := engine.New(engine.Config{}, nil)
//	...
//	err = eng.Start("") // loops and workers, no listener yet
//	srv, err := http1.NewServer(eng, http1.Config{}, router)
//	ln, err := srv.Listen(":8080")
//	...
//	eng.Shutdown(ctx) // drains HTTP with everything else on the engine
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
// Per-connection HTTP state is the engine connection's handler while a
// request is partly received or in flight; an idle keep-alive connection
// holds none (its handler is the stateless [Server.Handler]).
//
// Keep-alive follows RFC 9112 (HTTP/1.1 persistent unless Connection: close;
// HTTP/1.0 only with Connection: keep-alive) and [Config] bounds it: idle
// timeout, requests per connection and connection age. Under pressure on
// connections or memory the idle timeout shrinks and keep-alive can be
// switched off ([Overload]), returning to normal as pressure falls. Slow
// clients are cut by the header and body timeouts with 408. Every malformed
// request is answered with its status (see Errors below) and the connection
// is closed, so nothing pipelined after a refused request is ever served.
// Those closes, the 408s, and any close after an error answer (4xx, 5xx),
// a handler panic or a streamed body linger (engine.Conn.CloseLinger, RFC
// 9112 section 9.6): the answer is flushed, the write side shut, and what
// the client still sends (the body of a request refused with 413) read and
// thrown away until it closes its side, within the engine's LingerTimeout
// and LingerBytes, so that a reset does not lose the answer.
// When the engine shuts down, requests in progress are answered with
// Connection: close and idle connections close at once.
//
// Time comes from the engine's clock (engine.Engine.Now, set with
// engine.Config.Clock): the Date header, request durations, connection
// age and the header, body and idle timeouts (run by the engine's timers)
// all read it, so a test moves them with a clock it advances. Two waits
// use real time: a StreamBody handler's wait for more body, and the
// overload monitor's sampling interval.
//
// [Ctx.Context] is the request's context. It ends when the client goes
// away (the connection closes, or the client finishes sending while the
// handler runs), when the handler returns, or when the engine starts
// shutting down; context.Cause tells which: [ErrClientGone],
// [ErrHandlerDone] or engine.ErrServerClosed.
//
// # Upgrades
//
// A handler takes a connection over for another protocol with
// [Ctx.UpgradeTo] (the websocket package does): it writes the switching
// response with [Ctx.WriteRaw] and names the protocol's engine handler.
// The server then makes that handler the engine connection's handler
// with engine.Conn.SetHandler, on the connection's event loop and before
// the client can answer the switching response, and drops its own state.
// Every later byte, including bytes pipelined behind the upgrade request,
// goes to the new handler directly, not through HTTP; the engine calls
// its hooks, counts its connections under its protocol name and records
// its close details. Handlers on the worker pool may upgrade too.
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
// other than chunked and 505 for HTTP versions other than 1.0 and 1.1; a
// streamed body that stalls gives [ErrBodyTimeout] (408) and a StreamBody
// request beyond [Config].MaxStreams [ErrTooManyStreams] (503). Limit
// errors fire as soon as a limit is exceeded, before the header section is
// complete; syntax errors in the header section are reported once it is
// complete, except for a method that is not a token, which is refused at once
// so that non-HTTP traffic (a TLS handshake on a plain port) is rejected
// without waiting for a line end.
//
// Every status the server sends on its own, rather than a handler's:
//
//   - 100 Continue, interim, for Expect: 100-continue: when the head
//     arrives with none of its body, or on a StreamBody route when the
//     handler first reads.
//   - 400 Bad Request: a syntax error in the request line, header section
//     or body framing (every Err… value with Status 400).
//   - 404 Not Found and 405 Method Not Allowed (with Allow): from
//     [Router], for a path no route matches or matches only under other
//     methods.
//   - 408 Request Timeout: a head not received within
//     [Config].HeaderTimeout, or a body within [Config].BodyTimeout
//     ([ErrBodyTimeout] on StreamBody routes).
//   - 413 Content Too Large: a body over [Limits].MaxBodyBytes or the
//     route's StreamBody bound ([ErrBodyTooLarge]).
//   - 414 URI Too Long: [ErrURITooLong].
//   - 431 Request Header Fields Too Large: a header or trailer section
//     over its limits ([ErrHeaderTooLarge], [ErrTooManyHeaders],
//     [ErrTrailerTooLarge]).
//   - 500 Internal Server Error: a handler panicked before sending
//     anything.
//   - 501 Not Implemented: a transfer coding other than chunked
//     ([ErrUnsupportedTransferEncoding]).
//   - 503 Service Unavailable: the engine's worker pool is full, or
//     [Config].MaxStreams StreamBody requests are already in progress
//     ([ErrTooManyStreams]).
//   - 505 HTTP Version Not Supported: [ErrVersionNotSupported].
//
// All but 100, 404 and 405 close the connection. Connections the engine
// refuses (over its connection bounds) are closed before HTTP sees them.
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
