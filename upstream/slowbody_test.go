package upstream

import (
	"io"
	"net/http"
	"testing"
	"time"
)

// TestSlowRequestBodyNotBackendFailure: a streamed request body the
// caller stops sending (a proxy's client that trickles or stalls its
// upload) times out, but the silence is the caller's: it counts neither
// against the breaker nor, through the per-try timeout, against the host
// in outlier detection. Before, five stalled uploads opened the cluster's
// breaker (every client then got 503 breaker_open) and ejected a healthy
// backend.
func TestSlowRequestBodyNotBackendFailure(t *testing.T) {
	e := startEngine(t)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
	}))
	for _, perTry := range []time.Duration{0, 40 * time.Millisecond} {
		c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: 150 * time.Millisecond, PerTryTimeout: perTry,
			Breaker: BreakerConfig{ConsecutiveFailures: 2}, Outlier: OutlierConfig{Consecutive5xx: 2, ConsecutiveGatewayFailure: 2}})
		for i := range 4 {
			col := &collector{done: make(chan struct{}), max: 1 << 20}
			head := AppendRequestHead(nil, "POST", "/up", "x", nil, 100, false)
			x := c.Do(&Request{Method: "POST", Head: head, Stream: true, Handler: col})
			x.Write([]byte("abc")) // and nothing more
			select {
			case <-col.done:
			case <-time.After(10 * time.Second):
				t.Fatalf("per-try %v, request %d: never ended", perTry, i)
			}
			if FailureOf(col.err) != FailTimeout {
				t.Fatalf("per-try %v, request %d: %v; want a timeout", perTry, i, col.err)
			}
		}
		st := c.Stats()
		if st.BreakerState != "closed" || st.Hosts[0].Ejected || st.RqPerTryTimeout != 0 {
			t.Fatalf("per-try %v: breaker %s, ejected %v, per-try timeouts %d after four stalled uploads",
				perTry, st.BreakerState, st.Hosts[0].Ejected, st.RqPerTryTimeout)
		}
		if r, err := get(t, c, "/ok"); err != nil || r.Status != 200 {
			t.Fatalf("per-try %v: a GET after the stalled uploads: %v %+v", perTry, err, r)
		}
	}
}
