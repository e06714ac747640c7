package upstreamtls_test

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// A cluster with an https:// host: the Dialer fills DialTLS, verifying
// the backend against the given roots (upstreamtls.New reads them, and a
// client certificate, from files).
func ExampleDialer() {
	backend := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.WriteString(w, "hello over "+tls.VersionName(r.TLS.Version))
	}))
	defer backend.Close()
	roots := x509.NewCertPool()
	roots.AddCert(backend.Certificate())

	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	d := upstreamtls.NewFromTLS(&tls.Config{RootCAs: roots, ClientSessionCache: tls.NewLRUClientSessionCache(64)}, upstreamtls.Config{})
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}, DialTLS: d.Handler})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	head := upstream.AppendRequestHead(nil, "GET", "/", "api.internal", nil, -1, false)
	resp, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
	if err != nil {
		fmt.Println(err)
		return
	}
	fmt.Println(resp.Status, string(resp.Body), cl.Stats().TLSHandshakes)
	// Output: 200 hello over TLS 1.3 1
}
