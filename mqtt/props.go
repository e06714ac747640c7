package mqtt

import (
	"bytes"
	"encoding/binary"
	"math/bits"
	"strconv"
	"unicode/utf8"
)

// PropID is an MQTT 5.0 property identifier (section 2.2.2.2).
type PropID byte

// The property identifiers of MQTT 5.0.
const (
	PropPayloadFormat        PropID = 0x01 // byte, PUBLISH and will
	PropMessageExpiry        PropID = 0x02 // four-byte integer, PUBLISH and will
	PropContentType          PropID = 0x03 // string, PUBLISH and will
	PropResponseTopic        PropID = 0x08 // string, PUBLISH and will
	PropCorrelationData      PropID = 0x09 // binary, PUBLISH and will
	PropSubscriptionID       PropID = 0x0B // variable byte integer, PUBLISH and SUBSCRIBE
	PropSessionExpiry        PropID = 0x11 // four-byte integer, CONNECT, CONNACK, DISCONNECT
	PropAssignedClientID     PropID = 0x12 // string, CONNACK
	PropServerKeepAlive      PropID = 0x13 // two-byte integer, CONNACK
	PropAuthMethod           PropID = 0x15 // string, CONNECT, CONNACK, AUTH
	PropAuthData             PropID = 0x16 // binary, CONNECT, CONNACK, AUTH
	PropRequestProblemInfo   PropID = 0x17 // byte, CONNECT
	PropWillDelay            PropID = 0x18 // four-byte integer, will
	PropRequestResponseInfo  PropID = 0x19 // byte, CONNECT
	PropResponseInfo         PropID = 0x1A // string, CONNACK
	PropServerReference      PropID = 0x1C // string, CONNACK, DISCONNECT
	PropReasonString         PropID = 0x1F // string, acknowledgements, DISCONNECT, AUTH
	PropReceiveMaximum       PropID = 0x21 // two-byte integer, CONNECT, CONNACK
	PropTopicAliasMaximum    PropID = 0x22 // two-byte integer, CONNECT, CONNACK
	PropTopicAlias           PropID = 0x23 // two-byte integer, PUBLISH
	PropMaximumQoS           PropID = 0x24 // byte, CONNACK
	PropRetainAvailable      PropID = 0x25 // byte, CONNACK
	PropUserProperty         PropID = 0x26 // string pair, every packet with properties
	PropMaximumPacketSize    PropID = 0x27 // four-byte integer, CONNECT, CONNACK
	PropWildcardSubAvailable PropID = 0x28 // byte, CONNACK
	PropSubIDAvailable       PropID = 0x29 // byte, CONNACK
	PropSharedSubAvailable   PropID = 0x2A // byte, CONNACK
	maxPropID                PropID = 0x2A
)

var propNames = [maxPropID + 1]string{
	PropPayloadFormat:        "payload_format_indicator",
	PropMessageExpiry:        "message_expiry_interval",
	PropContentType:          "content_type",
	PropResponseTopic:        "response_topic",
	PropCorrelationData:      "correlation_data",
	PropSubscriptionID:       "subscription_identifier",
	PropSessionExpiry:        "session_expiry_interval",
	PropAssignedClientID:     "assigned_client_identifier",
	PropServerKeepAlive:      "server_keep_alive",
	PropAuthMethod:           "authentication_method",
	PropAuthData:             "authentication_data",
	PropRequestProblemInfo:   "request_problem_information",
	PropWillDelay:            "will_delay_interval",
	PropRequestResponseInfo:  "request_response_information",
	PropResponseInfo:         "response_information",
	PropServerReference:      "server_reference",
	PropReasonString:         "reason_string",
	PropReceiveMaximum:       "receive_maximum",
	PropTopicAliasMaximum:    "topic_alias_maximum",
	PropTopicAlias:           "topic_alias",
	PropMaximumQoS:           "maximum_qos",
	PropRetainAvailable:      "retain_available",
	PropUserProperty:         "user_property",
	PropMaximumPacketSize:    "maximum_packet_size",
	PropWildcardSubAvailable: "wildcard_subscription_available",
	PropSubIDAvailable:       "subscription_identifier_available",
	PropSharedSubAvailable:   "shared_subscription_available",
}

