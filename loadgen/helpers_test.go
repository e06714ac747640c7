package loadgen

import (
	"bufio"
	"net"
	"net/http"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/websocket"
)

// httpServer is an in-process http1 server answering GET / with "hello"
// and counting requests.
type httpServer struct {
	srv      *http1.Server
	url      string
	requests atomic.Int64
}

func startHTTP(t testing.TB) *httpServer {
	t.Helper()
	hs := &httpServer{}
	r := http1.NewRouter()
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) {
		hs.requests.Add(1)
		c.WriteString("hello")
	}))
	r.Handle("GET /fail", http1.InlineFunc(func(c *http1.Ctx) {
		hs.requests.Add(1)
		c.SetStatus(500)
		c.WriteString("no")
	}))
	e := testutil.StartEngine(t, engine.Config{})
	s, err := http1.NewServer(e, http1.Config{}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := s.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	hs.srv = s
	hs.url = "http://" + ln.Addr().String() + "/"
	return hs
}

// startRaw runs serve for every connection accepted on a loopback
// listener and returns its address.
func startRaw(t testing.TB, serve func(net.Conn)) string {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	var wg sync.WaitGroup
	var mu sync.Mutex
	var conns []net.Conn
	done := make(chan struct{})
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				close(done)
				return
			}
			mu.Lock()
			conns = append(conns, c)
			mu.Unlock()
			wg.Add(1)
			go func() {
				defer wg.Done()
				defer c.Close()
				serve(c)
			}()
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		<-done
		mu.Lock()
		for _, c := range conns {
			c.Close()
		}
		mu.Unlock()
		wg.Wait()
	})
	return ln.Addr().String()
}

// wsEcho is a minimal WebSocket echo server on the codec, over net.Conn:
// it answers the upgrade and echoes text and binary messages, and pings
// the client once first when ping is set.
func wsEcho(ping bool) func(net.Conn) {
	return func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		key := req.Header.Get("Sec-WebSocket-Key")
		if !strings.EqualFold(req.Header.Get("Upgrade"), "websocket") || !websocket.ValidKey([]byte(key)) {
			c.Write([]byte("HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n"))
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + websocket.AcceptKey(key) + "\r\n\r\n"))
		if ping {
			c.Write(websocket.AppendFrame(nil, websocket.OpPing, true, []byte("hi")))
		}
		var rd websocket.Reader
		var in []byte
		buf := make([]byte, 32<<10)
		for {
			n, err := br.Read(buf)
			if err != nil {
				return
			}
			in = append(in, buf[:n]...)
			var out []byte
			for {
				used, ev, err := rd.Next(in)
				if err != nil {
					return
				}
				switch ev.Op {
				case websocket.OpText, websocket.OpBinary:
					out = websocket.AppendFrame(out, ev.Op, true, ev.Payload)
				case websocket.OpClose:
					c.Write(websocket.AppendClose(out, ev.Code, ""))
					return
				}
				in = in[used:]
				if ev.Op == websocket.OpContinuation {
					break
				}
			}
			in = append([]byte(nil), in...)
			if len(out) > 0 {
				if _, err := c.Write(out); err != nil {
					return
				}
			}
		}
	}
}

// silent reads and never answers.
func silent(c net.Conn) {
	buf := make([]byte, 4096)
	for {
		if _, err := c.Read(buf); err != nil {
			return
		}
	}
}

// closedPort returns a loopback address nothing listens on.
func closedPort(t testing.TB) string { return testutil.RefusedAddr(t) }

// quick is a Config for fast tests.
func quick(url string) Config {
	return Config{URL: url, Conns: 8, Duration: 300 * time.Millisecond, Timeout: 3 * time.Second, Loops: 2}
}
