package tlsx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/sha256"
	"crypto/sha512"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"hash"
	"io"
	"sync/atomic"

	"golang.org/x/crypto/chacha20poly1305"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/pool"
)

// TLS record constants (RFC 8446, section 5).
const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14
	maxCiphertext   = maxPlaintext + 256 // TLS 1.3 bound on TLSCiphertext.length
	tagLen          = 16
	ivLen           = 12

	typeAlert     = 21
	typeHandshake = 22
	typeAppData   = 23

	hsKeyUpdate = 24
)

// Alert descriptions used here (RFC 8446, section 6).
const (
	alertCloseNotify        = 0
	alertUnexpectedMessage  = 10
	alertBadRecordMAC       = 20
	alertRecordOverflow     = 22
	alertHandshakeFailure   = 40
	alertDecodeError        = 50
	alertInternalError      = 80
	alertUserCanceled       = 90
	alertNoRenegotiation    = 100
	alertCertificateUnknown = 46
)

// suite13 describes a TLS 1.3 cipher suite: its AEAD's key length and
// constructor, and the hash of its key schedule.
type suite13 struct {
	id     uint16
	keyLen int
	hash   func() hash.Hash
	aead   func(key []byte) (cipher.AEAD, error)
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var suites13 = []*suite13{
	{tls.TLS_AES_128_GCM_SHA256, 16, sha256.New, newAESGCM},
	{tls.TLS_AES_256_GCM_SHA384, 32, sha512.New384, newAESGCM},
	{tls.TLS_CHACHA20_POLY1305_SHA256, 32, sha256.New, chacha20poly1305.New},
}

func suiteByID(id uint16) *suite13 {
	for _, s := range suites13 {
		if s.id == id {
			return s
		}
	}
	return nil
}

// expandLabel is HKDF-Expand-Label (RFC 8446, section 7.1) on crypto/hkdf.
func expandLabel(h func() hash.Hash, secret []byte, label string, length int) []byte {
	info := make([]byte, 0, 2+1+6+len(label)+1)
	info = binary.BigEndian.AppendUint16(info, uint16(length))
	info = append(info, byte(6+len(label)))
	info = append(info, "tls13 "...)
	info = append(info, label...)
	info = append(info, 0) // empty context
	out, err := hkdf.Expand(h, secret, string(info), length)
	if err != nil {
		panic("tlsx: HKDF-Expand-Label: " + err.Error()) // only for lengths over 255 hashes
	}
	return out
}

// direction is one side's traffic protection: its current traffic secret
// (kept for KeyUpdate), the key and IV derived from it, and its sequence
// number, in fixed arrays so an idle connection's record layer is one
// object. The AEAD is built when a burst of records starts and dropped
// after it, unless Config.KeepCiphers is set: an idle connection then
// holds only these few dozen bytes.
type direction struct {
	secret [48]byte // SHA-256 suites use the first 32
	key    [32]byte // AES-128 uses the first 16
	iv     [ivLen]byte
	slen   uint8
	seq    uint64
	aead   cipher.AEAD // nil unless in use or kept
}

func (d *direction) set(s *suite13, secret []byte) {
	d.slen = uint8(copy(d.secret[:], secret))
	copy(d.key[:], expandLabel(s.hash, secret, "key", s.keyLen))
	copy(d.iv[:], expandLabel(s.hash, secret, "iv", ivLen))
	d.seq = 0
	d.aead = nil
}

// update moves to the next traffic secret (KeyUpdate).
func (d *direction) update(s *suite13) {
	cur := d.secret[:d.slen]
	d.set(s, expandLabel(s.hash, cur, "traffic upd", len(cur)))
}

func (d *direction) cipher(s *suite13) (cipher.AEAD, error) {
	if d.aead == nil {
		a, err := s.aead(d.key[:s.keyLen])
		if err != nil {
			return nil, err
		}
		d.aead = a
	}
	return d.aead, nil
}

func (d *direction) nonce() [ivLen]byte {
	n := d.iv
	var s [8]byte
	binary.BigEndian.PutUint64(s[:], d.seq)
	for i := range s {
		n[4+i] ^= s[i]
	}
	return n
}

// Pending control output, set by Open (the loop) and sent by Seal.
const (
	pendKeyUpdate uint32 = 1 << iota // answer the peer's KeyUpdate(update_requested)
	pendAlert                        // send alert (record13.alert) and nothing more
)

// record13 is warren's TLS 1.3 record layer for one connection, installed
// as its engine.Transform once crypto/tls has finished the handshake. The
// read side belongs to the loop (Open); the write side runs under the
// Conn's output lock (Seal, Final), so the two never share fields but for
// the atomics.
type record13 struct {
	suite  *suite13
	keep   bool // keep AEADs between bursts (Config.KeepCiphers)
	client bool // the client's side (tests): NewSessionTicket is ignored
	srv    *Server
	info   ConnState

	// Read side (Open): the loop's.
	in      direction
	part    []byte // an incomplete record, pooled; nil when none
	prev    []byte // the buffer the last plaintext came from, until OpenDone
	readErr error

	// Write side (Seal, Final): under the Conn's output lock.
	out  direction
	done bool // Final ran, or a write failed

	pend  atomic.Uint32
	alert atomic.Uint32 // the alert to send with pendAlert
}

var _ engine.TransformCloser = (*record13)(nil)

// recordError is a fatal record-layer error: the alert sent for it and the
// typed reason the connection closes with.
type recordError struct {
	alert  uint8
	detail string
}

func (e *recordError) Error() string  { return "tlsx: " + e.detail }
func (e *recordError) String() string { return e.detail }

// peerAlertError is an alert the peer sent; it closes the connection.
type peerAlertError struct{ desc uint8 }

func (e *peerAlertError) Error() string  { return "tlsx: peer sent alert " + alertName(e.desc) }
func (e *peerAlertError) String() string { return "tls_peer_alert_" + alertName(e.desc) }

// closeNotifyError is the peer's close_notify: it wraps io.EOF, so the
// engine closes with ReasonPeerClosed.
type closeNotifyError struct{}

func (closeNotifyError) Error() string  { return "tlsx: close_notify" }
func (closeNotifyError) String() string { return "tls_close_notify" }
func (closeNotifyError) Unwrap() error  { return io.EOF }

// Typed record-layer failures; their String is the close detail.
var (
	errBadMAC       = &recordError{alertBadRecordMAC, "tls_bad_record_mac"}
	errOverflow     = &recordError{alertRecordOverflow, "tls_record_overflow"}
	errUnexpected   = &recordError{alertUnexpectedMessage, "tls_unexpected_message"}
	errRenegotiate  = &recordError{alertUnexpectedMessage, "tls_renegotiation_refused"}
	errDecode       = &recordError{alertDecodeError, "tls_decode_error"}
	errSeqExhausted = &recordError{alertInternalError, "tls_sequence_exhausted"}
	errInternal     = &recordError{alertInternalError, "tls_internal_error"}
)

func alertName(d uint8) string {
	switch d {
	case alertCloseNotify:
		return "close_notify"
	case alertUnexpectedMessage:
		return "unexpected_message"
	case alertBadRecordMAC:
		return "bad_record_mac"
	case alertRecordOverflow:
		return "record_overflow"
	case alertHandshakeFailure:
		return "handshake_failure"
	case alertDecodeError:
		return "decode_error"
	case alertInternalError:
		return "internal_error"
	case alertUserCanceled:
		return "user_canceled"
	case alertNoRenegotiation:
		return "no_renegotiation"
	case alertCertificateUnknown:
		return "certificate_unknown"
	}
	return "other"
}

// fail records err as the read side's end and, for a recordError, asks
// Final to send its alert.
func (r *record13) fail(err error) error {
	r.readErr = err
	var re *recordError
	if errors.As(err, &re) {
		r.alert.Store(uint32(re.alert))
		r.pend.Or(pendAlert)
	}
	if r.srv != nil {
		r.srv.m.recordErrors(err)
	}
	return err
}

// Open decrypts the complete records in in (after any incomplete one kept
// from before) in place and returns their application data, compacted at
// the front of the buffer.
func (r *record13) Open(c *engine.Conn, in []byte) ([]byte, error) {
	if r.readErr != nil {
		return nil, r.readErr
	}
	buf := in
	fromPart := false
	if len(r.part) > 0 {
		r.part = append(pool.Grow(r.part, len(in)), in...)
		buf, fromPart = r.part, true
	}
	w, off := 0, 0
	var err error
	var a cipher.AEAD
	for len(buf)-off >= recordHeaderLen {
		hdr := buf[off : off+recordHeaderLen]
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if hdr[0] != typeAppData || hdr[1] != 3 {
			err = r.fail(errUnexpected)
			if hdr[0] == typeHandshake || hdr[1] != 3 {
				err = r.fail(errRenegotiate) // a plaintext ClientHello, or not TLS
			}
			break
		}
		if n > maxCiphertext {
			err = r.fail(errOverflow)
			break
		}
		if len(buf)-off < recordHeaderLen+n {
			break
		}
		if a == nil {
			if a, err = r.in.cipher(r.suite); err != nil {
				err = r.fail(errInternal)
				break
			}
		}
		body := buf[off+recordHeaderLen : off+recordHeaderLen+n]
		nonce := r.in.nonce()
		plain, oerr := a.Open(body[:0], nonce[:], body, hdr)
		if oerr != nil {
			err = r.fail(errBadMAC)
			break
		}
		r.in.seq++
		if r.in.seq == 0 {
			err = r.fail(errSeqExhausted)
			break
		}
		off += recordHeaderLen + n
		// Strip the padding: the content type is the last non-zero byte.
		i := len(plain) - 1
		for i >= 0 && plain[i] == 0 {
			i--
		}
		if i < 0 {
			err = r.fail(errUnexpected)
			break
		}
		ctype, content := plain[i], plain[:i]
		if len(content) > maxPlaintext {
			err = r.fail(errOverflow)
			break
		}
		switch ctype {
		case typeAppData:
			w += copy(buf[w:], content)
			continue
		case typeAlert:
			err = r.onAlert(content)
		case typeHandshake:
			if err = r.onHandshake(content); err == nil {
				a = nil // a KeyUpdate changed the read key
				continue
			}
		default:
			err = r.fail(errUnexpected)
		}
		break
	}
	if !r.keep {
		r.in.aead = nil
	}
	// Keep an incomplete record for the next read.
	rest := buf[off:]
	if err != nil {
		rest = nil
	}
	var np []byte
	if len(rest) > 0 {
		np = append(pool.Get(max(len(rest), 2*1024))[:0], rest...)
	}
	if fromPart {
		r.prev = r.part // holds the plaintext until OpenDone
	}
	r.part = np
	return buf[:w], err
}

// OpenDone releases the buffer the last plaintext was in.
func (r *record13) OpenDone() {
	if r.prev != nil {
		pool.Put(r.prev)
		r.prev = nil
	}
}

// onAlert handles an alert record from the peer.
func (r *record13) onAlert(b []byte) error {
	if len(b) != 2 {
		return r.fail(errDecode)
	}
	switch b[1] {
	case alertCloseNotify:
		r.readErr = closeNotifyError{}
		return r.readErr
	case alertUserCanceled:
		return nil
	}
	err := &peerAlertError{desc: b[1]}
	r.readErr = err
	if r.srv != nil {
		r.srv.m.recordErrors(err)
	}
	return err
}

// onHandshake handles post-handshake messages: only KeyUpdate is allowed
// from a client, and a record must hold whole messages (a KeyUpdate may not
// span records, RFC 8446 section 5.1). Anything else — a ClientHello (a
// renegotiation attempt), a fragment — closes with unexpected_message.
func (r *record13) onHandshake(b []byte) error {
	if len(b) == 0 {
		return r.fail(errUnexpected)
	}
	for len(b) > 0 {
		if len(b) < 4 {
			return r.fail(errUnexpected)
		}
		typ := b[0]
		n := int(b[1])<<16 | int(b[2])<<8 | int(b[3])
		if len(b) < 4+n {
			return r.fail(errUnexpected)
		}
		body := b[4 : 4+n]
		b = b[4+n:]
		switch typ {
		case hsKeyUpdate:
			if n != 1 || body[0] > 1 {
				return r.fail(errDecode)
			}
			if len(b) > 0 {
				return r.fail(errUnexpected) // a key change must end its record
			}
			r.in.update(r.suite)
			if body[0] == 1 {
				r.pend.Or(pendKeyUpdate)
			}
			if r.srv != nil {
				r.srv.m.keyUpdates.Inc()
			}
		case 1: // client_hello
			return r.fail(errRenegotiate)
		case 4: // new_session_ticket, to a client
			if !r.client {
				return r.fail(errUnexpected)
			}
		default:
			return r.fail(errUnexpected)
		}
	}
	return nil
}

// sealRecord appends to dst one record of content type ctype holding p,
// sealed with d's key.
func (r *record13) sealRecord(dst []byte, d *direction, ctype byte, p []byte) ([]byte, error) {
	dst, start := beginRecord(dst)
	return r.endRecord(append(dst, p...), start, d, ctype)
}

// beginRecord appends a record header to dst, filled in by endRecord.
func beginRecord(dst []byte) ([]byte, int) {
	return append(dst, typeAppData, 3, 3, 0, 0), len(dst)
}

// endRecord seals, in place, the record begun at start whose plaintext
// follows its header up to the end of dst.
func (r *record13) endRecord(dst []byte, start int, d *direction, ctype byte) ([]byte, error) {
	a, err := d.cipher(r.suite)
	if err != nil {
		return dst, err
	}
	dst = append(dst, ctype)
	if cap(dst)-len(dst) < tagLen {
		dst = pool.Grow(dst, tagLen)
	}
	n := len(dst) - start - recordHeaderLen + tagLen
	dst[start+3], dst[start+4] = byte(n>>8), byte(n)
	nonce := d.nonce()
	body := dst[start+recordHeaderLen:]
	a.Seal(body[:0], nonce[:], body, dst[start:start+recordHeaderLen]) // in place: cap holds the tag
	d.seq++
	if d.seq == 0 {
		return nil, errSeqExhausted
	}
	return dst[:len(dst)+tagLen], nil
}

// Seal seals bufs into application-data records of at most 16 KiB, after
// a KeyUpdate the peer asked for.
func (r *record13) Seal(bufs [][]byte, total int) ([]byte, error) {
	if r.done {
		return nil, engine.ErrClosed
	}
	nrec := (total + maxPlaintext - 1) / maxPlaintext
	size := total + nrec*(recordHeaderLen+1+tagLen)
	pend := r.pend.Load()
	if pend&pendKeyUpdate != 0 {
		size += recordHeaderLen + 5 + 1 + tagLen
	}
	if size == 0 {
		return nil, nil
	}
	out := pool.Get(size)[:0]
	var err error
	if pend&pendKeyUpdate != 0 {
		r.pend.And(^pendKeyUpdate)
		if out, err = r.sealRecord(out, &r.out, typeHandshake, []byte{hsKeyUpdate, 0, 0, 1, 0}); err != nil {
			return r.sealFailed(out, err)
		}
		r.out.update(r.suite)
	}
	// Records of up to maxPlaintext bytes, gathered across bufs.
	start, fill := -1, 0
	for _, b := range bufs {
		for len(b) > 0 {
			if start < 0 {
				out, start = beginRecord(out)
				fill = 0
			}
			m := min(len(b), maxPlaintext-fill)
			out = append(out, b[:m]...)
			fill += m
			b = b[m:]
			if fill == maxPlaintext {
				if out, err = r.endRecord(out, start, &r.out, typeAppData); err != nil {
					return r.sealFailed(out, err)
				}
				start = -1
			}
		}
	}
	if start >= 0 {
		if out, err = r.endRecord(out, start, &r.out, typeAppData); err != nil {
			return r.sealFailed(out, err)
		}
	}
	if !r.keep {
		r.out.aead = nil
	}
	return out, nil
}

func (r *record13) sealFailed(out []byte, err error) ([]byte, error) {
	pool.Put(out)
	r.done = true
	return nil, err
}

// Final seals the alert behind a read error, or a close_notify.
func (r *record13) Final() []byte {
	if r.done {
		return nil
	}
	r.done = true
	level, desc := byte(1), byte(alertCloseNotify)
	if r.pend.Load()&pendAlert != 0 {
		level, desc = 2, byte(r.alert.Load())
	}
	out, err := r.sealRecord(pool.Get(recordHeaderLen + 3 + tagLen)[:0], &r.out, typeAlert, []byte{level, desc})
	r.out.aead = nil
	if err != nil {
		return nil
	}
	return out
}

// Release returns a buffer from Seal or Final to the pool.
func (r *record13) Release(b []byte) { pool.Put(b) }

// Closed counts a connection that ended soon after it opened (flapping).
func (r *record13) Closed(c *engine.Conn, why engine.CloseReason) { r.srv.closedAfterHandshake(c, why) }