// String returns the property's snake_case name ("topic_alias"), or
// "property_N" for an identifier MQTT 5.0 does not define.
func (id PropID) String() string {
	if id <= maxPropID && propNames[id] != "" {
		return propNames[id]
	}
	return "property_" + strconv.Itoa(int(id))
}

// PropSet is a set of property identifiers.
type PropSet uint64

// Has reports whether id is in the set.
func (s PropSet) Has(id PropID) bool { return id < 64 && s&(1<<id) != 0 }

// Add puts id in the set.
func (s *PropSet) Add(id PropID) { *s |= 1 << (id & 63) }

func setOf(ids ...PropID) (s PropSet) {
	for _, id := range ids {
		s.Add(id)
	}
	return s
}

// UserProperty is a user property: a name and value pair of UTF-8 strings
// that may be repeated, with the same name too, in order.
type UserProperty struct {
	Key, Value []byte
}

// Properties are the MQTT 5.0 properties of a packet; a 3.1.1 packet has
// none. One struct serves every packet type, each of which allows only some
// of the properties (listed with the PropID constants): the decoder refuses
// the others as a malformed packet, and the encoder writes only those of the
// packet being encoded.
//
// Present lists the properties the packet carries. The decoder fills it, so
// a property's absence can be told from its zero value where the two differ
// (a DISCONNECT without Session Expiry Interval keeps CONNECT's; CONNACK
// without Maximum QoS allows QoS 2). The encoder writes a property when it
// is in Present or its field is not the zero value: set a field to send it,
// and add its identifier to Present to send a zero value (MaximumQoS 0,
// RetainAvailable false). SubscriptionIDs and User are written item by item.
//
// Byte slices decoded are views into the decoder's input: see Decoder.
type Properties struct {
	// Present lists the properties present, by identifier.
	Present PropSet

	// PayloadFormat is 1 when the payload is UTF-8 text, 0 (also when
	// absent) for unspecified bytes. PUBLISH, will.
	PayloadFormat byte
	// MessageExpiry is the message's lifetime in seconds; absent means it
	// does not expire. PUBLISH, will.
	MessageExpiry uint32
	// ContentType describes the payload, for instance a MIME type.
	// PUBLISH, will.
	ContentType []byte
	// ResponseTopic is the topic name for a response (request/response).
	// PUBLISH, will.
	ResponseTopic []byte
	// CorrelationData lets the requester match a response to its request.
	// PUBLISH, will.
	CorrelationData []byte
	// SubscriptionIDs are the identifiers (1 to 268,435,455) of the
	// subscriptions a PUBLISH from the server matched (repeatable), or the
	// identifier a SUBSCRIBE gives its subscriptions (at most one).
	SubscriptionIDs []uint32
	// SessionExpiry is how long in seconds the session outlives the network
	// connection; absent means 0 in CONNECT, and in DISCONNECT means the
	// value of CONNECT stands. CONNECT, CONNACK, DISCONNECT.
	SessionExpiry uint32
	// AssignedClientID is the client identifier the server chose for a
	// CONNECT with an empty one. CONNACK.
	AssignedClientID []byte
	// ServerKeepAlive is the keep-alive in seconds the server imposes
	// instead of CONNECT's. CONNACK.
	ServerKeepAlive uint16
	// AuthMethod names the extended authentication method. CONNECT,
	// CONNACK, AUTH.
	AuthMethod []byte
	// AuthData is the method's data. CONNECT, CONNACK, AUTH.
	AuthData []byte
	// RequestProblemInfo is false when the client asks the server not to
	// send reason strings and user properties except in PUBLISH, CONNACK
	// and DISCONNECT; absent means true. CONNECT.
	RequestProblemInfo bool
	// WillDelay is how long in seconds the server waits before publishing
	// the will message; absent means 0. Will.
	WillDelay uint32
	// RequestResponseInfo asks the server for ResponseInfo in CONNACK;
	// absent means false. CONNECT.
	RequestResponseInfo bool
	// ResponseInfo is the basis of response topics. CONNACK.
	ResponseInfo []byte
	// ServerReference names another server to use. CONNACK, DISCONNECT.
	ServerReference []byte
	// ReasonString is a human-readable diagnostic, not to be parsed.
	// CONNACK, acknowledgements, DISCONNECT, AUTH.
	ReasonString []byte
	// ReceiveMaximum is how many QoS 1 and 2 publications the sender
	// accepts unacknowledged (1 to 65535); absent means 65535. CONNECT,
	// CONNACK.
	ReceiveMaximum uint16
	// TopicAliasMaximum is the highest topic alias the sender accepts;
	// absent or 0 means none. CONNECT, CONNACK.
	TopicAliasMaximum uint16
	// TopicAlias (1 and up) stands for the topic name: a PUBLISH with both
	// sets the alias, one with an empty topic name uses it. PUBLISH.
	TopicAlias uint16
	// MaximumQoS is the highest QoS the server accepts (0 or 1); absent
	// means 2. CONNACK.
	MaximumQoS QoS
	// RetainAvailable is false when the server does not support retained
	// messages; absent means true. CONNACK.
	RetainAvailable bool
	// User are the user properties, in order. Every packet with properties.
	User []UserProperty
	// MaximumPacketSize is the largest packet the sender accepts, in bytes;
	// absent means the protocol's limit. CONNECT, CONNACK.
	MaximumPacketSize uint32
	// WildcardSubAvailable is false when the server does not support
	// wildcard subscriptions; absent means true. CONNACK.
	WildcardSubAvailable bool
	// SubIDAvailable is false when the server does not support
	// subscription identifiers; absent means true. CONNACK.
	SubIDAvailable bool
	// SharedSubAvailable is false when the server does not support shared
	// subscriptions; absent means true. CONNACK.
	SharedSubAvailable bool
}

