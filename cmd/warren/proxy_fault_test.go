//go:build !windows

package main

import (
	"encoding/json"
	"fmt"
	"io"
	"net/http"
	"os"
	"regexp"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"
)

// faultEnv returns the integer environment variable name, or def.
func faultEnv(name string, def int) int {
	if n, err := strconv.Atoi(os.Getenv(name)); err == nil && n > 0 {
		return n
	}
	return def
}

// upstreamAPI is the part of /api/upstream the fault test reads.
type upstreamAPI struct {
	Clusters []struct {
		RqRetry       uint64 `json:"rq_retry"`
		RqRetryReused uint64 `json:"rq_retry_reused_conn"`
		CxConnectFail uint64 `json:"cx_connect_fail"`
		Ejections     uint64 `json:"outlier_ejections"`
		Hosts         []struct {
			Name       string `json:"name"`
			Healthy    bool   `json:"healthy"`
			Ejected    bool   `json:"ejected"`
			RqTotal    uint64 `json:"rq_total"`
			HealthFail uint64 `json:"health_check_failure"`
		} `json:"hosts"`
	} `json:"clusters"`
}

func readUpstreamAPI(admin string) (*upstreamAPI, error) {
	resp, err := http.Get("http://" + admin + "/api/upstream")
	if err != nil {
		return nil, err
	}
	defer resp.Body.Close()
	var api upstreamAPI
	if err := json.NewDecoder(resp.Body).Decode(&api); err != nil {
		return nil, err
	}
	if len(api.Clusters) != 1 {
		return nil, fmt.Errorf("%d clusters", len(api.Clusters))
	}
	return &api, nil
}

