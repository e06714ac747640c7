package upstream

import (
	"errors"
	"io"
	"net"
	"net/http"
	"testing"
)

// TestTransferCodingRefused: a response body in a coding other than
// chunked fails as FailBadResponse with ErrTransferCoding (the cluster
// would otherwise hand gzip bytes to the caller as plain ones); the same
// backend's plain chunked answer goes through.
func TestTransferCodingRefused(t *testing.T) {
	e := startEngine(t)
	b := startRawBackend(t, func(conn net.Conn, n int64, reqs <-chan *http.Request) {
		for r := range reqs {
			te := "chunked"
			if r.URL.Path == "/gzip" {
				te = "gzip, chunked"
			}
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: "+te+"\r\n\r\n2\r\nok\r\n0\r\n\r\n")
		}
	})
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}, Retry: RetryPolicy{MaxRetries: -1}})
	_, err := get(t, c, "/gzip")
	var ue *Error
	if !errors.As(err, &ue) || ue.Failure != FailBadResponse || !errors.Is(err, ErrTransferCoding) {
		t.Fatalf("gzip, chunked: %v", err)
	}
	r, err := get(t, c, "/plain")
	if err != nil || r.Status != 200 || string(r.Body) != "ok" {
		t.Fatalf("chunked: %+v, %v", r, err)
	}
}
