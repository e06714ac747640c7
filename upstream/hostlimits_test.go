package upstream

import (
	"context"
	"errors"
	"io"
	"net/http"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// gauge counts something in progress and remembers its peak.
type gauge struct{ now, peak atomic.Int64 }

func (g *gauge) inc() {
	n := g.now.Add(1)
	for {
		m := g.peak.Load()
		if n <= m || g.peak.CompareAndSwap(m, n) {
			return
		}
	}
}

func (g *gauge) dec() { g.now.Add(-1) }

// blockingBackend answers "ok" once release is closed (or gives up when
// the client goes), counting the requests it holds at once.
func blockingBackend(t *testing.T, release chan struct{}, inFlight *gauge) *backend {
	return startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		inFlight.inc()
		defer inFlight.dec()
		select {
		case <-release:
			io.WriteString(w, "ok")
		case <-r.Context().Done(): // the client closed the connection
		}
	}))
}

// waitUntil polls cond for up to 10 s.
func waitUntil(t *testing.T, what string, cond func() bool) {
	t.Helper()
	deadline := time.Now().Add(10 * time.Second)
	for !cond() {
		if time.Now().After(deadline) {
			t.Fatalf("timed out waiting for %s", what)
		}
		time.Sleep(2 * time.Millisecond)
	}
}

// launchGets starts n GETs and returns a function that waits for them
// and tells their errors apart by Reason.
func launchGets(t *testing.T, c *Cluster, n int) (wait func() map[string]int) {
	var wg sync.WaitGroup
	var mu sync.Mutex
	got := map[string]int{}
	for range n {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r, err := get(t, c, "/")
			k := "ok"
			var e *Error
			switch {
			case err == nil && r.Status == 200:
			case errors.As(err, &e):
				k = e.Failure.String() + "/" + e.Reason.String()
			default:
				k = "other"
				t.Log(err)
			}
			mu.Lock()
			got[k]++
			mu.Unlock()
		}()
	}
	return func() map[string]int { wg.Wait(); return got }
}

// TestHostMaxRequests: with two slow hosts capped at 3 requests each (2
// connections, the third waiting), ten concurrent requests put 3 on each
// host and refuse 4 at once with ReasonHostMaxRequests; neither backend
// ever sees more than 2 connections or 2 requests, and the counters
// return to zero.
func TestHostMaxRequests(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	var g1, g2 gauge
	b1, b2 := blockingBackend(t, release, &g1), blockingBackend(t, release, &g2)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b1.addr, b2.addr}, BreakerOff: true, OutlierOff: true,
		Balancer: BalanceRoundRobin, Pool: PoolConfig{MaxConnsPerHost: 2, MaxPendingPerHost: 8, MaxRequestsPerHost: 3}})
	wait := launchGets(t, c, 6)
	waitUntil(t, "4 requests at the backends and 2 waiting", func() bool {
		return g1.now.Load()+g2.now.Load() == 4 && c.Stats().RqPendingActive == 2
	})
	wait2 := launchGets(t, c, 4)
	got2 := wait2() // refused at once
	if got2["overflow/host_max_requests"] != 4 {
		t.Errorf("extra requests: %v; want 4 refused with host_max_requests", got2)
	}
	close(release)
	got := wait()
	if got["ok"] != 6 {
		t.Errorf("first requests: %v; want 6 ok", got)
	}
	for i, b := range []*backend{b1, b2} {
		if m := b.maxOpen.Load(); m > 2 {
			t.Errorf("backend %d saw %d connections at once; the host bound is 2", i, m)
		}
	}
	if p1, p2 := g1.peak.Load(), g2.peak.Load(); p1 > 2 || p2 > 2 {
		t.Errorf("backends held %d and %d requests at once; want ≤ 2 each", p1, p2)
	}
	st := c.Stats()
	if st.HostOverflow["requests"] != 4 || st.RqFailures["overflow"] != 4 {
		t.Errorf("host overflow %v, failures %v; want 4 requests refused", st.HostOverflow, st.RqFailures)
	}
	if st.HostLimits["requests"] != 3 || st.HostLimits["connections"] != 2 {
		t.Errorf("host limits %v", st.HostLimits)
	}
	waitUntil(t, "assigned requests back to 0", func() bool {
		return c.hosts[0].requests.Load() == 0 && c.hosts[1].requests.Load() == 0
	})
}