// The properties each kind of property list allows (MQTT 5.0, 2.2.2.2).
var (
	connectProps = setOf(PropSessionExpiry, PropReceiveMaximum, PropMaximumPacketSize,
		PropTopicAliasMaximum, PropRequestResponseInfo, PropRequestProblemInfo,
		PropUserProperty, PropAuthMethod, PropAuthData)
	willProps = setOf(PropWillDelay, PropPayloadFormat, PropMessageExpiry, PropContentType,
		PropResponseTopic, PropCorrelationData, PropUserProperty)
	connackProps = setOf(PropSessionExpiry, PropReceiveMaximum, PropMaximumQoS,
		PropRetainAvailable, PropMaximumPacketSize, PropAssignedClientID,
		PropTopicAliasMaximum, PropReasonString, PropUserProperty, PropWildcardSubAvailable,
		PropSubIDAvailable, PropSharedSubAvailable, PropServerKeepAlive, PropResponseInfo,
		PropServerReference, PropAuthMethod, PropAuthData)
	publishProps = setOf(PropPayloadFormat, PropMessageExpiry, PropTopicAlias,
		PropResponseTopic, PropCorrelationData, PropUserProperty, PropSubscriptionID,
		PropContentType)
	ackProps         = setOf(PropReasonString, PropUserProperty) // PUBACK..PUBCOMP, SUBACK, UNSUBACK
	subscribeProps   = setOf(PropSubscriptionID, PropUserProperty)
	unsubscribeProps = setOf(PropUserProperty)
	disconnectProps  = setOf(PropSessionExpiry, PropReasonString, PropUserProperty,
		PropServerReference)
	authProps = setOf(PropAuthMethod, PropAuthData, PropReasonString, PropUserProperty)
)

// dropDiagnostics removes the reason string and the user properties.
func (p *Properties) dropDiagnostics() {
	p.ReasonString, p.User = nil, nil
	p.Present &^= 1<<PropReasonString | 1<<PropUserProperty
}

