// Command churn measures connection churn: C workers, each in a loop for D
// seconds, connect, make one request, and close.
//
//	churn -addr 127.0.0.1:8080 -mode ws -c 64 -d 10s
//
// -mode ws upgrades GET -path (default /ws), sends one -msg-size message,
// reads the echo, sends Close 1000, reads the server's Close and waits for
// the server to close TCP (the clean close RFC 6455 asks for): a
// websocket.Dial connection on one engine shared by the workers. -mode http
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
	"log/slog"
	"net"
	"os"
	"slices"
	"sync"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/engine"
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
	var clients []*websocket.Client
	if *mode == "ws" {
		eng, err := engine.New(engine.Config{WriteTimeout: *timeout, Logger: slog.New(slog.DiscardHandler)}, nil)
		if err != nil {
			fatal("%v", err)
		}
		if err := eng.Start(""); err != nil {
			fatal("%v", err)
		}
		defer eng.Close()
		for _, src := range benchutil.LocalAddrs(srcs) {
			cl, err := websocket.NewClient(eng, websocket.DialConfig{Inline: true, LocalAddr: src, HandshakeTimeout: *timeout},
				cycleHandler{})
			if err != nil {
				fatal("%v", err)
			}
			clients = append(clients, cl)
		}
	}
	url := "ws://" + *addr + *path

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
			for i := 0; time.Now().Before(deadline); i++ {
				r.attempts++
				t0 := time.Now()
				var err error
				if *mode == "ws" {
					err = wsCycle(clients[(w+i**workers)%len(clients)], url, payload, *timeout)
				} else {
					err = httpCycle(srcs, w+i**workers, *addr, *path, *timeout)
				}
				if err != nil {
					r.errs[benchutil.ErrKind(err)]++
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

// cycle is one WebSocket cycle's state, in its Conn's context. The
// callbacks run on the loop, one at a time.
type cycle struct {
	payload []byte
	echoed  bool
	err     error
	done    chan error // gets the cycle's outcome once
}

// cycleHandler runs a cycle: the message on open, Close 1000 on its echo;
// the cycle succeeds when the close handshake ends with 1000.
type cycleHandler struct{}

func (cycleHandler) OnOpen(c *websocket.Conn) {
	c.WriteMessage(websocket.OpBinary, c.Context().(*cycle).payload)
}

func (cycleHandler) OnMessage(c *websocket.Conn, op websocket.Opcode, data []byte) {
	cy := c.Context().(*cycle)
	if op != websocket.OpBinary || len(data) != len(cy.payload) {
		cy.err = fmt.Errorf("echo: opcode %v, %d bytes", op, len(data))
	} else {
		cy.echoed = true
	}
	c.Close(websocket.CloseNormal, "")
}

func (cycleHandler) OnError(c *websocket.Conn, err error) { c.Context().(*cycle).err = err }

func (cycleHandler) OnClose(c *websocket.Conn, reason engine.CloseReason, code uint16) {
	cy := c.Context().(*cycle)
	err := cy.err
	switch {
	case err != nil:
	case code == websocket.CloseAbnormal && reason == engine.ReasonPeerClosed:
		err = io.EOF
	case code == websocket.CloseAbnormal:
		err = fmt.Errorf("closed: %v", reason)
	case !cy.echoed || code != websocket.CloseNormal:
		err = fmt.Errorf("closed with %d (%v) before the echo", code, reason)
	}
	cy.done <- err
}

// wsCycle connects, upgrades, echoes one message and closes cleanly.
func wsCycle(cl *websocket.Client, url string, payload []byte, timeout time.Duration) error {
	cy := &cycle{payload: payload, done: make(chan error, 1)}
	c, err := cl.DialWith(url, cy)
	if err != nil {
		return err
	}
	t := time.NewTimer(timeout)
	defer t.Stop()
	select {
	case err := <-cy.done:
		return err
	case <-t.C:
		c.Engine().Abort(engine.ReasonReadTimeout)
		<-cy.done
		return os.ErrDeadlineExceeded
	}
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
	code, err := benchutil.ReadHTTPResponse(bufio.NewReaderSize(nc, 512))
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
