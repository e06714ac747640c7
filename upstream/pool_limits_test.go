package upstream

import (
	"errors"
	"io"
	"net/http"
	"strconv"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testutil"
)

// TestClusterPendingTimeout: a request that waits PoolConfig.PendingTimeout
// for a connection of a full host fails with pending_timeout (503) and is
// counted; the request holding the connection is not disturbed.
func TestClusterPendingTimeout(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true,
		Pool: PoolConfig{MaxConnsPerHost: 1, PendingTimeout: 150 * time.Millisecond}})
	first := make(chan error, 1)
	go func() {
		r, err := get(t, c, "/")
		if err == nil && r.Status != 200 {
			err = errors.New("status " + strconv.Itoa(r.Status))
		}
		first <- err
	}()
	testutil.Eventually(t, 0, "the first request at the backend", func() bool { return b.requests.Load() == 1 })
	_, err := get(t, c, "/")
	if !errors.Is(err, ErrPendingTimeout) || FailureOf(err).Status() != 503 {
		t.Fatalf("second request: %v; want pending_timeout (503)", err)
	}
	close(release)
	if err := <-first; err != nil {
		t.Fatalf("first request: %v", err)
	}
	if st := c.Stats(); st.RqPendingTO != 1 || st.RqPendingActive != 0 || b.accepted.Load() != 1 {
		t.Errorf("pending timeouts %d, pending now %d, connections %d; want 1, 0, 1", st.RqPendingTO, st.RqPendingActive, b.accepted.Load())
	}
}

// TestClusterMaxIdlePerHost: of the connections a burst opened, only
// PoolConfig.MaxIdlePerHost are kept idle when it ends; the others close.
func TestClusterMaxIdlePerHost(t *testing.T) {
	e := startEngine(t)
	release := make(chan struct{})
	b := startBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/hold" {
			<-release
		}
		io.WriteString(w, "ok")
	}))
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, OutlierOff: true,
		Pool: PoolConfig{MaxIdlePerHost: 2}})
	var wg sync.WaitGroup
	errs := make(chan error, 6)
	for range 6 {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if _, err := get(t, c, "/hold"); err != nil {
				errs <- err
			}
		}()
	}
	testutil.Eventually(t, 0, "6 requests at the backend at once", func() bool { return b.requests.Load() == 6 })
	close(release)
	wg.Wait()
	close(errs)
	for err := range errs {
		t.Fatal(err)
	}
	hp := c.hosts[0]
	testutil.Eventually(t, 0, "2 connections kept", func() bool {
		conns, idle, _ := hp.counts()
		return conns == 2 && idle == 2 && b.open.Load() == 2
	})
	if b.accepted.Load() != 6 {
		t.Errorf("the burst opened %d connections; want 6", b.accepted.Load())
	}
	// The kept ones serve the next requests.
	for range 4 {
		if _, err := get(t, c, "/"); err != nil {
			t.Fatal(err)
		}
	}
	if n := b.accepted.Load(); n != 6 {
		t.Errorf("%d connections after the burst; want the 2 kept reused", n)
	}
}
