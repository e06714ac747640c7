// Command wsdrain checks a WebSocket server's graceful drain: it opens -n
// connections to ws://ADDR/PATH, proves each with one echoed message,
// prints "READY n" and then waits for the server to close them (a script
// sends the server SIGTERM). Every connection records the Close code it
// receives, answers the Close as RFC 6455 asks and waits for the server to
// close TCP.
//
//	wsdrain -addr 127.0.0.1:8080 -n 2000 -wait 30s
//
// When every connection has ended, or -wait after READY has passed, it
// prints one JSON line: connections opened, how many got Close 1001 (going
// away), other Close codes, connections that ended without a Close frame,
// connections still open, and the time from the first Close to the last
// connection's end. It exits 0 when every opened connection got 1001.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/bench/internal/wsclient"
	"github.com/warrenhq/warren/websocket"
)

type report struct {
	Opened       int            `json:"opened"`
	OpenFailed   map[string]int `json:"open_failed"`
	Got1001      int            `json:"got_1001"`
	OtherCodes   map[string]int `json:"other_close_codes"`
	NoClose      map[string]int `json:"ended_without_close"`
	StillOpen    int            `json:"still_open"`
	FirstCloseMS float64        `json:"first_close_after_ready_ms"`
	LastEndMS    float64        `json:"last_end_after_ready_ms"`
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

	var mu sync.Mutex
	rep := report{OpenFailed: map[string]int{}, OtherCodes: map[string]int{}, NoClose: map[string]int{}}
	var conns []*wsclient.Conn
	sem := make(chan struct{}, *conc)
	var wg sync.WaitGroup
	for i := range *n {
		sem <- struct{}{}
		wg.Add(1)
		go func() {
			defer func() { <-sem; wg.Done() }()
			nc, err := benchutil.Dialer(srcs, i, 5*time.Second).Dial("tcp", *addr)
			if err == nil {
				nc.SetDeadline(time.Now().Add(10 * time.Second))
				var c *wsclient.Conn
				if c, err = wsclient.Handshake(nc, *addr, *path); err == nil {
					if err = c.WriteMessage(websocket.OpBinary, []byte("ping")); err == nil {
						if _, _, err = c.ReadFrame(nil); err == nil {
							nc.SetDeadline(time.Time{})
							mu.Lock()
							conns = append(conns, c)
							mu.Unlock()
							return
						}
					}
				}
				nc.Close()
			}
			mu.Lock()
			rep.OpenFailed[wsclient.ErrKind(err)]++
			mu.Unlock()
		}()
	}
	wg.Wait()
	rep.Opened = len(conns)
	ready := time.Now()
	fmt.Printf("READY %d\n", len(conns))

	var firstClose, lastEnd atomic.Int64 // ns after ready
	firstClose.Store(-1)
	var open atomic.Int64
	open.Store(int64(len(conns)))
	done := make(chan struct{})
	for _, c := range conns {
		go func() {
			c.NC.SetReadDeadline(ready.Add(*wait))
			code, kind := -1, ""
			for {
				op, p, err := c.ReadFrame(nil)
				if err != nil {
					kind = wsclient.ErrKind(err)
					break
				}
				if op == websocket.OpPing {
					c.WriteMessage(websocket.OpPong, p)
					continue
				}
				if op == websocket.OpClose {
					code = int(wsclient.CloseCode(p))
					firstClose.CompareAndSwap(-1, int64(time.Since(ready)))
					c.WriteClose(uint16(code), "")
					c.NC.SetReadDeadline(time.Now().Add(5 * time.Second))
					io.Copy(io.Discard, c.NC) // the server closes TCP
					break
				}
			}
			c.NC.Close()
			end := int64(time.Since(ready))
			for {
				old := lastEnd.Load()
				if end <= old || lastEnd.CompareAndSwap(old, end) {
					break
				}
			}
			mu.Lock()
			switch {
			case code == 1001:
				rep.Got1001++
			case code >= 0:
				rep.OtherCodes[strconv.Itoa(code)]++
			case kind == "timeout" && time.Since(ready) >= *wait:
				rep.StillOpen++
			default:
				rep.NoClose[kind]++
			}
			mu.Unlock()
			if open.Add(-1) == 0 {
				close(done)
			}
		}()
	}
	if len(conns) > 0 {
		<-done
	}
	rep.FirstCloseMS = float64(firstClose.Load()) / 1e6
	rep.LastEndMS = float64(lastEnd.Load()) / 1e6
	json.NewEncoder(os.Stdout).Encode(rep)
	if rep.Opened < *n || rep.Got1001 != rep.Opened {
		os.Exit(1)
	}
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "wsdrain: "+format+"\n", args...)
	os.Exit(2)
}
