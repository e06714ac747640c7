// Command mqtthost runs warren's MQTT broker alone on an engine, for
// benchmarks: no gateway, no NATS, no admin listener.
//
//	mqtthost -addr 127.0.0.1:0
//
// It prints "listening ADDR gogc=N" (N: the collector's target in
// effect, -1 off) once the listener is up, writes the Go memory
// figures ("MEMSTATS {json}", after a GC) to stderr on SIGUSR1, and exits
// on SIGTERM or SIGINT after draining. -pprof HOST:PORT serves
// net/http/pprof. -memtrim-burst N runs warren serve's trim after bursts
// of allocation (internal/memtrim) with that burst size; by default it is
// off, so the broker runs with the runtime as shipped. Once the listener is
// up it runs the collection at the end of start-up that warren serve runs
// in every process (memtrim's Settle: two collections and the release of
// free pages), so the benchmark measures the broker as shipped;
// -start-gc=false leaves it out. -gogc sets the garbage collector's target
// as warren serve's -gogc does, with its default: $GOGC when set, else 25
// (cmd/warren's DefaultServeGOGC), so that the benchmark measures the
// broker with the collector as shipped; -gogc 100 is the runtime's own
// default, which every run that did not set GOGC measured before
// docs/benchmarks.md §79 (some set GOGC=50 or 25: their sections say so).
package main

import (
	"context"
	"flag"
	"fmt"
	"net/http"
	_ "net/http/pprof"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"syscall"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/memtrim"
	"github.com/warrenhq/warren/mqtt"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:1883", "MQTT listener")
	loops := flag.Int("loops", 0, "event loops (0: GOMAXPROCS)")
	pprofAddr := flag.String("pprof", "", "serve net/http/pprof on HOST:PORT")
	trimBurst := flag.Int64("memtrim-burst", -1, "bytes allocated after which a quiet second returns free memory to the OS, as warren serve's -memtrim-burst (negative: off)")
	startGC := flag.Bool("start-gc", true, "collect twice and return free memory to the OS once the listener is up, as warren serve's -memtrim-start")
	gogc := flag.Int("gogc", defaultGOGC(), "garbage collector target in percent (debug.SetGCPercent), as warren serve's -gogc: the heap may grow this much over the live heap before a collection (default $GOGC if set, else warren serve's 25; negative: off)")
	flag.Parse()
	debug.SetGCPercent(*gogc)
	trim := memtrim.New(memtrim.Config{Burst: *trimBurst, NoSettle: !*startGC})
	go trim.Run(context.Background())
	if *pprofAddr != "" {
		go http.ListenAndServe(*pprofAddr, nil)
	}
	e, err := engine.New(engine.Config{Loops: *loops, MaxConns: -1}, nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	if err := e.Start(""); err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	b := mqtt.NewServer(mqtt.Config{PublishRate: -1, PublishBytesRate: -1})
	ln, err := b.Listen(e, *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, err)
		os.Exit(1)
	}
	trim.Settle()
	fmt.Println(listeningLine(ln.Addr().String(), *gogc))
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	stats := make(chan os.Signal, 1)
	benchutil.NotifyStats(stats)
	for done := false; !done; {
		select {
		case <-sig:
			done = true
		case <-stats:
			runtime.GC()
			benchutil.PrintMem()
		}
	}
	ctx, cancel := context.WithTimeout(context.Background(), 5*time.Second)
	defer cancel()
	e.Shutdown(ctx)
	b.Close()
}

// serveGOGC is warren serve's -gogc default (cmd/warren DefaultServeGOGC),
// which a benchmark of the broker as shipped runs with.
const serveGOGC = 25

// defaultGOGC is -gogc's default: $GOGC when set ("off": -1), else
// serveGOGC, as warren serve's.
func defaultGOGC() int { return memtrim.EnvGOGC(serveGOGC) }

// listeningLine is what mqtthost prints once its listener is up: its
// address, second word as the bench scripts read it, and the collector's
// target in effect, so that an A/B's report shows what each side ran with.
func listeningLine(addr string, gogc int) string {
	return fmt.Sprintf("listening %s gogc=%d", addr, gogc)
}
