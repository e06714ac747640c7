package websocket

import (
	"encoding/binary"
	"math/rand/v2"
	"strconv"
	"unicode/utf8"
)

// Opcode is the 4-bit frame type of RFC 6455 §5.2.
type Opcode byte

// Opcodes defined by RFC 6455 §5.2. The values 0x3-0x7 and 0xB-0xF are
// reserved; a Reader rejects them with CloseProtocolError.
const (
	// OpContinuation marks a frame that continues a fragmented message.
	// In an Event it means that no event is ready.
	OpContinuation Opcode = 0x0
	// OpText is the first frame of a text (UTF-8) message.
	OpText Opcode = 0x1
	// OpBinary is the first frame of a binary message.
	OpBinary Opcode = 0x2
	// OpClose is a Close control frame.
	OpClose Opcode = 0x8
	// OpPing is a Ping control frame.
	OpPing Opcode = 0x9
	// OpPong is a Pong control frame.
	OpPong Opcode = 0xA
)

// String returns the lower-case name of op, such as "text", or
// "opcode(0xb)" for a reserved value. It is suitable as a metric label.
func (op Opcode) String() string {
	switch op {
	case OpContinuation:
		return "continuation"
	case OpText:
		return "text"
	case OpBinary:
		return "binary"
	case OpClose:
		return "close"
	case OpPing:
		return "ping"
	case OpPong:
		return "pong"
	}
	return "opcode(0x" + strconv.FormatUint(uint64(op), 16) + ")"
}

// IsControl reports whether op is a control opcode (0x8-0xF).
func (op Opcode) IsControl() bool { return op&0x8 != 0 }

// isReserved reports whether op is one of the opcodes RFC 6455 reserves.
func (op Opcode) isReserved() bool {
	return op > OpBinary && op < OpClose || op > OpPong
}

// Close status codes of RFC 6455 §7.4.1 and the IANA registry.
const (
	// CloseNormal means the purpose of the connection has been fulfilled.
	CloseNormal = 1000
	// CloseGoingAway means the endpoint is going away (server shutdown,
	// browser tab closed).
	CloseGoingAway = 1001
	// CloseProtocolError means the peer violated the protocol.
	CloseProtocolError = 1002
	// CloseUnsupportedData means the endpoint cannot accept the data type
	// it received (for example binary on a text-only endpoint).
	CloseUnsupportedData = 1003
	// CloseNoStatus is reported when a Close frame carried no status code.
	// It must never be sent on the wire.
	CloseNoStatus = 1005
	// CloseAbnormal is reported when the connection dropped without a
	// Close frame. It must never be sent on the wire.
	CloseAbnormal = 1006
	// CloseInvalidPayload means a message was inconsistent with its type,
	// such as invalid UTF-8 in a text message.
	CloseInvalidPayload = 1007
	// ClosePolicyViolation means a message violated the endpoint's policy.
	ClosePolicyViolation = 1008
	// CloseMessageTooBig means a message was larger than the endpoint
	// accepts.
	CloseMessageTooBig = 1009
	// CloseMandatoryExtension is sent by a client when the server did not
	// negotiate an extension the client requires.
	CloseMandatoryExtension = 1010
	// CloseInternalError means the server hit an unexpected condition.
	CloseInternalError = 1011
	// CloseServiceRestart means the server is restarting.
	CloseServiceRestart = 1012
	// CloseTryAgainLater means the server is overloaded; the client
	// should reconnect later.
	CloseTryAgainLater = 1013
)

// ValidCloseCode reports whether code may appear in a Close frame on the
// wire (RFC 6455 §7.4): 1000-1003, 1007-1014 and 3000-4999. The codes 1004,
// 1005, 1006 and 1015, codes below 1000, the unassigned 1016-2999 and codes
// of 5000 and above are invalid.
func ValidCloseCode(code uint16) bool {
	switch {
	case code >= 1000 && code <= 1003:
		return true
	case code >= 1007 && code <= 1014:
		return true
	case code >= 3000 && code <= 4999:
		return true
	}
	return false
}

// CloseError is a protocol violation that ends the connection. Code is the
// status to send in the Close frame (CloseProtocolError,
// CloseInvalidPayload, CloseMessageTooBig, ...) and Reason a short,
// human-readable explanation that fits in a Close frame (at most 123
// bytes). Errors returned by this package are shared values: do not modify
// them.
type CloseError struct {
	Code   uint16
	Reason string
}

// Error returns "websocket: close CODE: REASON".
func (e *CloseError) Error() string {
	return "websocket: close " + strconv.Itoa(int(e.Code)) + ": " + e.Reason
}

