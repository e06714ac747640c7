package main

import (
	"context"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"os"
	"os/exec"
	"os/signal"
	"syscall"
	"time"

	"github.com/warrenhq/warren/loadgen"
)

// runLoad is warren load: flags -> loadgen.Config -> loadgen.Run, then the
// summary, the JSON report and the charts.
func runLoad(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: warren load -url URL [flags]

Opens -conns connections at -rate per second, holds them idle for -hold,
then sends requests (HTTP) or messages (WebSocket) for -duration, closed-loop
with -inflight outstanding per connection or open-loop at -rps, and reports
connect rate, errors, throughput, latency percentiles and, with -server-pid
or -admin, the server's memory per connection and CPU per request.

flags:
`)
		fs.PrintDefaults()
	}
	var cfg loadgen.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080/", "target: http://host:port/path (keep-alive GET) or ws://host:port/path (WebSocket echo)")
	fs.IntVar(&cfg.Conns, "conns", 100, "connections to open")
	fs.Float64Var(&cfg.Rate, "rate", 0, "connections opened per second in the ramp (0: as fast as accepted, at most 1024 connecting)")
	src := fs.String("src", "", "source addresses: a count N (127.0.1.1 and up), a range 127.0.1.1-127.0.1.60, or a comma list (empty: the kernel's choice)")
	fs.DurationVar(&cfg.Hold, "hold", 0, "keep the connections open and idle this long after the ramp")
	fs.DurationVar(&cfg.Duration, "duration", 0, "traffic phase length (0: 10s without -hold, no traffic with -hold)")
	fs.Float64Var(&cfg.RPS, "rps", 0, "open-loop: total requests (messages) per second, latency from the intended send time (0: closed-loop)")
	fs.IntVar(&cfg.Inflight, "inflight", 1, "outstanding requests per connection: exact closed-loop, at most open-loop (>1 pipelines HTTP)")
	fs.IntVar(&cfg.MsgSize, "msg-size", 32, "WebSocket message payload bytes")
	fs.DurationVar(&cfg.Timeout, "timeout", 10*time.Second, "connect (with handshake) and request timeout; also the wait for answers after the traffic")
	fs.IntVar(&cfg.ServerPID, "server-pid", 0, "server pid: report its RSS per connection and CPU per request from /proc")
	fs.StringVar(&cfg.AdminURL, "admin", "", "server admin URL (http://127.0.0.1:9901): RSS, CPU and connections from its /metrics")
	fs.IntVar(&cfg.Loops, "loops", 0, "client event loops per process (0: GOMAXPROCS)")
	fs.IntVar(&cfg.Procs, "procs", 1, "worker processes to spread the connections over (past the per-process open-file limit)")
	jsonPath := fs.String("json", "", "write the JSON report to this file")
	svgDir := fs.String("svg", "", "write latency.svg and conns.svg to this directory")
	maxErrors := fs.Float64("max-errors", 0.01, "exit 1 when more than this fraction of connections fail")
	quiet := fs.Bool("quiet", false, "no progress line every second on stderr")
	worker := fs.Bool("worker", false, "run as a worker of a -procs parent, speaking JSON on stdin/stdout (internal)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if fs.NArg() > 0 {
		fmt.Fprintf(stderr, "warren load: unexpected arguments %q\n", fs.Args())
		return 2
	}
	if *worker {
		// The parent handles ^C for the whole group; a worker stops when
		// told to, or when its standard input closes.
		signal.Ignore(os.Interrupt, syscall.SIGTERM)
		if err := loadgen.ServeWorker(context.Background(), os.Stdin, stdout); err != nil {
			fmt.Fprintf(stderr, "warren load worker: %v\n", err)
			return 1
		}
		return 0
	}
	var err error
	if cfg.Sources, err = loadgen.ParseSources(*src); err != nil {
		fmt.Fprintf(stderr, "warren load: -src: %v\n", err)
		return 2
	}
	if !*quiet {
		cfg.Progress = stderr
	}
	if cfg.Procs > 1 {
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "warren load: -procs: %v\n", err)
			return 1
		}
		cfg.WorkerCommand = func(int) *exec.Cmd {
			cmd := exec.Command(exe, "load", "-worker")
			cmd.Stderr = stderr
			return cmd
		}
	}
	ctx, stop := signal.NotifyContext(context.Background(), os.Interrupt, syscall.SIGTERM)
	defer stop()
	rep, err := loadgen.Run(ctx, cfg)
	code := 0
	if err != nil {
		fmt.Fprintf(stderr, "warren load: %v\n", err)
		code = 1
	}
	if rep == nil {
		return 1
	}
	rep.WriteSummary(stdout)
	if *jsonPath != "" {
		b, _ := json.MarshalIndent(rep, "", "  ")
		if err := os.WriteFile(*jsonPath, append(b, '\n'), 0o644); err != nil {
			fmt.Fprintf(stderr, "warren load: -json: %v\n", err)
			code = 1
		}
	}
	if *svgDir != "" {
		if err := rep.WriteSVG(*svgDir); err != nil {
			fmt.Fprintf(stderr, "warren load: -svg: %v\n", err)
			code = 1
		}
	}
	if f := rep.FailedFraction(); f > *maxErrors {
		fmt.Fprintf(stderr, "warren load: %.2f%% of connections failed (over -max-errors %.2f%%)\n", 100*f, 100**maxErrors)
		code = 1
	}
	if errors.Is(err, context.Canceled) && code == 0 {
		code = 1
	}
	return code
}
