package websocket

import (
	"encoding/binary"
	"math"
	"unicode/utf8"
)

// DefaultMaxMessageSize is the message size limit of a Reader whose
// MaxMessageSize is zero: 1 MiB.
const DefaultMaxMessageSize = 1 << 20

// DefaultZeroCopyLimit is the ZeroCopyLimit of a Reader whose
// ZeroCopyLimit is zero: 16 KiB.
const DefaultZeroCopyLimit = 16 << 10

// Role says which side of a connection a Reader or codec serves.
type Role uint8

const (
	// RoleServer reads masked frames sent by a client. It is the zero
	// value.
	RoleServer Role = iota
	// RoleClient reads unmasked frames sent by a server.
	RoleClient
)

// String returns "server" or "client".
func (r Role) String() string {
	if r == RoleClient {
		return "client"
	}
	return "server"
}

// BufferPool lends byte slices to a Reader for messages it has to copy:
// fragmented messages, frames too large to wait for, and decompressed
// messages. Implementations must be safe for concurrent use if they are
// shared between Readers.
type BufferPool interface {
	// Get returns a slice of length 0 and capacity at least size.
	Get(size int) []byte
	// Put takes back a slice the Reader no longer references. It may be
	// a slice that Get did not return (a buffer grown by append), and its
	// length is 0.
	Put(b []byte)
}

// Event is one thing a Reader read from the stream.
//
// Op tells which: OpText or OpBinary for a complete data message (with
// compression undone), OpPing, OpPong or OpClose for a control frame, and
// the zero value OpContinuation when no event is ready and more input is
// needed.
//
// Payload is the message or control payload. For OpClose it is the close
// reason (valid UTF-8) and Code holds the status code, CloseNoStatus if
// the frame had no payload. Payload aliases either the input passed to
// Reader.Next or a buffer owned by the Reader; it stays valid until the
// next call to Next or Reset, and in the first case only as long as the
// caller leaves those input bytes alone. Copy it to keep it longer.
type Event struct {
	Op      Opcode
	Payload []byte
	Code    uint16
}

// Reader decodes and validates the frames of one connection from input
// presented in arbitrary pieces, without blocking: a server reads client
// frames, a client (Role RoleClient) server frames. Its exported fields
// are configuration, set before the first call to Next; the zero value is
// a server Reader with a 1 MiB message limit and no extensions.
//
// Each call to Next takes all unconsumed input, returns how much of it was
// consumed and at most one Event, and keeps whatever state it needs for
// the rest of the stream, so the caller drops the consumed prefix and
// presents the remainder again when more bytes arrive.
//
// Zero copy: a message sent as a single frame whose bytes are all in the
// input is unmasked in place and returned as a view into the input. Next
// may modify the bytes it consumes (never the unconsumed rest).
//
// Partial frames: a frame whose header and payload together fit in
// ZeroCopyLimit, and every control frame, is left unconsumed until it is
// complete; reparsing its header on each call is O(1), so trickled input
// costs no more than whole input. A larger data frame is consumed as it
// arrives: its payload is unmasked into a buffer from Pool (and validated
// as UTF-8 when it is text) and each byte is touched once. Fragmented
// messages are gathered the same way. When Next returns no event, at most
// max(ZeroCopyLimit, MaxHeaderLen+MaxControlPayload) input bytes remain
// unconsumed, so an input buffer of that size never deadlocks.
//
// Errors: every protocol violation is a *CloseError carrying the status
// code to send (CloseProtocolError, CloseInvalidPayload or
// CloseMessageTooBig). After an error, Next keeps returning it. After a
// Close frame, Next discards all further input.
//
// A Reader is not safe for concurrent use.
type Reader struct {
	// MaxMessageSize limits the payload of a message in bytes, summed over
	// its fragments and checked against the declared frame length before
	// the payload arrives; a compressed message is limited both before and
	// after decompression. A larger message fails with CloseMessageTooBig.
	// Zero means DefaultMaxMessageSize (1 MiB); negative means no limit.
	MaxMessageSize int

	// ZeroCopyLimit is the largest data frame, header included, that Next
	// leaves unconsumed while waiting for the rest of it so that it can
	// return the message without copying. Larger frames are copied into a
	// buffer as they arrive. Zero means DefaultZeroCopyLimit (16 KiB);
	// negative means copy every data frame that is not complete. It should
	// not exceed what the caller's input buffer can hold.
	ZeroCopyLimit int

	// Role is RoleServer (the zero value; frames must be masked) or
	// RoleClient (frames must not be masked).
	Role Role

	// Inflater decompresses messages when permessage-deflate was
	// negotiated; it allows RSV1 on the first frame of a data message.
	// Nil means no extension: any reserved bit fails with
	// CloseProtocolError.
	Inflater *Inflater

	// Pool supplies the Reader's buffers. They are returned when the
	// message they hold has been handed out and Next or Reset is called
	// again, so an idle connection holds none. Nil means buffers are
	// allocated with make and left to the garbage collector.
	Pool BufferPool

	err    error // sticky error
	closed bool  // a Close frame was read; discard the rest

	// Message in progress: msgOp is OpText or OpBinary from the first
	// frame until the message is returned, zero otherwise.
	msgOp         Opcode
	msgCompressed bool
	msgLen        int64 // payload bytes declared so far
	utf8          utf8Validator

	// Data frame whose payload is being copied into buf as it arrives.
	frameLeft   int64 // payload bytes still due; > 0 while streaming
	frameFin    bool
	frameMasked bool
	mask        [4]byte
	maskPos     int

	buf     []byte // gathered (still compressed) message payload
	out     []byte // decompressed message
	release bool   // buf and out were handed out; free them on the next call
}

