package proxy

import (
	"fmt"
	"io"
	"net/http"
	"testing"

	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/upstream"
)

// TestProxyHashHeader: with a ring hash or Maglev cluster and HashHeader,
// the header's value is the affinity key, on the proxy's listener and
// through Forward: one client (one address, as behind a load balancer)
// sending many device ids reaches several backends, each id always the
// same one; a request without the header is hashed by the client
// address. Before HashHeader every request of the client went to one
// backend, and Forward hashed nothing.
func TestProxyHashHeader(t *testing.T) {
	for _, bal := range []upstream.BalancerKind{upstream.BalanceRingHash, upstream.BalanceMaglev} {
		for _, path := range []string{"listener", "forward"} {
			t.Run(bal.String()+"/"+path, func(t *testing.T) {
				e := startEngine(t)
				var hosts []string
				for i := range 3 {
					addr, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
						fmt.Fprintf(w, "backend-%d", i)
					}))
					hosts = append(hosts, addr)
				}
				ccfg := upstream.ClusterConfig{Hosts: hosts, Balancer: bal}
				pcfg := Config{HashClient: true, HashHeader: "X-Device-Id"}
				var paddr string
				if path == "listener" {
					paddr, _ = startProxy(t, e, ccfg, pcfg)
				} else {
					cl, err := upstream.NewCluster(e, ccfg)
					if err != nil {
						t.Fatal(err)
					}
					t.Cleanup(func() { cl.Close() })
					p := New(e, cl, pcfg)
					t.Cleanup(p.Close)
					r := http1.NewRouter()
					r.NotFound = p.Forward()
					srv, _ := http1.NewServer(e, http1.Config{}, r)
					ln, err := srv.Listen("127.0.0.1:0")
					if err != nil {
						t.Fatal(err)
					}
					paddr = ln.Addr().String()
				}
				get := func(device string) string {
					req, _ := http.NewRequest("GET", "http://"+paddr+"/x", nil)
					if device != "" {
						req.Header.Set("X-Device-Id", device)
					}
					resp, err := http.DefaultClient.Do(req)
					if err != nil {
						t.Fatal(err)
					}
					defer resp.Body.Close()
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 {
						t.Fatalf("%s: %d %s", device, resp.StatusCode, b)
					}
					return string(b)
				}
				seen := map[string]bool{}
				for i := range 40 {
					dev := fmt.Sprintf("dev-%d", i)
					first := get(dev)
					seen[first] = true
					for range 2 {
						if again := get(dev); again != first {
							t.Fatalf("%s went to %s, then %s", dev, first, again)
						}
					}
				}
				if len(seen) < 2 {
					t.Fatalf("40 device ids from one client all went to %v: the header is not the key", seen)
				}
				anon := get("")
				for range 5 {
					if again := get(""); again != anon {
						t.Fatalf("requests without the header went to %s, then %s", anon, again)
					}
				}
			})
		}
	}
}