// reset empties p, keeping the capacity of its slices for reuse.
func (p *Properties) reset() {
	if p.Present == 0 {
		return // every field is still zero: only present properties are set
	}
	ids, user := p.SubscriptionIDs[:0], p.User[:0]
	*p = Properties{SubscriptionIDs: ids, User: user}
}

// props reads a property list (its length and the properties) into p,
// allowing the properties in allowed.
func (r *reader) props(p *Properties, allowed PropSet, lim *limits) {
	p.reset()
	n := r.varint()
	if r.err != nil {
		return
	}
	if int(n) > len(r.b)-r.off {
		r.fail(errShort)
		return
	}
	if n == 0 {
		return
	}
	end := r.off + int(n)
	pr := reader{b: r.b[:end], off: r.off}
	for pr.off < end && pr.err == nil {
		id := PropID(pr.varint())
		if pr.err != nil {
			break
		}
		if !allowed.Has(id) {
			pr.fail(errPropID)
			break
		}
		if p.Present.Has(id) && id != PropUserProperty && id != PropSubscriptionID {
			pr.fail(errPropDup)
			break
		}
		p.Present.Add(id)
		switch id {
		case PropPayloadFormat:
			p.PayloadFormat = pr.flag()
		case PropMessageExpiry:
			p.MessageExpiry = pr.u32()
		case PropContentType:
			p.ContentType = pr.str()
		case PropResponseTopic:
			p.ResponseTopic = pr.str()
			if pr.err == nil && !validTopicName(p.ResponseTopic) {
				pr.fail(errResponseTopic)
			}
		case PropCorrelationData:
			p.CorrelationData = pr.bin()
		case PropSubscriptionID:
			v := pr.varint()
			if v == 0 {
				pr.fail(errPropValue)
			}
			if len(p.SubscriptionIDs) >= lim.userProps {
				pr.fail(errTooManySubIDs)
			}
			p.SubscriptionIDs = append(p.SubscriptionIDs, v)
		case PropSessionExpiry:
			p.SessionExpiry = pr.u32()
		case PropAssignedClientID:
			p.AssignedClientID = pr.str()
		case PropServerKeepAlive:
			p.ServerKeepAlive = pr.u16()
		case PropAuthMethod:
			p.AuthMethod = pr.str()
		case PropAuthData:
			p.AuthData = pr.bin()
		case PropRequestProblemInfo:
			p.RequestProblemInfo = pr.flag() == 1
		case PropWillDelay:
			p.WillDelay = pr.u32()
		case PropRequestResponseInfo:
			p.RequestResponseInfo = pr.flag() == 1
		case PropResponseInfo:
			p.ResponseInfo = pr.str()
		case PropServerReference:
			p.ServerReference = pr.str()
		case PropReasonString:
			p.ReasonString = pr.str()
		case PropReceiveMaximum:
			p.ReceiveMaximum = pr.u16()
			if p.ReceiveMaximum == 0 {
				pr.fail(errPropValue)
			}
		case PropTopicAliasMaximum:
			p.TopicAliasMaximum = pr.u16()
		case PropTopicAlias:
			p.TopicAlias = pr.u16()
			if p.TopicAlias == 0 {
				pr.fail(errPropValue)
			}
		case PropMaximumQoS:
			p.MaximumQoS = QoS(pr.flag())
		case PropRetainAvailable:
			p.RetainAvailable = pr.flag() == 1
		case PropUserProperty:
			k := pr.str()
			v := pr.str()
			if len(p.User) >= lim.userProps {
				pr.fail(errTooManyUserProp)
			}
			p.User = append(p.User, UserProperty{k, v})
		case PropMaximumPacketSize:
			p.MaximumPacketSize = pr.u32()
			if p.MaximumPacketSize == 0 {
				pr.fail(errPropValue)
			}
		case PropWildcardSubAvailable:
			p.WildcardSubAvailable = pr.flag() == 1
		case PropSubIDAvailable:
			p.SubIDAvailable = pr.flag() == 1
		case PropSharedSubAvailable:
			p.SharedSubAvailable = pr.flag() == 1
		}
	}
	if pr.err != nil {
		r.fail(pr.err)
		return
	}
	r.off = end
}

