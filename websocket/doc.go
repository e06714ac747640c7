// Package websocket is warren's RFC 6455 WebSocket layer: a Server that
// upgrades requests of the http1 server and keeps the connections on the
// engine's event loops, a Client (Dial) that opens connections on them,
// Conn, Group and Hub for sending, and underneath them a protocol codec
// independent of the engine (frame encoding, an incremental frame reader
// and validator, the handshake helpers and the RFC 7692 permessage-deflate
// extension).
//
// # Serving
//
// New returns a Server for a Handler (OnMessage, and optionally OnOpen and
// OnClose). Mount it with Server.Handler, which marks it http1.Inline: the
// upgrade must run on the event loop, where the connection then stays.
//
//	ws := websocket.New(websocket.Config{}, handler)
//	router.Handle("GET /ws", ws.Handler())
//
// The upgrade (http1.Ctx.UpgradeTo) makes the WebSocket the engine
// connection's handler with engine.Conn.SetHandler: frames go from the
// engine straight to the WebSocket, with no forwarding through the http1
// server, which keeps no state for the connection. The engine knows the
// connection by the protocol name "websocket" (ProtocolName) in ConnInfo,
// metrics and logs, and its close code is the close's engine.CloseDetail
// (a CloseCode), shown beside the engine's reason in metrics, logs and
// /debug/conns. The engine underneath may serve other protocols on other
// listeners at the same time.
//
// http1.Adapt cannot hijack connections, so a service on net/http mounts
// the upgrade route in the same http1.Router as its adapted mux
// (router.Handle("/{path...}", http1.Adapt(mux))); see ExampleServer_Handler.
// Echo, the handler `warren echo` serves on GET /ws, sends every message
// back; see ExampleEcho.
//
// Handlers run on the engine's worker pool by default, one call at a time
// per connection and in order, so they may block; Config.Inline runs them
// on the event loop, without a hand-off or a copy, for handlers that never
// block. The data OnMessage gets is valid only during the call. Conn's
// WriteMessage may be called from any goroutine; it never blocks on the
// peer, and the engine's output bound and slow-consumer policy apply to
// each connection. While an Inline handler answers the messages of one
// read, the replies are gathered and leave in one write. Group and Hub
// broadcast a message encoded once to many connections.
//
// An idle connection holds no goroutine, no buffer, no Reader and no timer
// object: a Conn struct (96 bytes) beside the engine's connection, and no
// HTTP state. A Reader is borrowed from a pool
// while a message is arriving, and compression state exists only on
// connections that negotiated permessage-deflate (off by default; see
// Compression memory below for its cost).
//
// Liveness: a connection quiet for Config.PingInterval (30 s) gets a ping
// from the engine's timing wheel (TimeoutHandler); a peer that sends
// nothing for another interval is closed with engine.ReasonDeadPeer.
// Pings from the peer are answered with its payload.
//
// Closing: a protocol violation is answered with a Close frame carrying
// the RFC's code (1002, 1007 or 1009; see Reading) and closes with
// engine.ReasonProtocolError, or engine.ReasonLimitReached for 1009 (a
// message over MaxMessageSize). Conn.Close and a server shutdown (the
// engine's DrainHandler sends 1001, going away) wait for the peer's Close
// for at most Config.CloseTimeout (5 s) before closing the TCP
// connection; a Close from the peer is echoed and the server closes at
// once. Every such close of TCP, once a Close frame has gone out, is a
// lingering one (engine.Conn.CloseLinger): the output is flushed, the
// write side shut, and what the peer still sends (the rest of a message
// over the limit) read and thrown away until it closes its side, within
// the engine's LingerTimeout and LingerBytes; a close at once would have
// the kernel reset the connection and lose the Close frame, and the peer
// would see 1006 instead of the code and reason. The handler's OnClose
// runs when such a close begins, not when the linger ends: a gateway
// device that reconnects at once finds its old connection gone.
//
// # Dialing
//
// Dial opens a connection to a ws:// URL on an engine's event loops
// (engine.DialHandler) and returns without waiting; a Client does the
// same for many connections that share one DialConfig, handler and set of
// counters. The handshake runs on the loop: the upgrade request goes out
// once connected, the response is parsed with http1.ResponseParser and
// checked (101, Upgrade, Connection, Sec-WebSocket-Accept, the
// subprotocol and extensions offered), and the connection then becomes a
// Conn like a server's, with the same methods and callbacks (Handler,
// OpenHandler, CloseHandler, ErrorHandler). The differences are those RFC
// 6455 asks of a client: every frame it sends is masked with a fresh key
// (NewMask, the runtime's per-thread ChaCha8 generator: no per-connection
// state), frames from the server must be unmasked, and after a Close
// either way it waits for the server to close TCP (for at most
// DialConfig.CloseTimeout), so the server keeps the TIME_WAIT. Pings are
// answered; the client sends its own only with DialConfig.PingInterval.
//
// A dial that fails before the connection opens, at the connect (the
// engine's error), in the handshake (*HandshakeError, with the status,
// header and the start of the body of a refusal), by timing out
// (ErrHandshakeTimeout) or cut short (ErrHandshakeClosed), gets OnError
// then OnClose, never OnOpen. During
// the handshake the engine connection's handler is a small handshake
// struct (128 bytes, with the request in a pooled buffer until it is
// written); once open it is dropped, and an idle dialled connection holds
// what a server's does: its 96-byte Conn beside the engine's, no
// goroutine, no buffer, no Reader, no timer object. The load generator
// (warren load) holds its WebSocket connections this way.
//
// # Reading
//
// A Reader decodes the frames of one connection from input presented by
// an event loop in arbitrary pieces. Reader.Next takes all unconsumed
// input, returns how many bytes it consumed and at most one Event: a
// complete text or binary message, a ping, a pong or a close. It never
// blocks and never rescans input: an incomplete frame is either left
// unconsumed, which costs one O(1) header parse per call, or, when larger
// than Reader.ZeroCopyLimit, consumed as it arrives into a buffer. A
// message in a single frame that is wholly present is unmasked in place
// and returned as a view into the input, with no allocation; fragmented
// messages are gathered in a buffer borrowed from Reader.Pool.
//
// Every protocol violation is a *CloseError whose Code is the status to
// send: CloseProtocolError (1002) for malformed framing, bad masking,
// reserved bits or opcodes, bad control frames, bad fragmentation and
// invalid close codes; CloseInvalidPayload (1007) for invalid UTF-8 in a
// text message or close reason, and for corrupt compressed data;
// CloseMessageTooBig (1009) when a message, summed over its fragments, or
// its decompressed form exceeds Reader.MaxMessageSize (1 MiB by default).
// UTF-8 is validated incrementally, across fragments and reads.
//
// # For the connection writer
//
//   - Buffer ownership: Event.Payload points into the input passed to Next
//     or into a Reader buffer. Either way it is valid until the next call
//     to Next or Reset; a view into the input also requires that the
//     caller not overwrite, compact or recycle the consumed input before
//     it is done with the event. Handle (or copy) the event first, then
//     drop the consumed bytes. Next modifies only the bytes it consumes.
//   - Input buffering: when Next returns no event it has left at most
//     max(ZeroCopyLimit, 139) bytes unconsumed; the engine's per-connection
//     input buffer must be able to hold that much plus one read.
//   - Pools: buffers from Reader.Pool are returned on the Next call after
//     the event that used them, or by Reader.Reset, so an idle connection
//     holds no buffer. Call Reader.Reset (and Deflater.Reset) when the
//     connection ends to return everything, including compression state.
//   - Closing: on a *CloseError, send AppendClose(dst, err.Code,
//     err.Reason) and close the connection after the peer's Close or a
//     timeout; the Reader keeps returning the error. On an OpClose event,
//     echo its Code (send an empty Close when it is CloseNoStatus) and
//     close; the Reader discards any further input. Never send
//     CloseNoStatus, CloseAbnormal or other codes ValidCloseCode rejects.
//   - Control frames: reply to OpPing with an OpPong carrying the same
//     payload; pongs need no reply.
//   - Writing: servers send unmasked frames with AppendFrame, clients
//     masked frames with AppendMaskedFrame and a new NewMask per frame. With permessage-deflate, Deflater.AppendFrame
//     writes a compressed message; compressing is optional per message,
//     and tiny messages usually grow (a 5-byte message becomes 11 bytes),
//     so send those with AppendFrame.
//
// # Handshake
//
// AcceptKey and AppendAcceptKey compute Sec-WebSocket-Accept, ValidKey
// checks Sec-WebSocket-Key, HeaderContainsToken checks the Connection and
// Upgrade headers, SelectSubprotocol chooses from Sec-WebSocket-Protocol,
// and NegotiateDeflate answers Sec-WebSocket-Extensions. NewKey,
// DeflateConfig.AppendOffer and ParseDeflateResponse serve the client
// side.
//
// # Compression memory
//
// A connection that negotiated permessage-deflate holds compression state
// only in the directions that use context takeover; a direction without
// context takeover borrows a compressor or decompressor from a shared
// sync.Pool for the length of one message. Measured with
// BenchmarkDeflateMemoryPerConn (live heap after one message each way,
// level 1, amd64, github.com/klauspost/compress v1.20.3):
//
//	context takeover both ways                      ~888 KB per connection
//	  server compressor (level 1)                     ~819 KB
//	  server decompressor + 32 KiB window              ~69 KB
//	server_no_context_takeover only                  ~69 KB per connection
//	no context takeover both ways                      0 B per idle connection
//
// Other levels hold more: about 320 KB at level -2 (Huffman only),
// 1.0-1.2 MB at levels 2-7 and 1.4 MB at level 9. For many connections
// set DeflateConfig.ServerNoContextTakeover and ClientNoContextTakeover;
// the pools then hold about one compressor per concurrently compressing
// goroutine. Without compression a Reader is 168 bytes plus pooled
// buffers only while a message is being gathered.
package websocket
