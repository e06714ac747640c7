package proxy

import (
	"io"
	"net/http"
	"strings"
	"sync/atomic"
	"testing"
	"time"

	"github.com/warrenhq/warren/upstream"
)

// TestProxyHedge: through the proxy, with a slow and a fast backend and
// -hedge-delay 30ms, every GET is answered by the fast backend before the
// slow one would answer (net/http client, keep-alive), while POSTs with
// bodies are never hedged and wait for whichever backend they were sent
// to. The slow backend answers a GET after 5 s, so that a loaded machine
// cannot pass for an unhedged request, and a POST after 0.7 s.
func TestProxyHedge(t *testing.T) {
	e := startEngine(t)
	var slowGone atomic.Int64
	const slowGET = 5 * time.Second
	slow, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		delay := 700 * time.Millisecond
		if r.Method == http.MethodGet {
			delay = slowGET
		}
		select {
		case <-time.After(delay):
			io.WriteString(w, "slow")
		case <-r.Context().Done():
			slowGone.Add(1)
		}
	}))
	fast, _ := startGoBackend(t, http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.ReadAll(r.Body)
		io.WriteString(w, "fast")
	}))
	addr, p := startProxy(t, e, upstream.ClusterConfig{Hosts: []string{slow, fast}, Balancer: upstream.BalanceRoundRobin,
		HedgeDelay: 30 * time.Millisecond, OutlierOff: true}, Config{})
	client := &http.Client{Timeout: 10 * time.Second}
	for i := range 6 {
		start := time.Now()
		resp, err := client.Get("http://" + addr + "/x")
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 || string(b) != "fast" {
			t.Fatalf("GET %d: %d %q", i, resp.StatusCode, b)
		}
		if d := time.Since(start); d >= slowGET {
			t.Errorf("GET %d took %v: not hedged", i, d)
		}
	}
	slowAnswers := 0
	for i := range 4 {
		resp, err := client.Post("http://"+addr+"/x", "text/plain", strings.NewReader("body"))
		if err != nil {
			t.Fatal(err)
		}
		b, _ := io.ReadAll(resp.Body)
		resp.Body.Close()
		if resp.StatusCode != 200 {
			t.Fatalf("POST %d: %d %q", i, resp.StatusCode, b)
		}
		if string(b) == "slow" {
			slowAnswers++
		}
	}
	st := p.Cluster().Stats()
	t.Logf("hedged %d, won %d, slow answers to POST %d", st.RqHedged, st.RqHedgeWon, slowAnswers)
	// Round robin sends each GET's first attempt to the slow backend (the
	// hedge moved the turn on), and the POSTs alternate.
	if st.RqHedged < 3 || st.RqHedged > 6 || st.RqHedgeWon != st.RqHedged || slowAnswers != 2 {
		t.Errorf("hedged %d, won %d, POSTs answered slow %d; want the GETs sent to the slow backend hedged and won, 2 POSTs answered slow (not hedged)",
			st.RqHedged, st.RqHedgeWon, slowAnswers)
	}
	deadline := time.Now().Add(5 * time.Second)
	for slowGone.Load() != int64(st.RqHedged) {
		if time.Now().After(deadline) {
			t.Fatalf("the slow backend saw %d of %d losing requests go", slowGone.Load(), st.RqHedged)
		}
		time.Sleep(5 * time.Millisecond)
	}
}
