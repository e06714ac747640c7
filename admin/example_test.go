package admin_test

import (
	"context"
	"fmt"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
)

func ExampleNew() {
	e, err := engine.New(engine.Config{Inline: true}, engine.NopHandler{})
	if err != nil {
		panic(err)
	}
	if err := e.Start("127.0.0.1:0"); err != nil {
		panic(err)
	}
	defer e.Close()

	// The admin listener stays on loopback; ":0" picks a free port, which
	// Start logs and Addr returns.
	srv, err := admin.New(admin.Config{Addr: "127.0.0.1:0", Logger: slog.New(slog.DiscardHandler)}, e)
	if err != nil {
		panic(err)
	}
	if err := srv.Start(); err != nil {
		panic(err)
	}
	defer srv.Shutdown(context.Background())

	resp, err := http.Get("http://" + srv.Addr().String() + "/readyz")
	if err != nil {
		panic(err)
	}
	resp.Body.Close()
	fmt.Println(resp.Status)
	// Output: 200 OK
}

// Handler serves without a listener of its own, for tests or to mount the
// admin endpoints on another server.
func ExampleServer_Handler() {
	e, _ := engine.New(engine.Config{Inline: true}, engine.NopHandler{})
	e.Start("127.0.0.1:0")
	defer e.Close()
	srv, _ := admin.New(admin.Config{Token: "secret"}, e)

	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	req, _ := http.NewRequest("GET", ts.URL+"/metrics", nil)
	resp, _ := http.DefaultClient.Do(req)
	resp.Body.Close()
	fmt.Println("without token:", resp.StatusCode)

	req.Header.Set("Authorization", "Bearer secret")
	resp, _ = http.DefaultClient.Do(req)
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "warren_connections_active ") {
			fmt.Println(line)
		}
	}
	// Output:
	// without token: 401
	// warren_connections_active 0
}

// A protocol layer passes its collectors to New, under the documented
// names, so /metrics exports them and the dashboard plots them.
func ExampleNew_extraCollectors() {
	e, _ := engine.New(engine.Config{Inline: true}, engine.NopHandler{})
	e.Start("127.0.0.1:0")
	defer e.Close()

	requests := prometheus.NewCounterVec(prometheus.CounterOpts{
		Name: "warren_http_requests_total",
		Help: "HTTP requests answered, by status class.",
	}, []string{"class"})
	requests.WithLabelValues("2xx").Add(3)

	srv, err := admin.New(admin.Config{Overload: func() float64 { return 0 }}, e, requests)
	if err != nil {
		panic(err)
	}
	ts := httptest.NewServer(srv.Handler())
	defer ts.Close()
	resp, _ := http.Get(ts.URL + "/metrics")
	body, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	for _, line := range strings.Split(string(body), "\n") {
		if strings.HasPrefix(line, "warren_http_requests_total{") {
			fmt.Println(line)
		}
	}
	// Output: warren_http_requests_total{class="2xx"} 3
}

// ExamplePprofRoutes serves runtime profiles on an admin endpoint of the
// program's own, behind the same access checks as warren's admin listener.
func ExamplePprofRoutes() {
	mux := http.NewServeMux()
	admin.PprofRoutes(mux)
	h := admin.Guard(mux, admin.GuardConfig{Token: "s3cret"})
	req := httptest.NewRequest("GET", "http://127.0.0.1/debug/pprof/goroutine?debug=1", nil)
	req.Header.Set("Authorization", "Bearer s3cret")
	rec := httptest.NewRecorder()
	h.ServeHTTP(rec, req)
	fmt.Println(rec.Code, strings.HasPrefix(rec.Body.String(), "goroutine profile:"))
	// Output: 200 true
}
