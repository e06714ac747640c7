package mqtt

import "encoding/binary"

// The Append functions encode packets, appending them to dst and returning
// the extended slice; they allocate nothing beyond dst's growth. They encode
// for the protocol version v: Version5 with properties and reason codes, any
// other value as 3.1.1, where properties and most reason codes don't exist
// and are left out. Only the properties the packet type allows are written
// (see Properties for which are).
//
// They don't validate their input, which the caller builds: a string or
// binary field longer than 65535 bytes, or a packet longer than the
// protocol's maximum (MaxPacketSizeLimit), is a programming error and panics.
// Compare the encoded size with the peer's Maximum Packet Size before
// sending.

// appendHeader appends a fixed header: the first byte and the remaining
// length.
func appendHeader(dst []byte, b0 byte, remaining int) []byte {
	if remaining > maxVarint {
		panic("mqtt: packet longer than the protocol's maximum")
	}
	return appendVarint(append(dst, b0), remaining)
}

// propsLen returns the size of a property list of n bytes, length included.
func propsLen(n int) int { return varintSize(n) + n }

// AppendConnect appends a CONNECT for c.Version (Version311 if zero). A
// password in 3.1.1 requires a user name. Username and Password are sent
// when their Has flag is set or they are not empty.
func AppendConnect(dst []byte, c *Connect) []byte {
	v5 := c.Version == Version5
	hasUser := c.HasUsername || len(c.Username) > 0
	hasPass := c.HasPassword || len(c.Password) > 0
	flags := b2u(c.CleanStart) << 1
	if hasUser {
		flags |= 0x80
	}
	if hasPass {
		flags |= 0x40
	}
	n := 2 + 4 + 1 + 1 + 2 + 2 + len(c.ClientID) // name, level, flags, keep alive, client id
	var pn, wpn int
	if v5 {
		pn = c.Props.size(connectProps)
		n += propsLen(pn)
	}
	if w := c.Will; w != nil {
		flags |= 0x04 | byte(w.QoS&3)<<3 | b2u(w.Retain)<<5
		n += 4 + len(w.Topic) + len(w.Payload)
		if v5 {
			wpn = w.Props.size(willProps)
			n += propsLen(wpn)
		}
	}
	if hasUser {
		n += 2 + len(c.Username)
	}
	if hasPass {
		n += 2 + len(c.Password)
	}
	level := byte(Version311)
	if v5 {
		level = byte(Version5)
	}
	dst = appendHeader(dst, byte(TypeConnect)<<4, n)
	dst = append(dst, 0, 4, 'M', 'Q', 'T', 'T', level, flags)
	dst = binary.BigEndian.AppendUint16(dst, c.KeepAlive)
	if v5 {
		dst = appendProps(dst, &c.Props, connectProps, pn)
	}
	dst = appendBin(dst, c.ClientID)
	if w := c.Will; w != nil {
		if v5 {
			dst = appendProps(dst, &w.Props, willProps, wpn)
		}
		dst = appendBin(appendBin(dst, w.Topic), w.Payload)
	}
	if hasUser {
		dst = appendBin(dst, c.Username)
	}
	if hasPass {
		dst = appendBin(dst, c.Password)
	}
	return dst
}

// AppendConnack appends a CONNACK. In 3.1.1 the reason code travels as a
// return code: Success 0, UnsupportedProtocolVersion 1,
// ClientIdentifierNotValid 2, BadUserNameOrPassword and
// BadAuthenticationMethod 4, NotAuthorized and Banned 5, any other failure 3
// (server unavailable).
func AppendConnack(dst []byte, v Version, c *Connack) []byte {
	flags := b2u(c.SessionPresent)
	if v != Version5 {
		return append(dst, byte(TypeConnack)<<4, 2, flags, connackV3(c.ReasonCode))
	}
	pn := c.Props.size(connackProps)
	dst = appendHeader(dst, byte(TypeConnack)<<4, 2+propsLen(pn))
	dst = append(dst, flags, byte(c.ReasonCode))
	return appendProps(dst, &c.Props, connackProps, pn)
}

// AppendPublish appends a PUBLISH. PacketID is written for QoS 1 and 2 only.
// Only QoS's two low bits are encoded (a QoS over 2 is not valid), in the
// flags and in the choice to write PacketID alike, in both versions.
func AppendPublish(dst []byte, v Version, p *Publish) []byte {
	b0 := publishFlags(p.QoS, p.Dup, p.Retain)
	if v != Version5 {
		return appendPublish311(dst, b0, p.Topic, p.PacketID, p.Payload)
	}
	withID := p.QoS&3 > 0
	n := 2 + len(p.Topic) + len(p.Payload)
	if withID {
		n += 2
	}
	pn := p.Props.size(publishProps)
	n += propsLen(pn)
	dst = appendBin(appendHeader(dst, b0, n), p.Topic)
	if withID {
		dst = binary.BigEndian.AppendUint16(dst, p.PacketID)
	}
	dst = appendProps(dst, &p.Props, publishProps, pn)
	return append(dst, p.Payload...)
}

