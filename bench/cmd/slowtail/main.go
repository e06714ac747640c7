// Command slowtail is a backend with a slow tail for bench/proxy-hedge.sh:
// an HTTP/1.1 server (net/http) that answers GET with "hello", a chosen
// share of requests only after a delay.
//
//	slowtail -addr 127.0.0.1:0 -slow-pct 2 -slow 100ms
//
// GET /__stats answers "requests N slow M canceled K" (requests answered
// or canceled, excluding /__stats; slow ones; slow ones whose client went
// away during the delay: a hedge's loser). It prints "listening HOST:PORT"
// on stdout once it accepts connections and exits on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"math/rand/v2"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync/atomic"
	"syscall"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	pct := flag.Float64("slow-pct", 2, "percentage of requests answered after -slow")
	slow := flag.Duration("slow", 100*time.Millisecond, "delay of a slow request")
	flag.Parse()

	var requests, slowN, canceled atomic.Int64
	mux := http.NewServeMux()
	mux.HandleFunc("/__stats", func(w http.ResponseWriter, r *http.Request) {
		fmt.Fprintf(w, "requests %d slow %d canceled %d\n", requests.Load(), slowN.Load(), canceled.Load())
	})
	mux.HandleFunc("/", func(w http.ResponseWriter, r *http.Request) {
		requests.Add(1)
		if rand.Float64()*100 < *pct {
			slowN.Add(1)
			t := time.NewTimer(*slow)
			select {
			case <-t.C:
			case <-r.Context().Done():
				t.Stop()
				canceled.Add(1)
				return
			}
		}
		w.Header().Set("Content-Length", "5")
		io.WriteString(w, "hello")
	})
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "slowtail:", err)
		os.Exit(1)
	}
	srv := &http.Server{Handler: mux, ReadHeaderTimeout: 10 * time.Second}
	fmt.Println("listening", ln.Addr())
	go func() {
		ch := make(chan os.Signal, 1)
		signal.Notify(ch, syscall.SIGTERM, syscall.SIGINT)
		<-ch
		ctx, cancel := context.WithTimeout(context.Background(), 2*time.Second)
		defer cancel()
		srv.Shutdown(ctx)
	}()
	if err := srv.Serve(ln); err != nil && err != http.ErrServerClosed {
		fmt.Fprintln(os.Stderr, "slowtail:", err)
		os.Exit(1)
	}
}
