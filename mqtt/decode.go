package mqtt

// Scratch holds the packets a Decoder returns, with the slices they reuse.
// Its zero value is ready for use. One Scratch may serve every Decoder of one
// goroutine, such as the connections of one event loop, since a decoded
// packet is valid only until the next Decode of a Decoder that shares it.
// It is a few kilobytes, and grows with the largest lists decoded (topic
// filters, user properties), within Limits.
type Scratch struct {
	connect     Connect
	will        Will
	connack     Connack
	publish     Publish
	ack         Ack
	subscribe   Subscribe
	suback      Suback
	unsubscribe Unsubscribe
	unsuback    Unsuback
	disconnect  Disconnect
	auth        Auth
	pingreq     Pingreq
	pingresp    Pingresp
}

// Decoder decodes the packets of one connection, one at a time, from the
// front of the bytes read so far. It keeps no bytes between calls: the caller
// keeps the unconsumed input (an event loop's read buffer) and calls again
// when more has arrived.
//
// The packets returned and every byte slice in them are views into the
// Decoder's Scratch and into the input: they are valid only until the next
// call to Decode (of any Decoder sharing the Scratch) and until the input's
// bytes are reused. Copy what must outlive that, such as a message queued
// for a subscriber.
//
// A Decoder is not safe for concurrent use. Its zero value expects a CONNECT
// first, as a server does, and allocates its own Scratch on first use.
type Decoder struct {
	// Version is the connection's protocol level. Zero until a CONNECT is
	// decoded: then only CONNECT is accepted. Decoding a CONNECT sets it as
	// soon as the protocol level is read, even if the packet turns out
	// malformed, so that the refusal can be sent in the client's version. A
	// client sets it to the version of the CONNECT it sent. Version5 decodes
	// MQTT 5.0, any other non-zero value 3.1.1.
	Version Version
	// Scratch is where decoded packets live. Nil means a Scratch of the
	// Decoder's own, allocated by the first Decode.
	Scratch *Scratch
}

// Decode decodes the packet at the front of in. It returns the packet and its
// size n in bytes, which the caller consumes from the input; or n == 0 and
// no error when in does not hold a complete packet yet (nothing is copied:
// call again with the same bytes and more). A packet whose fixed header
// announces more than the maximum packet size is refused as soon as the
// header is complete, without waiting for the rest.
//
// A packet that breaks the specification returns an *Error with the reason
// code to answer with; the connection is then to be closed. lim may be nil
// for the defaults.
//
// Decode validates what the wire format fixes: the fixed header's flags per
// packet type, the remaining length (at most 4 bytes), UTF-8 strings (well
// formed, without U+0000), QoS (not 3), non-zero packet identifiers, topic
// names (no wildcards, not empty unless a 5.0 topic alias stands in), the
// reserved bits of CONNECT, SUBSCRIBE options and acknowledgements, the
// properties each 5.0 packet may carry and their values, the reason codes
// each packet may carry, and that nothing follows the last field. It leaves
// to the caller what needs the session: the direction of a packet, topic
// alias and packet identifier bookkeeping, topic filter syntax (answered per
// filter in SUBACK and UNSUBACK; see ValidTopicFilter), and policy.
//
// Decoding PUBLISH, the acknowledgements, PINGREQ, PINGRESP and DISCONNECT
// allocates nothing once the Scratch exists; lists (topic filters, user
// properties, subscription identifiers) reuse the Scratch's slices.
func (d *Decoder) Decode(in []byte, lim *Limits) (n int, p Packet, err error) {
	if len(in) == 0 {
		return 0, nil, nil
	}
	t, flags := Type(in[0]>>4), in[0]&0x0f
	if e := d.checkHeader(t, flags); e != nil {
		return 0, nil, e
	}
	rl, hl := readVarint(in[1:])
	switch {
	case hl == 0:
		return 0, nil, nil
	case hl < 0:
		return 0, nil, errVarint
	}
	l := lim.resolve()
	total := 1 + hl + rl
	if total > l.packetSize {
		return 0, nil, errTooLarge
	}
	if len(in) < total {
		return 0, nil, nil
	}
	if d.Scratch == nil {
		d.Scratch = new(Scratch)
	}
	p, e := d.decode(t, flags, in[1+hl:total:total], &l)
	if e != nil {
		return 0, nil, e
	}
	return total, p, nil
}

