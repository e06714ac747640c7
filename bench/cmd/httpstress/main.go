// Command httpstress checks warren's HTTP isolation targets against a
// running server:
//
//	httpstress -mode slowloris -addr HOST:PORT -slow 1500 -header-timeout 10s
//	  1,500 connections trickle a request head one byte a second while
//	  ordinary requests run on other connections; reports the ordinary
//	  requests' latency percentiles and when each slow connection was cut.
//	  Target: ordinary p99 < 50 ms; every slow connection cut at the header
//	  timeout (within one tick and scheduling slack).
//
//	httpstress -mode blocking -addr HOST:PORT -blockers 64 -block 2s
//	  64 connections keep requests in GET /delay?ms=2000 while GET / runs on
//	  another connection; target: GET / p99 < 2 ms.
//
// Every loop is bounded by -duration and stops by itself.
package main

import (
	"bufio"
	"bytes"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"sort"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
)

func main() {
	mode := flag.String("mode", "slowloris", "slowloris or blocking")
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	slow := flag.Int("slow", 1500, "slowloris: trickling connections")
	headerTimeout := flag.Duration("header-timeout", 10*time.Second, "slowloris: the server's header timeout")
	blockers := flag.Int("blockers", 64, "blocking: connections held in GET /delay")
	block := flag.Duration("block", 2*time.Second, "blocking: the delay each blocked request asks for")
	probes := flag.Int("probes", 4, "connections sending ordinary GET / requests")
	duration := flag.Duration("duration", 15*time.Second, "how long to measure")
	flag.Parse()
	var res any
	switch *mode {
	case "slowloris":
		res = slowloris(*addr, *slow, *probes, *headerTimeout, *duration)
	case "blocking":
		res = blocking(*addr, *blockers, *block, *probes, *duration)
	default:
		fmt.Fprintln(os.Stderr, "unknown -mode")
		os.Exit(2)
	}
	json.NewEncoder(os.Stdout).Encode(res)
}

// dialer spreads connections over loopback source addresses.
func dialer(i int) *net.Dialer {
	return &net.Dialer{Timeout: 5 * time.Second,
		LocalAddr: &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i%200))}}
}

type latencies struct {
	mu sync.Mutex
	d  []time.Duration
}

func (l *latencies) add(d time.Duration) {
	l.mu.Lock()
	l.d = append(l.d, d)
	l.mu.Unlock()
}

func (l *latencies) summary() map[string]any {
	l.mu.Lock()
	defer l.mu.Unlock()
	sort.Slice(l.d, func(i, j int) bool { return l.d[i] < l.d[j] })
	p := func(q float64) float64 {
		if len(l.d) == 0 {
			return 0
		}
		return float64(l.d[min(len(l.d)-1, int(q*float64(len(l.d))))].Microseconds()) / 1000
	}
	return map[string]any{"requests": len(l.d), "p50_ms": p(0.5), "p90_ms": p(0.9), "p99_ms": p(0.99),
		"p999_ms": p(0.999), "max_ms": p(1)}
}

var getRoot = []byte("GET / HTTP/1.1\r\nHost: x\r\n\r\n")

// probe sends GET / in a closed loop on one keep-alive connection until
// stop, recording each round trip.
func probe(addr string, i int, stop <-chan struct{}, lat *latencies, errs *atomic.Int64) {
	c, err := dialer(i).Dial("tcp", addr)
	if err != nil {
		errs.Add(1)
		return
	}
	defer c.Close()
	br := bufio.NewReader(c)
	for {
		select {
		case <-stop:
			return
		default:
		}
		t0 := time.Now()
		c.SetDeadline(t0.Add(5 * time.Second))
		if _, err := c.Write(getRoot); err != nil {
			errs.Add(1)
			return
		}
		if err := readResponse(br); err != nil {
			errs.Add(1)
			return
		}
		lat.add(time.Since(t0))
		time.Sleep(2 * time.Millisecond)
	}
}