// Errors returned by ParseHeader and Reader.Next. They are *CloseError
// values; use errors.As to get the code to send.
var (
	errLengthMSB          = &CloseError{CloseProtocolError, "64-bit payload length has its most significant bit set"}
	errReservedBits       = &CloseError{CloseProtocolError, "reserved bits set without a negotiated extension"}
	errReservedOpcode     = &CloseError{CloseProtocolError, "reserved opcode"}
	errUnmasked           = &CloseError{CloseProtocolError, "client frame is not masked"}
	errMasked             = &CloseError{CloseProtocolError, "server frame is masked"}
	errControlFragmented  = &CloseError{CloseProtocolError, "fragmented control frame"}
	errControlTooLong     = &CloseError{CloseProtocolError, "control frame payload longer than 125 bytes"}
	errContinuation       = &CloseError{CloseProtocolError, "continuation frame without a message in progress"}
	errMessageInterleaved = &CloseError{CloseProtocolError, "new data frame while a fragmented message is in progress"}
	errCloseLength        = &CloseError{CloseProtocolError, "close frame payload of 1 byte"}
	errCloseCode          = &CloseError{CloseProtocolError, "invalid close code"}
	errCloseReasonUTF8    = &CloseError{CloseInvalidPayload, "close reason is not valid UTF-8"}
	errInvalidUTF8        = &CloseError{CloseInvalidPayload, "text message is not valid UTF-8"}
	errMessageTooBig      = &CloseError{CloseMessageTooBig, "message too big"}
	errBadDeflate         = &CloseError{CloseInvalidPayload, "invalid compressed message"}
)

// Bits of the first header byte that RFC 6455 reserves for extensions.
// RFC 7692 permessage-deflate uses Rsv1 to mark a compressed message.
const (
	Rsv1 = 0x40
	Rsv2 = 0x20
	Rsv3 = 0x10
)

// MaxHeaderLen is the longest frame header: 2 bytes, an 8-byte extended
// length and a 4-byte masking key.
const MaxHeaderLen = 14

// MaxControlPayload is the longest payload a control frame may carry.
const MaxControlPayload = 125

// FrameHeader is a decoded frame header (RFC 6455 §5.2).
type FrameHeader struct {
	Fin    bool   // final fragment of a message
	Rsv    byte   // Rsv1|Rsv2|Rsv3 bits as they sit in the first byte
	Op     Opcode // frame type
	Masked bool   // Mask is present and applied to the payload
	Mask   [4]byte
	Length int64 // payload length, 0 to 1<<63-1
}

// ParseHeader decodes the frame header at the start of b. It returns the
// header and its length n, or n == 0 and a nil error when b holds an
// incomplete header. It only checks the encoding: a 64-bit length with its
// most significant bit set is a *CloseError with CloseProtocolError.
// Lengths that are not minimally encoded are accepted. Opcodes, reserved
// bits and masking are checked by Reader.
func ParseHeader(b []byte) (h FrameHeader, n int, err error) {
	if len(b) < 2 {
		return FrameHeader{}, 0, nil
	}
	b0, b1 := b[0], b[1]
	h.Fin = b0&0x80 != 0
	h.Rsv = b0 & (Rsv1 | Rsv2 | Rsv3)
	h.Op = Opcode(b0 & 0x0f)
	h.Masked = b1&0x80 != 0
	n = 2
	switch l := b1 & 0x7f; l {
	case 126:
		if len(b) < 4 {
			return FrameHeader{}, 0, nil
		}
		h.Length = int64(binary.BigEndian.Uint16(b[2:]))
		n = 4
	case 127:
		if len(b) < 10 {
			return FrameHeader{}, 0, nil
		}
		v := binary.BigEndian.Uint64(b[2:])
		if v>>63 != 0 {
			return FrameHeader{}, 0, errLengthMSB
		}
		h.Length = int64(v)
		n = 10
	default:
		h.Length = int64(l)
	}
	if h.Masked {
		if len(b) < n+4 {
			return FrameHeader{}, 0, nil
		}
		copy(h.Mask[:], b[n:n+4])
		n += 4
	}
	return h, n, nil
}

// HeaderLen returns the encoded length of h: 2, 4 or 10 bytes, plus 4 when
// h is masked.
func HeaderLen(h FrameHeader) int {
	n := 2
	switch {
	case h.Length > 0xffff:
		n = 10
	case h.Length > 125:
		n = 4
	}
	if h.Masked {
		n += 4
	}
	return n
}