// PacketSize returns the total size of the packet at the front of in, read
// from its fixed header, or 0 when the fixed header is not complete yet. A
// reader can size its buffer with it; it does not check the packet.
func PacketSize(in []byte) (int, error) {
	if len(in) < 2 {
		return 0, nil
	}
	rl, hl := readVarint(in[1:])
	switch {
	case hl == 0:
		return 0, nil
	case hl < 0:
		return 0, errVarint
	}
	return 1 + hl + rl, nil
}

// checkHeader checks the first byte of a packet.
func (d *Decoder) checkHeader(t Type, flags byte) *Error {
	switch {
	case t == 0:
		return errReservedType
	case d.Version == 0 && t != TypeConnect:
		return errFirstConnect
	case d.Version != 0 && t == TypeConnect:
		return errSecondConnect
	case t == TypeAuth && d.Version != Version5:
		return errAuthV3
	}
	switch t {
	case TypePublish:
		qos := flags >> 1 & 3
		if qos == 3 {
			return errQoS3
		}
		if qos == 0 && flags&8 != 0 {
			return errDupQoS0
		}
	case TypePubrel, TypeSubscribe, TypeUnsubscribe:
		if flags != 2 {
			return errFlags
		}
	default:
		if flags != 0 {
			return errFlags
		}
	}
	return nil
}

func (d *Decoder) decode(t Type, flags byte, body []byte, l *limits) (Packet, *Error) {
	s := d.Scratch
	r := reader{b: body}
	v5 := d.Version == Version5
	switch t {
	case TypeConnect:
		return d.connect(&r, l)
	case TypeConnack:
		return d.connackPacket(&r, l)
	case TypePublish:
		p := &s.publish
		p.Dup, p.QoS, p.Retain = flags&8 != 0, QoS(flags>>1&3), flags&1 != 0
		p.Topic = r.bin()
		if r.err == nil {
			if e := checkTopicName(p.Topic); e != nil {
				return nil, e
			}
		}
		p.PacketID = 0
		if p.QoS > 0 {
			if p.PacketID = r.u16(); p.PacketID == 0 && r.err == nil {
				return nil, errPacketID
			}
		}
		if v5 {
			r.props(&p.Props, publishProps, l)
			if r.err == nil && len(p.Topic) == 0 && !p.Props.Present.Has(PropTopicAlias) {
				return nil, errTopicAlias
			}
		} else {
			p.Props.reset()
			if r.err == nil && len(p.Topic) == 0 {
				return nil, errTopicName
			}
		}
		if r.err != nil {
			return nil, r.err
		}
		p.Payload = body[r.off:]
		return p, nil
	case TypePuback, TypePubrec, TypePubrel, TypePubcomp:
		a := &s.ack
		a.Kind = t
		codes := &pubackCodes
		if t == TypePubrel || t == TypePubcomp {
			codes = &pubrelCodes
		}
		if a.PacketID = r.u16(); a.PacketID == 0 && r.err == nil {
			return nil, errPacketID
		}
		a.ReasonCode = r.reasonCode(v5, codes)
		if v5 && r.rest() > 0 {
			r.props(&a.Props, ackProps, l)
		} else {
			a.Props.reset()
		}
		return a, r.end()
	case TypeSubscribe:
		return d.subscribePacket(&r, l)
	case TypeSuback:
		p := &s.suback
		if p.PacketID = r.u16(); p.PacketID == 0 && r.err == nil {
			return nil, errPacketID
		}
		codes := &subackV3Codes
		if v5 {
			codes = &subackCodes
			r.props(&p.Props, ackProps, l)
		} else {
			p.Props.reset()
		}
		p.ReasonCodes = r.reasonCodes(p.ReasonCodes[:0], codes)
		if r.err != nil {
			return nil, r.err
		}
		return p, nil
	case TypeUnsubscribe:
		p := &s.unsubscribe
		if p.PacketID = r.u16(); p.PacketID == 0 && r.err == nil {
			return nil, errPacketID
		}
		if v5 {
			r.props(&p.Props, unsubscribeProps, l)
		} else {
			p.Props.reset()
		}
		p.Filters = p.Filters[:0]
		for r.rest() > 0 {
			f := r.str()
			if len(p.Filters) >= l.filters {
				return nil, errTooManyFilters
			}
			p.Filters = append(p.Filters, f)
		}
		if r.err != nil {
			return nil, r.err
		}
		if len(p.Filters) == 0 {
			return nil, errNoFilters
		}
		return p, nil
	case TypeUnsuback:
		p := &s.unsuback
		if p.PacketID = r.u16(); p.PacketID == 0 && r.err == nil {
			return nil, errPacketID
		}
		p.ReasonCodes = p.ReasonCodes[:0]
		if !v5 {
			p.Props.reset()
			return p, r.end()
		}
		r.props(&p.Props, ackProps, l)
		p.ReasonCodes = r.reasonCodes(p.ReasonCodes, &unsubackCodes)
		if r.err != nil {
			return nil, r.err
		}
		return p, nil
	case TypePingreq:
		return &s.pingreq, r.end()
	case TypePingresp:
		return &s.pingresp, r.end()
	case TypeDisconnect:
		p := &s.disconnect
		p.ReasonCode = r.reasonCode(v5, &disconnectCodes)
		if v5 && r.rest() > 0 {
			r.props(&p.Props, disconnectProps, l)
		} else {
			p.Props.reset()
		}
		return p, r.end()
	case TypeAuth:
		p := &s.auth
		p.ReasonCode = r.reasonCode(true, &authCodes)
		if r.rest() > 0 {
			r.props(&p.Props, authProps, l)
		} else {
			p.Props.reset()
		}
		return p, r.end()
	}
	return nil, errReservedType
}

