// Package mqtt is warren's MQTT 3.1.1 and 5.0 layer. This first part is the
// protocol codec and topic matching, independent of the engine: the broker
// that serves MQTT on the engine's event loops (sessions, QoS flows,
// retained messages, wills, keep-alive, topic aliases, MQTT over WebSocket)
// comes next and is built on it.
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
// # Limits of this part
//
// What needs a session is left to the broker: which side may send which
// packet (a client's PUBLISH must not carry subscription identifiers),
// packet identifier and topic alias bookkeeping, receive maximum, topic
// filter syntax (answered per filter in SUBACK and UNSUBACK), UTF-8
// validation of payloads marked as text, and enhanced authentication
// exchanges. MQTT 3.1 (protocol level 3, "MQIsdp") is refused as an
// unsupported version.
package mqtt