// limit returns the effective MaxMessageSize.
func (r *Reader) limit() int64 {
	switch {
	case r.MaxMessageSize == 0:
		return DefaultMaxMessageSize
	case r.MaxMessageSize < 0:
		return math.MaxInt
	}
	return int64(r.MaxMessageSize)
}

// zeroCopyLimit returns the effective ZeroCopyLimit.
func (r *Reader) zeroCopyLimit() int64 {
	switch {
	case r.ZeroCopyLimit == 0:
		return DefaultZeroCopyLimit
	case r.ZeroCopyLimit < 0:
		return 0
	}
	return int64(r.ZeroCopyLimit)
}

// Reset returns the Reader's buffers to Pool, releases the Inflater's
// pooled state and clears all stream state, keeping the configuration.
// Call it when the connection ends; the Reader can then serve a new
// connection.
func (r *Reader) Reset() {
	r.freeBuffers()
	if r.Inflater != nil {
		r.Inflater.Reset()
	}
	*r = Reader{
		MaxMessageSize: r.MaxMessageSize,
		ZeroCopyLimit:  r.ZeroCopyLimit,
		Role:           r.Role,
		Inflater:       r.Inflater,
		Pool:           r.Pool,
	}
}

// Next consumes frames from the start of in and returns the number of
// bytes consumed and the next event, if any. in must hold all input not
// consumed by the previous call followed by any new bytes. When ev.Op is
// zero, no event is ready: drop in[:consumed] and call again once more
// bytes have arrived. Otherwise handle ev, drop in[:consumed] and call
// Next again at once, since in may hold more events.
//
// See Reader for who owns ev.Payload and for how long.
func (r *Reader) Next(in []byte) (consumed int, ev Event, err error) {
	if r.err != nil {
		return 0, Event{}, r.err
	}
	if r.release {
		r.freeBuffers()
	}
	if r.closed {
		return len(in), Event{}, nil
	}
	for {
		if r.frameLeft > 0 {
			// Copy the next piece of a large data frame.
			avail := int64(len(in) - consumed)
			if avail == 0 {
				return consumed, Event{}, nil
			}
			take := min(avail, r.frameLeft)
			if err := r.gather(in[consumed : consumed+int(take)]); err != nil {
				return consumed, Event{}, r.fail(err)
			}
			consumed += int(take)
			r.frameLeft -= take
			if r.frameLeft > 0 {
				return consumed, Event{}, nil
			}
			if !r.frameFin {
				continue
			}
			ev, err := r.finishMessage()
			return consumed, ev, err
		}

		h, n, err := ParseHeader(in[consumed:])
		if err != nil {
			return consumed, Event{}, r.fail(err)
		}
		if n == 0 {
			return consumed, Event{}, nil
		}
		if err := r.check(&h); err != nil {
			return consumed, Event{}, r.fail(err)
		}
		avail := int64(len(in) - consumed - n)

		if h.Op.IsControl() {
			if avail < h.Length {
				return consumed, Event{}, nil
			}
			payload := in[consumed+n : consumed+n+int(h.Length)]
			if h.Masked {
				MaskBytes(h.Mask, 0, payload)
			}
			consumed += n + int(h.Length)
			ev, err := r.control(h.Op, payload)
			return consumed, ev, err
		}

		if avail >= h.Length {
			payload := in[consumed+n : consumed+n+int(h.Length)]
			consumed += n + int(h.Length)
			if r.msgOp == 0 && h.Fin {
				// A whole message in one frame: return it in place.
				if h.Masked {
					MaskBytes(h.Mask, 0, payload)
				}
				ev, err := r.single(h, payload)
				return consumed, ev, err
			}
			r.startFrame(&h)
			if err := r.gather(payload); err != nil {
				return consumed, Event{}, r.fail(err)
			}
			if !h.Fin {
				continue
			}
			ev, err := r.finishMessage()
			return consumed, ev, err
		}

		if int64(n)+h.Length <= r.zeroCopyLimit() {
			return consumed, Event{}, nil // wait for the whole frame
		}
		// Too large to wait for: stream the payload into buf.
		r.startFrame(&h)
		r.frameLeft = h.Length
		consumed += n
	}
}