// end returns the reader's error, or errTrailing if bytes are left.
func (r *reader) end() *Error {
	if r.err == nil && r.rest() > 0 {
		return errTrailing
	}
	return r.err
}

// reasonCode reads the optional reason code of a 5.0 packet, Success when
// absent (and always in 3.1.1).
func (r *reader) reasonCode(v5 bool, valid *codeSet) ReasonCode {
	if !v5 || r.rest() == 0 {
		return Success
	}
	c := ReasonCode(r.u8())
	if !valid.has(c) {
		r.fail(errReasonCode)
	}
	return c
}

// reasonCodes reads the list of reason codes that ends SUBACK and UNSUBACK.
func (r *reader) reasonCodes(dst []ReasonCode, valid *codeSet) []ReasonCode {
	if r.err != nil {
		return dst
	}
	if r.rest() == 0 {
		r.fail(errNoCodes)
		return dst
	}
	for _, c := range r.b[r.off:] {
		if !valid.has(ReasonCode(c)) {
			r.fail(errReasonCode)
			return dst
		}
		dst = append(dst, ReasonCode(c))
	}
	r.off = len(r.b)
	return dst
}

func (d *Decoder) connect(r *reader, l *limits) (Packet, *Error) {
	c := &d.Scratch.connect
	name := r.bin()
	level := r.u8()
	if r.err != nil {
		return nil, r.err
	}
	if string(name) != "MQTT" {
		if string(name) == "MQIsdp" { // MQTT 3.1
			return nil, errProtocolLevel
		}
		return nil, errProtocolName
	}
	if level != byte(Version311) && level != byte(Version5) {
		return nil, errProtocolLevel
	}
	d.Version = Version(level)
	c.Version = d.Version
	flags := r.u8()
	willFlag, willQoS, willRetain := flags&0x04 != 0, QoS(flags>>3&3), flags&0x20 != 0
	c.CleanStart = flags&0x02 != 0
	c.HasUsername, c.HasPassword = flags&0x80 != 0, flags&0x40 != 0
	switch {
	case r.err != nil:
		return nil, r.err
	case flags&0x01 != 0, !willFlag && (willQoS != 0 || willRetain):
		return nil, errConnectFlags
	case willQoS == 3:
		return nil, errQoS3
	case c.Version == Version311 && c.HasPassword && !c.HasUsername:
		return nil, errPasswordOnly
	}
	c.KeepAlive = r.u16()
	if c.Version == Version5 {
		r.props(&c.Props, connectProps, l)
		if r.err == nil && c.Props.Present.Has(PropAuthData) && !c.Props.Present.Has(PropAuthMethod) {
			return nil, errAuthData
		}
	} else {
		c.Props.reset()
	}
	c.ClientID = r.str()
	c.Will = nil
	if willFlag {
		w := &d.Scratch.will
		w.QoS, w.Retain = willQoS, willRetain
		if c.Version == Version5 {
			r.props(&w.Props, willProps, l)
		} else {
			w.Props.reset()
		}
		w.Topic = r.bin()
		if r.err == nil {
			if e := checkTopicName(w.Topic); e != nil {
				return nil, e
			}
			if len(w.Topic) == 0 {
				return nil, errTopicName
			}
		}
		w.Payload = r.bin()
		c.Will = w
	}
	c.Username, c.Password = nil, nil
	if c.HasUsername {
		c.Username = r.str()
	}
	if c.HasPassword {
		c.Password = r.bin()
	}
	if e := r.end(); e != nil {
		return nil, e
	}
	return c, nil
}

