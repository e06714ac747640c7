package loadgen

import (
	"bytes"
	"errors"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/websocket"
)

// The devices scenario drives its own WebSocket handshake and frames on
// the client engine (a device also answers the gateway's command frames),
// so it keeps the pieces the generic WebSocket mode gave up for
// websocket.Client: the handshake state, the upgrade check and a buffer
// pool for its frame reader.

// csHandshake is a device connection whose upgrade request was sent.
const csHandshake = csClosing + 1

// bufferPool lends the process's size-classed buffers to WebSocket
// readers, for messages that arrive in pieces.
type bufferPool struct{}

func (bufferPool) Get(size int) []byte { return pool.Get(size)[:0] }
func (bufferPool) Put(b []byte)        { pool.Put(b) }

var _ websocket.BufferPool = bufferPool{}

// Handshake errors.
var (
	errUpgradeStatus  = errors.New("loadgen: WebSocket handshake not answered with 101")
	errUpgradeVersion = errors.New("loadgen: WebSocket handshake answered with HTTP/1.0")
	errUpgradeHeader  = errors.New("loadgen: WebSocket handshake response lacks Upgrade: websocket or Connection: upgrade")
	errUpgradeAccept  = errors.New("loadgen: WebSocket handshake response has a wrong Sec-WebSocket-Accept")
	errUpgradeExt     = errors.New("loadgen: WebSocket handshake response selected an extension that was not offered")
)

// checkUpgrade validates the response to a WebSocket handshake sent with
// Sec-WebSocket-Key key. It returns the error's kind: KindBadStatus for a
// status other than 101, KindProtocol for anything else wrong.
func checkUpgrade(resp *http1.Response, key []byte) (ErrorKind, error) {
	if resp.ProtoMinor != 1 {
		return KindProtocol, errUpgradeVersion
	}
	if resp.StatusCode != 101 {
		return KindBadStatus, errUpgradeStatus
	}
	var upgrade, connection bool
	var accept []byte
	for h := range resp.Headers() {
		// Names are tokens, which http1 has checked are ASCII, so
		// bytes.EqualFold compares them as an ASCII-only fold would.
		switch {
		case bytes.EqualFold(h.Name, []byte("upgrade")):
			upgrade = upgrade || websocket.HeaderContainsToken(h.Value, "websocket")
		case bytes.EqualFold(h.Name, []byte("connection")):
			connection = connection || websocket.HeaderContainsToken(h.Value, "upgrade")
		case bytes.EqualFold(h.Name, []byte("sec-websocket-accept")):
			accept = h.Value
		case bytes.EqualFold(h.Name, []byte("sec-websocket-extensions")):
			if len(h.Value) > 0 {
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

// upgrade parses the response to a WebSocket handshake sent with
// Sec-WebSocket-Key key, at the start of in, and returns its length, or 0
// while it is incomplete. A failed handshake yields the error's kind as
// checkUpgrade classifies it; a malformed response is KindProtocol. After
// the response p is reset, since what follows is WebSocket.
func (p *respParser) upgrade(in, key []byte) (int, ErrorKind, error) {
	var resp http1.Response
	n, err := p.p.Parse(in, "GET", &resp, nil)
	if err != nil {
		return 0, KindProtocol, err
	}
	if n == 0 {
		return 0, 0, nil
	}
	p.reset()
	if kind, err := checkUpgrade(&resp, key); err != nil {
		return 0, kind, err
	}
	return n, 0, nil
}
