package prefork

import (
	"cmp"
	"context"
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"net/url"
	"slices"
	"strconv"
	"sync"
	"time"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
)

// WorkerConn is one connection in the parent's /debug/conns: a worker's
// admin.Conn (the same fields) and the worker holding it. Connection ids
// are the workers' own: the same id may be on two workers.
type WorkerConn struct {
	Worker int `json:"worker"`
	admin.Conn
}

// WorkerConnList is the parent's answer of GET /debug/conns: the workers'
// lists merged. Total sums the workers' totals; Errors names the workers
// that did not answer (by index), whose connections are missing.
// MissedLoops names, by worker, the loops a worker's own walk left out
// (admin.ConnList.MissedLoops), whose connections are missing too.
// Partial is set whenever either is: the list is not every connection.
type WorkerConnList struct {
	Total       int            `json:"total"`
	Offset      int            `json:"offset"`
	Limit       int            `json:"limit"`
	NextCursor  string         `json:"next_cursor,omitempty"`
	Partial     bool           `json:"partial,omitempty"`
	MissedLoops map[int][]int  `json:"missed_loops,omitempty"`
	Conns       []WorkerConn   `json:"conns"`
	Errors      map[int]string `json:"errors,omitempty"`
}

// Bounds of the parent's /debug/conns: what one worker may be asked for
// (admin's own page bound), and the most of its answer read.
const (
	connsMaxLimit = 10000
	maxConnsBody  = 32 << 20
)

// connsMargin is what connsTimeout allows a worker over its walk's turn
// (engine.ConnWalkTurn) to answer: the request, the page's encoding and
// the reply, on loopback.
const connsMargin = 2 * time.Second

// connsTimeout is how long the parent's /debug/conns waits for its
// workers: the scrape timeout, but never less than a worker's walk turn
// and connsMargin, so that a worker whose walk gives up on a busy loop
// answers (partial, with missed_loops) before the parent gives up on it.
func connsTimeout(scrape time.Duration) time.Duration {
	return max(scrape, engine.ConnWalkTurn+connsMargin)
}

// connSorts order merged connections as the workers' /debug/conns sorts
// do (admin), ties by worker and id.
var connSorts = map[string]func(a, b *WorkerConn) int{
	"id":     func(a, b *WorkerConn) int { return 0 },
	"age":    func(a, b *WorkerConn) int { return a.Created.Compare(b.Created) },
	"idle":   func(a, b *WorkerConn) int { return cmp.Compare(b.Idle, a.Idle) },
	"bytes":  func(a, b *WorkerConn) int { return cmp.Compare(b.BytesIn+b.BytesOut, a.BytesIn+a.BytesOut) },
	"served": func(a, b *WorkerConn) int { return cmp.Compare(b.Served, a.Served) },
	"queued": func(a, b *WorkerConn) int { return cmp.Compare(b.WriteBuffer, a.WriteBuffer) },
}

