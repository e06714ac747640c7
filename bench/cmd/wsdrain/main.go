// Command wsdrain checks a WebSocket server's graceful drain: it opens -n
// connections to ws://ADDR/PATH, proves each with one echoed message,
// prints "READY n" and then waits for the server to close them (a script
// sends the server SIGTERM). Every connection records the Close code it
// receives, answers the Close as RFC 6455 asks and waits for the server to
// close TCP: the connections are websocket.Dial connections on one
// engine, which do exactly that.
//
//	wsdrain -addr 127.0.0.1:8080 -n 2000 -wait 30s
//
// When every connection has ended, or -wait after READY has passed, it
// prints one JSON line: connections opened, how many got Close 1001 (going
// away), other Close codes, connections that ended without a Close frame,
// connections still open, and the times from READY to the first and the
// last connection's end. It exits 0 when every opened connection got 1001.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log/slog"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/websocket"
)

type report struct {
	Opened       int            `json:"opened"`
	OpenFailed   map[string]int `json:"open_failed"`
	Got1001      int            `json:"got_1001"`
	OtherCodes   map[string]int `json:"other_close_codes"`
	NoClose      map[string]int `json:"ended_without_close"`
	StillOpen    int            `json:"still_open"`
	FirstCloseMS float64        `json:"first_close_after_ready_ms"` // the first connection's end
	LastEndMS    float64        `json:"last_end_after_ready_ms"`
}

// conn is one connection's story, kept in its websocket.Conn's context.
type conn struct {
	settle func() // releases the connect slot once: opened or failed
	opened bool   // its echo came back before READY; guarded by mu
	err    error  // from OnError (callbacks run one at a time)
	timer  *time.Timer
	c      atomic.Pointer[websocket.Conn]
}

func main() {
	addr := flag.String("addr", "", "server HOST:PORT (required)")
	path := flag.String("path", "/ws", "WebSocket path")
	n := flag.Int("n", 2000, "connections")
	conc := flag.Int("concurrency", 100, "connects in flight")
	srcBase := flag.String("src-base", "127.0.4.1", "first loopback source address")
	srcCount := flag.Int("src-count", 10, "source addresses to rotate over")
	wait := flag.Duration("wait", 30*time.Second, "how long to wait for the server to close them after READY")
	flag.Parse()
	if *addr == "" || *n < 1 {
		flag.Usage()
		os.Exit(2)
	}
	if _, err := benchutil.RaiseFileLimit(); err != nil {
		fatal("raising the open-file limit: %v", err)
	}
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fatal("%v", err)
	}
	eng, err := engine.New(engine.Config{WriteTimeout: 5 * time.Second, Logger: slog.New(slog.DiscardHandler)}, nil)
	if err != nil {
		fatal("%v", err)
	}
	if err := eng.Start(""); err != nil {
		fatal("%v", err)
	}
	defer eng.Close()

	var mu sync.Mutex // guards rep and the times below
	rep := report{OpenFailed: map[string]int{}, OtherCodes: map[string]int{}, NoClose: map[string]int{}}
	var ready time.Time
	var firstEnd, lastEnd time.Duration = -1, 0
	var open atomic.Int64 // opened connections not yet ended
	allEnded := make(chan struct{})
	var readyOnce sync.Once

	h := websocket.HandlerFuncs{
		Open: func(c *websocket.Conn) { c.WriteMessage(websocket.OpBinary, []byte("ping")) },
		Message: func(c *websocket.Conn, op websocket.Opcode, data []byte) {
			st := c.Context().(*conn)
			mu.Lock()
			first := !st.opened && ready.IsZero()
			if first {
				st.opened = true
				rep.Opened++
				open.Add(1)
			}
			mu.Unlock()
			if first {
				st.timer.Stop()
				st.settle()
			}
		},
		Error: func(c *websocket.Conn, err error) { c.Context().(*conn).err = err },
		Close: func(c *websocket.Conn, reason engine.CloseReason, code uint16) {
			st := c.Context().(*conn)
			st.timer.Stop()
			mu.Lock()
			defer mu.Unlock()
			if !st.opened {
				kind := benchutil.ErrKind(st.err)
				if kind == "" {
					kind = reason.String()
				}
				rep.OpenFailed[kind]++
				st.settle()
				return
			}
			if !ready.IsZero() {
				end := time.Since(ready)
				if firstEnd < 0 {
					firstEnd = end
				}
				lastEnd = max(lastEnd, end)
			}
			switch {
			case code == websocket.CloseGoingAway:
				rep.Got1001++
			case code != websocket.CloseAbnormal:
				rep.OtherCodes[strconv.Itoa(int(code))]++
			default:
				kind := benchutil.ErrKind(st.err)
				switch {
				case kind != "":
				case reason == engine.ReasonPeerClosed:
					kind = "eof"
				case reason == engine.ReasonPeerReset:
					kind = "reset"
				default:
					kind = reason.String()
				}
				rep.NoClose[kind]++
			}
			if open.Add(-1) == 0 && !ready.IsZero() {
				readyOnce.Do(func() { close(allEnded) })
			}
		},
	}
	var clients []*websocket.Client
	for _, src := range benchutil.LocalAddrs(srcs) {
		cl, err := websocket.NewClient(eng, websocket.DialConfig{Inline: true, LocalAddr: src}, h)
		if err != nil {
			fatal("%v", err)
		}
		clients = append(clients, cl)
	}

	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	url := "ws://" + *addr + *path
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		var once sync.Once
		st := &conn{settle: func() { once.Do(func() { <-sem; wg.Done() }) }}
		// Opening (connect, handshake and echo) is bounded by 10 s.
		st.timer = time.AfterFunc(10*time.Second, func() {
			if c := st.c.Load(); c != nil {
				c.Engine().Abort(engine.ReasonReadTimeout)
			}
		})
		c, err := clients[i%len(clients)].DialWith(url, st)
		if err != nil {
			st.timer.Stop()
			mu.Lock()
			rep.OpenFailed[benchutil.ErrKind(err)]++
			mu.Unlock()
			st.settle()
			continue
		}
		st.c.Store(c)
	}
	wg.Wait()
	mu.Lock()
	ready = time.Now()
	opened := rep.Opened
	mu.Unlock()
	fmt.Printf("READY %d\n", opened)

	if open.Load() == 0 {
		readyOnce.Do(func() { close(allEnded) })
	}
	select {
	case <-allEnded:
	case <-time.After(*wait):
	}
	mu.Lock()
	rep.StillOpen = int(open.Load())
	rep.FirstCloseMS = float64(max(firstEnd, 0)) / 1e6
	rep.LastEndMS = float64(lastEnd) / 1e6
	json.NewEncoder(os.Stdout).Encode(rep)
	ok := rep.Opened == *n && rep.Got1001 == rep.Opened
	mu.Unlock()
	if !ok {
		os.Exit(1)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wsdrain: "+format+"\n", args...)
	os.Exit(2)
}
