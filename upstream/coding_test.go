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

// TestResponseTrailers: the trailer fields of a chunked response reach a
// TrailerHandler (RoundTrip's collector here), after the body; a response
// without any has none.
func TestResponseTrailers(t *testing.T) {
	e := startEngine(t)
	b := startRawBackend(t, func(conn net.Conn, n int64, reqs <-chan *http.Request) {
		for r := range reqs {
			tr := ""
			if r.URL.Path == "/tr" {
				tr = "Grpc-Status: 0\r\nX-Checksum: abc\r\n"
			}
			io.WriteString(conn, "HTTP/1.1 200 OK\r\nTransfer-Encoding: chunked\r\nTrailer: X-Checksum\r\n\r\n2\r\nok\r\n0\r\n"+tr+"\r\n")
		}
	})
	c := newTestCluster(t, e, ClusterConfig{Hosts: []string{b.addr}})
	r, err := get(t, c, "/tr")
	if err != nil || string(r.Body) != "ok" || len(r.Trailer) != 2 || string(r.Trailer[0].Name) != "Grpc-Status" ||
		string(r.Trailer[1].Value) != "abc" {
		t.Fatalf("%+v, %v", r, err)
	}
	r, err = get(t, c, "/none")
	if err != nil || string(r.Body) != "ok" || r.Trailer != nil {
		t.Fatalf("no trailers: %+v, %v", r, err)
	}
}