// serveConns answers the parent's GET /debug/conns from its workers'. With
// worker=N it relays worker N's answer (its cursor paging included);
// without, it asks every worker for its first offset+limit connections
// with the same filters and sort, in parallel within ctx, and merges them.
func (s *Supervisor) serveConns(ctx context.Context, client *http.Client, w http.ResponseWriter, r *http.Request) {
	q := r.URL.Query()
	bad := func(format string, args ...any) {
		writeConnsJSON(w, http.StatusBadRequest, map[string]string{"error": fmt.Sprintf("prefork: "+format, args...)})
	}
	offset, limit := 0, 100
	for _, n := range []struct {
		key string
		to  *int
		min int
	}{{"offset", &offset, 0}, {"limit", &limit, 1}} {
		if v := q.Get(n.key); v != "" {
			i, err := strconv.Atoi(v)
			if err != nil || i < n.min {
				bad("%s: %q is not a whole number ≥ %d", n.key, v, n.min)
				return
			}
			*n.to = i
		}
	}
	limit = min(limit, connsMaxLimit)
	sortBy := q.Get("sort")
	if sortBy == "" {
		sortBy = "id"
	}
	if connSorts[sortBy] == nil {
		bad("sort: %q is not one of id, age, idle, bytes, served, queued", sortBy)
		return
	}
	workers := s.Workers()
	if v := q.Get("worker"); v != "" {
		i, err := strconv.Atoi(v)
		if err != nil || i < 0 || i >= len(workers) {
			bad("worker: %q is not a worker's index (0–%d)", v, len(workers)-1)
			return
		}
		q.Del("worker")
		l, code, err := s.workerConns(ctx, client, workers[i], q)
		if err != nil {
			writeConnsJSON(w, code, map[string]string{"error": err.Error()})
			return
		}
		writeConnsJSON(w, http.StatusOK, l)
		return
	}
	if q.Get("cursor") != "" {
		bad("cursor: connection ids are each worker's own; page one worker with worker=N&cursor=")
		return
	}
	if offset+limit > connsMaxLimit {
		bad("offset: offset + limit may be at most %d across the workers; page one worker with worker=N&cursor=", connsMaxLimit)
		return
	}
	q.Set("offset", "0")
	q.Set("limit", strconv.Itoa(offset+limit))
	q.Set("sort", sortBy)
	out := WorkerConnList{Offset: offset, Limit: limit, Conns: []WorkerConn{}}
	// keepTop sorts what the workers answered and keeps the first
	// offset+limit: run as answers come (once they pass twice that), so the
	// parent holds at most 2×(offset+limit) connections, not procs× as many.
	by := connSorts[sortBy]
	keepTop := func() {
		slices.SortFunc(out.Conns, func(a, b WorkerConn) int {
			return cmp.Or(by(&a, &b), cmp.Compare(a.Worker, b.Worker), cmp.Compare(a.ID, b.ID))
		})
		out.Conns = out.Conns[:min(len(out.Conns), offset+limit)]
	}
	var mu sync.Mutex
	var wg sync.WaitGroup
	badQuery := "" // a worker's 400: the query's fault, every worker says the same
	for _, wi := range workers {
		if wi.Admin == "" || !wi.Up {
			continue
		}
		wg.Add(1)
		go func() {
			defer wg.Done()
			l, code, err := s.workerConns(ctx, client, wi, q)
			mu.Lock()
			defer mu.Unlock()
			if err != nil {
				if code == http.StatusBadRequest {
					badQuery = err.Error()
				}
				if out.Errors == nil {
					out.Errors = map[int]string{}
				}
				out.Errors[wi.Index] = err.Error()
				out.Partial = true
				return
			}
			if l.Partial {
				out.Partial = true
				if out.MissedLoops == nil {
					out.MissedLoops = map[int][]int{}
				}
				out.MissedLoops[wi.Index] = l.MissedLoops[wi.Index]
			}
			out.Total += l.Total
			out.Conns = append(out.Conns, l.Conns...)
			if len(out.Conns) > 2*(offset+limit) {
				keepTop()
			}
		}()
	}
	wg.Wait()
	if badQuery != "" {
		writeConnsJSON(w, http.StatusBadRequest, map[string]string{"error": badQuery})
		return
	}
	keepTop()
	if offset >= len(out.Conns) {
		out.Conns = out.Conns[:0]
	} else {
		out.Conns = out.Conns[offset:min(len(out.Conns), offset+limit)]
	}
	writeConnsJSON(w, http.StatusOK, out)
}

// workerConns asks worker wi's admin for /debug/conns with query q, and
// returns its list with each connection marked as wi's; on failure, the
// status to answer with and why.
func (s *Supervisor) workerConns(ctx context.Context, client *http.Client, wi WorkerInfo, q url.Values) (WorkerConnList, int, error) {
	var out WorkerConnList
	if wi.Admin == "" || !wi.Up {
		return out, http.StatusServiceUnavailable, fmt.Errorf("prefork: worker %d is not up", wi.Index)
	}
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, "http://"+wi.Admin+"/debug/conns?"+q.Encode(), nil)
	if err != nil {
		return out, http.StatusInternalServerError, err
	}
	if s.cfg.AdminToken != "" {
		req.Header.Set("Authorization", "Bearer "+s.cfg.AdminToken)
	}
	resp, err := client.Do(req)
	if err != nil {
		return out, http.StatusBadGateway, fmt.Errorf("prefork: worker %d: %w", wi.Index, err)
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxConnsBody+1))
	if err != nil || len(body) > maxConnsBody {
		return out, http.StatusBadGateway, fmt.Errorf("prefork: worker %d: answer unread or over %d bytes", wi.Index, maxConnsBody)
	}
	if resp.StatusCode != http.StatusOK {
		var e struct {
			Error string `json:"error"`
		}
		json.Unmarshal(body, &e)
		code := http.StatusBadGateway
		if resp.StatusCode == http.StatusBadRequest {
			code = http.StatusBadRequest
		}
		return out, code, fmt.Errorf("prefork: worker %d answered %s: %s", wi.Index, resp.Status, e.Error)
	}
	var l admin.ConnList
	if err := json.Unmarshal(body, &l); err != nil {
		return out, http.StatusBadGateway, fmt.Errorf("prefork: worker %d: %w", wi.Index, err)
	}
	out = WorkerConnList{Total: l.Total, Offset: l.Offset, Limit: l.Limit, NextCursor: l.NextCursor,
		Partial: l.Partial, Conns: make([]WorkerConn, len(l.Conns))}
	if l.Partial {
		loops := l.MissedLoops
		if loops == nil {
			loops = []int{}
		}
		out.MissedLoops = map[int][]int{wi.Index: loops}
	}
	for i, c := range l.Conns {
		out.Conns[i] = WorkerConn{Worker: wi.Index, Conn: c}
	}
	return out, http.StatusOK, nil
}

func writeConnsJSON(w http.ResponseWriter, code int, v any) {
	b, err := json.Marshal(v)
	if err != nil {
		code, b = http.StatusInternalServerError, []byte(`{"error":"prefork: encode"}`)
	}
	w.Header().Set("Content-Type", "application/json")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	w.Write(append(b, '\n'))
}
