// Command churn measures connection churn: C workers, each in a loop for D
// seconds, connect, make one request, and close.
//
//	churn -addr 127.0.0.1:8080 -mode ws -c 64 -d 10s
//
// -mode ws upgrades GET -path (default /ws), sends one -msg-size message,
// reads the echo, sends Close 1000, reads the server's Close and waits for
// the server to close TCP (the clean close RFC 6455 asks for). -mode http
// sends one keep-alive GET -path (default /), reads the response and
// closes from the client. Connections come from -src-count loopback source
// addresses starting at -src-base, so no address runs out of ephemeral
// ports while closed connections sit in TIME_WAIT.
//
// It prints one JSON line: cycles completed, cycles per second (connects
// and closes per second), errors by kind, and cycle latency percentiles.
// It exits 1 when more than -max-errors of the attempts failed.
package main

import (
	"bufio"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/bench/internal/wsclient"
	"github.com/warrenhq/warren/websocket"
)

type report struct {
	Mode      string             `json:"mode"`
	Workers   int                `json:"workers"`
	Seconds   float64            `json:"seconds"`
	Attempts  int                `json:"attempts"`
	Cycles    int                `json:"cycles"`
	PerSecond float64            `json:"cycles_per_second"`
	Errors    map[string]int     `json:"errors"`
	Latency   map[string]float64 `json:"cycle_latency_ms"`
}

func main() {
	addr := flag.String("addr", "", "server HOST:PORT (required)")
	mode := flag.String("mode", "ws", "ws (upgrade, one message, close handshake) or http (one GET, client closes)")
	path := flag.String("path", "", "request path (default /ws for ws, / for http)")
	workers := flag.Int("c", 64, "concurrent workers")
	dur := flag.Duration("d", 10*time.Second, "how long to churn")
	msgSize := flag.Int("msg-size", 32, "WebSocket message bytes")
	srcBase := flag.String("src-base", "127.0.3.1", "first loopback source address (empty: the kernel's choice)")
	srcCount := flag.Int("src-count", 60, "source addresses to rotate over")
	timeout := flag.Duration("timeout", 5*time.Second, "bound on one cycle")
	maxErr := flag.Float64("max-errors", 0.01, "exit 1 above this fraction of failed attempts")
	flag.Parse()
	if *addr == "" || *workers < 1 || (*mode != "ws" && *mode != "http") {
		flag.Usage()
		os.Exit(2)
	}
	if *path == "" {
		*path = map[string]string{"ws": "/ws", "http": "/"}[*mode]
	}
	if _, err := benchutil.RaiseFileLimit(); err != nil {
		fatal("raising the open-file limit: %v", err)
	}
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fatal("%v", err)
	}
	payload := make([]byte, *msgSize)
	for i := range payload {
		payload[i] = 'a' + byte(i%26)
	}

	type result struct {
		attempts, cycles int
		errs             map[string]int
		lat              []time.Duration
	}
	results := make([]result, *workers)
	start := time.Now()
	deadline := start.Add(*dur)
	var wg sync.WaitGroup
	for w := range *workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r := &results[w]
			r.errs = map[string]int{}
			buf := make([]byte, 0, 256)
			for i := 0; time.Now().Before(deadline); i++ {
				r.attempts++
				t0 := time.Now()
				var err error
				if *mode == "ws" {
					err = wsCycle(srcs, w+i**workers, *addr, *path, payload, buf, *timeout)
				} else {
					err = httpCycle(srcs, w+i**workers, *addr, *path, *timeout)
				}
				if err != nil {
					r.errs[wsclient.ErrKind(err)]++
					continue
				}
				r.cycles++
				if len(r.lat) < 100_000 {
					r.lat = append(r.lat, time.Since(t0))
				}
			}
		}()
	}
	wg.Wait()
	elapsed := time.Since(start).Seconds()

	rep := report{Mode: *mode, Workers: *workers, Seconds: elapsed, Errors: map[string]int{}, Latency: map[string]float64{}}
	var lat []time.Duration
	for _, r := range results {
		rep.Attempts += r.attempts
		rep.Cycles += r.cycles
		for k, v := range r.errs {
			rep.Errors[k] += v
		}
		lat = append(lat, r.lat...)
	}
	rep.PerSecond = float64(rep.Cycles) / elapsed
	slices.Sort(lat)
	for _, q := range []struct {
		name string
		p    float64
	}{{"p50", 0.50}, {"p90", 0.90}, {"p99", 0.99}, {"max", 1}} {
		if len(lat) > 0 {
			i := min(len(lat)-1, int(q.p*float64(len(lat))))
			rep.Latency[q.name] = float64(lat[i].Microseconds()) / 1000
		}
	}
	json.NewEncoder(os.Stdout).Encode(rep)
	failed := rep.Attempts - rep.Cycles
	if rep.Attempts == 0 || float64(failed) > *maxErr*float64(rep.Attempts) {
		os.Exit(1)
	}
}

// wsCycle connects, upgrades, echoes one message and closes cleanly.
func wsCycle(srcs []*net.TCPAddr, i int, addr, path string, payload, buf []byte, timeout time.Duration) error {
	nc, err := benchutil.Dialer(srcs, i, timeout).Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	c, err := wsclient.Handshake(nc, addr, path)
	if err != nil {
		return err
	}
	if err := c.WriteMessage(websocket.OpBinary, payload); err != nil {
		return err
	}
	op, got, err := c.ReadFrame(buf)
	if err != nil {
		return err
	}
	if op != websocket.OpBinary || len(got) != len(payload) {
		return fmt.Errorf("echo: opcode %v, %d bytes", op, len(got))
	}
	if err := c.WriteClose(1000, ""); err != nil {
		return err
	}
	for {
		op, _, err := c.ReadFrame(buf)
		if err != nil {
			return err
		}
		if op == websocket.OpClose {
			break
		}
	}
	// The server closes TCP after its Close frame; wait for that.
	if _, err := io.Copy(io.Discard, nc); err != nil {
		return err
	}
	return nil
}

// httpCycle connects, makes one keep-alive GET and closes from the client.
func httpCycle(srcs []*net.TCPAddr, i int, addr, path string, timeout time.Duration) error {
	nc, err := benchutil.Dialer(srcs, i, timeout).Dial("tcp", addr)
	if err != nil {
		return err
	}
	defer nc.Close()
	nc.SetDeadline(time.Now().Add(timeout))
	if _, err := io.WriteString(nc, "GET "+path+" HTTP/1.1\r\nHost: "+addr+"\r\n\r\n"); err != nil {
		return err
	}
	code, err := wsclient.ReadHTTPResponse(bufio.NewReaderSize(nc, 512))
	if err != nil {
		return err
	}
	if code != 200 {
		return fmt.Errorf("status %d", code)
	}
	return nil
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "churn: "+format+"\n", args...)
	os.Exit(2)
}