func (d *Decoder) connackPacket(r *reader, l *limits) (Packet, *Error) {
	c := &d.Scratch.connack
	flags := r.u8()
	code := r.u8()
	if r.err != nil {
		return nil, r.err
	}
	if flags&^1 != 0 {
		return nil, errAckFlags
	}
	c.SessionPresent = flags == 1
	if d.Version == Version5 {
		c.ReasonCode = ReasonCode(code)
		if !connackCodes.has(c.ReasonCode) {
			return nil, errReasonCode
		}
		r.props(&c.Props, connackProps, l)
	} else {
		if int(code) >= len(connackV3Codes) {
			return nil, errReasonCode
		}
		c.ReasonCode = connackV3Codes[code]
		c.Props.reset()
	}
	if c.SessionPresent && c.ReasonCode != Success {
		return nil, errSessionPresent
	}
	if e := r.end(); e != nil {
		return nil, e
	}
	return c, nil
}

func (d *Decoder) subscribePacket(r *reader, l *limits) (Packet, *Error) {
	p := &d.Scratch.subscribe
	if p.PacketID = r.u16(); p.PacketID == 0 && r.err == nil {
		return nil, errPacketID
	}
	v5 := d.Version == Version5
	reserved := byte(0xfc)
	if v5 {
		reserved = 0xc0
		r.props(&p.Props, subscribeProps, l)
		if len(p.Props.SubscriptionIDs) > 1 {
			return nil, errPropDup
		}
	} else {
		p.Props.reset()
	}
	p.Filters = p.Filters[:0]
	for r.err == nil && r.rest() > 0 {
		f := r.str()
		o := r.u8()
		if r.err != nil {
			break
		}
		s := Subscription{Filter: f, QoS: QoS(o & 3), NoLocal: o&0x04 != 0,
			RetainAsPublished: o&0x08 != 0, RetainHandling: o >> 4 & 3}
		switch {
		case o&reserved != 0:
			return nil, errSubOptions
		case s.QoS == 3:
			return nil, errQoS3
		case s.RetainHandling == 3:
			return nil, errRetainHandling
		case s.NoLocal && IsShared(string(f)):
			return nil, errSharedNoLocal
		case len(p.Filters) >= l.filters:
			return nil, errTooManyFilters
		}
		p.Filters = append(p.Filters, s)
	}
	if r.err != nil {
		return nil, r.err
	}
	if len(p.Filters) == 0 {
		return nil, errNoFilters
	}
	return p, nil
}