// size is the size of p's encoding in a packet whose properties are limited
// to allowed, without the length prefix.
func (p *Properties) size(allowed PropSet) int {
	if p.Present == 0 && p.emptyFast(allowed) {
		return 0
	}
	n := 0
	for s := allowed; s != 0; s &= s - 1 {
		n += p.propSize(PropID(bits.TrailingZeros64(uint64(s))))
	}
	return n
}

// emptyFast reports, for the hot packets PUBLISH and the acknowledgements,
// whether the properties they allow are all unset, Present aside.
func (p *Properties) emptyFast(allowed PropSet) bool {
	switch allowed {
	case publishProps:
		return p.PayloadFormat == 0 && p.MessageExpiry == 0 && p.TopicAlias == 0 &&
			len(p.ContentType) == 0 && len(p.ResponseTopic) == 0 && len(p.CorrelationData) == 0 &&
			len(p.SubscriptionIDs) == 0 && len(p.User) == 0
	case ackProps:
		return len(p.ReasonString) == 0 && len(p.User) == 0
	}
	return false
}

// propSize is the size of the encoding of property id, 0 if it is not sent:
// neither present nor set.
func (p *Properties) propSize(id PropID) int {
	has := p.Present.Has(id)
	switch id {
	case PropPayloadFormat:
		return fixedSize(has, p.PayloadFormat != 0, 1)
	case PropMessageExpiry:
		return fixedSize(has, p.MessageExpiry != 0, 4)
	case PropContentType:
		return binSize(has, p.ContentType)
	case PropResponseTopic:
		return binSize(has, p.ResponseTopic)
	case PropCorrelationData:
		return binSize(has, p.CorrelationData)
	case PropSubscriptionID:
		n := 0
		for _, v := range p.SubscriptionIDs {
			n += 1 + varintSize(int(v))
		}
		return n
	case PropSessionExpiry:
		return fixedSize(has, p.SessionExpiry != 0, 4)
	case PropAssignedClientID:
		return binSize(has, p.AssignedClientID)
	case PropServerKeepAlive:
		return fixedSize(has, p.ServerKeepAlive != 0, 2)
	case PropAuthMethod:
		return binSize(has, p.AuthMethod)
	case PropAuthData:
		return binSize(has, p.AuthData)
	case PropRequestProblemInfo:
		return fixedSize(has, p.RequestProblemInfo, 1)
	case PropWillDelay:
		return fixedSize(has, p.WillDelay != 0, 4)
	case PropRequestResponseInfo:
		return fixedSize(has, p.RequestResponseInfo, 1)
	case PropResponseInfo:
		return binSize(has, p.ResponseInfo)
	case PropServerReference:
		return binSize(has, p.ServerReference)
	case PropReasonString:
		return binSize(has, p.ReasonString)
	case PropReceiveMaximum:
		return fixedSize(has, p.ReceiveMaximum != 0, 2)
	case PropTopicAliasMaximum:
		return fixedSize(has, p.TopicAliasMaximum != 0, 2)
	case PropTopicAlias:
		return fixedSize(has, p.TopicAlias != 0, 2)
	case PropMaximumQoS:
		return fixedSize(has, p.MaximumQoS != 0, 1)
	case PropRetainAvailable:
		return fixedSize(has, p.RetainAvailable, 1)
	case PropUserProperty:
		n := 0
		for _, u := range p.User {
			n += 5 + len(u.Key) + len(u.Value)
		}
		return n
	case PropMaximumPacketSize:
		return fixedSize(has, p.MaximumPacketSize != 0, 4)
	case PropWildcardSubAvailable:
		return fixedSize(has, p.WildcardSubAvailable, 1)
	case PropSubIDAvailable:
		return fixedSize(has, p.SubIDAvailable, 1)
	case PropSharedSubAvailable:
		return fixedSize(has, p.SharedSubAvailable, 1)
	}
	return 0
}

