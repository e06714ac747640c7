// Package wsclient is the minimal blocking WebSocket client the benchmark
// tools share: an RFC 6455 handshake over a net.Conn, masked frames out and
// unmasked frames in. It uses warren's websocket codec for keys and frame
// encoding, and keeps no state beyond a bufio.Reader, so a tool can open
// thousands of connections from goroutines. It is not safe for concurrent
// use on one connection.
package wsclient

import (
	"bufio"
	"encoding/binary"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/warrenhq/warren/websocket"
)

// ErrHandshake is returned when the server does not answer the upgrade with
// 101 and the right Sec-WebSocket-Accept.
var ErrHandshake = errors.New("wsclient: handshake refused")

// Conn is one client WebSocket connection.
type Conn struct {
	NC net.Conn
	br *bufio.Reader
	wb []byte
}

// Handshake upgrades nc with GET path. host is the Host header.
func Handshake(nc net.Conn, host, path string) (*Conn, error) {
	key := websocket.NewKey()
	req := "GET " + path + " HTTP/1.1\r\nHost: " + host +
		"\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: " + key +
		"\r\nSec-WebSocket-Version: 13\r\n\r\n"
	if _, err := io.WriteString(nc, req); err != nil {
		return nil, err
	}
	br := bufio.NewReaderSize(nc, 512)
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return nil, err
	}
	resp.Body.Close()
	if resp.StatusCode != http.StatusSwitchingProtocols ||
		resp.Header.Get("Sec-WebSocket-Accept") != websocket.AcceptKey(key) {
		return nil, fmt.Errorf("%w: %s", ErrHandshake, resp.Status)
	}
	return &Conn{NC: nc, br: br}, nil
}

// WriteMessage sends one masked frame.
func (c *Conn) WriteMessage(op websocket.Opcode, payload []byte) error {
	c.wb = websocket.AppendMaskedFrame(c.wb[:0], op, true, websocket.NewMask(), payload)
	_, err := c.NC.Write(c.wb)
	return err
}

// WriteClose sends a masked Close frame with code and reason.
func (c *Conn) WriteClose(code uint16, reason string) error {
	return c.WriteMessage(websocket.OpClose, websocket.AppendClosePayload(nil, code, reason))
}

// ReadFrame reads one whole frame and returns its opcode and payload
// (appended to buf[:0]). Servers do not mask; a masked frame is unmasked
// anyway.
func (c *Conn) ReadFrame(buf []byte) (websocket.Opcode, []byte, error) {
	var h [14]byte
	if _, err := io.ReadFull(c.br, h[:2]); err != nil {
		return 0, nil, err
	}
	op := websocket.Opcode(h[0] & 0x0f)
	masked := h[1]&0x80 != 0
	n := uint64(h[1] & 0x7f)
	switch n {
	case 126:
		if _, err := io.ReadFull(c.br, h[2:4]); err != nil {
			return 0, nil, err
		}
		n = uint64(binary.BigEndian.Uint16(h[2:4]))
	case 127:
		if _, err := io.ReadFull(c.br, h[2:10]); err != nil {
			return 0, nil, err
		}
		n = binary.BigEndian.Uint64(h[2:10])
	}
	if n > 16<<20 {
		return 0, nil, fmt.Errorf("wsclient: frame of %d bytes", n)
	}
	var key [4]byte
	if masked {
		if _, err := io.ReadFull(c.br, key[:]); err != nil {
			return 0, nil, err
		}
	}
	buf = append(buf[:0], make([]byte, n)...)
	if _, err := io.ReadFull(c.br, buf); err != nil {
		return 0, nil, err
	}
	if masked {
		websocket.MaskBytes(key, 0, buf)
	}
	return op, buf, nil
}

// CloseCode returns the status code of a Close frame's payload (1005, no
// status, when it carries none).
func CloseCode(payload []byte) uint16 {
	if len(payload) < 2 {
		return 1005
	}
	return binary.BigEndian.Uint16(payload)
}

// ErrKind names an error for counting: "timeout", "refused", "reset",
// "eof", "handshake" or "other".
func ErrKind(err error) string {
	var ne net.Error
	switch {
	case err == nil:
		return ""
	case errors.Is(err, ErrHandshake):
		return "handshake"
	case errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF):
		return "eof"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "reset"
	case strings.Contains(err.Error(), "address already in use"),
		strings.Contains(err.Error(), "cannot assign requested address"):
		return "no_port"
	default:
		return "other"
	}
}

// ReadHTTPResponse reads one HTTP/1.1 response head and its Content-Length
// body from br and returns the status code.
func ReadHTTPResponse(br *bufio.Reader) (int, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
