package upstream

import (
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// TestHealthCheckerFakeTime drives the health checker's decisions with
// fake time, without a check sent: when a check is due (Interval plus a
// jitter below Jitter, never while the last is in flight), and what a run
// of results does to a host (UnhealthyThreshold failures in a row take it
// out, HealthyThreshold passes in a row bring it back, a drained host
// stays out).
func TestHealthCheckerFakeTime(t *testing.T) {
	e := startEngine(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{"127.0.0.1:1", "127.0.0.1:2", "127.0.0.1:3"},
		HostSet: HostSetConfig{PanicThreshold: -1}})
	const interval, jitter = 10 * time.Second, 2 * time.Second
	h := newHealthChecker(c, HealthConfig{Interval: interval, Jitter: jitter, UnhealthyThreshold: 3})
	t0 := time.Unix(1_700_000_000, 0)
	// Intervals and jitter.
	var lo, hi time.Duration = jitter, 0
	now := t0
	for round := range 100 {
		for i := range 3 {
			if !h.due(i, now) {
				t.Fatalf("round %d host %d: not due at its time", round, i)
			}
			if h.due(i, now.Add(time.Hour)) {
				t.Fatalf("round %d host %d: due again while its check is in flight", round, i)
			}
			h.hosts[i].inFlight.Store(false) // the check is done
			j := h.hosts[i].next.Sub(now) - interval
			if j < 0 || j >= jitter {
				t.Fatalf("round %d host %d: next check %v after; want the interval plus [0, %v)", round, i, j+interval, jitter)
			}
			lo, hi = min(lo, j), max(hi, j)
			if h.due(i, now.Add(interval+j-time.Nanosecond)) {
				t.Fatalf("round %d host %d: due before its next time", round, i)
			}
		}
		now = now.Add(interval + jitter)
	}
	if hi-lo < jitter/2 {
		t.Errorf("jitter spread over [%v, %v] in 300 checks; want it spread over [0, %v)", lo, hi, jitter)
	}
	// Defaults: a tenth of the interval; negative: none.
	if h := newHealthChecker(c, HealthConfig{Interval: interval}); h.cfg.Jitter != interval/10 || h.cfg.Timeout != time.Second ||
		h.cfg.UnhealthyThreshold != 2 || h.cfg.HealthyThreshold != 2 {
		t.Errorf("defaults: %+v", h.cfg)
	}
	h0 := newHealthChecker(c, HealthConfig{Interval: interval, Jitter: -1})
	for range 10 {
		h0.hosts[0].inFlight.Store(false)
		if !h0.due(0, now) || h0.hosts[0].next != now.Add(interval) {
			t.Fatalf("no jitter: next %v after", h0.hosts[0].next.Sub(now))
		}
		now = now.Add(interval)
	}

	// Thresholds: 3 failures in a row take host 0 out; a pass between
	// failures starts the count again.
	fail := func(n int) {
		for range n {
			h.result(0, false)
		}
	}
	fail(2)
	h.result(0, true)
	fail(2)
	if !c.set.Healthy(0) {
		t.Fatal("unhealthy after 2 failures in a row; the threshold is 3")
	}
	fail(1)
	if c.set.Healthy(0) || c.set.Available(0) {
		t.Fatal("healthy after 3 failures in a row")
	}
	h.result(0, true)
	if c.set.Healthy(0) {
		t.Fatal("healthy after 1 pass; the threshold is 2")
	}
	h.result(0, true)
	if !c.set.Healthy(0) || !c.set.Available(0) {
		t.Fatal("unhealthy after 2 passes in a row")
	}
	// A drained host that passes its checks stays out of rotation.
	fail(3)
	c.Drain(0)
	h.result(0, true)
	h.result(0, true)
	if !c.set.Healthy(0) || c.set.Available(0) {
		t.Fatalf("drained host after 2 passes: healthy %v, available %v; want healthy, not available", c.set.Healthy(0), c.set.Available(0))
	}
	c.Undrain(0)
	if !c.set.Available(0) {
		t.Fatal("not available after undrain")
	}
	if st := c.Stats().Hosts[0]; st.HealthFail != 8 || st.HealthOK != 5 {
		t.Errorf("health counters: %d failed, %d passed; want 8, 5", st.HealthFail, st.HealthOK)
	}
}

