package upstream

import (
	"errors"
	"net/http"
	"strconv"
	"strings"
	"testing"
)

// TestClusterBreakerCountsGatewayClass: by default the breaker counts the
// gateway class (502, 503, 504) and not a 500, which one route of a
// working backend may answer every time; with BreakerOn5xx every 5xx
// counts. The breaker opens after three failures in a row here, so a
// count that goes wrong shows as an early or a missing ErrBreakerOpen.
func TestClusterBreakerCountsGatewayClass(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if code, err := strconv.Atoi(strings.TrimPrefix(r.URL.Path, "/")); err == nil {
			w.WriteHeader(code)
		}
	}))
	for _, tc := range []struct {
		name  string
		on5xx bool
		path  string
		opens bool
	}{
		{"500 default", false, "/500", false},
		{"501 default", false, "/501", false},
		{"502 default", false, "/502", true},
		{"503 default", false, "/503", true},
		{"504 default", false, "/504", true},
		{"500 on5xx", true, "/500", true},
		{"501 on5xx", true, "/501", true},
		{"404 on5xx", true, "/404", false},
	} {
		t.Run(tc.name, func(t *testing.T) {
			c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true,
				Retry: RetryPolicy{MaxRetries: -1}, BreakerOn5xx: tc.on5xx,
				Breaker: BreakerConfig{ConsecutiveFailures: 3, FailureRatio: -1}})
			for i := range 3 {
				r, err := get(t, c, tc.path)
				if err != nil {
					t.Fatalf("request %d: %v", i, err)
				}
				if want := strings.TrimPrefix(tc.path, "/"); strconv.Itoa(r.Status) != want {
					t.Fatalf("request %d: status %d, want %s", i, r.Status, want)
				}
			}
			_, err := get(t, c, "/200")
			if got := errors.Is(err, ErrBreakerOpen); got != tc.opens {
				t.Fatalf("after three %s: the next request's error %v; breaker open %v, want %v", tc.path, err, got, tc.opens)
			}
		})
	}
}
