package proxy

import (
	"io"
	"net/http"
	"os/exec"
	"strings"
	"testing"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/websocket"
)

// TestForwardRoute: an http1 server serves /local itself and forwards
// everything else (NotFound) to a backend through the proxy's cluster,
// WebSocket upgrades included.
func TestForwardRoute(t *testing.T) {
	e := startEngine(t)
	// The legacy backend: warren's WebSocket echo on /ws, net/http-like
	// answers elsewhere, on its own http1 server.
	ws := websocket.New(websocket.Config{Inline: true}, websocket.Echo)
	br := http1.NewRouter()
	br.Handle("GET /ws", ws.Handler())
	br.NotFound = http1.HandlerFunc(func(c *http1.Ctx) {
		c.SetHeader("X-Legacy", "yes")
		c.WriteString("legacy " + string(c.Method) + " " + string(c.Target) + " " + string(c.Header("X-Forwarded-For")) + " " + itoa(len(c.Body())))
	})
	bsrv, _ := http1.NewServer(e, http1.Config{}, br)
	bln, err := bsrv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{bln.Addr().String()}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(e, cl, Config{})
	defer p.Close()
	r := http1.NewRouter()
	r.Handle("GET /local", http1.InlineFunc(func(c *http1.Ctx) { c.WriteString("local") }))
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	base := "http://" + ln.Addr().String()
	check := func(method, path, body, want string) {
		t.Helper()
		req, _ := http.NewRequest(method, base+path, strings.NewReader(body))
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		got, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if string(got) != want {
			t.Fatalf("%s %s: %q; want %q", method, path, got, want)
		}
		if strings.HasPrefix(want, "legacy") && (resp.Header.Get("X-Legacy") != "yes" || resp.Header.Get("Via") != "1.1 warren") {
			t.Fatalf("%s %s: headers %v", method, path, resp.Header)
		}
	}
	check("GET", "/local", "", "local")
	check("GET", "/old/path?q=1", "", "legacy GET /old/path?q=1 127.0.0.1 0")
	check("POST", "/old/upload", strings.Repeat("z", 5000), "legacy POST /old/upload 127.0.0.1 5000")

	py := "/usr/bin/python3"
	if err := exec.Command(py, "-c", "import websockets").Run(); err != nil {
		t.Skip("no python3 with websockets")
	}
	script := `
import asyncio, sys, websockets
async def main():
    async with websockets.connect(sys.argv[1]) as ws:
        for i in range(20):
            await ws.send("m%d" % i)
            assert await ws.recv() == "m%d" % i
    print("ok")
asyncio.run(main())
`
	out, err := exec.Command(py, "-c", script, "ws://"+ln.Addr().String()+"/ws").CombinedOutput()
	if err != nil || strings.TrimSpace(string(out)) != "ok" {
		t.Fatalf("websocket through a forwarded route: %v\n%s", err, out)
	}
}

// TestForwardRouteLimit: Config.RouteLimits apply on Forward routes too
// (keyed here by a device header): the third request of a device with a
// burst of 2 is answered 429 with Retry-After, another device's is not.
func TestForwardRouteLimit(t *testing.T) {
	e := startEngine(t)
	addr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "legacy") }))
	cl, err := upstream.NewCluster(e, upstream.ClusterConfig{Hosts: []string{addr}})
	if err != nil {
		t.Fatal(err)
	}
	defer cl.Close()
	p := New(e, cl, Config{RouteLimits: []RouteLimit{{Prefix: "/old/", Rate: 0.5, Burst: 2, Header: "X-Device-Id"}}})
	defer p.Close()
	r := http1.NewRouter()
	r.NotFound = p.Forward()
	srv, _ := http1.NewServer(e, http1.Config{}, r)
	ln, err := srv.Listen("127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	get := func(dev string) *http.Response {
		req, _ := http.NewRequest("GET", "http://"+ln.Addr().String()+"/old/x", nil)
		req.Header.Set("X-Device-Id", dev)
		resp, err := http.DefaultClient.Do(req)
		if err != nil {
			t.Fatal(err)
		}
		io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		return resp
	}
	for i, w := range []int{200, 200, 429} {
		if resp := get("d1"); resp.StatusCode != w {
			t.Fatalf("d1 request %d: %d; want %d", i, resp.StatusCode, w)
		} else if w == 429 && (resp.Header.Get("Retry-After") != "2" || resp.Header.Get("X-Warren-Reason") != "rate_limited") {
			t.Fatalf("429 headers %v; want Retry-After 2 (0.5/s), reason rate_limited", resp.Header)
		}
	}
	if resp := get("d2"); resp.StatusCode != 200 {
		t.Fatalf("d2: %d", resp.StatusCode)
	}
	if st := p.Stats(); st.Routes["/old/"].Refused["rate_limited"] != 1 {
		t.Errorf("route stats %+v", st.Routes)
	}
}
