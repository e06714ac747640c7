package proxy

import (
	"bufio"
	"bytes"
	"crypto/sha256"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/websocket"
)

// startEngine starts an engine without a listener for a test, drained at
// its end.
func startEngine(t testing.TB) *engine.Engine { return testutil.StartDrainedEngine(t) }

// startGoBackend serves h with net/http on a random port.
func startGoBackend(t testing.TB, h http.Handler) (string, *http.Server) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	srv := &http.Server{Handler: h}
	go srv.Serve(ln)
	t.Cleanup(func() { srv.Close() })
	return ln.Addr().String(), srv
}

// startProxy starts a proxy to hosts and returns its address.
func startProxy(t testing.TB, e *engine.Engine, ccfg upstream.ClusterConfig, pcfg Config) (string, *Proxy) {
	t.Helper()
	cl, err := upstream.NewCluster(e, ccfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { cl.Close() })
	p := New(e, cl, pcfg)
	t.Cleanup(p.Close)
	ln, err := p.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	return ln.Addr().String(), p
}

// echoBackend answers with what it saw: method, path, body length and
// hash, and selected headers.
func echoBackend(w http.ResponseWriter, r *http.Request) {
	h := sha256.New()
	n, _ := io.Copy(h, r.Body)
	w.Header().Set("X-Seen-XFF", r.Header.Get("X-Forwarded-For"))
	w.Header().Set("X-Seen-Proto", r.Header.Get("X-Forwarded-Proto"))
	w.Header().Set("X-Seen-Via", r.Header.Get("Via"))
	w.Header().Set("X-Seen-Foo", r.Header.Get("X-Foo"))
	w.Header().Set("X-Seen-Host", r.Host)
	w.Header().Set("Keep-Alive", "timeout=30")
	if r.URL.Path == "/stream" {
		for i := range 5 {
			fmt.Fprintf(w, "part %d\n", i)
			w.(http.Flusher).Flush()
		}
		return
	}
	fmt.Fprintf(w, "%s %s %d %x", r.Method, r.URL.Path, n, h.Sum(nil))
}

func TestProxyGoBackend(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(echoBackend))
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}}, Config{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 4}}
	defer client.CloseIdleConnections()

	req, _ := http.NewRequest("GET", "http://"+paddr+"/hello", nil)
	req.Header.Set("X-Forwarded-For", "10.0.0.1")
	req.Header.Set("Connection", "X-Foo")
	req.Header.Set("X-Foo", "hop")
	resp, err := client.Do(req)
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if resp.StatusCode != 200 || !strings.HasPrefix(string(body), "GET /hello 0 ") {
		t.Fatalf("%d %q", resp.StatusCode, body)
	}
	checks := map[string]string{"X-Seen-XFF": "10.0.0.1, 127.0.0.1", "X-Seen-Proto": "http", "X-Seen-Via": "1.1 warren",
		"X-Seen-Foo": "", "X-Seen-Host": paddr, "Keep-Alive": "", "Via": "1.1 warren"}
	for k, want := range checks {
		if got := resp.Header.Get(k); got != want {
			t.Errorf("%s = %q; want %q", k, got, want)
		}
	}

	// Bodies both ways: a 3 MB Content-Length upload and a chunked one.
	big := bytes.Repeat([]byte("0123456789abcdef"), 3<<16)
	sum := sha256.Sum256(big)
	for _, chunked := range []bool{false, true} {
		var rd io.Reader = bytes.NewReader(big)
		if chunked {
			rd = io.MultiReader(bytes.NewReader(big)) // unknown length: chunked
		}
		resp, err := client.Post("http://"+paddr+"/up", "application/octet-stream", rd)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if want := fmt.Sprintf("POST /up %d %x", len(big), sum); string(body) != want {
			t.Fatalf("chunked=%v: %q; want %q", chunked, body, want)
		}
	}

	// A streamed (chunked) response comes through re-chunked.
	resp, err = client.Get("http://" + paddr + "/stream")
	if err != nil {
		t.Fatal(err)
	}
	body, _ = io.ReadAll(resp.Body)
	resp.Body.Close()
	if !strings.HasPrefix(string(body), "part 0\n") || !strings.HasSuffix(string(body), "part 4\n") || len(resp.TransferEncoding) == 0 {
		t.Fatalf("stream: %q %v", body, resp.TransferEncoding)
	}
	if p.st.requests.Load() != 4 || p.st.responses.Load() != 4 {
		t.Errorf("requests %d responses %d", p.st.requests.Load(), p.st.responses.Load())
	}
}

func TestProxyConcurrent(t *testing.T) {
	e := startEngine(t)
	var hosts []string
	for range 3 {
		a, _ := startGoBackend(t, http.HandlerFunc(echoBackend))
		hosts = append(hosts, a)
	}
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: hosts}, Config{})
	client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 16}}
	defer client.CloseIdleConnections()
	var wg sync.WaitGroup
	var fails atomic.Int64
	for range 16 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for range 50 {
				resp, err := client.Get("http://" + paddr + "/x")
				if err != nil {
					fails.Add(1)
					continue
				}
				io.Copy(io.Discard, resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 200 {
					fails.Add(1)
				}
			}
		}()
	}
	wg.Wait()
	if fails.Load() != 0 {
		t.Fatalf("%d of 800 requests failed", fails.Load())
	}
}

