package prefork

import (
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"html"
	"io"
	"net/http"
	"sort"
	"strconv"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	dto "github.com/prometheus/client_model/go"
	"github.com/prometheus/common/expfmt"
	"github.com/prometheus/common/model"
	"google.golang.org/protobuf/proto"

	"github.com/warrenhq/warren/admin"
)

// AdminHandler serves the parent's admin endpoint:
//
//	GET /metrics   every worker's metrics merged, each sample labelled
//	               worker="N", the parent's own (Config.Collectors)
//	               labelled worker="parent", plus warren_prefork_workers_up,
//	               warren_prefork_restarts_total{worker} and
//	               warren_prefork_scrape_errors_total{worker}
//	GET /debug/conns  the workers' /debug/conns merged (WorkerConnList:
//	               each connection with its worker), the same filters,
//	               sort, offset and limit (offset + limit ≤ 10,000); with
//	               worker=N one worker's answer, cursor paging included;
//	               "partial" when a worker did not answer ("errors") or
//	               left loops out of its walk ("missed_loops", by worker);
//	               the workers are waited for Config.ScrapeTimeout, but
//	               at least a worker's walk turn and a margin
//	               (engine.ConnWalkTurn + 2 s = 7 s), so that a worker
//	               with a busy loop answers partial rather than not at all
//	GET /workers   the workers as JSON (pid, admin address, restarts, up)
//	GET /healthz   200 while the supervisor runs
//	GET /readyz    200 when every worker is up and reported its admin
//	               listener, else 503
//	GET /          a page linking each worker's own dashboard
//	GET /debug/pprof/…  the parent's own runtime profiles (admin.PprofRoutes)
//
// It is guarded as a worker's admin listener is (admin.Guard): with
// Config.AdminToken set, every endpoint but /healthz and /readyz requires
// it as a bearer token; without one, a request that arrives on a loopback
// address must name localhost or an IP literal as its Host; cross-origin
// requests other than GET and HEAD are refused. Serve it with
// admin.NewHTTPServer for the admin listener's timeouts.
//
// /metrics scrapes the workers in parallel, sending them the token, and
// answers within Config.ScrapeTimeout (or the request's own deadline if
// sooner). A worker that has not answered by then, or answered with an
// error, is counted in warren_prefork_scrape_errors_total, and its last
// good answer is served in its place for up to Config.ScrapeStale (the
// same process only: a restarted worker starts from nothing), so that a
// busy worker's counters do not vanish from one scrape and come back in
// the next, which a rate() over the merged series would read as a reset.
// warren_prefork_scrape_age_seconds{worker} says how old each worker's
// series are (0 for a fresh answer); a worker with no answer young
// enough is left out.
func (s *Supervisor) AdminHandler() http.Handler {
	mux := http.NewServeMux()
	client := &http.Client{Transport: &http.Transport{
		// Shorter than the workers' idle timeout (2 min), so that the
		// parent never reuses a connection the worker is closing.
		IdleConnTimeout:     time.Minute,
		MaxIdleConnsPerHost: 2,
		// No gzip over loopback: a worker answering gzip keeps a
		// compressor (about 1–2 MB) pooled between scrapes, which at
		// 100,000 devices on six workers is ≈ 100 B a device.
		DisableCompression: true,
	}}
	mux.HandleFunc("GET /metrics", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), s.cfg.ScrapeTimeout)
		defer cancel()
		fams := s.gather(ctx, client)
		w.Header().Set("Content-Type", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
		enc := expfmt.NewEncoder(w, expfmt.NewFormat(expfmt.TypeTextPlain))
		for _, f := range fams {
			enc.Encode(f)
		}
	})
	mux.HandleFunc("GET /debug/conns", func(w http.ResponseWriter, r *http.Request) {
		ctx, cancel := context.WithTimeout(r.Context(), connsTimeout(s.cfg.ScrapeTimeout))
		defer cancel()
		s.serveConns(ctx, client, w, r)
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
	admin.PprofRoutes(mux) // the parent's own: in warren serve, the embedded NATS server and the directory
	return admin.Guard(mux, admin.GuardConfig{Token: s.cfg.AdminToken})
}

// scrape is one worker's answer to a merged scrape.
type scrape struct {
	text []byte // the worker's /metrics answer, checked to parse
	err  error
}

// scrapeWorker fetches and parses one worker's /metrics.
func (s *Supervisor) scrapeWorker(ctx context.Context, client *http.Client, wi WorkerInfo) scrape {
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+wi.Admin+"/metrics", nil)
	if err != nil {
		return scrape{err: err}
	}
	req.Header.Set("Accept", string(expfmt.NewFormat(expfmt.TypeTextPlain)))
	if s.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return scrape{err: err}
	}
	defer resp.Body.Close()
	if resp.StatusCode != http.StatusOK {
		return scrape{err: fmt.Errorf("%w: %s", errScrapeStatus, resp.Status)}
	}
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxScrape+1))
	if err != nil {
		return scrape{err: err}
	}
	if len(body) > maxScrape {
		return scrape{err: fmt.Errorf("prefork: worker metrics over %d bytes", maxScrape)}
	}
	if _, err := parseScrape(body, wi.Index); err != nil {
		return scrape{err: err}
	}
	return scrape{text: body}
}