// check validates a frame header against the protocol and the state of
// the stream, and accounts the declared length of a data frame.
func (r *Reader) check(h *FrameHeader) error {
	if h.Rsv != 0 {
		allowed := r.Inflater != nil && (h.Op == OpText || h.Op == OpBinary) && h.Rsv == Rsv1
		if !allowed {
			return errReservedBits
		}
	}
	if h.Op.isReserved() {
		return errReservedOpcode
	}
	if r.Role == RoleServer && !h.Masked {
		return errUnmasked
	}
	if r.Role == RoleClient && h.Masked {
		return errMasked
	}
	if h.Op.IsControl() {
		if !h.Fin {
			return errControlFragmented
		}
		if h.Length > MaxControlPayload {
			return errControlTooLong
		}
		return nil
	}
	if h.Op == OpContinuation {
		if r.msgOp == 0 {
			return errContinuation
		}
	} else if r.msgOp != 0 {
		return errMessageInterleaved
	}
	if h.Length > r.limit()-r.msgLen {
		return errMessageTooBig
	}
	return nil
}

// startFrame records a data frame whose payload goes to buf, starting the
// message if it is the first frame.
func (r *Reader) startFrame(h *FrameHeader) {
	if r.msgOp == 0 {
		r.msgOp = h.Op
		r.msgCompressed = h.Rsv&Rsv1 != 0
		r.utf8.reset()
	}
	r.msgLen += h.Length
	r.frameFin = h.Fin
	r.frameMasked = h.Masked
	r.mask = h.Mask
	r.maskPos = 0
}

// gather appends a piece of the current frame's payload to buf, unmasks it
// there (in leaves untouched) and validates it when the message is
// uncompressed text.
func (r *Reader) gather(p []byte) error {
	start := len(r.buf)
	r.buf = r.grow(r.buf, len(p))
	r.buf = append(r.buf, p...)
	seg := r.buf[start:]
	if r.frameMasked {
		r.maskPos = MaskBytes(r.mask, r.maskPos, seg)
	}
	if r.msgOp == OpText && !r.msgCompressed && !r.utf8.feed(seg) {
		return errInvalidUTF8
	}
	return nil
}

