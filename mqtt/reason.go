package mqtt

import "strconv"

// Version is the MQTT protocol level carried by CONNECT. It decides how every
// later packet of the connection is encoded: properties and most reason codes
// exist only in 5.0.
type Version byte

const (
	// Version311 is MQTT 3.1.1, protocol level 4.
	Version311 Version = 4
	// Version5 is MQTT 5.0, protocol level 5.
	Version5 Version = 5
)

// String returns "3.1.1", "5.0", or "level_N" for another protocol level.
func (v Version) String() string {
	switch v {
	case Version311:
		return "3.1.1"
	case Version5:
		return "5.0"
	}
	return "level_" + strconv.Itoa(int(v))
}

// Type is an MQTT control packet type, the high nibble of a packet's first
// byte.
type Type byte

// The control packet types. AUTH exists only in MQTT 5.0.
const (
	TypeConnect     Type = 1
	TypeConnack     Type = 2
	TypePublish     Type = 3
	TypePuback      Type = 4
	TypePubrec      Type = 5
	TypePubrel      Type = 6
	TypePubcomp     Type = 7
	TypeSubscribe   Type = 8
	TypeSuback      Type = 9
	TypeUnsubscribe Type = 10
	TypeUnsuback    Type = 11
	TypePingreq     Type = 12
	TypePingresp    Type = 13
	TypeDisconnect  Type = 14
	TypeAuth        Type = 15
)

var typeNames = [16]string{
	"reserved", "connect", "connack", "publish", "puback", "pubrec", "pubrel", "pubcomp",
	"subscribe", "suback", "unsubscribe", "unsuback", "pingreq", "pingresp", "disconnect", "auth",
}

// String returns the packet type's name in lower case ("publish"), as used in
// metric labels and logs.
func (t Type) String() string {
	if t < 16 {
		return typeNames[t]
	}
	return "type_" + strconv.Itoa(int(t))
}

// QoS is a quality-of-service level: 0 (at most once), 1 (at least once) or
// 2 (exactly once). 3 is invalid on the wire.
type QoS byte

// The QoS levels.
const (
	QoS0 QoS = 0
	QoS1 QoS = 1
	QoS2 QoS = 2
)

// ReasonCode is an MQTT 5.0 reason code: the outcome of an operation, carried
// by CONNACK, PUBACK, PUBREC, PUBREL, PUBCOMP, SUBACK, UNSUBACK, DISCONNECT
// and AUTH. Values below 0x80 report success, values from 0x80 up a failure.
//
// The package speaks reason codes for both protocol versions: the 3.1.1
// CONNACK return codes and SUBACK failure are translated to and from them
// (see AppendConnack and AppendSuback), so a broker has one vocabulary. The
// String form labels metrics and is the MQTT close detail of a connection.
type ReasonCode byte

