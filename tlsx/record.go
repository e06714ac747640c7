package tlsx

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hkdf"
	"crypto/hmac"
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

// TLS record constants (RFC 8446, section 5; RFC 5246, section 6.2).
const (
	recordHeaderLen = 5
	maxPlaintext    = 1 << 14
	maxCiphertext   = maxPlaintext + 256  // TLS 1.3 bound on TLSCiphertext.length
	maxCiphertext12 = maxPlaintext + 2048 // TLS 1.2 bound on TLSCiphertext.length
	tagLen          = 16
	ivLen           = 12

	typeChangeCipherSpec = 20
	typeAlert            = 21
	typeHandshake        = 22
	typeAppData          = 23

	hsHelloRequest = 0
	hsClientHello  = 1
	hsFinished     = 20
	hsKeyUpdate    = 24
)

// Alert descriptions used here (RFC 8446, section 6).
const (
	alertCloseNotify        = 0
	alertUnexpectedMessage  = 10
	alertBadRecordMAC       = 20
	alertRecordOverflow     = 22
	alertHandshakeFailure   = 40
	alertDecodeError        = 50
	alertProtocolVersion    = 70
	alertInternalError      = 80
	alertUserCanceled       = 90
	alertNoRenegotiation    = 100
	alertCertificateUnknown = 46
)

// cipherSuite describes a cipher suite of the record layer: its AEAD's key
// length and constructor, and the hash of its key schedule (TLS 1.3's
// HKDF, TLS 1.2's PRF). A TLS 1.2 suite (v12) also has the length of the
// fixed IV its key block gives each side — 4 bytes of salt for AES-GCM
// (RFC 5288), a 12-byte IV for ChaCha20-Poly1305 (RFC 7905) — and of the
// explicit nonce each record carries (8 for AES-GCM, none for ChaCha20).
type cipherSuite struct {
	id       uint16
	keyLen   int
	hash     func() hash.Hash
	aead     func(key []byte) (cipher.AEAD, error)
	v12      bool
	fixedIV  int
	explicit int
}

func newAESGCM(key []byte) (cipher.AEAD, error) {
	b, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	return cipher.NewGCM(b)
}

var suites13 = []*cipherSuite{
	{id: tls.TLS_AES_128_GCM_SHA256, keyLen: 16, hash: sha256.New, aead: newAESGCM},
	{id: tls.TLS_AES_256_GCM_SHA384, keyLen: 32, hash: sha512.New384, aead: newAESGCM},
	{id: tls.TLS_CHACHA20_POLY1305_SHA256, keyLen: 32, hash: sha256.New, aead: chacha20poly1305.New},
}

// suites12 are the TLS 1.2 suites warren's record layer runs: the AEAD
// ones with ECDHE that the Server offers. A TLS 1.2 connection on any
// other suite (a Client whose Config allows CBC) keeps crypto/tls's record
// layer (conn12).
var suites12 = []*cipherSuite{
	{tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, 16, sha256.New, newAESGCM, true, 4, 8},
	{tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256, 16, sha256.New, newAESGCM, true, 4, 8},
	{tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, 32, sha512.New384, newAESGCM, true, 4, 8},
	{tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384, 32, sha512.New384, newAESGCM, true, 4, 8},
	{tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, 32, sha256.New, chacha20poly1305.New, true, 12, 0},
	{tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256, 32, sha256.New, chacha20poly1305.New, true, 12, 0},
}

// suiteByID returns the TLS 1.3 suite id, or nil.
func suiteByID(id uint16) *cipherSuite { return findSuite(suites13, id) }

// suite12ByID returns the TLS 1.2 AEAD suite id, or nil.
func suite12ByID(id uint16) *cipherSuite { return findSuite(suites12, id) }

func findSuite(list []*cipherSuite, id uint16) *cipherSuite {
	for _, s := range list {
		if s.id == id {
			return s
		}
	}
	return nil
}