// AppendHeader appends the minimal encoding of h to dst. It writes h.Mask
// when h.Masked is set but does not mask any payload.
func AppendHeader(dst []byte, h FrameHeader) []byte {
	b0 := byte(h.Op&0x0f) | h.Rsv&(Rsv1|Rsv2|Rsv3)
	if h.Fin {
		b0 |= 0x80
	}
	var b1 byte
	if h.Masked {
		b1 = 0x80
	}
	switch {
	case h.Length > 0xffff:
		dst = append(dst, b0, b1|127)
		dst = binary.BigEndian.AppendUint64(dst, uint64(h.Length))
	case h.Length > 125:
		dst = append(dst, b0, b1|126)
		dst = binary.BigEndian.AppendUint16(dst, uint16(h.Length))
	default:
		dst = append(dst, b0, b1|byte(h.Length))
	}
	if h.Masked {
		dst = append(dst, h.Mask[:]...)
	}
	return dst
}

// AppendFrame appends an unmasked frame (as a server sends) carrying
// payload to dst and returns the extended slice.
func AppendFrame(dst []byte, op Opcode, fin bool, payload []byte) []byte {
	dst = AppendHeader(dst, FrameHeader{Fin: fin, Op: op, Length: int64(len(payload))})
	return append(dst, payload...)
}

// AppendMaskedFrame appends a frame masked with mask (as a client sends)
// carrying payload to dst and returns the extended slice. payload is not
// modified. Clients must use a fresh, unpredictable mask per frame; see
// NewMask.
func AppendMaskedFrame(dst []byte, op Opcode, fin bool, mask [4]byte, payload []byte) []byte {
	dst = AppendHeader(dst, FrameHeader{Fin: fin, Op: op, Masked: true, Mask: mask, Length: int64(len(payload))})
	start := len(dst)
	dst = append(dst, payload...)
	MaskBytes(mask, 0, dst[start:])
	return dst
}

// AppendClosePayload appends the payload of a Close frame, the big-endian
// code followed by reason, to dst. If code is 0 or CloseNoStatus nothing is
// appended (an empty Close frame). reason is cut to at most 123 bytes at a
// UTF-8 boundary.
func AppendClosePayload(dst []byte, code uint16, reason string) []byte {
	if code == 0 || code == CloseNoStatus {
		return dst
	}
	dst = binary.BigEndian.AppendUint16(dst, code)
	if limit := MaxControlPayload - 2; len(reason) > limit {
		cut := limit
		for cut > 0 && !utf8.RuneStart(reason[cut]) {
			cut--
		}
		reason = reason[:cut]
	}
	return append(dst, reason...)
}

// AppendClose appends an unmasked Close frame with code and reason to dst,
// as a server sends it. See AppendClosePayload for how code and reason are
// encoded.
func AppendClose(dst []byte, code uint16, reason string) []byte {
	var buf [MaxControlPayload]byte
	return AppendFrame(dst, OpClose, true, AppendClosePayload(buf[:0], code, reason))
}

// NewMask returns a random masking key for a client frame. It uses the
// runtime's per-thread ChaCha8 generator (math/rand/v2), which is fast and
// unpredictable to the peer.
func NewMask() [4]byte {
	var m [4]byte
	binary.LittleEndian.PutUint32(m[:], rand.Uint32())
	return m
}

// MaskBytes XORs b in place with the masking key, starting at key offset
// pos (mod 4), and returns the key offset for the byte after b, so that a
// payload can be unmasked in pieces:
//
//	pos := 0
//	pos = MaskBytes(key, pos, part1)
//	pos = MaskBytes(key, pos, part2)
//
// Masking twice with the same key and offset restores the input.
func MaskBytes(key [4]byte, pos int, b []byte) int {
	pos &= 3
	if len(b) < 16 {
		for i := range b {
			b[i] ^= key[(pos+i)&3]
		}
		return (pos + len(b)) & 3
	}
	// k is the key rotated so that its low byte applies to b[0].
	k32 := uint32(key[pos]) | uint32(key[(pos+1)&3])<<8 | uint32(key[(pos+2)&3])<<16 | uint32(key[(pos+3)&3])<<24
	k := uint64(k32) | uint64(k32)<<32
	// Four 8-byte words per iteration; on amd64 this measured faster than
	// crypto/subtle.XORBytes against a key pattern.
	i := 0
	for ; i+32 <= len(b); i += 32 {
		s := b[i : i+32 : i+32]
		binary.LittleEndian.PutUint64(s[0:], binary.LittleEndian.Uint64(s[0:])^k)
		binary.LittleEndian.PutUint64(s[8:], binary.LittleEndian.Uint64(s[8:])^k)
		binary.LittleEndian.PutUint64(s[16:], binary.LittleEndian.Uint64(s[16:])^k)
		binary.LittleEndian.PutUint64(s[24:], binary.LittleEndian.Uint64(s[24:])^k)
	}
	for ; i+8 <= len(b); i += 8 {
		binary.LittleEndian.PutUint64(b[i:], binary.LittleEndian.Uint64(b[i:])^k)
	}
	for ; i < len(b); i++ {
		b[i] ^= key[(pos+i)&3]
	}
	return (pos + len(b)) & 3
}