// The reason codes of MQTT 5.0, section 2.4. Success, NormalDisconnection and
// GrantedQoS0 share the value 0.
const (
	Success                             ReasonCode = 0x00
	NormalDisconnection                 ReasonCode = 0x00
	GrantedQoS0                         ReasonCode = 0x00
	GrantedQoS1                         ReasonCode = 0x01
	GrantedQoS2                         ReasonCode = 0x02
	DisconnectWithWillMessage           ReasonCode = 0x04
	NoMatchingSubscribers               ReasonCode = 0x10
	NoSubscriptionExisted               ReasonCode = 0x11
	ContinueAuthentication              ReasonCode = 0x18
	ReAuthenticate                      ReasonCode = 0x19
	UnspecifiedError                    ReasonCode = 0x80
	MalformedPacket                     ReasonCode = 0x81
	ProtocolError                       ReasonCode = 0x82
	ImplementationSpecificError         ReasonCode = 0x83
	UnsupportedProtocolVersion          ReasonCode = 0x84
	ClientIdentifierNotValid            ReasonCode = 0x85
	BadUserNameOrPassword               ReasonCode = 0x86
	NotAuthorized                       ReasonCode = 0x87
	ServerUnavailable                   ReasonCode = 0x88
	ServerBusy                          ReasonCode = 0x89
	Banned                              ReasonCode = 0x8A
	ServerShuttingDown                  ReasonCode = 0x8B
	BadAuthenticationMethod             ReasonCode = 0x8C
	KeepAliveTimeout                    ReasonCode = 0x8D
	SessionTakenOver                    ReasonCode = 0x8E
	TopicFilterInvalid                  ReasonCode = 0x8F
	TopicNameInvalid                    ReasonCode = 0x90
	PacketIdentifierInUse               ReasonCode = 0x91
	PacketIdentifierNotFound            ReasonCode = 0x92
	ReceiveMaximumExceeded              ReasonCode = 0x93
	TopicAliasInvalid                   ReasonCode = 0x94
	PacketTooLarge                      ReasonCode = 0x95
	MessageRateTooHigh                  ReasonCode = 0x96
	QuotaExceeded                       ReasonCode = 0x97
	AdministrativeAction                ReasonCode = 0x98
	PayloadFormatInvalid                ReasonCode = 0x99
	RetainNotSupported                  ReasonCode = 0x9A
	QoSNotSupported                     ReasonCode = 0x9B
	UseAnotherServer                    ReasonCode = 0x9C
	ServerMoved                         ReasonCode = 0x9D
	SharedSubscriptionsNotSupported     ReasonCode = 0x9E
	ConnectionRateExceeded              ReasonCode = 0x9F
	MaximumConnectTime                  ReasonCode = 0xA0
	SubscriptionIdentifiersNotSupported ReasonCode = 0xA1
	WildcardSubscriptionsNotSupported   ReasonCode = 0xA2
)

var reasonNames = map[ReasonCode]string{
	Success:                             "success",
	GrantedQoS1:                         "granted_qos_1",
	GrantedQoS2:                         "granted_qos_2",
	DisconnectWithWillMessage:           "disconnect_with_will_message",
	NoMatchingSubscribers:               "no_matching_subscribers",
	NoSubscriptionExisted:               "no_subscription_existed",
	ContinueAuthentication:              "continue_authentication",
	ReAuthenticate:                      "re_authenticate",
	UnspecifiedError:                    "unspecified_error",
	MalformedPacket:                     "malformed_packet",
	ProtocolError:                       "protocol_error",
	ImplementationSpecificError:         "implementation_specific_error",
	UnsupportedProtocolVersion:          "unsupported_protocol_version",
	ClientIdentifierNotValid:            "client_identifier_not_valid",
	BadUserNameOrPassword:               "bad_user_name_or_password",
	NotAuthorized:                       "not_authorized",
	ServerUnavailable:                   "server_unavailable",
	ServerBusy:                          "server_busy",
	Banned:                              "banned",
	ServerShuttingDown:                  "server_shutting_down",
	BadAuthenticationMethod:             "bad_authentication_method",
	KeepAliveTimeout:                    "keep_alive_timeout",
	SessionTakenOver:                    "session_taken_over",
	TopicFilterInvalid:                  "topic_filter_invalid",
	TopicNameInvalid:                    "topic_name_invalid",
	PacketIdentifierInUse:               "packet_identifier_in_use",
	PacketIdentifierNotFound:            "packet_identifier_not_found",
	ReceiveMaximumExceeded:              "receive_maximum_exceeded",
	TopicAliasInvalid:                   "topic_alias_invalid",
	PacketTooLarge:                      "packet_too_large",
	MessageRateTooHigh:                  "message_rate_too_high",
	QuotaExceeded:                       "quota_exceeded",
	AdministrativeAction:                "administrative_action",
	PayloadFormatInvalid:                "payload_format_invalid",
	RetainNotSupported:                  "retain_not_supported",
	QoSNotSupported:                     "qos_not_supported",
	UseAnotherServer:                    "use_another_server",
	ServerMoved:                         "server_moved",
	SharedSubscriptionsNotSupported:     "shared_subscriptions_not_supported",
	ConnectionRateExceeded:              "connection_rate_exceeded",
	MaximumConnectTime:                  "maximum_connect_time",
	SubscriptionIdentifiersNotSupported: "subscription_identifiers_not_supported",
	WildcardSubscriptionsNotSupported:   "wildcard_subscriptions_not_supported",
}

