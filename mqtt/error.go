package mqtt

// Error is a packet the Decoder refused. Code is the MQTT 5.0 reason code to
// answer with: in the CONNACK for a refused CONNECT, else in the DISCONNECT
// that closes a 5.0 connection (a 3.1.1 connection is just closed). Code is
// MalformedPacket, ProtocolError, PacketTooLarge, TopicNameInvalid,
// UnsupportedProtocolVersion or QuotaExceeded; its String labels the close.
//
// Errors are final: the decoder's input can't be resynchronised, so the
// connection is to be closed. Errors are shared values; don't modify them.
type Error struct {
	Code ReasonCode
	Msg  string
}

// Error returns "mqtt: " followed by the code's name and the message.
func (e *Error) Error() string { return "mqtt: " + e.Code.String() + ": " + e.Msg }

func malformed(msg string) *Error { return &Error{MalformedPacket, msg} }
func protocol(msg string) *Error  { return &Error{ProtocolError, msg} }

// The errors of the decoder. They are values so that decoding allocates
// nothing, even when it fails.
var (
	errReservedType    = malformed("reserved packet type")
	errFlags           = malformed("invalid fixed header flags")
	errQoS3            = malformed("QoS 3")
	errVarint          = malformed("variable byte integer longer than 4 bytes or not minimal")
	errShort           = malformed("packet shorter than its fields")
	errTrailing        = malformed("bytes after the last field")
	errBadLength       = malformed("invalid remaining length for the packet type")
	errUTF8            = malformed("string is not well-formed UTF-8")
	errNull            = malformed("string contains U+0000")
	errPropID          = malformed("property not valid for the packet")
	errPropDup         = protocol("property included more than once")
	errPropValue       = protocol("invalid property value")
	errPacketID        = protocol("packet identifier 0")
	errFirstConnect    = protocol("first packet is not CONNECT")
	errSecondConnect   = protocol("second CONNECT")
	errProtocolName    = &Error{UnsupportedProtocolVersion, "protocol name is not MQTT"}
	errProtocolLevel   = &Error{UnsupportedProtocolVersion, "protocol level is not 4 or 5"}
	errConnectFlags    = malformed("invalid CONNECT flags")
	errPasswordOnly    = malformed("password without user name in 3.1.1")
	errAuthData        = protocol("authentication data without method")
	errTopicName       = &Error{TopicNameInvalid, "topic name with a wildcard or empty"}
	errResponseTopic   = &Error{TopicNameInvalid, "response topic with a wildcard or empty"}
	errTopicAlias      = protocol("empty topic name without topic alias")
	errDupQoS0         = protocol("DUP set on a QoS 0 PUBLISH")
	errNoFilters       = protocol("no topic filter")
	errNoCodes         = protocol("no reason code")
	errSharedNoLocal   = protocol("no local on a shared subscription")
	errSubOptions      = malformed("reserved subscription option bits set")
	errRetainHandling  = protocol("retain handling 3")
	errReasonCode      = protocol("reason code not valid for the packet")
	errAckFlags        = malformed("reserved acknowledge flags set")
	errSessionPresent  = protocol("session present with a failure code")
	errAuthV3          = malformed("AUTH packet in 3.1.1")
	errTooLarge        = &Error{PacketTooLarge, "packet exceeds the maximum packet size"}
	errTooManyFilters  = &Error{QuotaExceeded, "too many topic filters in one packet"}
	errTooManyUserProp = &Error{QuotaExceeded, "too many user properties"}
	errTooManySubIDs   = &Error{QuotaExceeded, "too many subscription identifiers"}
)

// Default limits, used where a Limits field is zero.
const (
	// DefaultMaxPacketSize is the default Limits.MaxPacketSize: 1 MiB.
	DefaultMaxPacketSize = 1 << 20
	// MaxPacketSizeLimit is the largest packet the protocol can frame: a
	// 4-byte remaining length of 268,435,455 plus the 5-byte fixed header.
	MaxPacketSizeLimit = maxVarint + 5
	// DefaultMaxTopicFilters is the default Limits.MaxTopicFilters.
	DefaultMaxTopicFilters = 64
	// DefaultMaxUserProperties is the default Limits.MaxUserProperties.
	DefaultMaxUserProperties = 64
)

// maxVarint is the largest value of a variable byte integer: 268,435,455.
const maxVarint = 1<<28 - 1

// Limits bounds what one packet may make the decoder hold or the broker
// process. The zero value, like a nil *Limits, applies the defaults. A Limits
// is only read, so one value may be shared by any number of goroutines.
type Limits struct {
	// MaxPacketSize bounds a packet's total size, fixed header included (the
	// measure of 5.0's Maximum Packet Size, which a server announces in
	// CONNACK). A packet over it is refused with PacketTooLarge as soon as its
	// fixed header has arrived. Zero or negative means DefaultMaxPacketSize
	// (1 MiB); values above MaxPacketSizeLimit mean MaxPacketSizeLimit.
	MaxPacketSize int
	// MaxTopicFilters bounds the topic filters of one SUBSCRIBE or
	// UNSUBSCRIBE; more are refused with QuotaExceeded. Zero or negative
	// means DefaultMaxTopicFilters (64).
	MaxTopicFilters int
	// MaxUserProperties bounds the user properties of one property list
	// (and the subscription identifiers of one PUBLISH); more are refused
	// with QuotaExceeded. Zero or negative means DefaultMaxUserProperties
	// (64).
	MaxUserProperties int
}

// limits is Limits with the defaults applied.
type limits struct {
	packetSize int
	filters    int
	userProps  int
}

func (l *Limits) resolve() limits {
	r := limits{DefaultMaxPacketSize, DefaultMaxTopicFilters, DefaultMaxUserProperties}
	if l == nil {
		return r
	}
	if l.MaxPacketSize > 0 {
		r.packetSize = min(l.MaxPacketSize, MaxPacketSizeLimit)
	}
	if l.MaxTopicFilters > 0 {
		r.filters = l.MaxTopicFilters
	}
	if l.MaxUserProperties > 0 {
		r.userProps = l.MaxUserProperties
	}
	return r
}
