package prefork

import (
	"context"
	"encoding/json"
	"fmt"
	"html"
	"net/http"
	"sort"
	"strconv"
	"sync"
	"time"

	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"
)

// AdminHandler serves the parent's admin endpoint:
//
//	GET /metrics   every worker's metrics merged, each sample labelled
//	               worker="N", plus warren_prefork_workers_up and
//	               warren_prefork_restarts_total{worker}
//	GET /workers   the workers as JSON (pid, admin address, restarts, up)
//	GET /healthz   200 while the supervisor runs
//	GET /readyz    200 when every worker is up and reported its admin
//	               listener, else 503
//	GET /          a page linking each worker's own dashboard
func (s *Supervisor) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	client := &http.Client{Timeout: 3 * time.Second}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		fams := s.gather(r.Context(), client)
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			enc.Encode(f)
		}
	})
	mux.HandleFunc("GET /workers", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "application/json")
		json.NewEncoder(w).Encode(s.Workers())
	})
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) { w.Write([]byte("ok\n")) })
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		for _, wi := range s.Workers() {
			if !wi.Up || wi.Admin == "" {
				http.Error(w, fmt.Sprintf("worker %d not ready", wi.Index), http.StatusServiceUnavailable)
				return
			}
		}
		w.Write([]byte("ok\n"))
	})
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/html; charset=utf-8")
		fmt.Fprintf(w, "<!doctype html><title>warren prefork</title><h1>warren: %d workers on %s</h1><ul>",
			len(s.Workers()), html.EscapeString(s.addr))
		for _, wi := range s.Workers() {
			fmt.Fprintf(w, `<li>worker %d, pid %d, up %v, restarts %d: <a href="http://%s/">dashboard</a></li>`,
				wi.Index, wi.PID, wi.Up, wi.Restarts, html.EscapeString(wi.Admin))
		}
		fmt.Fprint(w, "</ul><p><a href=\"/metrics\">merged metrics</a> · <a href=\"/workers\">workers</a></p>")
	})
	return mux
}

// gather scrapes every worker concurrently and merges the families.
func (s *Supervisor) gather(ctx context.Context, client *http.Client) []*dto.MetricFamily {
	workers := s.Workers()
	var mu sync.Mutex
	merged := map[string]*dto.MetricFamily{}
	var wg sync.WaitGroup
	for _, wi := range workers {
		if wi.Admin == "" || !wi.Up {
			continue
		}
		wg.Add(1)
		go func(wi WorkerInfo) {
			defer wg.Done()
			req, _ := http.NewRequestWithContext(ctx, "GET", "http://"+wi.Admin+"/metrics", nil)
			resp, err := client.Do(req)
			if err != nil {
				return
			}
			defer resp.Body.Close()
			p := expfmt.NewTextParser(model.UTF8Validation)
			fams, err := p.TextToMetricFamilies(resp.Body)
			if err != nil {
				return
			}
			label := &dto.LabelPair{Name: proto.String("worker"), Value: proto.String(strconv.Itoa(wi.Index))}
			mu.Lock()
			defer mu.Unlock()
			for name, f := range fams {
				for _, m := range f.Metric {
					m.Label = append(m.Label, label)
				}
				if have := merged[name]; have != nil {
					have.Metric = append(have.Metric, f.Metric...)
				} else {
					merged[name] = f
				}
			}
		}(wi)
	}
	wg.Wait()
	up := 0.0
	restarts := &dto.MetricFamily{Name: proto.String("warren_prefork_restarts_total"),
		Help: proto.String("Worker restarts after an unexpected exit."), Type: dto.MetricType_COUNTER.Enum()}
	for _, wi := range workers {
		if wi.Up {
			up++
		}
		restarts.Metric = append(restarts.Metric, &dto.Metric{
			Label:   []*dto.LabelPair{{Name: proto.String("worker"), Value: proto.String(strconv.Itoa(wi.Index))}},
			Counter: &dto.Counter{Value: proto.Float64(float64(wi.Restarts))},
		})
	}
	merged["warren_prefork_restarts_total"] = restarts
	merged["warren_prefork_workers_up"] = &dto.MetricFamily{Name: proto.String("warren_prefork_workers_up"),
		Help: proto.String("Worker processes running."), Type: dto.MetricType_GAUGE.Enum(),
		Metric: []*dto.Metric{{Gauge: &dto.Gauge{Value: proto.Float64(up)}}}}
	names := make([]string, 0, len(merged))
	for n := range merged {
		names = append(names, n)
	}
	sort.Strings(names)
	out := make([]*dto.MetricFamily, len(names))
	for i, n := range names {
		out[i] = merged[n]
	}
	return out
}
