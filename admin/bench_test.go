package admin

import (
	"fmt"
	"net/http"
	"net/http/httptest"
	"testing"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
)

// BenchmarkScrape measures one scrape of the engine collector alone (the
// cost the admin adds; the Go and process collectors cost what they cost
// anywhere). It does not grow with the number of connections.
func BenchmarkScrape(b *testing.B) {
	for _, n := range []int{0, 1000} {
		b.Run(fmt.Sprintf("conns=%d", n), func(b *testing.B) {
			e, addr := startEngine(b, engine.Config{Loops: 4})
			dial(b, e, addr, n)
			reg := prometheus.NewRegistry()
			reg.MustRegister(newCollector("warren", e, nil, residentBytes))
			b.ReportAllocs()
			for b.Loop() {
				if _, err := reg.Gather(); err != nil {
					b.Fatal(err)
				}
			}
		})
	}
}

// BenchmarkScrapeHTTP measures a whole /metrics request, Go and process
// collectors and text encoding included.
func BenchmarkScrapeHTTP(b *testing.B) {
	e, addr := startEngine(b, engine.Config{Loops: 4})
	dial(b, e, addr, 100)
	s, err := New(Config{Logger: quietLogger()}, e)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	req := httptest.NewRequest("GET", "/metrics", nil)
	req.Host = "127.0.0.1"
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}

// BenchmarkDebugConns measures /debug/conns over 1000 live connections:
// O(connections), which is why the dashboard caches its busiest table.
func BenchmarkDebugConns(b *testing.B) {
	e, addr := startEngine(b, engine.Config{Loops: 4})
	dial(b, e, addr, 1000)
	s, err := New(Config{Logger: quietLogger()}, e)
	if err != nil {
		b.Fatal(err)
	}
	h := s.Handler()
	req := httptest.NewRequest("GET", "/debug/conns?sort=bytes&limit=10", nil)
	req.Host = "127.0.0.1"
	b.ReportAllocs()
	for b.Loop() {
		rec := httptest.NewRecorder()
		h.ServeHTTP(rec, req)
		if rec.Code != http.StatusOK {
			b.Fatal(rec.Code)
		}
	}
}
