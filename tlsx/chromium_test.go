package tlsx_test

import (
	"bytes"
	"context"
	"crypto/tls"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// TestChromiumWSS: headless Chromium loads a page over https from a tlsx
// listener, and the page's script talks WebSocket over wss:// to the same
// listener (text, binary, a message of several records, a close), over
// TLS 1.3 and TLS 1.2. The test certificate is not trusted by Chromium, so
// it runs with --ignore-certificate-errors; the server checks the version
// the wss connection negotiated.
func TestChromiumWSS(t *testing.T) {
	const chromium = "/usr/bin/chromium"
	if _, err := os.Stat(chromium); err != nil {
		t.Skip("chromium not installed (scripts/test installs it)")
	}
	page, err := os.ReadFile(filepath.Join("testdata", "wss.html"))
	if err != nil {
		t.Fatal(err)
	}
	for _, tc := range []struct {
		name    string
		min     uint16
		flags   []string
		version uint16
	}{
		{"tls13", tls.VersionTLS13, nil, tls.VersionTLS13},
		{"tls12", tls.VersionTLS12, []string{"--ssl-version-max=tls1.2"}, tls.VersionTLS12},
	} {
		t.Run(tc.name, func(t *testing.T) {
			p := newPKI(t)
			e := testutil.StartEngine(t, engine.Config{})
			srv, err := tlsx.New(tlsx.Config{CertFile: p.certFile, KeyFile: p.keyFile, MinVersion: tc.min})
			if err != nil {
				t.Fatal(err)
			}
			t.Cleanup(srv.Close)
			report, reported := make(chan string, 1), make(chan struct{})
			wsState := make(chan tlsx.ConnState, 1)
			var once sync.Once
			ws := websocket.New(websocket.Config{Inline: true}, websocket.HandlerFuncs{
				Open: func(c *websocket.Conn) {
					if st := tlsx.State(c.Engine()); st != nil {
						select {
						case wsState <- *st:
						default:
						}
					}
				},
				Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) { c.WriteMessage(op, data) },
			})
			r := http1.NewRouter()
			r.Handle("GET /ws", ws.Handler())
			r.HandleFunc("GET /page", func(c *http1.Ctx) {
				c.SetHeader("Content-Type", "text/html; charset=utf-8")
				c.Write(page)
			})
			r.HandleFunc("POST /report", func(c *http1.Ctx) {
				once.Do(func() {
					report <- string(c.Body())
					close(reported)
				})
			})
			r.HandleFunc("GET /wait", func(c *http1.Ctx) { // on a worker: it may block
				select {
				case <-reported:
				case <-time.After(15 * time.Second):
				}
				c.SetHeader("Content-Type", "text/javascript")
			})
			hs, err := http1.NewServer(e, http1.Config{}, r)
			if err != nil {
				t.Fatal(err)
			}
			ln, err := hs.ListenWrapped("127.0.0.1:0", srv.Handler)
			if err != nil {
				t.Fatal(err)
			}
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			args := append([]string{"--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
				"--no-first-run", "--disable-background-networking", "--disable-component-update", "--disable-sync",
				"--ignore-certificate-errors", "--user-data-dir=" + t.TempDir(), "--virtual-time-budget=5000", "--dump-dom"},
				tc.flags...)
			cmd := exec.CommandContext(ctx, chromium, append(args, "https://"+ln.Addr().String()+"/page")...)
			var stderr bytes.Buffer
			cmd.Stderr = &stderr
			out, err := cmd.Output()
			if err != nil {
				t.Fatalf("chromium: %v\n%s", err, stderr.Bytes())
			}
			start := bytes.Index(out, []byte(`<pre id="out">`))
			end := bytes.Index(out, []byte("</pre>"))
			if start < 0 || end < start {
				t.Fatalf("no result in the DOM:\n%s\n%s", out, stderr.Bytes())
			}
			want := "page https:\nopen\ntext true\nbinary true\nlarge true\nclose 1000"
			if got := strings.TrimSpace(string(out[start+len(`<pre id="out">`) : end])); got != want {
				t.Fatalf("chromium's page says:\n%s\nwant:\n%s", got, want)
			}
			select {
			case r := <-report:
				if r != want {
					t.Fatalf("chromium reported:\n%s", r)
				}
			default:
				t.Fatal("the page did not report")
			}
			select {
			case st := <-wsState:
				if st.Version != tc.version {
					t.Fatalf("wss connection negotiated TLS %#x, want %#x", st.Version, tc.version)
				}
			default:
				t.Fatal("the wss connection is not a TLS connection")
			}
			if tc.version == tls.VersionTLS12 {
				onWarrenLayer12(t, srv, -1) // Chromium may open more than one connection
			}
		})
	}
}
