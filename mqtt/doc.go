// Package mqtt is warren's MQTT 3.1.1 and 5.0 layer: a protocol codec and
// topic matching independent of the engine, and Server, a broker that runs
// on the engine's event loops.
//
// # The broker
//
// A Server serves MQTT over TCP (Listen, ListenOn, or Handler on any engine
// listener) and MQTT over WebSocket (WebSocketHandler, an http1 route such
// as GET /mqtt, subprotocol "mqtt"), all sharing its sessions. Each
// connection is decoded on its event loop, one packet at a time from the
// engine's input: an idle connection holds no goroutine, no read or write
// buffer and no timer object, and a partial packet stays in the engine's
// pooled input buffer (over WebSocket, a packet straddling messages is
// copied out) until the rest arrives. A QoS 0 message that is not retained
// is routed as a view of its packet and written to each subscriber within
// the read that brought it, so routing it allocates nothing; a message
// that something keeps (retained, QoS 1 and 2 in flight, offline queues)
// is copied once and shared by every session holding it.
//
// It implements CONNECT/CONNACK, PUBLISH at QoS 0, 1 and 2 with the full
// acknowledgement flows both ways, SUBSCRIBE and UNSUBSCRIBE with + and #
// ($-topics are not matched by a leading wildcard), PINGREQ, DISCONNECT,
// keep-alive enforced at 1.5 times the client's through the engine's
// timing wheel, session takeover (DISCONNECT session_taken_over to the old
// 5.0 connection), will messages with 5.0 will delay, retained messages,
// clean start and session expiry with a bounded queue of QoS 1 and 2
// messages per offline session, redelivery with DUP on reconnect, and
// shared subscriptions. For 5.0 it adds reason codes and reason strings,
// receive maximum both ways, maximum packet size both ways, topic aliases
// both ways (the server sets up to 64 per connection, within the client's
// Topic Alias Maximum), message expiry, pass-through of payload format, content type,
// response topic, correlation data and user properties, subscription
// identifiers, no local, retain as published, retain handling, assigned
// client identifiers and server keep-alive.
//
// Every bound of Config has a default, a counter in Stats (exported by
// Collector) and a typed reason: a reason code answered to the client
// (and the close detail of its engine connection), or a DropReason for a
// message not delivered. Hooks let an application authenticate CONNECTs,
// authorize publish and subscribe per topic, observe or take over
// publishes (a bridge to NATS, for example; the package has no NATS
// dependency), follow connects and disconnects, and Server.Publish injects
// messages from outside.
//
// Sessions and retained messages are in memory: they do not survive a
// restart of the process.
//
// Not implemented: enhanced authentication (AUTH; a CONNECT with an
// authentication method is refused with bad_authentication_method) and
// request/response information.
//
// # Packets
//
// Every control packet of both versions has a type with documented fields:
// Connect (with Will), Connack, Publish, Ack (PUBACK, PUBREC, PUBREL,
// PUBCOMP), Subscribe, Suback, Unsubscribe, Unsuback, Pingreq, Pingresp,
// Disconnect and Auth (5.0). Properties holds every 5.0 property, and
// ReasonCode the 5.0 reason codes, whose snake_case String ("not_authorized",
// "packet_too_large") labels metrics and is the close detail of an MQTT
// connection. The 3.1.1 CONNACK return codes and SUBACK failure map to and
// from reason codes, so the package has one vocabulary for both versions.
//
// # Decoding
//
// A Decoder is the decoding state of one connection: the protocol version,
// learnt from CONNECT, which decides how later packets decode (properties
// and reason codes exist only in 5.0). Decoder.Decode takes a complete packet
// from the front of the bytes read so far, or reports that more are needed,
// without copying: the event loop keeps the bytes and calls again when more
// arrive. Decoded packets are views into the input and into a Scratch,
// which all the decoders of one event loop may share; they are valid until
// the next Decode. A Decoder is 16 bytes, a Scratch about 4 KiB. Decoding
// PUBLISH, the acknowledgements and PINGREQ allocates nothing.
//
// Every packet the specification calls malformed or a protocol error is
// refused with an *Error carrying the reason code to answer with (in CONNACK
// or a 5.0 DISCONNECT): malformed_packet, protocol_error, packet_too_large,
// topic_name_invalid, unsupported_protocol_version, or quota_exceeded for
// the Limits on lists. Limits bounds the packet size (1 MiB by default, at
// most the protocol's 256 MiB), the topic filters of one SUBSCRIBE or
// UNSUBSCRIBE (64) and the user properties of one packet (64), so a packet
// can't make the Scratch grow past a known size.
//
// # Encoding
//
// AppendConnect, AppendPublish and the other Append functions encode a
// packet for a version onto a byte slice, allocating nothing beyond its
// growth. They encode what they are given: the broker builds its packets
// from decoded, valid values.
//
// # Topics
//
// ValidTopicName and ValidTopicFilter check names and filters, Match tests a
// filter against a topic name (+ matches a level, # the rest, and filters
// starting with a wildcard don't match topics starting with $), and
// ParseShared splits a shared subscription ($share/group/filter). Trie
// indexes subscriptions by filter, with a value per subscriber, and finds
// those matching a topic without allocating (about 320 bytes per
// subscription for filters like devices/<id>/cmd/#).
//
// # Limits of the codec
//
// What needs a session is left to the broker: which side may send which
// packet (a client's PUBLISH must not carry subscription identifiers),
// packet identifier and topic alias bookkeeping, receive maximum, topic
// filter syntax (answered per filter in SUBACK and UNSUBACK), UTF-8
// validation of payloads marked as text, and enhanced authentication
// exchanges. MQTT 3.1 (protocol level 3, "MQIsdp") is refused as an
// unsupported version.
package mqtt
