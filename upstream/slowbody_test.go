package upstream

import (
	"io"
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/http1"
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

// pausingCollector pauses the upstream connection at the first piece of
// body and never resumes it: a caller whose own client reads slowly.
type pausingCollector struct {
	err  error
	done chan struct{}
}

func (k *pausingCollector) OnResponse(x *Exchange, resp *http1.Response) {}

func (k *pausingCollector) OnBody(x *Exchange, data []byte) {
	if uc := x.Conn(); uc != nil {
		uc.PauseRead()
	}
}

func (k *pausingCollector) OnDone(x *Exchange, err error) {
	k.err = err
	close(k.done)
}

// TestSlowResponseReaderNotBackendFailure: a request that times out while
// its caller holds the response back (backpressure from a slow client
// downloading a large body) counts neither way in the breaker: the
// backend answered, and the status the client got was its. Before, six
// slow downloads opened the breaker for everyone.
func TestSlowResponseReaderNotBackendFailure(t *testing.T) {
	e := startEngine(t)
	big := make([]byte, 8<<20)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: 150 * time.Millisecond,
		Breaker: BreakerConfig{ConsecutiveFailures: 2}})
	for i := range 4 {
		k := &pausingCollector{done: make(chan struct{})}
		c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/big", "x", nil, -1, false), Handler: k})
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never ended", i)
		}
		if FailureOf(k.err) != FailTimeout {
			t.Fatalf("request %d: %v; want a timeout", i, k.err)
		}
	}
	if st := c.Stats(); st.BreakerState != "closed" {
		t.Fatalf("breaker %s after four slow readers", st.BreakerState)
	}
	if r, err := get(t, c, "/ok"); err != nil || r.Status != 200 {
		t.Fatalf("a GET after the slow readers: %v %+v", err, r)
	}
}

// TestPerTryTimeoutNotAfterHead: once the handler has the response head
// the per-try timeout no longer applies (the attempt can no longer be
// retried; the overall timeout bounds the body): a caller holding the
// response back (a slow reader) makes the connection silent, and the
// per-try timeout used to cut such downloads and count them against the
// host, ejecting a healthy backend.
func TestPerTryTimeoutNotAfterHead(t *testing.T) {
	e := startEngine(t)
	big := make([]byte, 8<<20)
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/big" {
			w.Write(big)
			return
		}
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Timeout: 300 * time.Millisecond, PerTryTimeout: 30 * time.Millisecond,
		Outlier: OutlierConfig{Consecutive5xx: 2, ConsecutiveGatewayFailure: 2, MaxEjectionPercent: 100}})
	for i := range 3 {
		k := &pausingCollector{done: make(chan struct{})}
		c.Do(&Request{Method: "GET", Head: AppendRequestHead(nil, "GET", "/big", "x", nil, -1, false), Handler: k})
		select {
		case <-k.done:
		case <-time.After(10 * time.Second):
			t.Fatalf("request %d never ended", i)
		}
		if FailureOf(k.err) != FailTimeout {
			t.Fatalf("request %d: %v; want the overall timeout", i, k.err)
		}
	}
	st := c.Stats()
	if st.RqPerTryTimeout != 0 || st.Hosts[0].Ejected || st.RqTimeout != 3 {
		t.Fatalf("per-try timeouts %d, overall %d, ejected %v after three slow readers", st.RqPerTryTimeout, st.RqTimeout, st.Hosts[0].Ejected)
	}
}
