package gateway_test

import (
	"crypto/tls"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/tlsx"
)

// TestUpstreamForwardedProto: what the gateway passes to its -upstream
// backend says X-Forwarded-Proto https when the request came in on the
// TLS listener, http on the plain one.
func TestUpstreamForwardedProto(t *testing.T) {
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, r.Header.Get("X-Forwarded-Proto"))
	}))
	t.Cleanup(backend.Close)
	ts, err := tlsx.New(tlsx.Config{Certificate: selfSigned()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(ts.Close)
	quiet := slog.New(slog.NewTextHandler(io.Discard, nil))
	e := testutil.StartEngine(t, engine.Config{Logger: quiet})
	g, err := gateway.New(e, gateway.Config{Addr: "127.0.0.1:0", API: "-", MQTT: "", Auth: gateway.NoAuth(),
		TLS: ts, TLSAddr: "127.0.0.1:0", Upstream: []string{backend.URL}, Logger: quiet, DataDir: t.TempDir()})
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(g.Close)
	client := &http.Client{Transport: &http.Transport{TLSClientConfig: &tls.Config{InsecureSkipVerify: true}}}
	t.Cleanup(client.CloseIdleConnections)
	for url, want := range map[string]string{"http://" + g.DeviceAddr() + "/legacy": "http",
		"https://" + g.TLSAddr() + "/legacy": "https"} {
		resp, err := client.Get(url)
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != want {
			t.Errorf("GET %s: %d, X-Forwarded-Proto %q, want %q", url, resp.StatusCode, b, want)
		}
	}
}
