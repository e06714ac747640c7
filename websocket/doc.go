// Package websocket is warren's RFC 6455 WebSocket layer. This part is the
// protocol codec, independent of the engine: frame encoding, an
// incremental frame reader and validator, the handshake helpers and the
// RFC 7692 permessage-deflate extension. The connection, upgrade and
// server parts are added later on top of it.
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
//     (the load generator) masked frames with AppendMaskedFrame and a new
//     NewMask per frame. With permessage-deflate, Deflater.AppendFrame
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
