// Command echoclient is a closed-loop load generator for echo servers: -c
// connections each send -size bytes, wait for the echo, and repeat, for -d
// after a -warmup.
//
//	echoclient -addr 127.0.0.1:9000 -c 64 -size 64 -d 10s -server-pid 1234
//
// It prints one JSON line: round trips per second, latency percentiles from
// a uniform sample of round trips, and, when -server-pid is given on Linux,
// the server's CPU time over exactly the measured window (utime+stime from
// /proc/PID/stat) and per round trip. Every phase is bounded: a connection
// that stops answering fails its round trip at a deadline after -d.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
)

// result is the JSON line echoclient prints.
type result struct {
	Conns         int     `json:"conns"`
	Size          int     `json:"size"`
	Seconds       float64 `json:"seconds"`
	RoundTrips    int64   `json:"round_trips"`
	RPS           float64 `json:"rps"`
	P50us         float64 `json:"p50_us"`
	P90us         float64 `json:"p90_us"`
	P99us         float64 `json:"p99_us"`
	MaxUs         float64 `json:"max_us"`
	Samples       int     `json:"samples"`
	Errors        int64   `json:"errors"`
	ServerCPUs    float64 `json:"server_cpu_s"`     // -1 when not measured
	ServerCPUusRT float64 `json:"server_cpu_us_rt"` // server CPU µs per round trip
	ClientCPUs    float64 `json:"client_cpu_s"`
	ClientCPUusRT float64 `json:"client_cpu_us_rt"`
}

const (
	phaseWarmup int32 = iota
	phaseMeasure
	phaseDone
)

func main() {
	addr := flag.String("addr", "", "server address HOST:PORT (required)")
	conns := flag.Int("c", 64, "connections, each with one round trip in flight")
	size := flag.Int("size", 64, "bytes per request (and echo)")
	dur := flag.Duration("d", 10*time.Second, "measured duration")
	warmup := flag.Duration("warmup", time.Second, "unmeasured run before the measured one")
	srcBase := flag.String("src-base", "127.0.1.1", "first loopback source address (empty: let the kernel pick)")
	srcCount := flag.Int("src-count", 60, "number of consecutive source addresses to rotate over")
	serverPID := flag.Int("server-pid", 0, "server process whose CPU time to measure (Linux /proc)")
	clkTck := flag.Int("clk-tck", 100, "kernel USER_HZ (getconf CLK_TCK), the unit of /proc/PID/stat times")
	maxSamples := flag.Int("samples", 200000, "latency samples kept (uniform reservoir)")
	flag.Parse()
	if *addr == "" || *conns < 1 || *size < 1 || *dur <= 0 {
		flag.Usage()
		os.Exit(2)
	}
	benchutil.ClockTicks = *clkTck
	if _, err := benchutil.RaiseFileLimit(); err != nil {
		fatal("raising the open-file limit: %v", err)
	}
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fatal("%v", err)
	}

	cs := make([]net.Conn, *conns)
	for i := range cs {
		c, err := benchutil.Dialer(srcs, i, 5*time.Second).Dial("tcp", *addr)
		if err != nil {
			fatal("dial %d: %v", i, err)
		}
		cs[i] = c
	}

	var phase atomic.Int32
	var errs atomic.Int64
	counts := make([]int64, len(cs))
	samples := make([][]time.Duration, len(cs))
	perConn := max(*maxSamples/len(cs), 1)
	deadline := time.Now().Add(*warmup + *dur + 10*time.Second)
	var wg sync.WaitGroup
	for i, c := range cs {
		wg.Add(1)
		go func() {
			defer wg.Done()
			c.SetDeadline(deadline)
			out := make([]byte, *size)
			for j := range out {
				out[j] = byte('a' + (i+j)%26)
			}
			in := make([]byte, *size)
			rng := rand.New(rand.NewPCG(uint64(i), 42))
			res := make([]time.Duration, 0, perConn)
			var n int64
			for {
				ph := phase.Load()
				if ph == phaseDone {
					break
				}
				t0 := time.Now()
				if _, err := c.Write(out); err != nil {
					errs.Add(1)
					break
				}
				if _, err := io.ReadFull(c, in); err != nil {
					errs.Add(1)
					break
				}
				if ph != phaseMeasure || phase.Load() != phaseMeasure {
					continue
				}
				lat := time.Since(t0)
				n++
				if len(res) < perConn {
					res = append(res, lat)
				} else if k := rng.Int64N(n); k < int64(perConn) {
					res[k] = lat
				}
			}
			counts[i], samples[i] = n, res
		}()
	}

	time.Sleep(*warmup)
	srv0, srvErr := benchutil.CPUTime(*serverPID)
	self0, selfErr := benchutil.CPUTime(0)
	t0 := time.Now()
	phase.Store(phaseMeasure)
	time.Sleep(*dur)
	phase.Store(phaseDone)
	elapsed := time.Since(t0)
	srv1, srvErr1 := benchutil.CPUTime(*serverPID)
	self1, selfErr1 := benchutil.CPUTime(0)
	wg.Wait()
	for _, c := range cs {
		c.Close()
	}

	r := result{Conns: len(cs), Size: *size, Seconds: elapsed.Seconds(), Errors: errs.Load(),
		ServerCPUs: -1, ServerCPUusRT: -1, ClientCPUs: -1, ClientCPUusRT: -1}
	var all []time.Duration
	for i := range cs {
		r.RoundTrips += counts[i]
		all = append(all, samples[i]...)
	}
	r.RPS = float64(r.RoundTrips) / elapsed.Seconds()
	slices.Sort(all)
	r.Samples = len(all)
	if len(all) > 0 {
		pct := func(p float64) float64 {
			return float64(all[int(p*float64(len(all)-1))]) / float64(time.Microsecond)
		}
		r.P50us, r.P90us, r.P99us, r.MaxUs = pct(0.50), pct(0.90), pct(0.99), pct(1)
	}
	if *serverPID > 0 && srvErr == nil && srvErr1 == nil {
		r.ServerCPUs = (srv1 - srv0).Seconds()
		if r.RoundTrips > 0 {
			r.ServerCPUusRT = r.ServerCPUs * 1e6 / float64(r.RoundTrips)
		}
	}
	if selfErr == nil && selfErr1 == nil {
		r.ClientCPUs = (self1 - self0).Seconds()
		if r.RoundTrips > 0 {
			r.ClientCPUusRT = r.ClientCPUs * 1e6 / float64(r.RoundTrips)
		}
	}
	line, _ := json.Marshal(r)
	fmt.Println(string(line))
	if r.Errors > 0 {
		os.Exit(1)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "echoclient: "+format+"\n", args...)
	os.Exit(2)
}