// reasonStrings is reasonNames as an array, so String never allocates.
var reasonStrings = func() (a [256]string) {
	const hex = "0123456789abcdef"
	for i := range a {
		a[i] = "reason_0x" + string(hex[i>>4]) + string(hex[i&15])
	}
	for c, s := range reasonNames {
		a[c] = s
	}
	return a
}()

// String returns the reason code's snake_case name from the specification
// ("not_authorized", "packet_too_large"), or "reason_0xNN" for a value the
// specification does not define. 0x00 is "success" whatever the packet, as
// in a DISCONNECT (normal disconnection) or SUBACK (granted QoS 0).
func (c ReasonCode) String() string { return reasonStrings[c] }

// IsError reports whether the code reports a failure (0x80 and above).
func (c ReasonCode) IsError() bool { return c >= 0x80 }

// codeSet is a set of reason codes.
type codeSet [4]uint64

func (s *codeSet) has(c ReasonCode) bool { return s[c>>6]&(1<<(c&63)) != 0 }

func newCodeSet(codes ...ReasonCode) (s codeSet) {
	for _, c := range codes {
		s[c>>6] |= 1 << (c & 63)
	}
	return s
}

// The reason codes each packet may carry in 5.0 (section 3 of the
// specification, one table per packet).
var (
	connackCodes = newCodeSet(Success, UnspecifiedError, MalformedPacket, ProtocolError,
		ImplementationSpecificError, UnsupportedProtocolVersion, ClientIdentifierNotValid,
		BadUserNameOrPassword, NotAuthorized, ServerUnavailable, ServerBusy, Banned,
		BadAuthenticationMethod, TopicNameInvalid, PacketTooLarge, QuotaExceeded,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, ConnectionRateExceeded)
	pubackCodes = newCodeSet(Success, NoMatchingSubscribers, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicNameInvalid, PacketIdentifierInUse,
		QuotaExceeded, PayloadFormatInvalid)
	pubrelCodes = newCodeSet(Success, PacketIdentifierNotFound)
	subackCodes = newCodeSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse,
		QuotaExceeded, SharedSubscriptionsNotSupported, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported)
	unsubackCodes = newCodeSet(Success, NoSubscriptionExisted, UnspecifiedError,
		ImplementationSpecificError, NotAuthorized, TopicFilterInvalid, PacketIdentifierInUse)
	disconnectCodes = newCodeSet(NormalDisconnection, DisconnectWithWillMessage,
		UnspecifiedError, MalformedPacket, ProtocolError, ImplementationSpecificError,
		NotAuthorized, ServerBusy, ServerShuttingDown, KeepAliveTimeout, SessionTakenOver,
		TopicFilterInvalid, TopicNameInvalid, ReceiveMaximumExceeded, TopicAliasInvalid,
		PacketTooLarge, MessageRateTooHigh, QuotaExceeded, AdministrativeAction,
		PayloadFormatInvalid, RetainNotSupported, QoSNotSupported, UseAnotherServer,
		ServerMoved, SharedSubscriptionsNotSupported, ConnectionRateExceeded,
		MaximumConnectTime, SubscriptionIdentifiersNotSupported,
		WildcardSubscriptionsNotSupported)
	authCodes     = newCodeSet(Success, ContinueAuthentication, ReAuthenticate)
	subackV3Codes = newCodeSet(GrantedQoS0, GrantedQoS1, GrantedQoS2, UnspecifiedError)
)

// connackV3 maps a reason code to a 3.1.1 CONNACK return code.
func connackV3(c ReasonCode) byte {
	switch c {
	case Success:
		return 0
	case UnsupportedProtocolVersion:
		return 1
	case ClientIdentifierNotValid:
		return 2
	case BadUserNameOrPassword, BadAuthenticationMethod:
		return 4
	case NotAuthorized, Banned:
		return 5
	}
	return 3 // server unavailable
}

// connackV3Codes maps the 3.1.1 CONNACK return codes 0-5 to reason codes.
var connackV3Codes = [6]ReasonCode{Success, UnsupportedProtocolVersion,
	ClientIdentifierNotValid, ServerUnavailable, BadUserNameOrPassword, NotAuthorized}