// TestHostMaxPendingAndConnections: one host capped at 1 connection and 2
// waiting requests: of 5 concurrent requests 1 is on the connection, 2
// wait (each counted against the connection cap) and 2 are refused with
// ReasonHostMaxPending.
func TestHostMaxPendingAndConnections(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	var g gauge
	b := blockingBackend(t, release, &g)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, BreakerOff: true, OutlierOff: true,
		Pool: PoolConfig{MaxConnsPerHost: 1, MaxPendingPerHost: 2, MaxRequestsPerHost: -1}})
	wait := launchGets(t, c, 1)
	waitUntil(t, "1 request at the backend", func() bool { return g.now.Load() == 1 })
	wait2 := launchGets(t, c, 2)
	waitUntil(t, "2 waiting", func() bool { return c.Stats().RqPendingActive == 2 })
	got3 := launchGets(t, c, 2)()
	if got3["overflow/host_max_pending"] != 2 {
		t.Errorf("refused: %v; want 2 with host_max_pending", got3)
	}
	close(release)
	if got, got2 := wait(), wait2(); got["ok"] != 1 || got2["ok"] != 2 {
		t.Errorf("served: %v %v", got, got2)
	}
	st := c.Stats()
	h := st.Hosts[0]
	if h.Overflow["pending"] != 2 || h.Overflow["connections"] < 2 || h.Overflow["requests"] != 0 {
		t.Errorf("host overflow %v; want pending 2, connections ≥ 2", h.Overflow)
	}
	if m := b.maxOpen.Load(); m != 1 {
		t.Errorf("backend saw %d connections at once; want 1", m)
	}
	if h.Assigned != 0 || st.HostLimits["requests"] != -1 {
		t.Errorf("assigned %d, limits %v", h.Assigned, st.HostLimits)
	}
}

// TestHostMaxRetries: with MaxRetriesPerHost 1, the retries of requests
// that failed (a 503, retried on 5xx) never run two at once on the host,
// as seen by the backend: the first retry holds the host's place until the
// backend answers it, the others are refused at once with
// ReasonHostMaxRetries (one host: nowhere else to go), counted per host.
func TestHostMaxRetries(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	var retrying gauge
	var mu sync.Mutex
	seen := map[string]bool{}
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		id := r.Header.Get("X-Id")
		mu.Lock()
		again := seen[id]
		seen[id] = true
		mu.Unlock()
		if !again {
			w.WriteHeader(503) // the first attempt fails
			return
		}
		retrying.inc()
		defer retrying.dec()
		select {
		case <-release:
			io.WriteString(w, "ok")
		case <-r.Context().Done():
		}
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true, BreakerOff: true,
		Retry:       RetryPolicy{On: RetryOn5xx, MaxRetries: 1},
		RetryBudget: RetryBudgetConfig{Percent: 100, MinConcurrency: 10},
		Pool:        PoolConfig{MaxRetriesPerHost: 1}})
	const n = 4
	errs := make(chan error, n)
	for i := range n {
		go func() {
			head := AppendRequestHead(nil, "GET", "/", "t", []string{"X-Id", string(rune('a' + i))}, -1, false)
			ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
			defer cancel()
			_, err := c.RoundTrip(ctx, &Request{Method: "GET", Head: head}, 0)
			errs <- err
		}()
	}
	var refused int
	for refused < n-1 {
		err := <-errs
		var ue *Error
		if !errors.As(err, &ue) || ue.Failure != FailOverflow || ue.Reason != ReasonHostMaxRetries {
			t.Fatalf("got %v; want a refusal for host_max_retries while one retry holds the host", err)
		}
		refused++
	}
	if st := c.Stats(); st.Hosts[0].Retrying != 1 || st.Hosts[0].Overflow["retries"] != n-1 || st.HostLimits["retries"] != 1 {
		t.Errorf("rq_retrying %d, overflow[retries] %d, host_limits[retries] %d; want 1, %d, 1",
			st.Hosts[0].Retrying, st.Hosts[0].Overflow["retries"], st.HostLimits["retries"], n-1)
	}
	close(release)
	if err := <-errs; err != nil {
		t.Fatalf("the retry that held the host: %v", err)
	}
	if p := retrying.peak.Load(); p != 1 {
		t.Errorf("backend saw %d retries at once; want 1", p)
	}
	waitUntil(t, "the retry's place given back", func() bool { return c.Stats().Hosts[0].Retrying == 0 })
}
