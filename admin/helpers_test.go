package admin

import (
	"bufio"
	"bytes"
	"context"
	"io"
	"log/slog"
	"net"
	"net/http"
	"strconv"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// lineHandler echoes whole lines. A partial line stays pending, so its
// connection is active with a read buffer. "bye" closes the connection
// (reason local), "bad" with reason protocol_error and "gone" with reason
// local and close detail "1001".
type lineHandler struct{ engine.NopHandler }

// lineDetail is lineHandler's close detail.
type lineDetail string

func (d lineDetail) String() string { return string(d) }

func (lineHandler) OnData(c *engine.Conn, in []byte) int {
	n := 0
	for {
		i := bytes.IndexByte(in[n:], '\n')
		if i < 0 {
			return n
		}
		line := in[n : n+i]
		n += i + 1
		switch string(line) {
		case "bye":
			c.Close()
			return n
		case "bad":
			c.CloseWithReason(engine.ReasonProtocolError)
			return n
		case "gone":
			c.CloseWithDetail(engine.ReasonLocal, lineDetail("1001"))
			return n
		}
		c.AddServed(1)
		c.Write(in[n-i-1 : n])
	}
}

func quietLogger() *slog.Logger { return slog.New(slog.NewTextHandler(io.Discard, nil)) }

// startEngine starts an inline engine with cfg (testutil.StartEngine) and
// one line-echo listener on a free loopback port, whose address it returns.
func startEngine(t testing.TB, cfg engine.Config) (*engine.Engine, string) {
	t.Helper()
	cfg.Inline = true
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	e := testutil.StartEngine(t, cfg)
	return e, testutil.Listen(t, e, lineHandler{})
}

// dial opens n connections to e's listener at addr, sends each one line and waits for the
// echo, so every connection is registered and idle when it returns. The
// engine counts a write after the system call returns, so the client can see
// an echo before the counter does: dial also waits for the counter.
func dial(t testing.TB, e *engine.Engine, addr string, n int) []net.Conn {
	t.Helper()
	var cs []net.Conn
	want := e.Stats().BytesOut
	for i := 0; i < n; i++ {
		c, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		t.Cleanup(func() { c.Close() })
		msg := "hello " + strconv.Itoa(i) + "\n"
		if _, err := c.Write([]byte(msg)); err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		got, err := bufio.NewReader(c).ReadString('\n')
		if err != nil || got != msg {
			t.Fatalf("echo: %q, %v", got, err)
		}
		want += uint64(len(msg))
		cs = append(cs, c)
	}
	testutil.Eventually(t, 0, "sent bytes counted", func() bool { return e.Stats().BytesOut >= want })
	return cs
}

// startAdmin starts an admin server for src on a free port.
func startAdmin(t testing.TB, cfg Config, src Source, extra ...prometheus.Collector) *Server {
	t.Helper()
	if cfg.Addr == "" {
		cfg.Addr = "127.0.0.1:0"
	}
	if cfg.Logger == nil {
		cfg.Logger = quietLogger()
	}
	s, err := New(cfg, src, extra...)
	if err != nil {
		t.Fatal(err)
	}
	if err := s.Start(); err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { s.Shutdown(context.Background()) })
	return s
}

// get fetches path from s with an optional bearer token.
func get(t testing.TB, s *Server, path, token string) (int, string, http.Header) {
	t.Helper()
	return do(t, s, http.MethodGet, path, token, nil)
}

func do(t testing.TB, s *Server, method, path, token string, hdr map[string]string) (int, string, http.Header) {
	t.Helper()
	req, err := http.NewRequest(method, "http://"+s.Addr().String()+path, nil)
	if err != nil {
		t.Fatal(err)
	}
	if token != "" {
		req.Header.Set("Authorization", "Bearer "+token)
	}
	for k, v := range hdr {
		if k == "Host" {
			req.Host = v
			continue
		}
		req.Header.Set(k, v)
	}
	resp, err := http.DefaultClient.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	if err != nil {
		t.Fatal(err)
	}
	return resp.StatusCode, string(b), resp.Header
}

// metric returns the value of the sample named series ("name" or
// `name{label="v"}`) in a text exposition, and whether it is there.
func metric(body, series string) (float64, bool) {
	for _, line := range strings.Split(body, "\n") {
		if strings.HasPrefix(line, "#") {
			continue
		}
		name, val, ok := strings.Cut(line, " ")
		if !ok || name != series {
			continue
		}
		f, err := strconv.ParseFloat(strings.TrimSpace(val), 64)
		return f, err == nil
	}
	return 0, false
}

// stubSource is a Source tests steer by hand.
type stubSource struct {
	mu       sync.Mutex
	stats    engine.Stats
	conns    []engine.ConnInfo
	draining bool
	closed   []uint64
}

func (s *stubSource) Stats() engine.Stats {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.stats
}

func (s *stubSource) Conns() []engine.ConnInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	return append([]engine.ConnInfo(nil), s.conns...)
}

func (s *stubSource) CloseConn(id uint64, r engine.CloseReason) bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	for i, c := range s.conns {
		if c.ID == id {
			s.conns = append(s.conns[:i], s.conns[i+1:]...)
			s.closed = append(s.closed, id)
			return true
		}
	}
	return false
}

func (s *stubSource) Draining() bool {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.draining
}

func (s *stubSource) setDraining(v bool) {
	s.mu.Lock()
	s.draining = v
	s.mu.Unlock()
}
