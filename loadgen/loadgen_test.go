package loadgen

import (
	"bufio"
	"bytes"
	"context"
	"math"
	"net"
	"net/http"
	"net/netip"
	"os"
	"runtime"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/websocket"
)

func run(t *testing.T, cfg Config) *Report {
	t.Helper()
	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	rep, err := Run(ctx, cfg)
	if err != nil {
		t.Fatalf("Run: %v", err)
	}
	return rep
}

func TestClosedLoopHTTP(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.Inflight = 4 // pipelined
	rep := run(t, cfg)
	if rep.Connects != 8 || rep.ConnsPeak != 8 || rep.ConnsFailed != 0 {
		t.Fatalf("connections: %+v", rep)
	}
	if rep.Requests == 0 || rep.TotalErrors() != 0 {
		t.Fatalf("requests %d errors %v", rep.Requests, rep.Errors)
	}
	// Everything sent was answered (the drain waits), and the server saw
	// exactly what was sent.
	if rep.Sent != rep.Requests || rep.Unanswered != 0 || hs.requests.Load() != rep.Sent {
		t.Fatalf("sent %d answered %d unanswered %d server %d", rep.Sent, rep.Requests, rep.Unanswered,
			hs.requests.Load())
	}
	if rep.LatencyHist.Count() != uint64(rep.Requests) || rep.Latency.P50 <= 0 || rep.Latency.Max < rep.Latency.P99 {
		t.Fatalf("latency %+v", rep.Latency)
	}
	if rep.Mode != "closed-loop" || rep.Protocol != "http" || rep.BytesIn == 0 || rep.BytesOut == 0 {
		t.Fatalf("report %+v", rep)
	}
}

func TestHoldOpensAndCountsConnections(t *testing.T) {
	hs := startHTTP(t)
	const n = 200
	var peak atomic.Int64
	stop := make(chan struct{})
	go func() {
		for {
			select {
			case <-stop:
				return
			case <-time.After(5 * time.Millisecond):
				if c := hs.srv.Engine().NumConns(); c > peak.Load() {
					peak.Store(c)
				}
			}
		}
	}()
	rep := run(t, Config{URL: hs.url, Conns: n, Rate: 5000, Hold: 300 * time.Millisecond,
		Sources: loopbackSources(t)})
	close(stop)
	if rep.Connects != n || rep.RampConnects != n || rep.ConnsPeak != n || rep.ConnectAttempts != n {
		t.Fatalf("connects %d ramp %d peak %d attempts %d", rep.Connects, rep.RampConnects, rep.ConnsPeak,
			rep.ConnectAttempts)
	}
	if peak.Load() != n {
		t.Fatalf("server saw at most %d connections, want %d", peak.Load(), n)
	}
	if rep.Mode != "idle" || rep.Sent != 0 || rep.HoldSeconds < 0.25 || rep.ConnectLatency.Count != n {
		t.Fatalf("report %+v", rep)
	}
	if rep.ConnectRate <= 0 || rep.TotalErrors() != 0 {
		t.Fatalf("connect rate %v errors %v", rep.ConnectRate, rep.Errors)
	}
}

func TestOpenLoopPacing(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.RPS = 2000
	cfg.Duration = 500 * time.Millisecond
	rep := run(t, cfg)
	want := cfg.RPS * cfg.Duration.Seconds() // 1000
	// The schedule never sends more than is due; on a slow machine it may
	// send late but still sends everything due within the phase.
	if float64(rep.Sent) > want+2 || float64(rep.Sent) < want/2 {
		t.Fatalf("sent %d, want about %.0f", rep.Sent, want)
	}
	if rep.Requests != rep.Sent || rep.Mode != "open-loop" || rep.TotalErrors() != 0 {
		t.Fatalf("answered %d of %d, mode %s, errors %v", rep.Requests, rep.Sent, rep.Mode, rep.Errors)
	}
}

