package loadgen

import (
	"bytes"
	"errors"

	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/websocket"
)

// bufferPool lends the process's size-classed buffers to WebSocket
// readers, for messages that arrive in pieces.
type bufferPool struct{}

func (bufferPool) Get(size int) []byte { return pool.Get(size)[:0] }
func (bufferPool) Put(b []byte)        { pool.Put(b) }

var _ websocket.BufferPool = bufferPool{}

// Handshake errors.
var (
	errUpgradeStatus = errors.New("loadgen: WebSocket handshake not answered with 101")
	errUpgradeHeader = errors.New("loadgen: WebSocket handshake response lacks Upgrade: websocket or Connection: upgrade")
	errUpgradeAccept = errors.New("loadgen: WebSocket handshake response has a wrong Sec-WebSocket-Accept")
	errUpgradeExt    = errors.New("loadgen: WebSocket handshake response selected an extension that was not offered")
)

// checkUpgrade validates the response head (status line and header
// section) to a WebSocket handshake sent with Sec-WebSocket-Key key. It
// returns the error's kind: KindBadStatus for a status other than 101,
// KindProtocol for anything else wrong.
func checkUpgrade(head, key []byte) (ErrorKind, error) {
	line, rest := cutLine(head)
	if len(line) < 12 || !bytes.HasPrefix(line, []byte("HTTP/1.1 ")) {
		return KindProtocol, errStatusLine
	}
	if string(line[9:12]) != "101" || len(line) > 12 && line[12] != ' ' {
		return KindBadStatus, errUpgradeStatus
	}
	var upgrade, connection bool
	var accept []byte
	for len(rest) > 0 {
		line, rest = cutLine(rest)
		if len(line) == 0 {
			break
		}
		colon := bytes.IndexByte(line, ':')
		if colon <= 0 {
			return KindProtocol, errHeader
		}
		name, value := line[:colon], bytes.TrimSpace(line[colon+1:])
		switch {
		case asciiEqualFold(name, "upgrade"):
			upgrade = upgrade || hasToken(value, "websocket")
		case asciiEqualFold(name, "connection"):
			connection = connection || hasToken(value, "upgrade")
		case asciiEqualFold(name, "sec-websocket-accept"):
			accept = value
		case asciiEqualFold(name, "sec-websocket-extensions"):
			if len(value) > 0 {
				return KindProtocol, errUpgradeExt
			}
		}
	}
	if !upgrade || !connection {
		return KindProtocol, errUpgradeHeader
	}
	var want [28]byte
	if !bytes.Equal(accept, websocket.AppendAcceptKey(want[:0], key)) {
		return KindProtocol, errUpgradeAccept
	}
	return 0, nil
}
