package loadgen

import (
	"testing"
	"unsafe"

	"github.com/warrenhq/warren/websocket"
)

// TestConnSize keeps the per-connection state small: 19,000 connections
// per process should cost the client little beyond the kernel's sockets.
func TestConnSize(t *testing.T) {
	if n := unsafe.Sizeof(conn{}); n > 128 {
		t.Fatalf("conn is %d bytes", n)
	}
	t.Logf("conn %d bytes, ring %d, parser %d; a WebSocket adds its websocket.Conn, %d bytes",
		unsafe.Sizeof(conn{}), unsafe.Sizeof(ring{}), unsafe.Sizeof(respParser{}), unsafe.Sizeof(websocket.Conn{}))
}
