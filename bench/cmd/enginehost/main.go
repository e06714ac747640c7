// Command enginehost runs the engine's TCP echo in-process with profiling
// hooks, for finding where an idle connection's bytes go. It serves the
// same handler as `warren echo -proto tcp` (inline on the loops) and adds:
//
//   - SIGUSR1 writes the Go memory figures ("MEMSTATS {json}") to stderr;
//   - -pprof HOST:PORT serves net/http/pprof (heap, allocs, goroutine);
//   - -memprofilerate sets runtime.MemProfileRate before anything allocates,
//     so a heap profile can attribute every byte (1) rather than a sample.
//
// For example:
//
//	enginehost -addr 127.0.0.1:0 -pprof 127.0.0.1:6060 -memprofilerate 1
//	go tool pprof -sample_index=inuse_space http://127.0.0.1:6060/debug/pprof/heap
//
// It prints "listening HOST:PORT" on stdout and exits on SIGTERM or SIGINT.
package main

import (
	"context"
	"flag"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	_ "net/http/pprof" // registers /debug/pprof on http.DefaultServeMux
	"os"
	"os/signal"
	"runtime"
	"syscall"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
	"github.com/warrenhq/warren/engine"
)

// echo is cmd/warren's tcpEcho: write back whatever arrives.
type echo struct{}

func (echo) OnData(c *engine.Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on this address (empty: off)")
	rate := flag.Int("memprofilerate", 0, "runtime.MemProfileRate (0: the runtime's default, 1: every allocation)")
	loops := flag.Int("loops", 0, "event loops (0: GOMAXPROCS)")
	portable := flag.Bool("portable", false, "run the portable engine")
	worker := flag.Bool("worker", false, "run OnData on the worker pool instead of inline")
	flag.Parse()
	if *rate > 0 {
		runtime.MemProfileRate = *rate
	}

	log := slog.New(slog.NewTextHandler(os.Stderr, &slog.HandlerOptions{Level: slog.LevelWarn}))
	e, err := engine.New(engine.Config{Loops: *loops, Portable: *portable, Inline: !*worker, Logger: log}, echo{})
	if err != nil {
		fatal(err)
	}
	if err := e.Start(*addr); err != nil {
		fatal(err)
	}
	if *pprofAddr != "" {
		ln, err := net.Listen("tcp", *pprofAddr)
		if err != nil {
			fatal(err)
		}
		srv := &http.Server{ReadHeaderTimeout: 5 * time.Second}
		go srv.Serve(ln)
		fmt.Fprintln(os.Stderr, "pprof on", ln.Addr())
	}
	fmt.Println("listening", e.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stats := make(chan os.Signal, 1)
	benchutil.NotifyStats(stats)
	for {
		select {
		case <-stats:
			benchutil.PrintMem()
		case <-stop:
			ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
			e.Shutdown(ctx)
			cancel()
			return
		}
	}
}

func fatal(err error) {
	fmt.Fprintln(os.Stderr, "enginehost:", err)
	os.Exit(1)
}