// readResponse reads one response, head and body, with net/http's parser.
func readResponse(br *bufio.Reader) error {
	_, err := benchutil.ReadHTTPResponse(br)
	return err
}

func slowloris(addr string, slow, probes int, headerTimeout, duration time.Duration) map[string]any {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var cutMu sync.Mutex
	var cuts []time.Duration // first byte to server close
	var got408, notCut atomic.Int64
	head := []byte("GET / HTTP/1.1\r\nHost: x\r\nX-Slow: " + string(bytes.Repeat([]byte("a"), 200)))
	for i := 0; i < slow; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dialer(i).Dial("tcp", addr)
			if err != nil {
				notCut.Add(1)
				return
			}
			defer c.Close()
			start := time.Now()
			closed := make(chan []byte, 1)
			go func() {
				b, _ := io.ReadAll(c)
				closed <- b
			}()
			limit := time.After(headerTimeout + 5*time.Second)
			for j := 0; ; j++ {
				if j < len(head) {
					c.Write(head[j : j+1])
				}
				select {
				case b := <-closed:
					cutMu.Lock()
					cuts = append(cuts, time.Since(start))
					cutMu.Unlock()
					if bytes.HasPrefix(b, []byte("HTTP/1.1 408")) {
						got408.Add(1)
					}
					return
				case <-limit:
					notCut.Add(1)
					return
				case <-time.After(time.Second):
				}
			}
		}(i)
	}
	lat := &latencies{}
	var errs atomic.Int64
	var pwg sync.WaitGroup
	for i := 0; i < probes; i++ {
		pwg.Add(1)
		go func(i int) { defer pwg.Done(); probe(addr, 1000+i, stop, lat, &errs) }(i)
	}
	time.Sleep(duration)
	close(stop)
	pwg.Wait()
	wg.Wait()
	sort.Slice(cuts, func(i, j int) bool { return cuts[i] < cuts[j] })
	out := lat.summary()
	out["mode"] = "slowloris"
	out["slow_conns"] = slow
	out["probe_errors"] = errs.Load()
	out["slow_cut"] = len(cuts)
	out["slow_not_cut"] = notCut.Load()
	out["slow_408"] = got408.Load()
	if len(cuts) > 0 {
		out["cut_min_s"] = cuts[0].Seconds()
		out["cut_max_s"] = cuts[len(cuts)-1].Seconds()
	}
	out["header_timeout_s"] = headerTimeout.Seconds()
	return out
}

func blocking(addr string, blockers int, block time.Duration, probes int, duration time.Duration) map[string]any {
	stop := make(chan struct{})
	var wg sync.WaitGroup
	var blocked atomic.Int64
	req := []byte(fmt.Sprintf("GET /delay?ms=%d HTTP/1.1\r\nHost: x\r\n\r\n", block.Milliseconds()))
	for i := 0; i < blockers; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			c, err := dialer(i).Dial("tcp", addr)
			if err != nil {
				return
			}
			defer c.Close()
			br := bufio.NewReader(c)
			for {
				select {
				case <-stop:
					return
				default:
				}
				c.SetDeadline(time.Now().Add(block + 10*time.Second))
				c.Write(req)
				if readResponse(br) != nil {
					return
				}
				blocked.Add(1)
			}
		}(i)
	}
	time.Sleep(500 * time.Millisecond) // let the blockers occupy workers
	lat := &latencies{}
	var errs atomic.Int64
	var pwg sync.WaitGroup
	for i := 0; i < probes; i++ {
		pwg.Add(1)
		go func(i int) { defer pwg.Done(); probe(addr, 1000+i, stop, lat, &errs) }(i)
	}
	time.Sleep(duration)
	close(stop)
	pwg.Wait()
	wg.Wait()
	out := lat.summary()
	out["mode"] = "blocking"
	out["blockers"] = blockers
	out["blocked_requests_done"] = blocked.Load()
	out["probe_errors"] = errs.Load()
	return out
}