// binSize is the size of a string or binary property.
func binSize(has bool, b []byte) int {
	if has || len(b) > 0 {
		return 3 + len(b)
	}
	return 0
}

// fixedSize is the size of an integer property.
func fixedSize(has, nonzero bool, size int) int {
	if has || nonzero {
		return 1 + size
	}
	return 0
}

// appendProps appends p's encoding (length prefix and properties of size n,
// as returned by size) for a packet whose properties are limited to allowed,
// in the order of their identifiers.
func appendProps(dst []byte, p *Properties, allowed PropSet, n int) []byte {
	dst = appendVarint(dst, n)
	if n == 0 {
		return dst
	}
	for s := allowed; s != 0; s &= s - 1 {
		id := PropID(bits.TrailingZeros64(uint64(s)))
		if p.propSize(id) == 0 {
			continue
		}
		switch id {
		case PropSubscriptionID:
			for _, v := range p.SubscriptionIDs {
				dst = appendVarint(append(dst, byte(id)), int(v))
			}
			continue
		case PropUserProperty:
			for _, u := range p.User {
				dst = appendBin(appendBin(append(dst, byte(id)), u.Key), u.Value)
			}
			continue
		}
		dst = append(dst, byte(id))
		switch id {
		case PropPayloadFormat:
			dst = append(dst, p.PayloadFormat)
		case PropMessageExpiry:
			dst = binary.BigEndian.AppendUint32(dst, p.MessageExpiry)
		case PropContentType:
			dst = appendBin(dst, p.ContentType)
		case PropResponseTopic:
			dst = appendBin(dst, p.ResponseTopic)
		case PropCorrelationData:
			dst = appendBin(dst, p.CorrelationData)
		case PropSessionExpiry:
			dst = binary.BigEndian.AppendUint32(dst, p.SessionExpiry)
		case PropAssignedClientID:
			dst = appendBin(dst, p.AssignedClientID)
		case PropServerKeepAlive:
			dst = binary.BigEndian.AppendUint16(dst, p.ServerKeepAlive)
		case PropAuthMethod:
			dst = appendBin(dst, p.AuthMethod)
		case PropAuthData:
			dst = appendBin(dst, p.AuthData)
		case PropRequestProblemInfo:
			dst = append(dst, b2u(p.RequestProblemInfo))
		case PropWillDelay:
			dst = binary.BigEndian.AppendUint32(dst, p.WillDelay)
		case PropRequestResponseInfo:
			dst = append(dst, b2u(p.RequestResponseInfo))
		case PropResponseInfo:
			dst = appendBin(dst, p.ResponseInfo)
		case PropServerReference:
			dst = appendBin(dst, p.ServerReference)
		case PropReasonString:
			dst = appendBin(dst, p.ReasonString)
		case PropReceiveMaximum:
			dst = binary.BigEndian.AppendUint16(dst, p.ReceiveMaximum)
		case PropTopicAliasMaximum:
			dst = binary.BigEndian.AppendUint16(dst, p.TopicAliasMaximum)
		case PropTopicAlias:
			dst = binary.BigEndian.AppendUint16(dst, p.TopicAlias)
		case PropMaximumQoS:
			dst = append(dst, byte(p.MaximumQoS))
		case PropRetainAvailable:
			dst = append(dst, b2u(p.RetainAvailable))
		case PropMaximumPacketSize:
			dst = binary.BigEndian.AppendUint32(dst, p.MaximumPacketSize)
		case PropWildcardSubAvailable:
			dst = append(dst, b2u(p.WildcardSubAvailable))
		case PropSubIDAvailable:
			dst = append(dst, b2u(p.SubIDAvailable))
		case PropSharedSubAvailable:
			dst = append(dst, b2u(p.SharedSubAvailable))
		}
	}
	return dst
}

func b2u(b bool) byte {
	if b {
		return 1
	}
	return 0
}

// reader reads the fields of a packet body. The first failure sticks in err;
// later reads return zero values.
type reader struct {
	b   []byte
	off int
	err *Error
}