// maxScrape bounds one worker's /metrics answer (a worker's is about
// 25 KB).
const maxScrape = 16 << 20

// parseScrape parses a worker's /metrics text and labels every series
// with worker="index".
func parseScrape(text []byte, index int) (map[string]*dto.MetricFamily, error) {
	p := expfmt.NewTextParser(model.UTF8Validation)
	fams, err := p.TextToMetricFamilies(bytes.NewReader(text))
	if err != nil {
		return nil, err
	}
	label := &dto.LabelPair{Name: proto.String("worker"), Value: proto.String(strconv.Itoa(index))}
	for _, f := range fams {
		for _, m := range f.Metric {
			m.Label = append(m.Label, label)
		}
	}
	return fams, nil
}

// errScrapeStatus is a worker's admin answering /metrics with a status
// other than 200 (401: the parent and worker disagree on the token).
var errScrapeStatus = errors.New("prefork: worker admin answered")

// gather scrapes every worker that is up and reported its admin address,
// in parallel, until ctx ends, and merges the families in worker order.
// A worker that has not answered when ctx ends is left behind (its
// request is cancelled) and counted as a scrape error, like one that
// failed; a scrape whose client went away (ctx cancelled rather than past
// its deadline) counts nothing.
func (s *Supervisor) gather(ctx context.Context, client *http.Client) []*dto.MetricFamily {
	workers := s.Workers()
	type result struct {
		i int // index into workers
		scrape
	}
	results := make(chan result, len(workers)) // buffered: a late scraper never blocks
	pending := map[int]bool{}
	for i, wi := range workers {
		if wi.Admin == "" || !wi.Up {
			continue
		}
		pending[i] = true
		go func() { results <- result{i, s.scrapeWorker(ctx, client, wi)} }()
	}
	got := make([]scrape, len(workers))
	for len(pending) > 0 {
		select {
		case r := <-results:
			got[r.i] = r.scrape
			delete(pending, r.i)
		case <-ctx.Done():
			for i := range pending {
				got[i] = scrape{err: fmt.Errorf("prefork: no answer within the scrape deadline: %w", ctx.Err())}
				delete(pending, i)
			}
		}
	}
	abandoned := errors.Is(ctx.Err(), context.Canceled)
	now := time.Now()
	merged := map[string]*dto.MetricFamily{}
	age := &dto.MetricFamily{Name: proto.String("warren_prefork_scrape_age_seconds"),
		Help: proto.String("Age of each worker's series in the merged scrape: 0 when the worker answered this scrape, more when its last good answer was served in its place."),
		Type: dto.MetricType_GAUGE.Enum()}
	for i, wi := range workers {
		r := got[i]
		if wi.Admin == "" || !wi.Up {
			continue
		}
		if !abandoned {
			s.noteScrape(wi.Index, r.err)
		}
		text, at := s.cached(wi, r, now)
		if text == nil {
			continue
		}
		fams, err := parseScrape(text, wi.Index)
		if err != nil {
			continue // checked when scraped: not reached
		}
		age.Metric = append(age.Metric, &dto.Metric{
			Label: []*dto.LabelPair{{Name: proto.String("worker"), Value: proto.String(strconv.Itoa(wi.Index))}},
			Gauge: &dto.Gauge{Value: proto.Float64(now.Sub(at).Seconds())},
		})
		for name, f := range fams {
			if have := merged[name]; have != nil {
				have.Metric = append(have.Metric, f.Metric...)
			} else {
				merged[name] = f
			}
		}
	}
	s.gatherParent(merged)
	merged["warren_prefork_scrape_age_seconds"] = age
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
	errs := &dto.MetricFamily{Name: proto.String("warren_prefork_scrape_errors_total"),
		Help: proto.String("Merged scrapes that left a running worker out: no answer within the scrape timeout, or an error."),
		Type: dto.MetricType_COUNTER.Enum()}
	for i, n := range s.scrapeErrors() {
		errs.Metric = append(errs.Metric, &dto.Metric{
			Label:   []*dto.LabelPair{{Name: proto.String("worker"), Value: proto.String(strconv.Itoa(i))}},
			Counter: &dto.Counter{Value: proto.Float64(float64(n))},
		})
	}
	merged["warren_prefork_scrape_errors_total"] = errs
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

// noteScrape records the outcome of scraping worker i: it counts a
// failure, and logs when the worker starts failing and when it recovers,
// not on every scrape.
func (s *Supervisor) noteScrape(i int, err error) {
	s.mu.Lock()
	w := s.workers[i]
	was := w.scrapeFailing
	w.scrapeFailing = err != nil
	if err != nil {
		w.scrapeErrors++
	}
	s.mu.Unlock()
	switch {
	case err != nil && !was:
		s.log.Warn("prefork: worker left out of the merged metrics", "worker", i, "error", err)
	case err == nil && was:
		s.log.Info("prefork: worker back in the merged metrics", "worker", i)
	}
}

// cached stores a worker's fresh answer as its last good one and returns
// it, or, when the worker failed this scrape, returns its last good answer
// if the same process gave it within Config.ScrapeStale. It returns the
// text to merge (nil: none) and when it was scraped. The text, about 25 KB
// a worker, is kept rather than its parsed form, several times larger.
func (s *Supervisor) cached(wi WorkerInfo, r scrape, now time.Time) ([]byte, time.Time) {
	s.mu.Lock()
	defer s.mu.Unlock()
	if wi.Index >= len(s.workers) {
		return r.text, now
	}
	w := s.workers[wi.Index]
	if r.err == nil {
		w.last, w.lastPID, w.lastAt = r.text, wi.PID, now
		return r.text, now
	}
	if w.last == nil || w.lastPID != wi.PID || now.Sub(w.lastAt) > s.cfg.ScrapeStale {
		w.last = nil // a restarted worker's, or too old: not served again
		return nil, now
	}
	return w.last, w.lastAt
}

// scrapeErrors returns each worker slot's count of failed scrapes.
func (s *Supervisor) scrapeErrors() []uint64 {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]uint64, len(s.workers))
	for i, w := range s.workers {
		out[i] = w.scrapeErrors
	}
	return out
}

// gatherParent adds the parent's own metrics (Config.Collectors) to
// merged, each sample labelled worker="parent". A collector that fails is
// logged and left out of this scrape.
func (s *Supervisor) gatherParent(merged map[string]*dto.MetricFamily) {
	if len(s.cfg.Collectors) == 0 {
		return
	}
	s.parentOnce.Do(func() {
		reg := prometheus.NewRegistry()
		for _, c := range s.cfg.Collectors {
			if err := reg.Register(c); err != nil {
				s.log.Warn("prefork: a parent collector not registered", "error", err)
			}
		}
		s.parentReg = reg
	})
	fams, err := s.parentReg.Gather()
	if err != nil {
		s.log.Warn("prefork: gathering the parent's metrics", "error", err)
	}
	for _, f := range fams {
		for _, m := range f.Metric {
			m.Label = append(m.Label, &dto.LabelPair{Name: proto.String("worker"), Value: proto.String("parent")})
		}
		if have := merged[f.GetName()]; have != nil {
			if have.GetType() == f.GetType() {
				have.Metric = append(have.Metric, f.Metric...)
			}
			continue
		}
		merged[f.GetName()] = f
	}
}