// TestClusterHealthTCP: a TCP check (no Path) is a connect: a host that
// accepts stays healthy without seeing a request; one that refuses goes
// out of rotation after UnhealthyThreshold checks.
func TestClusterHealthTCP(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(hello))
	dead := testutil.RefusedAddr(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr, dead}, OutlierOff: true,
		Health: HealthConfig{Interval: 50 * time.Millisecond}})
	testutil.Eventually(t, 0, "the refusing host unhealthy", func() bool { return !c.set.Healthy(1) })
	testutil.Eventually(t, 0, "passed checks of the live host", func() bool { return c.Stats().Hosts[0].HealthOK >= 3 })
	st := c.Stats()
	if !st.Hosts[0].Healthy || st.Hosts[0].HealthFail != 0 || st.Hosts[1].HealthFail < 2 {
		t.Errorf("hosts: %+v", st.Hosts)
	}
	if n := b.requests.Load(); n != 0 || b.accepted.Load() < 3 {
		t.Errorf("the live host saw %d requests and %d connections; want none, and a connection per check", n, b.accepted.Load())
	}
}

// TestClusterHealthTimeout: an HTTP check whose host accepts but never
// answers fails after Health.Timeout, and the host goes out of rotation.
func TestClusterHealthTimeout(t *testing.T) {
	e := startEngine(t)
	addr, accepted := holdingListener(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{addr}, OutlierOff: true,
		HostSet: HostSetConfig{PanicThreshold: -1},
		Health:  HealthConfig{Interval: 50 * time.Millisecond, Timeout: 100 * time.Millisecond, Path: "/healthz"}})
	testutil.Eventually(t, 0, "the silent host unhealthy", func() bool { return !c.set.Healthy(0) })
	if st := c.Stats().Hosts[0]; st.HealthFail < 2 || st.HealthOK != 0 {
		t.Errorf("health counters: %d failed, %d passed", st.HealthFail, st.HealthOK)
	}
	if accepted.Load() < 2 {
		t.Errorf("%d checks connected; the failures are the timeouts of checks that did", accepted.Load())
	}
}

// TestClusterHealthTimeoutFakeTime: a check's timeout runs on the engine's
// clock: a silent host's checks fail only as the clock passes their
// deadline, and the host goes out of rotation after UnhealthyThreshold
// of them, with no wall-clock wait for the timeout (a minute).
func TestClusterHealthTimeoutFakeTime(t *testing.T) {
	clk := testutil.NewFakeClock()
	e := testutil.StartEngine(t, engine.Config{Loops: 1, Clock: clk})
	addr, accepted := holdingListener(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{addr}, OutlierOff: true, Timeout: -1,
		Health: HealthConfig{Interval: time.Second, Timeout: time.Minute, Jitter: -1, Path: "/healthz"}})
	fails := func() uint64 { return c.Stats().Hosts[0].HealthFail }
	testutil.Eventually(t, 0, "the first check connected", func() bool { return accepted.Load() == 1 })
	time.Sleep(300 * time.Millisecond) // three maintenance ticks with the clock stopped
	if n := fails(); n != 0 || accepted.Load() != 1 {
		t.Fatalf("%d failed checks, %d connections with the clock stopped; want 0, 1", n, accepted.Load())
	}
	clk.Advance(time.Minute - time.Millisecond)
	time.Sleep(300 * time.Millisecond)
	if n := fails(); n != 0 {
		t.Fatalf("%d failed checks before the timeout", n)
	}
	clk.Advance(time.Millisecond)
	testutil.Eventually(t, 0, "the first check timed out", func() bool { return fails() == 1 })
	testutil.Eventually(t, 0, "the next check connected", func() bool { return accepted.Load() == 2 })
	if !c.set.Healthy(0) {
		t.Fatal("unhealthy after one failed check; the threshold is 2")
	}
	clk.Advance(time.Minute)
	testutil.Eventually(t, 0, "unhealthy after the second timeout", func() bool { return !c.set.Healthy(0) })
	if n := fails(); n != 2 {
		t.Errorf("%d failed checks; want 2", n)
	}
}