// single returns a message that arrived in one frame, with payload already
// unmasked in place.
func (r *Reader) single(h FrameHeader, payload []byte) (Event, error) {
	if h.Rsv&Rsv1 != 0 {
		out, err := r.inflate(payload)
		if err != nil {
			return Event{}, r.fail(err)
		}
		payload = out
	}
	if h.Op == OpText && !utf8.Valid(payload) {
		return Event{}, r.fail(errInvalidUTF8)
	}
	return Event{Op: h.Op, Payload: payload}, nil
}

// finishMessage returns the message gathered in buf.
func (r *Reader) finishMessage() (Event, error) {
	payload := r.buf
	if r.msgCompressed {
		out, err := r.inflate(payload)
		if err != nil {
			return Event{}, r.fail(err)
		}
		payload = out
		if r.msgOp == OpText && !utf8.Valid(payload) {
			return Event{}, r.fail(errInvalidUTF8)
		}
	} else if r.msgOp == OpText && !r.utf8.complete() {
		return Event{}, r.fail(errInvalidUTF8)
	}
	ev := Event{Op: r.msgOp, Payload: payload}
	r.msgOp, r.msgCompressed, r.msgLen = 0, false, 0
	r.release = true
	return ev, nil
}

// inflate decompresses a message into out.
func (r *Reader) inflate(p []byte) ([]byte, error) {
	limit := int(r.limit())
	if r.MaxMessageSize < 0 {
		limit = -1
	}
	guess := max(4*len(p), 512)
	if limit >= 0 {
		guess = min(guess, limit+1)
	}
	r.out = r.grow(r.out[:0], guess)
	out, err := r.Inflater.decompress(r.out, p, limit, r)
	r.out = out
	r.release = true
	return out, err
}

// control returns the event for a complete, unmasked control frame.
func (r *Reader) control(op Opcode, payload []byte) (Event, error) {
	if op != OpClose {
		return Event{Op: op, Payload: payload}, nil
	}
	switch {
	case len(payload) == 0:
		r.closed = true
		return Event{Op: OpClose, Payload: payload, Code: CloseNoStatus}, nil
	case len(payload) == 1:
		return Event{}, r.fail(errCloseLength)
	}
	code := binary.BigEndian.Uint16(payload)
	if !ValidCloseCode(code) {
		return Event{}, r.fail(errCloseCode)
	}
	reason := payload[2:]
	if !utf8.Valid(reason) {
		return Event{}, r.fail(errCloseReasonUTF8)
	}
	r.closed = true
	return Event{Op: OpClose, Payload: reason, Code: code}, nil
}

// fail makes err sticky and returns it.
func (r *Reader) fail(err error) error {
	r.err = err
	return err
}

// grow returns b with room for n more bytes, moving it to a larger buffer
// from Pool when needed.
func (r *Reader) grow(b []byte, n int) []byte {
	if cap(b)-len(b) >= n {
		return b
	}
	size := max(len(b)+n, 2*cap(b), 512)
	var nb []byte
	if r.Pool != nil {
		nb = r.Pool.Get(size)
		if cap(nb) < size {
			nb = make([]byte, 0, size)
		}
		nb = nb[:0]
	} else {
		nb = make([]byte, 0, size)
	}
	nb = append(nb, b...)
	if r.Pool != nil && cap(b) > 0 {
		r.Pool.Put(b[:0])
	}
	return nb
}

// freeBuffers returns buf and out to Pool.
func (r *Reader) freeBuffers() {
	if r.Pool != nil {
		if cap(r.buf) > 0 {
			r.Pool.Put(r.buf[:0])
		}
		if cap(r.out) > 0 {
			r.Pool.Put(r.out[:0])
		}
	}
	r.buf, r.out = nil, nil
	r.release = false
}
