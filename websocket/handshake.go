package websocket

import (
	"bytes"
	"crypto/rand"
	"crypto/sha1"
	"encoding/base64"
)

// acceptGUID is the fixed GUID of RFC 6455 §1.3.
const acceptGUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"

// AcceptKey returns the Sec-WebSocket-Accept value for a client's
// Sec-WebSocket-Key: the base64 encoding of the SHA-1 of the key followed
// by the RFC 6455 GUID.
func AcceptKey(clientKey string) string {
	var buf [28]byte
	return string(appendAcceptKey(buf[:0], clientKey))
}

// AppendAcceptKey appends the Sec-WebSocket-Accept value for clientKey to
// dst without allocating, for building a handshake response in place.
func AppendAcceptKey(dst, clientKey []byte) []byte {
	return appendAcceptKey(dst, clientKey)
}

func appendAcceptKey[K string | []byte](dst []byte, key K) []byte {
	var sum [sha1.Size]byte
	var in [64 + len(acceptGUID)]byte
	if len(key) <= 64 {
		n := copy(in[:], key)
		n += copy(in[n:], acceptGUID)
		sum = sha1.Sum(in[:n])
	} else {
		h := sha1.New()
		h.Write([]byte(key))
		h.Write([]byte(acceptGUID))
		h.Sum(sum[:0])
	}
	return base64.StdEncoding.AppendEncode(dst, sum[:])
}

// ValidKey reports whether key, the value of a Sec-WebSocket-Key header,
// is the base64 encoding of exactly 16 bytes (RFC 6455 §4.2.1).
func ValidKey(key []byte) bool {
	if len(key) != 24 || key[22] != '=' || key[23] != '=' {
		return false
	}
	var buf [18]byte
	n, err := base64.StdEncoding.Decode(buf[:], key)
	return err == nil && n == 16
}

// NewKey returns a random Sec-WebSocket-Key for a client handshake: 16
// bytes from crypto/rand, base64-encoded.
func NewKey() string {
	var b [16]byte
	_, _ = rand.Read(b[:]) // never fails; see crypto/rand.Read
	return base64.StdEncoding.EncodeToString(b[:])
}

// HeaderContainsToken reports whether the comma-separated header value
// contains token, ignoring ASCII case and optional whitespace around
// elements, as for Connection: keep-alive, Upgrade and Upgrade: websocket.
func HeaderContainsToken(value []byte, token string) bool {
	for i := 0; i < len(value); {
		elem, next := listElement(value, i)
		if asciiEqualFold(elem, token) {
			return true
		}
		i = next
	}
	return false
}

// SelectSubprotocol returns the first protocol in supported, in the
// server's order of preference, that the client offered in offered (the
// value of a Sec-WebSocket-Protocol header; join several header lines
// with ","), or "" if none matches. Names are compared exactly, as
// subprotocol names are case-sensitive.
func SelectSubprotocol(offered []byte, supported []string) string {
	for _, s := range supported {
		for i := 0; i < len(offered); {
			elem, next := listElement(offered, i)
			if string(elem) == s && len(s) > 0 {
				return s
			}
			i = next
		}
	}
	return ""
}

// listElement returns the element of a comma-separated list starting at
// v[i], without surrounding whitespace, and the index after its comma.
func listElement(v []byte, i int) (elem []byte, next int) {
	start := skipOWS(v, i)
	end := len(v)
	if j := bytes.IndexByte(v[start:], ','); j >= 0 {
		end = start + j
	}
	next = end
	if next < len(v) {
		next++
	}
	for end > start && (v[end-1] == ' ' || v[end-1] == '\t') {
		end--
	}
	return v[start:end], next
}