// TestFaultKill9OutOfProcess is issue 14's kill -9 fault, with real
// processes: three backends (bench/cmd/slowtail, answering at once) behind
// a `warren proxy` process under steady keep-alive GET load from this
// process; each round kills one backend with SIGKILL by its pid, measures
// from the proxy's /api/upstream how soon the host leaves rotation
// (ejected or unhealthy), restarts the backend on the same port and
// measures how soon it is serving again. The client must see no failed
// GET. The sizes come from the environment (bench/proxy-fault.sh runs the
// full version): WARREN_FAULT_CONNS concurrent clients (8),
// WARREN_FAULT_ROUNDS kills (1), WARREN_FAULT_DOWN_MS a backend stays dead
// (300). It prints a FAULT-RESULT line with the counts.
func TestFaultKill9OutOfProcess(t *testing.T) {
	conns := faultEnv("WARREN_FAULT_CONNS", 8)
	rounds := faultEnv("WARREN_FAULT_ROUNDS", 1)
	down := time.Duration(faultEnv("WARREN_FAULT_DOWN_MS", 300)) * time.Millisecond
	bin := warrenBinary(t)
	tail := sharedBuild(t, "slowtail", "github.com/warrenhq/warren/bench/cmd/slowtail")
	listening := regexp.MustCompile(`listening (\S+)`)
	startBackend := func(i int, addr string) (*proc, string) {
		p := startProc(t, fmt.Sprintf("backend %d", i), tail, "-addr", addr, "-slow-pct", "0")
		p.waitOutput(t, 10*time.Second, "listening")
		return p, listening.FindStringSubmatch(p.out.String())[1]
	}
	backends := make([]*proc, 3)
	addrs := make([]string, 3)
	for i := range backends {
		backends[i], addrs[i] = startBackend(i, "127.0.0.1:0")
	}
	ups := "http://" + strings.Join(addrs, ",http://")
	px := startProc(t, "warren proxy", bin, "proxy", "-listen", "127.0.0.1:0", "-admin", "127.0.0.1:0",
		"-upstream", ups, "-balancer", "round_robin", "-retries", "2",
		"-hc-interval", "200ms", "-hc-timeout", "200ms",
		"-outlier-base-ejection", "2s", "-outlier-max-percent", "34")
	px.waitOutput(t, 20*time.Second, "admin: listening")
	px.waitOutput(t, 20*time.Second, "warren proxy listening")
	out := px.out.String()
	paddr := regexp.MustCompile(`proxy listening" addr=(\S+)`).FindStringSubmatch(out)[1]
	admin := regexp.MustCompile(`admin: listening" addr=(\S+)`).FindStringSubmatch(out)[1]

	// Steady load: conns keep-alive clients, each a GET every millisecond
	// or so, counting what the client sees.
	var ok, failed atomic.Int64
	var failMu sync.Mutex
	var failures []string
	stop := make(chan struct{})
	var wg sync.WaitGroup
	for range conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			client := &http.Client{Transport: &http.Transport{MaxIdleConnsPerHost: 1}, Timeout: 10 * time.Second}
			defer client.CloseIdleConnections()
			for {
				select {
				case <-stop:
					return
				default:
				}
				resp, err := client.Get("http://" + paddr + "/")
				why := ""
				if err != nil {
					why = err.Error()
				} else {
					io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
					if resp.StatusCode != 200 {
						why = resp.Status + " " + resp.Header.Get("X-Warren-Reason")
					}
				}
				if why != "" {
					failed.Add(1)
					failMu.Lock()
					if len(failures) < 10 {
						failures = append(failures, why)
					}
					failMu.Unlock()
				} else {
					ok.Add(1)
				}
				time.Sleep(time.Millisecond)
			}
		}()
	}
	stopLoad := sync.OnceFunc(func() { close(stop); wg.Wait() })
	defer stopLoad()

	var ejected, readmitted []time.Duration
	for r := range rounds {
		victim := r % 3
		time.Sleep(500 * time.Millisecond) // steady state
		before := ok.Load()
		killedAt := time.Now()
		backends[victim].kill() // SIGKILL by pid, reaped
		out := time.Duration(0)
		for time.Since(killedAt) < 5*time.Second {
			api, err := readUpstreamAPI(admin)
			if err != nil {
				t.Fatal(err)
			}
			if h := api.Clusters[0].Hosts[victim]; !h.Healthy || h.Ejected {
				out = time.Since(killedAt)
				break
			}
			time.Sleep(5 * time.Millisecond)
		}
		ejected = append(ejected, out)
		if d := down - time.Since(killedAt); d > 0 {
			time.Sleep(d)
		}
		var addr string
		backends[victim], addr = startBackend(victim, addrs[victim]) // the same port
		if addr != addrs[victim] {
			t.Fatalf("backend %d back on %s, not %s", victim, addr, addrs[victim])
		}
		back := time.Duration(0)
		for time.Since(killedAt) < 15*time.Second {
			if backendRequests(addr) > 0 {
				back = time.Since(killedAt)
				break
			}
			time.Sleep(10 * time.Millisecond)
		}
		readmitted = append(readmitted, back)
		t.Logf("round %d: backend %d killed; out of rotation after %v, serving again %v after the kill; %d GETs meanwhile",
			r, victim, out, back, ok.Load()-before)
	}
	stopLoad()
	api, err := readUpstreamAPI(admin)
	if err != nil {
		t.Fatal(err)
	}
	cs := api.Clusters[0]
	ms := func(ds []time.Duration) string {
		s := make([]string, len(ds))
		for i, d := range ds {
			s[i] = strconv.FormatInt(d.Milliseconds(), 10)
		}
		return strings.Join(s, ",")
	}
	t.Logf("FAULT-RESULT conns=%d rounds=%d down_ms=%d gets_ok=%d gets_failed=%d out_of_rotation_ms=%s serving_again_ms=%s retries=%d reused_conn_retries=%d connect_failures=%d ejections=%d",
		conns, rounds, down.Milliseconds(), ok.Load(), failed.Load(), ms(ejected), ms(readmitted), cs.RqRetry, cs.RqRetryReused,
		cs.CxConnectFail, cs.Ejections)
	if failed.Load() != 0 {
		t.Errorf("%d GETs failed at the client (first: %v); want 0", failed.Load(), failures)
	}
	// The target is 1 s (FAULT-RESULT above; bench/proxy-fault.sh
	// measures it); the assertion allows twice that, as the proxy
	// package's TestFaultKillOneOfThree does: the race detector on a loaded
	// two-core machine slows the health checks' timers and the proxy
	// process with them.
	for r, d := range ejected {
		if d == 0 || d > 2*time.Second {
			t.Errorf("round %d: the killed backend left rotation after %v (0: not within 5s); want within 1s (2s allowed under load)", r, d)
		}
	}
	for r, d := range readmitted {
		if d == 0 {
			t.Errorf("round %d: the restarted backend got no request within 15s of the kill", r)
		}
	}
}

// backendRequests returns the requests a slowtail backend has answered
// (its /__stats), or -1.
func backendRequests(addr string) int {
	resp, err := http.Get("http://" + addr + "/__stats")
	if err != nil {
		return -1
	}
	defer resp.Body.Close()
	var n int
	if _, err := fmt.Fscanf(resp.Body, "requests %d", &n); err != nil {
		return -1
	}
	return n
}
