package mqtt

// Packet is a decoded MQTT control packet: one of *Connect, *Connack,
// *Publish, *Ack (PUBACK, PUBREC, PUBREL, PUBCOMP), *Subscribe, *Suback,
// *Unsubscribe, *Unsuback, *Pingreq, *Pingresp, *Disconnect and *Auth.
type Packet interface {
	// Type returns the control packet type.
	Type() Type
}

var (
	_ Packet = (*Connect)(nil)
	_ Packet = (*Connack)(nil)
	_ Packet = (*Publish)(nil)
	_ Packet = (*Ack)(nil)
	_ Packet = (*Subscribe)(nil)
	_ Packet = (*Suback)(nil)
	_ Packet = (*Unsubscribe)(nil)
	_ Packet = (*Unsuback)(nil)
	_ Packet = (*Pingreq)(nil)
	_ Packet = (*Pingresp)(nil)
	_ Packet = (*Disconnect)(nil)
	_ Packet = (*Auth)(nil)
)

// Connect is CONNECT, the first packet a client sends.
type Connect struct {
	// Version is the protocol level, Version311 or Version5. It decides the
	// encoding of this and every later packet of the connection.
	Version Version
	// CleanStart discards any existing session (Clean Session in 3.1.1,
	// where it also ends the session with the connection).
	CleanStart bool
	// KeepAlive is the longest interval in seconds between two packets of
	// the client; 0 turns keep-alive off.
	KeepAlive uint16
	// Props are CONNECT's properties (5.0).
	Props Properties
	// ClientID identifies the client's session; it may be empty, for the
	// server to assign one.
	ClientID []byte
	// Will is the message the server publishes when the connection ends
	// without a normal DISCONNECT, or nil for none.
	Will *Will
	// HasUsername and HasPassword tell whether Username and Password are
	// present; either may be present and empty.
	HasUsername, HasPassword bool
	// Username is a UTF-8 string.
	Username []byte
	// Password is binary data. In 3.1.1 it requires a user name.
	Password []byte
}

// Will is the will message of a CONNECT.
type Will struct {
	// QoS and Retain are the will message's publish options.
	QoS    QoS
	Retain bool
	// Props are the will properties (5.0): will delay, payload format,
	// message expiry, content type, response topic, correlation data and
	// user properties.
	Props Properties
	// Topic is the will message's topic name.
	Topic []byte
	// Payload is the will message, binary data.
	Payload []byte
}

// Connack is CONNACK, the server's answer to CONNECT.
type Connack struct {
	// SessionPresent tells the client that the server resumed a session.
	SessionPresent bool
	// ReasonCode is the outcome: Success or the reason for refusal. In 3.1.1
	// it travels as a return code; see AppendConnack.
	ReasonCode ReasonCode
	// Props are CONNACK's properties (5.0).
	Props Properties
}

// Publish is PUBLISH, an application message.
type Publish struct {
	// Dup marks a redelivery of a QoS 1 or 2 PUBLISH.
	Dup bool
	// QoS is the delivery guarantee, 0 to 2.
	QoS QoS
	// Retain asks the server to keep the message for future subscribers.
	Retain bool
	// Topic is the topic name, without wildcards. In 5.0 it may be empty
	// when Props.TopicAlias stands for it.
	Topic []byte
	// PacketID identifies a QoS 1 or 2 PUBLISH (non-zero); 0 for QoS 0.
	PacketID uint16
	// Props are PUBLISH's properties (5.0).
	Props Properties
	// Payload is the application message, binary data.
	Payload []byte
}

// Ack is one of the acknowledgements of a QoS 1 or 2 PUBLISH: PUBACK,
// PUBREC, PUBREL or PUBCOMP, told apart by Kind.
type Ack struct {
	// Kind is TypePuback, TypePubrec, TypePubrel or TypePubcomp.
	Kind Type
	// PacketID is the identifier of the PUBLISH acknowledged.
	PacketID uint16
	// ReasonCode is the outcome (5.0; Success in 3.1.1).
	ReasonCode ReasonCode
	// Props are the acknowledgement's properties (5.0): reason string and
	// user properties.
	Props Properties
}

