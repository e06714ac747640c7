package upstream_test

import (
	"context"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
)

// Smooth weighted round robin: weights 5, 1 and 1 interleave the light
// hosts among the heavy one's picks rather than sending them in a block.
func ExampleRoundRobin() {
	set := upstream.NewHostSet([]upstream.Host{{Addr: "a", Weight: 5}, {Addr: "b"}, {Addr: "c"}}, upstream.HostSetConfig{})
	rr := upstream.NewRoundRobin(set)
	var picks []string
	for range 7 {
		picks = append(picks, set.Host(rr.Pick(0)).Addr)
	}
	fmt.Println(strings.Join(picks, " "))
	// Output: a a b a c a a
}

// Maglev maps a key to the same host in every process; while that host
// is out (ejected here), the key goes elsewhere, and the keys of the other
// hosts do not move.
func ExampleMaglev() {
	set := upstream.NewHostSet([]upstream.Host{{Addr: "10.0.0.1:80"}, {Addr: "10.0.0.2:80"}, {Addr: "10.0.0.3:80"}},
		upstream.HostSetConfig{})
	mg, err := upstream.NewMaglev(set, upstream.MaglevConfig{})
	if err != nil {
		fmt.Println(err)
		return
	}
	key := upstream.HashKey("device-42")
	h := mg.Pick(key)
	fmt.Println("same host for the same device:", mg.Pick(key) == h)
	before := make([]int, 1000)
	for k := range before {
		before[k] = mg.Pick(upstream.HashKey(fmt.Sprint("device-", k)))
	}
	set.SetEjected(h, true)
	fmt.Println("moves while its host is ejected:", mg.Pick(key) != h)
	moved := 0
	for k, was := range before {
		if was != h && mg.Pick(upstream.HashKey(fmt.Sprint("device-", k))) != was {
			moved++
		}
	}
	fmt.Println("keys of the other hosts moved:", moved)
	// Output:
	// same host for the same device: true
	// moves while its host is ejected: true
	// keys of the other hosts moved: 0
}

// Drain takes a host out of rotation (as the admin API's drain does): its
// requests in flight finish, new ones go to the other hosts, even when so
// few are left that the cluster balances in panic mode; Undrain puts it
// back.
func ExampleCluster_Drain() {
	var hits [2]atomic.Int64
	var backends []string
	for i := range 2 {
		b := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
			hits[i].Add(1)
			io.WriteString(w, "ok")
		}))
		defer b.Close()
		backends = append(backends, b.URL)
	}
	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: backends, Balancer: upstream.BalanceRoundRobin})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	get := func(n int) {
		for range n {
			head := upstream.AppendRequestHead(nil, "GET", "/", "api", nil, -1, false)
			if _, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0); err != nil {
				fmt.Println(err)
			}
		}
	}
	cl.Drain(0)
	get(4)
	fmt.Println("while host 0 drains:", hits[0].Load(), hits[1].Load())
	fmt.Println("draining:", cl.Stats().Hosts[0].Draining)
	cl.Undrain(0)
	get(4)
	fmt.Println("after undrain:", hits[0].Load(), hits[1].Load())
	// Output:
	// while host 0 drains: 0 4
	// draining: true
	// after undrain: 2 6
}

// Active health checks: an HTTP GET of /healthz every Interval; two failed
// checks in a row take the host out of rotation, two passed bring it back.
func ExampleHealthConfig() {
	var sick atomic.Bool
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.URL.Path == "/healthz" && sick.Load() {
			w.WriteHeader(http.StatusServiceUnavailable)
			return
		}
		io.WriteString(w, "ok")
	}))
	defer backend.Close()
	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{
		Hosts:   []string{backend.URL},
		HostSet: upstream.HostSetConfig{PanicThreshold: -1}, // no panic mode: an unhealthy host is never picked
		Health: upstream.HealthConfig{
			Interval:           100 * time.Millisecond,
			Timeout:            time.Second,
			Path:               "/healthz",
			UnhealthyThreshold: 2,
			HealthyThreshold:   2,
		},
	})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	waitHealthy := func(want bool) {
		for deadline := time.Now().Add(10 * time.Second); time.Now().Before(deadline); time.Sleep(10 * time.Millisecond) {
			if cl.HostSet().Healthy(0) == want {
				break
			}
		}
		fmt.Println("healthy:", cl.HostSet().Healthy(0))
	}
	get := func() {
		head := upstream.AppendRequestHead(nil, "GET", "/", "api", nil, -1, false)
		_, err := cl.RoundTrip(context.Background(), &upstream.Request{Method: "GET", Head: head}, 0)
		fmt.Println("request:", upstream.FailureOf(err))
	}
	sick.Store(true)
	waitHealthy(false)
	get()
	sick.Store(false)
	waitHealthy(true)
	get()
	// Output:
	// healthy: false
	// request: no_healthy_upstream
	// healthy: true
	// request: none
}

// An HTTPSink batches messages to an HTTP endpoint through a cluster:
// here three JSON values make a batch (MaxCount), POSTed as one array.
func ExampleHTTPSink() {
	got := make(chan string, 1)
	backend := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		body, _ := io.ReadAll(r.Body)
		got <- r.Method + " " + r.URL.Path + " " + string(body)
	}))
	defer backend.Close()
	eng, _ := engine.New(engine.Config{}, nil)
	eng.Start("")
	defer eng.Close()
	cl, err := upstream.NewCluster(eng, upstream.ClusterConfig{Hosts: []string{backend.URL}})
	if err != nil {
		fmt.Println(err)
		return
	}
	defer cl.Close()
	sink := upstream.NewHTTPSink(cl, upstream.SinkConfig{Path: "/ingest",
		Batch: upstream.BatcherConfig{MaxCount: 3, MaxDelay: time.Second}})
	for _, m := range []string{`{"t":21.5}`, `{"t":21.7}`, `{"t":22.0}`} {
		sink.Send([]byte(m)) // never blocks
	}
	fmt.Println(<-got)
	st := sink.Stats()
	for deadline := time.Now().Add(10 * time.Second); st.Delivered+st.Failed == 0 && time.Now().Before(deadline); st = sink.Stats() {
		time.Sleep(time.Millisecond) // the batch's response is counted when it completes
	}
	fmt.Println("batches", st.Batches, "delivered", st.Delivered, "messages", st.DeliveredMessages)
	// Output:
	// POST /ingest [{"t":21.5},{"t":21.7},{"t":22.0}]
	// batches 1 delivered 1 messages 3
}