func TestWebSocketEcho(t *testing.T) {
	addr := startRaw(t, wsEcho(true))
	for _, tc := range []struct {
		name     string
		rps      float64
		size     int
		inflight int
	}{{"closed", 0, 1000, 3}, {"open", 1000, 1000, 3}, {"large", 0, 40000, 1}} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quick("ws://" + addr + "/ws")
			cfg.MsgSize, cfg.Inflight, cfg.RPS = tc.size, tc.inflight, tc.rps
			rep := run(t, cfg)
			if rep.Protocol != "websocket" || rep.Connects != 8 || rep.Requests == 0 || rep.TotalErrors() != 0 {
				t.Fatalf("report: connects %d requests %d errors %v", rep.Connects, rep.Requests, rep.Errors)
			}
			if rep.Sent != rep.Requests || rep.BytesOut < rep.Sent*int64(tc.size) || rep.BytesIn < rep.Requests*int64(tc.size) {
				t.Fatalf("sent %d answered %d bytes out %d in %d", rep.Sent, rep.Requests, rep.BytesOut, rep.BytesIn)
			}
		})
	}
}

func TestWebSocketBadHandshake(t *testing.T) {
	hs := startHTTP(t) // answers the upgrade with 200
	u := strings.Replace(hs.url, "http://", "ws://", 1)
	cfg := quick(u)
	cfg.Conns = 3
	rep := run(t, cfg)
	if rep.Errors["bad_status"] != 3 || rep.ConnsFailed != 3 || rep.Connects != 0 {
		t.Fatalf("errors %v failed %d connects %d", rep.Errors, rep.ConnsFailed, rep.Connects)
	}
}

// TestWebSocketFailures: each way a WebSocket connection fails is counted
// by its kind.
func TestWebSocketFailures(t *testing.T) {
	upgrade := func(c net.Conn, accept string) {
		req, err := http.ReadRequest(bufio.NewReader(c))
		if err != nil {
			return
		}
		if accept == "" {
			accept = websocket.AcceptKey(req.Header.Get("Sec-WebSocket-Key"))
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + accept + "\r\n\r\n"))
	}
	for _, tc := range []struct {
		name   string
		addr   func(t testing.TB) string
		kind   string
		failed bool // the connections count as failed
	}{
		{"refused", closedPort, "connect_refused", true},
		{"wrong accept", func(t testing.TB) string {
			return startRaw(t, func(c net.Conn) { upgrade(c, websocket.AcceptKey("x")); silent(c) })
		}, "protocol", true},
		{"no answer", func(t testing.TB) string { return startRaw(t, silent) }, "timeout", true},
		{"closed before the answer", func(t testing.TB) string {
			return startRaw(t, func(c net.Conn) { c.Read(make([]byte, 4096)) })
		}, "closed", true},
		{"masked frame", func(t testing.TB) string {
			return startRaw(t, func(c net.Conn) {
				upgrade(c, "")
				c.Write(websocket.AppendMaskedFrame(nil, websocket.OpBinary, true, websocket.NewMask(), []byte("x")))
				silent(c)
			})
		}, "protocol", true},
		{"dropped", func(t testing.TB) string {
			return startRaw(t, func(c net.Conn) { upgrade(c, "") })
		}, "closed", true},
	} {
		t.Run(tc.name, func(t *testing.T) {
			cfg := quick("ws://" + tc.addr(t) + "/ws")
			cfg.Conns, cfg.Timeout, cfg.Duration = 2, 300*time.Millisecond, 200*time.Millisecond
			rep := run(t, cfg)
			if rep.Errors[tc.kind] != 2 || rep.TotalErrors() != 2 || (rep.ConnsFailed == 2) != tc.failed {
				t.Fatalf("errors %v failed %d connects %d", rep.Errors, rep.ConnsFailed, rep.Connects)
			}
		})
	}
}

