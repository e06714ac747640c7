package upstream

import (
	"context"
	"net/http"
	"sync"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// collected returns the value of the series name{cluster,label=value}
// collected from c.
func collected(t *testing.T, c *Cluster, name, label, value string) float64 {
	t.Helper()
	reg := prometheus.NewRegistry()
	reg.MustRegister(c.Collector(""))
	fams, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	for _, f := range fams {
		if f.GetName() != name {
			continue
		}
		for _, m := range f.GetMetric() {
			for _, l := range m.GetLabel() {
				if l.GetName() == label && l.GetValue() == value {
					if m.GetGauge() != nil {
						return m.GetGauge().GetValue()
					}
					return m.GetCounter().GetValue()
				}
			}
		}
	}
	t.Fatalf("no %s{%s=%q}", name, label, value)
	return 0
}

// TestCollectorThresholdsAndEjectionKinds: the cluster's resource
// thresholds are exported with their limit, use and whether they are
// full (Envoy's circuit_breakers.*.{remaining_,}*_open), and ejections
// by what triggered them (ejections_enforced_*).
func TestCollectorThresholdsAndEjectionKinds(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		switch r.URL.Path {
		case "/hold":
			<-release
		case "/503":
			w.WriteHeader(503)
		}
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, BreakerOff: true,
		Retry:      RetryPolicy{MaxRetries: -1},
		Thresholds: Thresholds{MaxRequests: 2},
		Outlier:    OutlierConfig{Consecutive5xx: -1, ConsecutiveGatewayFailure: 3, FailurePercentageThreshold: -1}})
	const name = "warren_upstream_circuit_breakers_"
	if l, a, o := collected(t, c, name+"limit", "resource", "requests"), collected(t, c, name+"active", "resource", "requests"),
		collected(t, c, name+"open", "resource", "requests"); l != 2 || a != 0 || o != 0 {
		t.Fatalf("idle: limit %v active %v open %v", l, a, o)
	}
	var wg sync.WaitGroup
	for range 2 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			get(t, c, "/hold")
		}()
	}
	deadline := time.Now().Add(10 * time.Second)
	for collected(t, c, name+"active", "resource", "requests") != 2 {
		if time.Now().After(deadline) {
			t.Fatal("two requests never in flight")
		}
		time.Sleep(5 * time.Millisecond)
	}
	if o := collected(t, c, name+"open", "resource", "requests"); o != 1 {
		t.Fatalf("two requests in flight of MaxRequests 2: open %v, want 1", o)
	}
	if o := collected(t, c, name+"open", "resource", "connections"); o != 0 {
		t.Fatalf("connections open %v, want 0", o)
	}
	close(release)
	wg.Wait()

	for range 3 {
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		c.RoundTrip(ctx, &Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/503", "t", nil, -1, false)}, 0)
		cancel()
	}
	const ej = "warren_upstream_outlier_ejections_enforced_total"
	if g, x := collected(t, c, ej, "kind", "consecutive_gateway_failure"), collected(t, c, ej, "kind", "consecutive_5xx"); g != 1 || x != 0 {
		t.Fatalf("after three 503s: consecutive_gateway_failure %v, consecutive_5xx %v; want 1 and 0", g, x)
	}
	if p := collected(t, c, ej, "kind", "failure_percentage"); p != 0 {
		t.Fatalf("failure_percentage %v", p)
	}
}

// TestCollectorRetriesUnderBudget: with the retry budget on (the
// default) the retries threshold reported is the budget's, which bounds
// them, not Thresholds.MaxRetries: its admitted retries now (the
// minimum, idle) and the retries in flight.
func TestCollectorRetriesUnderBudget(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	var n sync.Mutex
	seen := 0
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		n.Lock()
		seen++
		first := seen == 1
		n.Unlock()
		if first {
			w.WriteHeader(503)
			return
		}
		<-release
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, BreakerOff: true, OutlierOff: true,
		Thresholds:  Thresholds{MaxRetries: 100},
		RetryBudget: RetryBudgetConfig{Percent: 20, MinConcurrency: 7},
		Retry:       RetryPolicy{MaxRetries: 1}, BackoffBase: time.Millisecond})
	const name = "warren_upstream_circuit_breakers_"
	if l, a := collected(t, c, name+"limit", "resource", "retries"), collected(t, c, name+"active", "resource", "retries"); l != 7 || a != 0 {
		t.Fatalf("idle: retries limit %v active %v, want the budget's minimum 7 and 0", l, a)
	}
	done := make(chan struct{})
	go func() {
		defer close(done)
		get(t, c, "/r")
	}()
	deadline := time.Now().Add(10 * time.Second)
	for collected(t, c, name+"active", "resource", "retries") != 1 {
		if time.Now().After(deadline) {
			t.Fatal("the retry never in flight on the gauge")
		}
		time.Sleep(5 * time.Millisecond)
	}
	close(release)
	<-done
}
