package admin_test

import (
	"io"
	"net/http"
	"net/http/httptest"
	"testing"
	"time"

	"github.com/warrenhq/warren/admin"
)

// guarded serves Guard(ok, cfg) through admin.NewHTTPServer on a free
// loopback port and returns its base URL.
func guarded(t *testing.T, cfg admin.GuardConfig) string {
	t.Helper()
	ok := http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { io.WriteString(w, "ok") })
	srv := httptest.NewUnstartedServer(nil)
	srv.Config = admin.NewHTTPServer(admin.Guard(ok, cfg), nil)
	srv.Start()
	t.Cleanup(srv.Close)
	return srv.URL
}

func send(t *testing.T, method, url string, hdr map[string]string) int {
	t.Helper()
	req, err := http.NewRequest(method, url, nil)
	if err != nil {
		t.Fatal(err)
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
	resp.Body.Close()
	return resp.StatusCode
}

// TestGuardToken checks Guard with only a token: everything but the probes
// needs it (Open nil), whatever the Host.
func TestGuardToken(t *testing.T) {
	base := guarded(t, admin.GuardConfig{Token: "s3cret"})
	for _, tc := range []struct {
		method, path, auth, host string
		want                     int
	}{
		{"GET", "/metrics", "", "", 401},
		{"GET", "/metrics", "Bearer wrong", "", 401},
		{"GET", "/metrics", "Bearer s3cret", "", 200},
		{"GET", "/metrics", "bearer s3cret", "", 200},
		{"GET", "/", "", "", 401},
		{"GET", "/workers", "", "", 401},
		{"GET", "/healthz", "", "", 200},
		{"GET", "/readyz", "", "", 200},
		{"GET", "/metrics", "Bearer s3cret", "admin.example.com", 200},
	} {
		hdr := map[string]string{"Authorization": tc.auth}
		if tc.host != "" {
			hdr["Host"] = tc.host
		}
		if code := send(t, tc.method, base+tc.path, hdr); code != tc.want {
			t.Errorf("%s %s auth %q host %q: %d, want %d", tc.method, tc.path, tc.auth, tc.host, code, tc.want)
		}
	}
	// A cross-origin POST is refused before the token is looked at.
	if code := send(t, "POST", base+"/metrics", map[string]string{"Authorization": "Bearer s3cret", "Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
}

// TestGuardHostFromArrival checks that with Addr empty the Host check
// follows the address a request arrived on: loopback here.
func TestGuardHostFromArrival(t *testing.T) {
	base := guarded(t, admin.GuardConfig{})
	for _, tc := range []struct {
		host, path string
		want       int
	}{
		{"rebind.example.com:9901", "/metrics", 403},
		{"rebind.example.com", "/", 403},
		{"rebind.example.com", "/healthz", 200},
		{"localhost:9901", "/metrics", 200},
		{"127.0.0.1", "/metrics", 200},
	} {
		if code := send(t, "GET", base+tc.path, map[string]string{"Host": tc.host}); code != tc.want {
			t.Errorf("GET %s Host %s: %d, want %d", tc.path, tc.host, code, tc.want)
		}
	}
	// A request served in memory has no arrival address: no host check.
	h := admin.Guard(http.NotFoundHandler(), admin.GuardConfig{})
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, httptest.NewRequest("GET", "http://rebind.example.com/metrics", nil))
	if rec.Code != 404 {
		t.Errorf("in memory: %d, want 404 from the wrapped handler", rec.Code)
	}
	// A fixed public Addr turns the check off; a fixed loopback one keeps
	// it whatever the arrival.
	for addr, want := range map[string]int{"0.0.0.0:9901": 404, "127.0.0.1:9901": 403} {
		rec := httptest.NewRecorder()
		admin.Guard(http.NotFoundHandler(), admin.GuardConfig{Addr: addr}).
			ServeHTTP(rec, httptest.NewRequest("GET", "http://rebind.example.com/metrics", nil))
		if rec.Code != want {
			t.Errorf("Addr %s: %d, want %d", addr, rec.Code, want)
		}
	}
	if code := send(t, "POST", base+"/x", map[string]string{"Origin": "http://evil.example"}); code != 403 {
		t.Errorf("cross-origin POST: %d, want 403", code)
	}
	if code := send(t, "POST", base+"/x", map[string]string{"Origin": base}); code != 200 {
		t.Errorf("same-origin POST: %d, want 200", code)
	}
}

func TestNewHTTPServerLimits(t *testing.T) {
	s := admin.NewHTTPServer(http.NotFoundHandler(), nil)
	if s.ReadHeaderTimeout != 10*time.Second || s.IdleTimeout != 2*time.Minute || s.MaxHeaderBytes != 64<<10 || s.ErrorLog == nil {
		t.Errorf("limits: %+v", s)
	}
}