// Subscribe is SUBSCRIBE, a request for one or more subscriptions.
type Subscribe struct {
	// PacketID identifies the request for its SUBACK (non-zero).
	PacketID uint16
	// Props are SUBSCRIBE's properties (5.0): a subscription identifier and
	// user properties.
	Props Properties
	// Filters are the subscriptions requested, at least one. The decoder
	// checks that each filter is a UTF-8 string but not its syntax: an
	// invalid filter is answered in SUBACK (see ValidTopicFilter).
	Filters []Subscription
}

// Subscription is one topic filter of a SUBSCRIBE with its options.
type Subscription struct {
	// Filter is the topic filter, possibly a shared subscription
	// ($share/group/filter; see ParseShared).
	Filter []byte
	// QoS is the highest QoS the subscriber accepts.
	QoS QoS
	// NoLocal (5.0) asks not to receive the client's own publications.
	NoLocal bool
	// RetainAsPublished (5.0) keeps the retain flag of forwarded messages.
	RetainAsPublished bool
	// RetainHandling (5.0) says when retained messages are sent: 0 at
	// subscribe, 1 at subscribe if the subscription is new, 2 never.
	RetainHandling byte
}

// Suback is SUBACK, the answer to SUBSCRIBE.
type Suback struct {
	// PacketID is the SUBSCRIBE's.
	PacketID uint16
	// Props are SUBACK's properties (5.0): reason string and user
	// properties.
	Props Properties
	// ReasonCodes has one code per filter of the SUBSCRIBE, in order:
	// GrantedQoS0 to GrantedQoS2, or a failure. In 3.1.1 every failure
	// travels as 0x80.
	ReasonCodes []ReasonCode
}

// Unsubscribe is UNSUBSCRIBE, a request to end subscriptions.
type Unsubscribe struct {
	// PacketID identifies the request for its UNSUBACK (non-zero).
	PacketID uint16
	// Props are UNSUBSCRIBE's properties (5.0): user properties.
	Props Properties
	// Filters are the topic filters to unsubscribe, at least one.
	Filters [][]byte
}

// Unsuback is UNSUBACK, the answer to UNSUBSCRIBE.
type Unsuback struct {
	// PacketID is the UNSUBSCRIBE's.
	PacketID uint16
	// Props are UNSUBACK's properties (5.0): reason string and user
	// properties.
	Props Properties
	// ReasonCodes has one code per filter of the UNSUBSCRIBE (5.0; 3.1.1
	// has none).
	ReasonCodes []ReasonCode
}

// Pingreq is PINGREQ, the client's keep-alive probe.
type Pingreq struct{}

// Pingresp is PINGRESP, the server's answer to PINGREQ.
type Pingresp struct{}

// Disconnect is DISCONNECT: in 3.1.1 the client's normal close, in 5.0 a
// close from either side with a reason.
type Disconnect struct {
	// ReasonCode is the reason (5.0): NormalDisconnection,
	// DisconnectWithWillMessage or a failure.
	ReasonCode ReasonCode
	// Props are DISCONNECT's properties (5.0): session expiry, reason
	// string, server reference and user properties.
	Props Properties
}

// Auth is AUTH (5.0 only), a step of extended authentication.
type Auth struct {
	// ReasonCode is Success, ContinueAuthentication or ReAuthenticate.
	ReasonCode ReasonCode
	// Props are AUTH's properties: authentication method and data, reason
	// string and user properties.
	Props Properties
}

// Type returns TypeConnect.
func (*Connect) Type() Type { return TypeConnect }

// Type returns TypeConnack.
func (*Connack) Type() Type { return TypeConnack }

// Type returns TypePublish.
func (*Publish) Type() Type { return TypePublish }

// Type returns the acknowledgement's Kind.
func (a *Ack) Type() Type { return a.Kind }

// Type returns TypeSubscribe.
func (*Subscribe) Type() Type { return TypeSubscribe }

// Type returns TypeSuback.
func (*Suback) Type() Type { return TypeSuback }

// Type returns TypeUnsubscribe.
func (*Unsubscribe) Type() Type { return TypeUnsubscribe }

// Type returns TypeUnsuback.
func (*Unsuback) Type() Type { return TypeUnsuback }

// Type returns TypePingreq.
func (*Pingreq) Type() Type { return TypePingreq }

// Type returns TypePingresp.
func (*Pingresp) Type() Type { return TypePingresp }

// Type returns TypeDisconnect.
func (*Disconnect) Type() Type { return TypeDisconnect }

// Type returns TypeAuth.
func (*Auth) Type() Type { return TypeAuth }
