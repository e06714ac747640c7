package upstream

import (
	"encoding/json"
	"net/http"
)

// AdminRoutes returns the admin endpoints of clusters, for
// admin.Config.Routes (or stack.Stack.AddRoute):
//
//	GET  /api/upstream                               every cluster's ClusterStats, hosts and states, as JSON
//	POST /api/upstream/{cluster}/hosts/{host}/drain    take a host out of rotation (in-flight requests finish, idle connections close)
//	POST /api/upstream/{cluster}/hosts/{host}/undrain  put it back
//
// {host} is the host's "host:port" as configured.
func AdminRoutes(clusters ...*Cluster) map[string]http.Handler {
	find := func(w http.ResponseWriter, r *http.Request) (*Cluster, int) {
		for _, c := range clusters {
			if c.name == r.PathValue("cluster") {
				if i := c.HostIndex(r.PathValue("host")); i >= 0 {
					return c, i
				}
			}
		}
		http.Error(w, "no such cluster or host\n", http.StatusNotFound)
		return nil, -1
	}
	return map[string]http.Handler{
		"GET /api/upstream": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			out := make([]ClusterStats, 0, len(clusters))
			for _, c := range clusters {
				out = append(out, c.Stats())
			}
			w.Header().Set("Content-Type", "application/json")
			enc := json.NewEncoder(w)
			enc.SetIndent("", "  ")
			enc.Encode(map[string]any{"clusters": out})
		}),
		"POST /api/upstream/{cluster}/hosts/{host}/drain": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, i := find(w, r); c != nil {
				c.Drain(i)
				w.Write([]byte("draining\n"))
			}
		}),
		"POST /api/upstream/{cluster}/hosts/{host}/undrain": http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			if c, i := find(w, r); c != nil {
				c.Undrain(i)
				w.Write([]byte("in rotation\n"))
			}
		}),
	}
}