// TestWebSocketServerCloseRedials: a server that closes each connection
// with a close handshake after one echo has its slots redialled.
func TestWebSocketServerCloseRedials(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) {
		br := bufio.NewReader(c)
		req, err := http.ReadRequest(br)
		if err != nil {
			return
		}
		c.Write([]byte("HTTP/1.1 101 Switching Protocols\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n" +
			"Sec-WebSocket-Accept: " + websocket.AcceptKey(req.Header.Get("Sec-WebSocket-Key")) + "\r\n\r\n"))
		var rd websocket.Reader
		var in []byte
		buf := make([]byte, 4096)
		for {
			n, err := br.Read(buf)
			if err != nil {
				return
			}
			in = append(in, buf[:n]...)
			for {
				used, ev, err := rd.Next(in)
				if err != nil {
					return
				}
				switch ev.Op {
				case websocket.OpBinary:
					c.Write(websocket.AppendFrame(nil, websocket.OpBinary, true, ev.Payload))
					c.Write(websocket.AppendClose(nil, websocket.CloseGoingAway, "bye"))
				case websocket.OpClose:
					return // the client's answer: close TCP
				}
				in = append([]byte(nil), in[used:]...)
				if ev.Op == websocket.OpContinuation {
					break
				}
			}
		}
	})
	cfg := quick("ws://" + addr + "/ws")
	cfg.Conns = 2
	rep := run(t, cfg)
	if rep.TotalErrors() != 0 || rep.Connects <= 2 || rep.Requests < 3 || rep.ConnsFailed != 0 {
		t.Fatalf("errors %v connects %d requests %d failed %d", rep.Errors, rep.Connects, rep.Requests, rep.ConnsFailed)
	}
}

func TestConnectRefused(t *testing.T) {
	cfg := quick("http://" + closedPort(t) + "/")
	cfg.Conns = 5
	rep := run(t, cfg)
	if rep.Errors["connect_refused"] != 5 || rep.ConnsFailed != 5 || rep.Connects != 0 {
		t.Fatalf("errors %v failed %d", rep.Errors, rep.ConnsFailed)
	}
	if f := rep.FailedFraction(); f != 1 {
		t.Fatalf("failed fraction %v", f)
	}
}

func TestBadStatusCounted(t *testing.T) {
	hs := startHTTP(t)
	cfg := quick(hs.url + "fail")
	rep := run(t, cfg)
	if rep.Requests == 0 || rep.Errors["bad_status"] != rep.Requests || rep.ConnsFailed != 0 {
		t.Fatalf("requests %d errors %v", rep.Requests, rep.Errors)
	}
}

func TestRequestTimeout(t *testing.T) {
	addr := startRaw(t, silent)
	cfg := quick("http://" + addr + "/")
	cfg.Conns, cfg.Timeout, cfg.Duration = 2, 300*time.Millisecond, 100*time.Millisecond
	rep := run(t, cfg)
	if rep.Errors["timeout"] != 2 || rep.ConnsFailed != 2 || rep.Requests != 0 || rep.Unanswered != 2 {
		t.Fatalf("errors %v failed %d unanswered %d sent %d connects %d attempts %d", rep.Errors, rep.ConnsFailed, rep.Unanswered, rep.Sent, rep.Connects, rep.ConnectAttempts)
	}
}

func TestProtocolError(t *testing.T) {
	addr := startRaw(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte("SMTP ready\r\n\r\n"))
		silent(c)
	})
	cfg := quick("http://" + addr + "/")
	cfg.Conns = 2
	rep := run(t, cfg)
	if rep.Errors["protocol"] != 2 || rep.ConnsFailed != 2 {
		t.Fatalf("errors %v failed %d", rep.Errors, rep.ConnsFailed)
	}
}

func TestPeerCloseCounted(t *testing.T) {
	// The server answers once without announcing a close, then closes.
	addr := startRaw(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte("HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\nok"))
	})
	cfg := quick("http://" + addr + "/")
	cfg.Conns = 2
	rep := run(t, cfg)
	if rep.Errors["closed"] != 2 || rep.ConnsFailed != 2 || rep.Requests < 2 {
		t.Fatalf("errors %v failed %d requests %d", rep.Errors, rep.ConnsFailed, rep.Requests)
	}
}

