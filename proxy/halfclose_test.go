package proxy

import (
	"io"
	"net"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// TestProxyHalfClosedClientGetsResponse: a client that shuts down its
// side right after its request still gets the response (the backend takes
// a while), then the close; before, the proxy closed it at the FIN.
func TestProxyHalfClosedClientGetsResponse(t *testing.T) {
	e := startEngine(t)
	be := startCannedBackend(t, func(head string) string {
		time.Sleep(200 * time.Millisecond)
		return "HTTP/1.1 200 OK\r\nContent-Length: 5\r\n\r\nlater"
	})
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{be.addr}}, Config{})
	for range 3 {
		c, err := net.Dial("tcp", paddr)
		if err != nil {
			t.Fatal(err)
		}
		c.SetDeadline(time.Now().Add(5 * time.Second))
		io.WriteString(c, "GET /slow HTTP/1.1\r\nHost: a\r\n\r\n")
		c.(*net.TCPConn).CloseWrite()
		out, err := io.ReadAll(c) // the response, then EOF
		c.Close()
		if err != nil || !strings.HasPrefix(string(out), "HTTP/1.1 200") || !strings.HasSuffix(string(out), "\r\n\r\nlater") {
			t.Fatalf("half-closed client read %q, %v", out, err)
		}
	}
}