func (r *reader) fail(e *Error) {
	if r.err == nil {
		r.err = e
	}
	r.off = len(r.b)
}

func (r *reader) rest() int { return len(r.b) - r.off }

func (r *reader) u8() byte {
	if r.off >= len(r.b) {
		r.fail(errShort)
		return 0
	}
	c := r.b[r.off]
	r.off++
	return c
}

// flag reads a byte that must be 0 or 1.
func (r *reader) flag() byte {
	c := r.u8()
	if c > 1 {
		r.fail(errPropValue)
	}
	return c
}

func (r *reader) u16() uint16 {
	if r.rest() < 2 {
		r.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint16(r.b[r.off:])
	r.off += 2
	return v
}

func (r *reader) u32() uint32 {
	if r.rest() < 4 {
		r.fail(errShort)
		return 0
	}
	v := binary.BigEndian.Uint32(r.b[r.off:])
	r.off += 4
	return v
}

// varint reads a variable byte integer: at most 4 bytes, minimally encoded.
func (r *reader) varint() uint32 {
	v, n := readVarint(r.b[r.off:])
	switch {
	case n == 0:
		r.fail(errShort)
		return 0
	case n < 0:
		r.fail(errVarint)
		return 0
	}
	r.off += n
	return uint32(v)
}

// bin reads binary data: a two-byte length and the bytes.
func (r *reader) bin() []byte {
	n := int(r.u16())
	if r.err != nil {
		return nil
	}
	if r.rest() < n {
		r.fail(errShort)
		return nil
	}
	b := r.b[r.off : r.off+n : r.off+n]
	r.off += n
	return b
}

// str reads a UTF-8 encoded string.
func (r *reader) str() []byte {
	b := r.bin()
	if e := checkUTF8(b); e != nil {
		r.fail(e)
	}
	return b
}

// checkUTF8 checks a UTF-8 encoded string of MQTT: well-formed (no
// surrogates, no overlong forms) and without U+0000.
func checkUTF8(b []byte) *Error {
	i := 0
	for ; len(b)-i >= 8; i += 8 { // eight ASCII bytes at a time
		if x := binary.LittleEndian.Uint64(b[i:]); x&hi8 != 0 || hasZeroByte(x) {
			break
		}
	}
	for ; i < len(b); i++ {
		c := b[i]
		if c == 0 {
			return errNull
		}
		if c >= utf8.RuneSelf {
			if !utf8.Valid(b[i:]) {
				return errUTF8
			}
			if bytes.IndexByte(b[i:], 0) >= 0 {
				return errNull
			}
			return nil
		}
	}
	return nil
}

// readVarint reads a variable byte integer from the front of b. n is the
// number of bytes read: 0 when b ends before the integer does, -1 when the
// integer is longer than 4 bytes or not minimally encoded.
func readVarint(b []byte) (v, n int) {
	shift := 0
	for i := 0; i < 4; i++ {
		if i >= len(b) {
			return 0, 0
		}
		c := b[i]
		v |= int(c&0x7f) << shift
		if c < 0x80 {
			if c == 0 && i > 0 {
				return 0, -1 // a trailing zero group: not minimal
			}
			return v, i + 1
		}
		shift += 7
	}
	return 0, -1
}

func varintSize(v int) int {
	switch {
	case v < 1<<7:
		return 1
	case v < 1<<14:
		return 2
	case v < 1<<21:
		return 3
	}
	return 4
}

func appendVarint(dst []byte, v int) []byte {
	for v >= 0x80 {
		dst = append(dst, byte(v)|0x80)
		v >>= 7
	}
	return append(dst, byte(v))
}

// appendBin appends binary data or a string: a two-byte length and the
// bytes. Longer than 65535 bytes is a programming error.
func appendBin[T []byte | string](dst []byte, b T) []byte {
	if len(b) > 0xffff {
		panic("mqtt: string or binary field longer than 65535 bytes")
	}
	return append(binary.BigEndian.AppendUint16(dst, uint16(len(b))), b...)
}