// publishFlags returns a PUBLISH's first byte: its type and flags.
func publishFlags(qos QoS, dup, retain bool) byte {
	return byte(TypePublish)<<4 | b2u(dup)<<3 | byte(qos&3)<<1 | b2u(retain)
}

// appendPublish311 appends a 3.1.1 PUBLISH (no properties) whose first
// byte is b0 (publishFlags): AppendPublish without a Publish to fill in,
// for the broker's deliveries (conn.sendPublish). The packet identifier is
// written for QoS 1 and 2 only.
func appendPublish311[T []byte | string](dst []byte, b0 byte, topic T, id uint16, payload []byte) []byte {
	n := 2 + len(topic) + len(payload)
	qos := b0 >> 1 & 3
	if qos > 0 {
		n += 2
	}
	dst = appendBin(appendHeader(dst, b0, n), topic)
	if qos > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	return append(dst, payload...)
}

// AppendAck appends a PUBACK, PUBREC, PUBREL or PUBCOMP, after a.Kind. In
// 5.0 the reason code and properties are left out when they are Success and
// none, as the specification allows.
func AppendAck(dst []byte, v Version, a *Ack) []byte {
	b0 := byte(a.Kind) << 4
	if a.Kind == TypePubrel {
		b0 |= 2
	}
	if v != Version5 {
		return binary.BigEndian.AppendUint16(append(dst, b0, 2), a.PacketID)
	}
	return appendOptional(dst, b0, 2, a.PacketID, a.ReasonCode, &a.Props, ackProps)
}

// appendOptional appends a 5.0 packet whose reason code and properties may
// be left out, which they are when they are Success and none: the
// acknowledgements (with a packet identifier, head 2), DISCONNECT and AUTH
// (head 0).
func appendOptional(dst []byte, b0 byte, head int, id uint16, c ReasonCode, p *Properties, allowed PropSet) []byte {
	pn := p.size(allowed)
	n := head
	switch {
	case pn > 0:
		n += 1 + propsLen(pn)
	case c != Success:
		n++
	}
	dst = appendHeader(dst, b0, n)
	if head > 0 {
		dst = binary.BigEndian.AppendUint16(dst, id)
	}
	if n > head {
		dst = append(dst, byte(c))
	}
	if pn > 0 {
		dst = appendProps(dst, p, allowed, pn)
	}
	return dst
}

// AppendPuback appends a PUBACK without properties.
func AppendPuback(dst []byte, v Version, id uint16, c ReasonCode) []byte {
	return AppendAck(dst, v, &Ack{Kind: TypePuback, PacketID: id, ReasonCode: c})
}

// AppendPubrec appends a PUBREC without properties.
func AppendPubrec(dst []byte, v Version, id uint16, c ReasonCode) []byte {
	return AppendAck(dst, v, &Ack{Kind: TypePubrec, PacketID: id, ReasonCode: c})
}

// AppendPubrel appends a PUBREL without properties.
func AppendPubrel(dst []byte, v Version, id uint16, c ReasonCode) []byte {
	return AppendAck(dst, v, &Ack{Kind: TypePubrel, PacketID: id, ReasonCode: c})
}

// AppendPubcomp appends a PUBCOMP without properties.
func AppendPubcomp(dst []byte, v Version, id uint16, c ReasonCode) []byte {
	return AppendAck(dst, v, &Ack{Kind: TypePubcomp, PacketID: id, ReasonCode: c})
}

// AppendSubscribe appends a SUBSCRIBE. In 3.1.1 the options are the QoS
// alone.
func AppendSubscribe(dst []byte, v Version, s *Subscribe) []byte {
	n, pn := 2, 0
	if v == Version5 {
		pn = s.Props.size(subscribeProps)
		n += propsLen(pn)
	}
	for i := range s.Filters {
		n += 3 + len(s.Filters[i].Filter)
	}
	dst = binary.BigEndian.AppendUint16(appendHeader(dst, byte(TypeSubscribe)<<4|2, n), s.PacketID)
	if v == Version5 {
		dst = appendProps(dst, &s.Props, subscribeProps, pn)
	}
	for i := range s.Filters {
		f := &s.Filters[i]
		o := byte(f.QoS & 3)
		if v == Version5 {
			o |= b2u(f.NoLocal)<<2 | b2u(f.RetainAsPublished)<<3 | (f.RetainHandling&3)<<4
		}
		dst = append(appendBin(dst, f.Filter), o)
	}
	return dst
}

