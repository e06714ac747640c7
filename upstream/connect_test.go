package upstream

import (
	"errors"
	"net"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// stuckHandshake stands for a TLS layer whose handshake never completes:
// it never opens the connection for the handler it wraps, and passes the
// close on.
type stuckHandshake struct {
	engine.NopHandler
	h engine.Handler
}

func (s *stuckHandshake) Inline() bool { return true }

func (s *stuckHandshake) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	s.h.(engine.CloseHandler).OnClose(c, r, err)
}

// holdingListener accepts connections and holds them without a byte, until
// the test ends; it returns its address and a count of the connections
// accepted.
func holdingListener(t *testing.T) (string, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	held := make(chan net.Conn, 1024)
	var accepted atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			accepted.Add(1)
			select {
			case held <- c:
			default:
				c.Close()
			}
		}
	}()
	t.Cleanup(func() {
		ln.Close()
		for {
			select {
			case c := <-held:
				c.Close()
			default:
				return
			}
		}
	})
	return ln.Addr().String(), &accepted
}

// TestClusterConnectTimeout: a connect whose handshake never completes
// fails after PoolConfig.ConnectTimeout as a connect failure (502
// connect_failure) whose cause says it timed out, not that the
// connection closed.
func TestClusterConnectTimeout(t *testing.T) {
	e := startEngine(t)
	addr, accepted := holdingListener(t)
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{"https://" + addr}, OutlierOff: true,
		Retry: RetryPolicy{MaxRetries: -1}, Pool: PoolConfig{ConnectTimeout: 200 * time.Millisecond},
		DialTLS: func(_ string, h engine.Handler) engine.Handler { return &stuckHandshake{h: h} }})
	_, err := get(t, c, "/")
	if FailureOf(err) != FailConnect || FailureOf(err).Status() != 502 {
		t.Fatalf("err = %v; want a connect failure (502)", err)
	}
	if !strings.Contains(err.Error(), "connect timed out") || !errors.Is(err, ErrConnectTimeout) {
		t.Errorf("err = %v; want its cause to be the connect timeout", err)
	}
	if st := c.Stats(); st.CxConnectFail != 1 || st.TLSHandshakeFail != 0 {
		t.Errorf("connect failures %d, TLS handshake failures %d; want 1, 0", st.CxConnectFail, st.TLSHandshakeFail)
	}
	if accepted.Load() != 1 {
		t.Errorf("the backend accepted %d connections; want 1, cut by the timeout", accepted.Load())
	}
}
