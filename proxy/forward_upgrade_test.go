package proxy

import (
	"bufio"
	"fmt"
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/websocket"
)

// TestForwardUpgradeClientSpeaksFirst: a client that sends its first
// WebSocket frame the moment the 101 arrives, through a forwarded route on
// the worker pool: the frame reaches the backend (it is not parsed as
// HTTP by the front server while the upgrade is being handed over).
func TestForwardUpgradeClientSpeaksFirst(t *testing.T) {
	e := startEngine(t)
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	br := http1.NewRouter()
	br.Handle("GET /ws", ws.Handler())
	bsrv, _ := http1.NewServer(e, http1.Config{}, br)
	bln, _ := bsrv.Listen("127.0.0.1:0")
	cl, _ := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{bln.Addr().String()}})
	defer cl.Close()
	p := New(e, cl, Config{})
	defer p.Close()
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, _ := srv.Listen("127.0.0.1:0")
	for i := range 200 {
		conn, err := net.Dial("tcp", ln.Addr().String())
		if err != nil {
			t.Fatal(err)
		}
		conn.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(conn, "GET /ws HTTP/1.1\r\nHost: x\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\nSec-WebSocket-Version: 13\r\n\r\n")
		rd := bufio.NewReader(conn)
		var head strings.Builder
		for {
			line, err := rd.ReadString('\n')
			if err != nil {
				t.Fatalf("%d: head: %v %q", i, err, head.String())
			}
			head.WriteString(line)
			if line == "\r\n" {
				break
			}
		}
		// masked text frame "hi"
		conn.Write([]byte{0x81, 0x82, 1, 2, 3, 4, 'h' ^ 1, 'i' ^ 2})
		buf := make([]byte, 64)
		n, err := io.ReadAtLeast(rd, buf, 4)
		if err != nil || fmt.Sprintf("%x", buf[:n]) != "81026869" {
			t.Fatalf("%d: got %q %v after head %q", i, buf[:n], err, head.String())
		}
		conn.Close()
	}
}