// AppendSuback appends a SUBACK. In 3.1.1 every failure code travels as
// 0x80.
func AppendSuback(dst []byte, v Version, s *Suback) []byte {
	n, pn := 2+len(s.ReasonCodes), 0
	if v == Version5 {
		pn = s.Props.size(ackProps)
		n += propsLen(pn)
	}
	dst = binary.BigEndian.AppendUint16(appendHeader(dst, byte(TypeSuback)<<4, n), s.PacketID)
	if v == Version5 {
		dst = appendProps(dst, &s.Props, ackProps, pn)
		for _, c := range s.ReasonCodes {
			dst = append(dst, byte(c))
		}
		return dst
	}
	for _, c := range s.ReasonCodes {
		if c.IsError() {
			c = UnspecifiedError
		}
		dst = append(dst, byte(c))
	}
	return dst
}

// AppendUnsubscribe appends an UNSUBSCRIBE.
func AppendUnsubscribe(dst []byte, v Version, u *Unsubscribe) []byte {
	n, pn := 2, 0
	if v == Version5 {
		pn = u.Props.size(unsubscribeProps)
		n += propsLen(pn)
	}
	for _, f := range u.Filters {
		n += 2 + len(f)
	}
	dst = binary.BigEndian.AppendUint16(appendHeader(dst, byte(TypeUnsubscribe)<<4|2, n), u.PacketID)
	if v == Version5 {
		dst = appendProps(dst, &u.Props, unsubscribeProps, pn)
	}
	for _, f := range u.Filters {
		dst = appendBin(dst, f)
	}
	return dst
}

// AppendUnsuback appends an UNSUBACK. In 3.1.1 it has no reason codes.
func AppendUnsuback(dst []byte, v Version, u *Unsuback) []byte {
	if v != Version5 {
		return binary.BigEndian.AppendUint16(append(dst, byte(TypeUnsuback)<<4, 2), u.PacketID)
	}
	pn := u.Props.size(ackProps)
	n := 2 + propsLen(pn) + len(u.ReasonCodes)
	dst = binary.BigEndian.AppendUint16(appendHeader(dst, byte(TypeUnsuback)<<4, n), u.PacketID)
	dst = appendProps(dst, &u.Props, ackProps, pn)
	for _, c := range u.ReasonCodes {
		dst = append(dst, byte(c))
	}
	return dst
}

// AppendPingreq appends a PINGREQ.
func AppendPingreq(dst []byte) []byte { return append(dst, byte(TypePingreq)<<4, 0) }

// AppendPingresp appends a PINGRESP.
func AppendPingresp(dst []byte) []byte { return append(dst, byte(TypePingresp)<<4, 0) }

// AppendDisconnect appends a DISCONNECT; d may be nil for a normal
// disconnection. In 3.1.1 it carries nothing.
func AppendDisconnect(dst []byte, v Version, d *Disconnect) []byte {
	if v != Version5 || d == nil {
		return append(dst, byte(TypeDisconnect)<<4, 0)
	}
	return appendOptional(dst, byte(TypeDisconnect)<<4, 0, 0, d.ReasonCode, &d.Props, disconnectProps)
}

// AppendAuth appends an AUTH, which exists in 5.0 only.
func AppendAuth(dst []byte, a *Auth) []byte {
	return appendOptional(dst, byte(TypeAuth)<<4, 0, 0, a.ReasonCode, &a.Props, authProps)
}

// Append appends any packet, with the Append function of its type. A
// Connect is encoded for its own Version; an Auth panics unless v is
// Version5.
func Append(dst []byte, v Version, p Packet) []byte {
	switch p := p.(type) {
	case *Connect:
		return AppendConnect(dst, p)
	case *Connack:
		return AppendConnack(dst, v, p)
	case *Publish:
		return AppendPublish(dst, v, p)
	case *Ack:
		return AppendAck(dst, v, p)
	case *Subscribe:
		return AppendSubscribe(dst, v, p)
	case *Suback:
		return AppendSuback(dst, v, p)
	case *Unsubscribe:
		return AppendUnsubscribe(dst, v, p)
	case *Unsuback:
		return AppendUnsuback(dst, v, p)
	case *Pingreq:
		return AppendPingreq(dst)
	case *Pingresp:
		return AppendPingresp(dst)
	case *Disconnect:
		return AppendDisconnect(dst, v, p)
	case *Auth:
		if v != Version5 {
			panic("mqtt: AUTH exists in MQTT 5.0 only")
		}
		return AppendAuth(dst, p)
	}
	panic("mqtt: unknown packet type")
}
