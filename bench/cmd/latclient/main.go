// Command latclient measures request latency through an HTTP/1.1 server
// for bench/proxy-hedge.sh: -conns keep-alive connections each send GET
// requests one after another for -duration, and every request's latency
// is kept, so the percentiles are exact (no histogram buckets, no
// sampling). Without -rate each connection sends its next request as soon
// as it has the answer (closed loop); with -rate R the connections share R
// requests a second, each on its own schedule, catching up (back to back)
// after a slow answer, so two servers compared get the same load.
//
//	latclient -addr 127.0.0.1:8080 -conns 32 -duration 10s
//	latclient -addr 127.0.0.1:8080 -conns 64 -rate 4000 -duration 10s
//
// It prints one line: "requests N errors E rps R p50 A p90 B p99 C p999 D
// max M" (latencies in ms). A connection that fails is redialled.
package main

import (
	"bufio"
	"flag"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"slices"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	conns := flag.Int("conns", 32, "connections, each with one request at a time")
	duration := flag.Duration("duration", 10*time.Second, "how long to send")
	path := flag.String("path", "/", "request path")
	rate := flag.Float64("rate", 0, "requests a second over all connections (0: closed loop, as fast as answered)")
	flag.Parse()

	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	var errs atomic.Int64
	lats := make([][]time.Duration, *conns)
	end := time.Now().Add(*duration)
	var wg sync.WaitGroup
	for i := 0; i < *conns; i++ {
		wg.Add(1)
		go func(i int) {
			defer wg.Done()
			l := make([]time.Duration, 0, 1<<16)
			var c net.Conn
			var br *bufio.Reader
			var interval time.Duration
			next := time.Now()
			if *rate > 0 {
				interval = time.Duration(float64(*conns) / *rate * 1e9)
				next = next.Add(time.Duration(i) * interval / time.Duration(*conns)) // spread the connections
			}
			for time.Now().Before(end) {
				if interval > 0 {
					if d := time.Until(next); d > 0 {
						time.Sleep(d)
					}
					next = next.Add(interval)
				}
				if c == nil {
					var err error
					if c, err = net.DialTimeout("tcp", *addr, 5*time.Second); err != nil {
						errs.Add(1)
						c = nil
						time.Sleep(10 * time.Millisecond)
						continue
					}
					br = bufio.NewReader(c)
				}
				c.SetDeadline(time.Now().Add(30 * time.Second))
				t0 := time.Now()
				_, err := c.Write(req)
				var resp *http.Response
				if err == nil {
					resp, err = http.ReadResponse(br, nil)
				}
				if err == nil {
					_, err = io.Copy(io.Discard, resp.Body)
					resp.Body.Close()
				}
				if err != nil || resp.StatusCode != 200 {
					errs.Add(1)
					c.Close()
					c = nil
					continue
				}
				l = append(l, time.Since(t0))
			}
			if c != nil {
				c.Close()
			}
			lats[i] = l
		}(i)
	}
	wg.Wait()
	all := slices.Concat(lats...)
	if len(all) == 0 {
		fmt.Fprintln(os.Stderr, "latclient: no request completed")
		os.Exit(1)
	}
	slices.Sort(all)
	q := func(p float64) float64 {
		i := int(p * float64(len(all)))
		if i >= len(all) {
			i = len(all) - 1
		}
		return float64(all[i]) / 1e6
	}
	fmt.Printf("requests %d errors %d rps %.0f p50 %.3f p90 %.3f p99 %.3f p999 %.3f max %.3f\n",
		len(all), errs.Load(), float64(len(all))/duration.Seconds(), q(0.50), q(0.90), q(0.99), q(0.999), float64(all[len(all)-1])/1e6)
}