func TestProxyGatewayErrors(t *testing.T) {
	e := startEngine(t)
	addr := testutil.RefusedAddr(t)
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}, OutlierOff: true, BreakerOff: true}, Config{})
	resp, err := http.Get("http://" + paddr + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 502 || resp.Header.Get("X-Warren-Reason") != "connect_failure" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Warren-Reason"))
	}

	// A backend slower than the timeout: 504.
	slow, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		select {
		case <-time.After(5 * time.Second):
		case <-r.Context().Done():
		}
	}))
	paddr2, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{slow}, Timeout: 300 * time.Millisecond}, Config{})
	resp, err = http.Get("http://" + paddr2 + "/")
	if err != nil {
		t.Fatal(err)
	}
	resp.Body.Close()
	if resp.StatusCode != 504 || resp.Header.Get("X-Warren-Reason") != "upstream_timeout" {
		t.Fatalf("%d %q", resp.StatusCode, resp.Header.Get("X-Warren-Reason"))
	}
}

// TestProxyRawPipelined sends two pipelined requests and a malformed one
// over a raw socket.
func TestProxyRawPipelined(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(echoBackend))
	paddr, _ := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}}, Config{})
	conn, err := net.Dial("tcp", paddr)
	if err != nil {
		t.Fatal(err)
	}
	defer conn.Close()
	conn.SetDeadline(time.Now().Add(10 * time.Second))
	io.WriteString(conn, "GET /a HTTP/1.1\r\nHost: x\r\n\r\nGET /b HTTP/1.1\r\nHost: x\r\n\r\n")
	br := bufio.NewReader(conn)
	for _, path := range []string{"/a", "/b"} {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		if !strings.HasPrefix(string(body), "GET "+path+" 0") {
			t.Fatalf("%s: %q", path, body)
		}
	}
	io.WriteString(conn, "GET /c HTTP/1.1\r\nHost: x\r\nBad Header: y\r\n\r\n")
	resp, err := http.ReadResponse(br, nil)
	if err != nil {
		t.Fatal(err)
	}
	if resp.StatusCode != 400 {
		t.Fatalf("malformed request: %d", resp.StatusCode)
	}
}

// TestProxyNodeBackend proxies to a Node.js http server.
func TestProxyNodeBackend(t *testing.T) {
	node, err := exec.LookPath("node")
	if err != nil {
		t.Skip("node not installed (scripts/test installs it)")
	}
	script := filepath.Join(t.TempDir(), "backend.js")
	os.WriteFile(script, []byte(`
const http = require('http');
const srv = http.createServer((req, res) => {
  let n = 0;
  req.on('data', d => n += d.length);
  req.on('end', () => {
    if (req.url === '/chunked') { res.write('a'); res.write('b'); res.end('c'); return; }
    res.setHeader('Content-Type', 'text/plain');
    res.end(req.method + ' ' + req.url + ' ' + n + ' ' + (req.headers['x-forwarded-for'] || ''));
  });
});
srv.keepAliveTimeout = 2000;
srv.listen(0, '127.0.0.1', () => console.log(srv.address().port));
`), 0o644)
	cmd := exec.Command(node, script)
	out, _ := cmd.StdoutPipe()
	if err := cmd.Start(); err != nil {
		t.Fatal(err)
	}
	defer func() { cmd.Process.Kill(); cmd.Wait() }()
	line, err := bufio.NewReader(out).ReadString('\n')
	if err != nil {
		t.Fatal(err)
	}
	addr := "127.0.0.1:" + strings.TrimSpace(line)
	e := startEngine(t)
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{addr}}, Config{})
	client := &http.Client{}
	for i := range 20 {
		resp, err := client.Post("http://"+paddr+"/p", "text/plain", strings.NewReader("hello"))
		if err != nil {
			t.Fatal(err)
		}
		body, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(body) != "POST /p 5 127.0.0.1" {
			t.Fatalf("request %d: %q", i, body)
		}
	}
	resp, err := client.Get("http://" + paddr + "/chunked")
	if err != nil {
		t.Fatal(err)
	}
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(body) != "abc" {
		t.Fatalf("chunked: %q", body)
	}
	st := p.Cluster().Stats()
	if st.CxTotal > 2 {
		t.Errorf("%d connections to node for 21 sequential requests", st.CxTotal)
	}
}

// TestProxyWebSocket runs a Python websockets client through the proxy to
// warren's WebSocket echo.
func TestProxyWebSocket(t *testing.T) {
	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import websockets").Run(); err != nil {
		t.Skip("no python3 with websockets (Debian: python3-websockets)")
	}
	e := startEngine(t)
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	r := http1.NewRouter()
	r.Handle("GET /ws", ws.Handler())
	srv, err := http1.NewServer(e, http1.Config{}, r)
	if err != nil {
		t.Fatal(err)
	}
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	paddr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{ln.Addr().String()}}, Config{})
	script := `
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        for i in range(100):
            await ws.send("msg %d" % i)
            got = await ws.recv()
            assert got == "msg %d" % i, got
        big = b"x" * 300000
        await ws.send(big)
        assert await ws.recv() == big
    print("ok")
asyncio.run(main())
`
	out, err := exec.Command(py, "-c", script, "ws://"+paddr+"/ws").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("python client: %v\n%s", err, out)
	}
	if p.st.upgrades.Load() != 1 {
		t.Errorf("upgrades = %d", p.st.upgrades.Load())
	}
	deadline := time.Now().Add(5 * time.Second)
	for p.st.splices.Load() != 0 && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if n := p.st.splices.Load(); n != 0 {
		t.Errorf("%d splice halves still open after the client closed", n)
	}
}