// prf12 is the TLS 1.2 PRF (RFC 5246, section 5): P_hash over HMAC with h,
// from crypto/hmac, of secret with label and seed, length bytes long.
func prf12(h func() hash.Hash, secret []byte, label string, seed []byte, length int) []byte {
	lseed := append([]byte(label), seed...)
	mac := hmac.New(h, secret)
	mac.Write(lseed)
	a := mac.Sum(nil) // A(1)
	out := make([]byte, 0, length+mac.Size())
	for len(out) < length {
		mac.Reset()
		mac.Write(a)
		mac.Write(lseed)
		out = mac.Sum(out) // HMAC(secret, A(i) + seed)
		mac.Reset()
		mac.Write(a)
		a = mac.Sum(a[:0]) // A(i+1)
	}
	return out[:length]
}

// keyBlock12 derives a TLS 1.2 connection's traffic keys and IVs from its
// master secret and the two hellos' randoms (RFC 5246, section 6.3; an
// AEAD suite has no MAC keys).
func keyBlock12(s *cipherSuite, master, clientRandom, serverRandom []byte) (clientKey, serverKey, clientIV, serverIV []byte) {
	seed := append(append(make([]byte, 0, 64), serverRandom...), clientRandom...)
	kb := prf12(s.hash, master, "key expansion", seed, 2*s.keyLen+2*s.fixedIV)
	clientKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	serverKey, kb = kb[:s.keyLen], kb[s.keyLen:]
	clientIV, serverIV = kb[:s.fixedIV], kb[s.fixedIV:]
	return
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

func (d *direction) set(s *cipherSuite, secret []byte) {
	d.slen = uint8(copy(d.secret[:], secret))
	copy(d.key[:], expandLabel(s.hash, secret, "key", s.keyLen))
	copy(d.iv[:], expandLabel(s.hash, secret, "iv", ivLen))
	d.seq = 0
	d.aead = nil
}

// set12 sets a TLS 1.2 direction's key and fixed IV (a GCM salt fills the
// IV's first 4 bytes, the rest stays zero: the nonce is then salt followed
// by the sequence number, which is what Seal sends as the explicit nonce).
func (d *direction) set12(key, iv []byte) {
	copy(d.key[:], key)
	d.iv = [ivLen]byte{}
	copy(d.iv[:], iv)
	d.seq = 0
	d.aead = nil
}

// update moves to the next traffic secret (KeyUpdate).
func (d *direction) update(s *cipherSuite) {
	cur := d.secret[:d.slen]
	d.set(s, expandLabel(s.hash, cur, "traffic upd", len(cur)))
}

func (d *direction) cipher(s *cipherSuite) (cipher.AEAD, error) {
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
	pendAlert                        // send alert (recordLayer.alert) and nothing more
)

// recordLayer is warren's TLS record layer for one connection — TLS 1.3,
// or TLS 1.2 with an AEAD suite (suite.v12) — installed as its
// engine.Transform once crypto/tls has finished the handshake. The read
// side belongs to the loop (Open); the write side runs under the Conn's
// output lock (Seal, Final), so the two never share fields but for the
// atomics.
type recordLayer struct {
	suite  *cipherSuite
	keep   bool // keep AEADs between bursts (Config.KeepCiphers)
	client bool // the client's side (tests, Client): NewSessionTicket is ignored
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

var _ engine.TransformCloser = (*recordLayer)(nil)

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
	// TLS 1.2: a HelloRequest or ClientHello after the handshake gets
	// no_renegotiation (a warning, RFC 5246 section 7.2.2) and the
	// connection closes, with the same reason as TLS 1.3's refusal.
	errNoRenegotiation = &recordError{alertNoRenegotiation, "tls_renegotiation_refused"}
	errVersion         = &recordError{alertProtocolVersion, "tls_protocol_version"}
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
	case alertProtocolVersion:
		return "protocol_version"
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
func (r *recordLayer) fail(err error) error {
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

// checkHeader checks a record header before its body is there: TLS 1.3
// takes application_data records only (the true type is inside), TLS 1.2
// alert, handshake and application_data records of version 1.2.
func (r *recordLayer) checkHeader(hdr []byte, n int) error {
	if !r.suite.v12 {
		if hdr[0] != typeAppData || hdr[1] != 3 {
			if hdr[0] == typeHandshake || hdr[1] != 3 {
				return r.fail(errRenegotiate) // a plaintext ClientHello, or not TLS
			}
			return r.fail(errUnexpected)
		}
		if n > maxCiphertext {
			return r.fail(errOverflow)
		}
		return nil
	}
	if hdr[1] != 3 || hdr[2] != 3 {
		if hdr[0] == typeHandshake {
			return r.fail(errNoRenegotiation) // a plaintext ClientHello
		}
		return r.fail(errVersion)
	}
	switch hdr[0] {
	case typeAlert, typeHandshake, typeAppData:
	default:
		return r.fail(errUnexpected) // a ChangeCipherSpec, a heartbeat, ...
	}
	if n > maxCiphertext12 {
		return r.fail(errOverflow)
	}
	return nil
}

// scratch holds a record's nonce and TLS 1.2 additional data. Handed to
// the AEAD through an interface, they escape to the heap: Open and Seal
// allocate one scratch per call, not one per record and argument.
type scratch struct {
	nonce [ivLen]byte
	ad    [13]byte
}

// open13 opens a TLS 1.3 record in place and returns its true content type
// and content (the padding stripped).
func (r *recordLayer) open13(a cipher.AEAD, hdr, body []byte, sc *scratch) (byte, []byte, error) {
	sc.nonce = r.in.nonce()
	plain, err := a.Open(body[:0], sc.nonce[:], body, hdr)
	if err != nil {
		return 0, nil, r.fail(errBadMAC)
	}
	// Strip the padding: the content type is the last non-zero byte.
	i := len(plain) - 1
	for i >= 0 && plain[i] == 0 {
		i--
	}
	if i < 0 {
		return 0, nil, r.fail(errUnexpected)
	}
	return plain[i], plain[:i], nil
}

// open12 opens a TLS 1.2 AEAD record in place (RFC 5246 section 6.2.3.3):
// the nonce is the fixed IV with the record's explicit nonce (AES-GCM) or
// XORed with the sequence number (ChaCha20-Poly1305); the additional data
// is seq_num, type, version and the plaintext's length.
func (r *recordLayer) open12(a cipher.AEAD, hdr, body []byte, sc *scratch) (byte, []byte, error) {
	s := r.suite
	if len(body) < s.explicit+tagLen {
		return 0, nil, r.fail(errBadMAC)
	}
	sc.nonce = r.in.nonce()
	copy(sc.nonce[ivLen-s.explicit:], body[:s.explicit])
	ct := body[s.explicit:]
	sc.ad = additionalData12(r.in.seq, hdr[0], len(ct)-tagLen)
	plain, err := a.Open(ct[:0], sc.nonce[:], ct, sc.ad[:])
	if err != nil {
		return 0, nil, r.fail(errBadMAC)
	}
	return hdr[0], plain, nil
}

// additionalData12 is a TLS 1.2 AEAD record's additional data.
func additionalData12(seq uint64, ctype byte, n int) [13]byte {
	var ad [13]byte
	binary.BigEndian.PutUint64(ad[:], seq)
	ad[8], ad[9], ad[10] = ctype, 3, 3
	binary.BigEndian.PutUint16(ad[11:], uint16(n))
	return ad
}

// Open decrypts the complete records in in (after any incomplete one kept
// from before) in place and returns their application data, compacted at
// the front of the buffer.
func (r *recordLayer) Open(c *engine.Conn, in []byte) ([]byte, error) {
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
	var sc *scratch
	for len(buf)-off >= recordHeaderLen {
		hdr := buf[off : off+recordHeaderLen]
		n := int(binary.BigEndian.Uint16(hdr[3:]))
		if err = r.checkHeader(hdr, n); err != nil {
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
		if sc == nil {
			sc = new(scratch)
		}
		body := buf[off+recordHeaderLen : off+recordHeaderLen+n]
		var ctype byte
		var content []byte
		if r.suite.v12 {
			ctype, content, err = r.open12(a, hdr, body, sc)
		} else {
			ctype, content, err = r.open13(a, hdr, body, sc)
		}
		if err != nil {
			break
		}
		r.in.seq++
		if r.in.seq == 0 {
			err = r.fail(errSeqExhausted)
			break
		}
		off += recordHeaderLen + n
		if len(content) > maxPlaintext {
			err = r.fail(errOverflow)
			break
		}
		switch ctype {
		case typeAppData:
			w += copy(buf[w:], content)
			continue
		case typeAlert:
			if err = r.onAlert(content); err == nil {
				continue // a warning
			}
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
func (r *recordLayer) OpenDone() {
	if r.prev != nil {
		pool.Put(r.prev)
		r.prev = nil
	}
}

// onAlert handles an alert record from the peer: close_notify ends the
// connection gracefully, user_canceled (and, in TLS 1.2, any warning) is
// ignored, anything else closes it.
func (r *recordLayer) onAlert(b []byte) error {
	if len(b) != 2 {
		return r.fail(errDecode)
	}
	switch {
	case b[1] == alertCloseNotify:
		r.readErr = closeNotifyError{}
		return r.readErr
	case b[1] == alertUserCanceled, r.suite.v12 && b[0] == 1:
		return nil
	}
	err := &peerAlertError{desc: b[1]}
	r.readErr = err
	if r.srv != nil {
		r.srv.m.recordErrors(err)
	}
	return err
}

// onHandshake handles post-handshake messages. TLS 1.3: only KeyUpdate is
// allowed from a client, and a record must hold whole messages (a
// KeyUpdate may not span records, RFC 8446 section 5.1); anything else — a
// ClientHello (a renegotiation attempt), a fragment — closes with
// unexpected_message. TLS 1.2: a HelloRequest or ClientHello (even its
// first fragment) is a renegotiation, refused with no_renegotiation;
// anything else is unexpected_message.
func (r *recordLayer) onHandshake(b []byte) error {
	if len(b) == 0 {
		return r.fail(errUnexpected)
	}
	if r.suite.v12 {
		if b[0] == hsHelloRequest || b[0] == hsClientHello {
			return r.fail(errNoRenegotiation)
		}
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
		case hsClientHello:
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

// overhead is what a record adds to its plaintext: header, explicit nonce
// (TLS 1.2 AES-GCM) or inner content type (TLS 1.3), and tag.
func (r *recordLayer) overhead() int {
	if r.suite.v12 {
		return recordHeaderLen + r.suite.explicit + tagLen
	}
	return recordHeaderLen + 1 + tagLen
}

// sealRecord appends to dst one record of content type ctype holding p,
// sealed with d's key.
func (r *recordLayer) sealRecord(dst []byte, d *direction, ctype byte, p []byte) ([]byte, error) {
	dst, start := r.beginRecord(dst)
	return r.endRecord(append(dst, p...), start, d, ctype, new(scratch))
}

// beginRecord appends a record header (and a TLS 1.2 explicit nonce) to
// dst, filled in by endRecord.
func (r *recordLayer) beginRecord(dst []byte) ([]byte, int) {
	start := len(dst)
	dst = append(dst, typeAppData, 3, 3, 0, 0)
	if r.suite.v12 {
		dst = append(dst, make([]byte, r.suite.explicit)...)
	}
	return dst, start
}

// endRecord seals, in place, the record begun at start whose plaintext
// follows its header up to the end of dst.
func (r *recordLayer) endRecord(dst []byte, start int, d *direction, ctype byte, sc *scratch) ([]byte, error) {
	a, err := d.cipher(r.suite)
	if err != nil {
		return dst, err
	}
	if !r.suite.v12 {
		dst = append(dst, ctype)
	}
	if cap(dst)-len(dst) < tagLen {
		dst = pool.Grow(dst, tagLen)
	}
	n := len(dst) - start - recordHeaderLen + tagLen
	dst[start+3], dst[start+4] = byte(n>>8), byte(n)
	sc.nonce = d.nonce()
	hdr := dst[start : start+recordHeaderLen]
	body := dst[start+recordHeaderLen:]
	if r.suite.v12 {
		// The explicit nonce is the sequence number (the nonce's last 8
		// bytes, the salt's IV being zero there), as crypto/tls sends it.
		hdr[0] = ctype
		ex := r.suite.explicit
		copy(body[:ex], sc.nonce[ivLen-ex:])
		body = body[ex:]
		sc.ad = additionalData12(d.seq, ctype, len(body))
		a.Seal(body[:0], sc.nonce[:], body, sc.ad[:]) // in place: cap holds the tag
	} else {
		a.Seal(body[:0], sc.nonce[:], body, hdr) // in place: cap holds the tag
	}
	d.seq++
	if d.seq == 0 {
		return nil, errSeqExhausted
	}
	return dst[:len(dst)+tagLen], nil
}

// Seal seals bufs into application-data records of at most 16 KiB, after
// a KeyUpdate the peer asked for (TLS 1.3).
func (r *recordLayer) Seal(bufs [][]byte, total int) ([]byte, error) {
	if r.done {
		return nil, engine.ErrClosed
	}
	nrec := (total + maxPlaintext - 1) / maxPlaintext
	size := total + nrec*r.overhead()
	pend := r.pend.Load()
	if pend&pendKeyUpdate != 0 {
		size += r.overhead() + 5
	}
	if size == 0 {
		return nil, nil
	}
	out := pool.Get(size)[:0]
	sc := new(scratch)
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
				out, start = r.beginRecord(out)
				fill = 0
			}
			m := min(len(b), maxPlaintext-fill)
			out = append(out, b[:m]...)
			fill += m
			b = b[m:]
			if fill == maxPlaintext {
				if out, err = r.endRecord(out, start, &r.out, typeAppData, sc); err != nil {
					return r.sealFailed(out, err)
				}
				start = -1
			}
		}
	}
	if start >= 0 {
		if out, err = r.endRecord(out, start, &r.out, typeAppData, sc); err != nil {
			return r.sealFailed(out, err)
		}
	}
	if !r.keep {
		r.out.aead = nil
	}
	return out, nil
}

func (r *recordLayer) sealFailed(out []byte, err error) ([]byte, error) {
	pool.Put(out)
	r.done = true
	return nil, err
}

// Final seals the alert behind a read error, or a close_notify.
func (r *recordLayer) Final() []byte {
	if r.done {
		return nil
	}
	r.done = true
	level, desc := byte(1), byte(alertCloseNotify)
	if r.pend.Load()&pendAlert != 0 {
		level, desc = 2, byte(r.alert.Load())
		if desc == alertNoRenegotiation {
			level = 1 // always a warning (RFC 5246 section 7.2.2); the close follows
		}
	}
	out, err := r.sealRecord(pool.Get(r.overhead() + 2)[:0], &r.out, typeAlert, []byte{level, desc})
	r.out.aead = nil
	if err != nil {
		return nil
	}
	return out
}

// Release returns a buffer from Seal or Final to the pool.
func (r *recordLayer) Release(b []byte) { pool.Put(b) }

// Closed counts a connection that ended soon after it opened (flapping).
func (r *recordLayer) Closed(c *engine.Conn, why engine.CloseReason) {
	r.srv.closedAfterHandshake(c, why)
}
