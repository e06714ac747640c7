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
	"path/filepath"
	"runtime"
	"runtime/debug"
	"strconv"
	"sync"
	"syscall"
	"time"

	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/loadgen"
)

// DefaultLoadParentGOGC is the garbage collector target of a -procs
// parent of warren load when neither -parent-gogc nor $GOGC sets one: the
// parent measures (it watches NATS for the whole run's telemetry and
// sends the commands) and holds a heap of a few MB, which Go's default of
// 100 collects several times a second at 20,000 telemetry messages a
// second (docs/benchmarks.md §48); its memory is not what a run measures.
const DefaultLoadParentGOGC = 400

// defaultLoadParentGOGC is -parent-gogc's default: $GOGC when set, else
// DefaultLoadParentGOGC.
func defaultLoadParentGOGC() int { return envGOGC(DefaultLoadParentGOGC) }

// loadWorkerArgs are the arguments of a -procs worker of warren load: its
// flags other than -worker travel in its JSON config, but -sched-slice
// is the process's, set before the worker reads its config.
func loadWorkerArgs(schedSlice time.Duration) []string {
	args := []string{"load", "-worker"}
	if schedSlice != 0 {
		args = append(args, "-sched-slice", schedSlice.String())
	}
	return args
}

// runLoad is warren load: flags -> loadgen.Config -> loadgen.Run, then the
// summary, the JSON report and the charts.
func runLoad(args []string, stdout, stderr io.Writer) int {
	// Progress lines and every worker process's standard error (copied by
	// os/exec's goroutines) share stderr: one lock orders them.
	stderr = &lockedWriter{w: stderr}
	fs := flag.NewFlagSet("warren load", flag.ContinueOnError)
	fs.SetOutput(stderr)
	fs.Usage = func() {
		fmt.Fprint(fs.Output(), `usage: warren load -url URL [flags]

Opens -conns connections at -rate per second, holds them idle for -hold,
then sends requests (HTTP) or messages (WebSocket) for -duration, closed-loop
with -inflight outstanding per connection or open-loop at -rps, and reports
connect rate, errors, throughput, latency percentiles and, with -server-pid
or -admin, the server's memory per connection and CPU per request.

With -scenario devices the connections are devices of warren serve
(-url ws://host:port/v1/connect): device n connects as dev-<n> with a token
signed with -jwt-secret, sends telemetry at -rps in total and acks every
command; -nats measures telemetry delivery and end-to-end latency on NATS,
-commands R sends R commands per second through the -api management API.
With -procs N the devices are spread over N worker processes (dev-1 … in
the first, and so on) and this process watches NATS for all of them and
sends the commands (-commands-in-devices: each worker its share, to its
own devices).
-first N numbers the devices from dev-<N+1>, so that two runs side by side
(established devices and a storm) have distinct ids; -retries makes a
device whose connect is refused try again after a jittered backoff, as
real devices do in a reconnect storm.
With -url mqtt://host:port (the gateway's -mqtt; mqtts:// for -mqtts) the
devices speak MQTT instead: client id dev-<n>, the token as password,
subscribed to devices/dev-<n>/commands/+, telemetry published on
devices/dev-<n>/telemetry at -qos, acks on devices/dev-<n>/acks/<id>.

flags:
`)
		fs.PrintDefaults()
	}
	var cfg loadgen.Config
	fs.StringVar(&cfg.URL, "url", "http://127.0.0.1:8080/", "target: http(s)://host:port/path (keep-alive GET), ws(s)://host:port/path (WebSocket echo) or mqtt(s)://host:port/prefix?qos=N (MQTT round trips, one process)")
	fs.BoolVar(&cfg.Insecure, "insecure", false, "https, wss, mqtts: do not verify the server's certificate")
	fs.StringVar(&cfg.CAFile, "ca", "", "https, wss, mqtts: PEM CAs that sign the server's certificate (empty: the system's roots)")
	fs.StringVar(&cfg.CertFile, "cert", "", "https, wss, mqtts: PEM client certificate presented when the server asks (mutual TLS; one for every connection, -scenario devices too)")
	fs.StringVar(&cfg.KeyFile, "key", "", "PEM private key of -cert")
	fs.StringVar(&cfg.CertDir, "cert-dir", "", "-scenario devices over wss or mqtts: device dev-<n> presents DIR/dev-<n>.pem (certificate and key in one PEM file), else -cert")
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
	fs.BoolVar(&cfg.BlockingPoll, "blocking-poll", cfg.BlockingPoll, "idle client loops block their threads in epoll_wait instead of parking in Go's netpoller (with -procs: in every worker)")
	fs.BoolVar(&cfg.LockOSThread, "lock-threads", cfg.LockOSThread, "lock each client event loop to its own OS thread (with -procs: in every worker, where the devices run)")
	fs.IntVar(&cfg.Procs, "procs", 1, "worker processes to spread the connections over (past the per-process open-file limit)")
	parentGOGC := fs.Int("parent-gogc", defaultLoadParentGOGC(), "with -procs: garbage collector target in percent of this process, the one that measures (the NATS watcher, the command client): its heap is a few MB, so Go's 100 collects several times a second, each a pause in the measurement (default $GOGC if set, else 400; negative: off)")
	workerProcs := fs.Int("worker-gomaxprocs", 0, "with -procs: GOMAXPROCS of each worker (0: $GOMAXPROCS if set, else the machine's CPUs divided among the workers, at least 1; negative: Go's default)")
	jsonPath := fs.String("json", "", "write the JSON report to this file")
	svgDir := fs.String("svg", "", "write latency.svg and conns.svg to this directory")
	maxErrors := fs.Float64("max-errors", 0.01, "exit 1 when more than this fraction of connections fail")
	quiet := fs.Bool("quiet", false, "no progress line every second on stderr")
	fs.StringVar(&cfg.Scenario, "scenario", "", `"devices": simulate gateway devices (see above); empty: HTTP or WebSocket echo load`)
	// The secrets' defaults are read after parsing so that -h never
	// prints them.
	jwtSecret := fs.String("jwt-secret", "", "devices: HS256 secret to sign device tokens with (default $WARREN_JWT_SECRET, else -data's jwt-secret file)")
	dataDir := fs.String("data", gateway.DefaultDataDir, "devices: warren serve's data directory, whose jwt-secret file is read when no secret is given (never created)")
	fs.BoolVar(&cfg.Devices.TokenInQuery, "token-query", false, "devices: send the token as ?token= instead of Authorization: Bearer")
	fs.StringVar(&cfg.Devices.NATS, "nats", "", "devices: NATS URL to watch devices.*.telemetry on: delivery, loss and end-to-end latency")
	fs.DurationVar(&cfg.Devices.Grace, "grace", 2*time.Second, "devices: how long to wait after the traffic for telemetry still on its way to NATS")
	fs.Float64Var(&cfg.Devices.CommandRPS, "commands", 0, "devices: commands per second through the management API to random connected devices (needs -api)")
	fs.StringVar(&cfg.Devices.APIURL, "api", "", "devices: the management API, http://host:port")
	fs.StringVar(&cfg.Devices.APIToken, "api-token", "", "devices: bearer token for the management API (default $WARREN_API_TOKEN)")
	fs.DurationVar(&cfg.Devices.CommandTimeout, "command-timeout", 5*time.Second, "devices: the ack timeout each command asks for")
	fs.BoolVar(&cfg.Devices.CommandsInDevices, "commands-in-devices", false, "devices with -procs > 1: send the commands from the worker processes, each to its own devices, instead of from the parent, which runs no devices")
	fs.IntVar(&cfg.Devices.First, "first", 0, "devices: offset of the device ids: the devices are dev-<first+1> and up (another run's devices keep theirs)")
	fs.IntVar(&cfg.Devices.Retries, "retries", 0, "devices: a device whose connect fails (refused, reset, timed out) tries again up to this many times, with jittered exponential backoff (0: no retries)")
	fs.DurationVar(&cfg.Devices.RetryBackoff, "retry-backoff", time.Second, "devices: wait before the first retry, doubled at each retry, each wait drawn between half of it and all of it")
	fs.DurationVar(&cfg.Devices.RetryBackoffMax, "retry-backoff-max", 30*time.Second, "devices: cap of the doubled retry backoff")
	fs.IntVar(&cfg.Devices.MQTT.Version, "mqtt-version", 4, "devices over mqtt(s)://: protocol level, 4 (MQTT 3.1.1) or 5 (MQTT 5.0)")
	fs.IntVar(&cfg.Devices.MQTT.QoS, "qos", 0, "devices over mqtt(s)://: QoS of telemetry and acks, 0 or 1 (commands are subscribed at QoS 1)")
	fs.DurationVar(&cfg.Devices.MQTT.KeepAlive, "mqtt-keepalive", 60*time.Second, "devices over mqtt(s)://: keep-alive asked in CONNECT; a silent device pings after it (negative: none)")
	fs.IntVar(&cfg.Devices.MQTT.MaxInflight, "mqtt-inflight", 64, "devices over mqtt(s)://: QoS 1 publishes a device leaves unacknowledged at most")
	fs.DurationVar(&cfg.Devices.MQTT.Reconnect, "mqtt-reconnect", 0, "devices over mqtt(s)://: a device whose connection ends (a 5.0 DISCONNECT included) reconnects after a random delay below this, and retries until the run ends (0: only after a 5.0 DISCONNECT during the traffic, at once)")
	schedSlice := schedSliceFlag(fs, "this process's threads and, with -procs, every worker's")
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
	sweeper, stopSweep := startSweeper("load", *schedSlice, newLogger(stderr, "warn"), stderr)
	if sweeper == nil {
		return 2
	}
	defer stopSweep()
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
	if code := deviceFlags(fs, &cfg, *jwtSecret, *dataDir, stderr); code != 0 {
		return code
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
		debug.SetGCPercent(*parentGOGC)
		exe, err := os.Executable()
		if err != nil {
			fmt.Fprintf(stderr, "warren load: -procs: %v\n", err)
			return 1
		}
		n := workerGOMAXPROCS(*workerProcs, cfg.Procs, runtime.NumCPU(), os.Getenv("GOMAXPROCS"))
		cfg.WorkerCommand = func(int) *exec.Cmd {
			cmd := exec.Command(exe, loadWorkerArgs(*schedSlice)...)
			cmd.Stderr = stderr
			if n > 0 {
				cmd.Env = append(os.Environ(), "GOMAXPROCS="+strconv.Itoa(n))
			}
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

// deviceFlags completes cfg for -scenario devices: the default URL, the
// secret from the flag, $WARREN_JWT_SECRET or the data directory's file,
// and the API token from the environment. It returns a non-zero exit code
// on a usage error.
func deviceFlags(fs *flag.FlagSet, cfg *loadgen.Config, secret, dataDir string, stderr io.Writer) int {
	if cfg.Scenario != loadgen.ScenarioDevices {
		if cfg.Scenario != "" {
			fmt.Fprintf(stderr, "warren load: -scenario %q: the only scenario is %s\n", cfg.Scenario, loadgen.ScenarioDevices)
			return 2
		}
		return 0
	}
	if !flagSet(fs, "url") {
		cfg.URL = "ws://127.0.0.1:8080/v1/connect"
	}
	if cfg.Devices.APIToken == "" {
		cfg.Devices.APIToken = os.Getenv("WARREN_API_TOKEN")
	}
	if secret == "" {
		secret = os.Getenv("WARREN_JWT_SECRET")
	}
	if secret != "" {
		cfg.Devices.JWTSecret = []byte(secret)
	} else if _, err := os.Stat(filepath.Join(dataDir, gateway.SecretFile)); err == nil {
		key, _, err := gateway.LoadOrCreateSecret(dataDir)
		if err != nil {
			fmt.Fprintf(stderr, "warren load: -data: %v\n", err)
			return 1
		}
		cfg.Devices.JWTSecret = key
	} else {
		fmt.Fprintf(stderr, "warren load: -scenario devices needs the gateway's secret: -jwt-secret, $WARREN_JWT_SECRET or -data with a %s file\n",
			gateway.SecretFile)
		return 2
	}
	if cfg.Devices.CommandRPS > 0 && cfg.Devices.APIURL == "" {
		fmt.Fprintln(stderr, "warren load: -commands needs -api http://host:port (the gateway's management API)")
		return 2
	}
	return 0
}

// lockedWriter serialises writes to w from several goroutines.
type lockedWriter struct {
	mu sync.Mutex
	w  io.Writer
}

func (l *lockedWriter) Write(p []byte) (int, error) {
	l.mu.Lock()
	defer l.mu.Unlock()
	return l.w.Write(p)
}
