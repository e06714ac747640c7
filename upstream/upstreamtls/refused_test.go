package upstreamtls_test

import (
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// TestRefused: an https host that refuses connections fails each request
// at once as a connect failure, as a plain one does, and gives its
// connection slot back: the next request dials again.
func TestRefused(t *testing.T) {
	addr := testutil.RefusedAddr(t)
	e := startEngine(t)
	cl, _ := newCluster(t, e, upstream.ClusterConfig{Hosts: []string{"https://" + addr},
		Retry: upstream.RetryPolicy{MaxRetries: -1}, Pool: upstream.PoolConfig{PendingTimeout: time.Minute}}, upstreamtls.Config{})
	for i := 1; i <= 3; i++ {
		_, err := get(t, cl, "/")
		var ue *upstream.Error
		if !errorsAs(err, &ue) || ue.Failure != upstream.FailConnect {
			t.Fatalf("request %d: %v, want a connect failure", i, err)
		}
		// The failed connection's counters settle on its loop, which may
		// be just after the request's answer reached this goroutine.
		st := cl.Stats()
		for end := time.Now().Add(5 * time.Second); (st.CxConnectFail != uint64(i) || st.CxActive != 0) && time.Now().Before(end); st = cl.Stats() {
			time.Sleep(time.Millisecond)
		}
		if st.CxTotal != uint64(i) || st.CxConnectFail != uint64(i) || st.CxActive != 0 || st.TLSHandshakeFail != 0 {
			t.Fatalf("request %d: %d dialled, %d failed, %d active, %d handshakes failed; want %d, %d, 0, 0",
				i, st.CxTotal, st.CxConnectFail, st.CxActive, st.TLSHandshakeFail, i, i)
		}
	}
}
