package benchutil

import (
	"bufio"
	"errors"
	"io"
	"net"
	"net/http"
	"strings"

	"github.com/warrenhq/warren/websocket"
)

// ErrKind names an error for counting: "timeout", "refused", "reset",
// "eof", "handshake" (a WebSocket upgrade refused or answered wrongly),
// "no_port" or "other".
func ErrKind(err error) string {
	var ne net.Error
	var he *websocket.HandshakeError
	switch {
	case err == nil:
		return ""
	case errors.As(err, &he):
		return "handshake"
	case errors.Is(err, websocket.ErrHandshakeTimeout), errors.As(err, &ne) && ne.Timeout():
		return "timeout"
	case strings.Contains(err.Error(), "connection refused"):
		return "refused"
	case strings.Contains(err.Error(), "connection reset"):
		return "reset"
	case errors.Is(err, io.EOF), errors.Is(err, io.ErrUnexpectedEOF), errors.Is(err, websocket.ErrHandshakeClosed):
		return "eof"
	case strings.Contains(err.Error(), "address already in use"),
		strings.Contains(err.Error(), "cannot assign requested address"):
		return "no_port"
	default:
		return "other"
	}
}

// ReadHTTPResponse reads one HTTP/1.1 response head and its body from br
// and returns the status code.
func ReadHTTPResponse(br *bufio.Reader) (int, error) {
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		return 0, err
	}
	_, err = io.Copy(io.Discard, resp.Body)
	resp.Body.Close()
	return resp.StatusCode, err
}