func TestAnnouncedCloseRedials(t *testing.T) {
	// Every response says Connection: close; the slot is redialled.
	addr := startRaw(t, func(c net.Conn) {
		buf := make([]byte, 4096)
		c.Read(buf)
		c.Write([]byte("HTTP/1.1 200 OK\r\nConnection: close\r\nContent-Length: 2\r\n\r\nok"))
	})
	cfg := quick("http://" + addr + "/")
	cfg.Conns = 2
	rep := run(t, cfg)
	if rep.TotalErrors() != 0 || rep.Connects <= 2 || rep.Requests < 3 || rep.ConnsFailed != 0 {
		t.Fatalf("errors %v connects %d requests %d failed %d", rep.Errors, rep.Connects, rep.Requests, rep.ConnsFailed)
	}
}

func TestTimelineAndProgress(t *testing.T) {
	hs := startHTTP(t)
	var progress syncWriter
	cfg := quick(hs.url)
	cfg.Duration = 1500 * time.Millisecond
	cfg.Progress = &progress
	rep := run(t, cfg)
	if len(rep.Timeline) < 1 {
		t.Fatal("no timeline")
	}
	var sum int64
	for _, s := range rep.Timeline {
		sum += s.Requests
	}
	if sum != rep.Requests {
		t.Fatalf("timeline sums to %d requests, report says %d", sum, rep.Requests)
	}
	out := progress.String()
	if !strings.Contains(out, "traffic") || !strings.Contains(out, "p99") {
		t.Fatalf("progress %q", out)
	}
}

func TestServerUsageFromProc(t *testing.T) {
	if _, _, _, err := readProc(1); err != nil {
		t.Skip("no /proc here")
	}
	hs := startHTTP(t)
	cfg := quick(hs.url)
	cfg.ServerPID = os.Getpid() // the server runs in this process
	rep := run(t, cfg)
	s := rep.Server
	if s == nil || s.Source != "proc" || s.RSSStart <= 0 || s.CPUTraffic < 0 || len(s.Errors) != 0 {
		t.Fatalf("server usage %+v", s)
	}
	if s.CPUPerRequest <= 0 || math.IsInf(s.CPUPerRequest, 0) {
		t.Fatalf("cpu per request %v", s.CPUPerRequest)
	}
}

// syncWriter is a bytes.Buffer safe for concurrent use.
type syncWriter struct {
	mu sync.Mutex
	b  bytes.Buffer
}

func (w *syncWriter) Write(p []byte) (int, error) {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.Write(p)
}

func (w *syncWriter) String() string {
	w.mu.Lock()
	defer w.mu.Unlock()
	return w.b.String()
}

// loopbackSources returns a few of the 127.0.0.0/8 source addresses Linux
// answers on without configuration; elsewhere none (the kernel chooses).
func loopbackSources(t *testing.T) []netip.Addr {
	if runtime.GOOS != "linux" {
		return nil
	}
	return mustSources(t, "127.0.1.1-127.0.1.4")
}

func mustSources(t *testing.T, s string) []netip.Addr {
	t.Helper()
	a, err := ParseSources(s)
	if err != nil {
		t.Fatal(err)
	}
	return a
}

func TestStatusKB(t *testing.T) {
	status := []byte("Name:\twarren\nVmHWM:\t   20480 kB\nVmRSS:\t   18044 kB\nRssAnon:\t    2112 kB\nRssFile:\t   15932 kB\nBad:\tx kB\n")
	for _, c := range []struct {
		key  string
		want int64
	}{
		{"VmRSS:", 18044 * 1024},
		{"RssAnon:", 2112 * 1024},
		{"RssFile:", 15932 * 1024},
		{"RssShmem:", -1}, // missing
		{"Bad:", -1},      // malformed
	} {
		if got := statusKB(status, c.key); got != c.want {
			t.Errorf("statusKB(%q) = %d, want %d", c.key, got, c.want)
		}
	}
	rss, anon, _, err := readProc(os.Getpid())
	if err != nil {
		t.Skipf("no /proc here: %v", err)
	}
	if rss <= 0 || anon <= 0 || anon > rss {
		t.Fatalf("readProc: rss %d, anon %d", rss, anon)
	}
}
