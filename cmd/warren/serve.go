package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"runtime"
	"runtime/debug"
	"strconv"
	"strings"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/memtrim"
	"github.com/warrenhq/warren/internal/schedslice"
	"github.com/warrenhq/warren/prefork"
	"github.com/warrenhq/warren/stack"
)

// preforkNATSEnv carries the parent's embedded NATS URL to prefork workers.
const preforkNATSEnv = "WARREN_PREFORK_NATS"

// preforkDirEnv carries the name of the parent's Directory (the machine's
// one copy of the cluster directory) to prefork workers.
const preforkDirEnv = "WARREN_PREFORK_DIRECTORY"

// runServe is `warren serve`: the device gateway.
func runServe(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren serve", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", gateway.DefaultAddr, "device listener: HTTP/1.1 + WebSocket, devices connect at GET /v1/connect")
	mqttAddr := fs.String("mqtt", "127.0.0.1:1883", "MQTT listener (3.1.1 and 5.0; also MQTT over WebSocket at GET /mqtt on -addr); empty disables")
	api := fs.String("api", gateway.DefaultAPI, "management API listener (empty disables)")
	apiToken := fs.String("api-token", "", "bearer token required on the management API (default $WARREN_API_TOKEN; empty: none)")
	adminAddr := fs.String("admin", admin.DefaultAddr, "admin listener (metrics, /debug/conns, pprof, dashboard); empty disables")
	adminToken := fs.String("admin-token", "", "bearer token for the admin listener (default $WARREN_ADMIN_TOKEN; empty: none)")
	natsURLs := fs.String("nats", "", "external NATS cluster URL[,URL]; empty: run an embedded NATS server")
	natsListen := fs.String("nats-listen", "127.0.0.1:4222", "embedded NATS client address for other programs (empty: no port)")
	natsCluster := fs.String("nats-cluster", "", "embedded NATS route address HOST:PORT, to cluster with other warren nodes")
	natsRoutes := fs.String("nats-routes", "", "other nodes' NATS routes nats://h:p,...")
	natsPending := fs.Int("nats-pending-bytes", 16<<20, "bytes queued toward NATS while connected; past it devices sending telemetry are paused")
	natsReconnectBuf := fs.Int("nats-reconnect-buffer", 8<<20, "bytes published while NATS is unreachable, kept for the reconnect; past it publishes fail (counted bus_error)")
	jwtSecret := fs.String("jwt-secret", "", "HS256 secret for device tokens (default $WARREN_JWT_SECRET; with no auth flag a secret is generated under -data)")
	jwtKey := fs.String("jwt-public-key", "", "PEM public key file for device tokens (RS256, ES256 or EdDSA)")
	auth := fs.String("auth", "", `"none" accepts any device id without a token (development only)`)
	dataDir := fs.String("data", gateway.DefaultDataDir, "data directory (the generated JWT secret)")
	node := fs.String("node", "", "this node's name in the cluster, unique per process (default host name and process id; prefork workers are <node>-<index>)")
	cmdTimeout := fs.Duration("command-timeout", 5*time.Second, "default time a command waits for the device's ack")
	maxBad := fs.Int("max-bad-frames", 10, "refused frames within -bad-frame-window before a device is closed for abuse (negative: never; at most 4095)")
	badWindow := fs.Duration("bad-frame-window", gateway.DefaultBadFrameWindow, "the window -max-bad-frames counts over, fixed windows from each connection's start (negative: the connection's whole life)")
	maxPending := fs.Int("max-pending", 100_000, "commands waiting for acks on this node; 503 over it")
	maxCmdTimeout := fs.Duration("max-command-timeout", 60*time.Second, "longest ack timeout a command may ask for")
	drain := fs.Duration("drain-timeout", stack.DefaultDrainTimeout, "how long SIGTERM/SIGINT waits for devices and commands to finish")
	procs := fs.Int("procs", 1, "worker processes on the same ports (SO_REUSEPORT) under a parent that runs the embedded NATS server (1: none)")
	workerProcs := fs.Int("worker-gomaxprocs", 0, "with -procs: GOMAXPROCS of each worker (0: $GOMAXPROCS if set, else the machine's CPUs divided among the workers, at least 1; negative: Go's default, every CPU in every worker)")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	gogc := fs.Int("gogc", defaultServeGOGC(), "garbage collector target in percent (debug.SetGCPercent) in every gateway process (with -procs: the workers; see -parent-gogc): the heap may grow this much over the live heap before a collection; lower holds less memory per device for more GC CPU (default $GOGC if set; negative: off)")
	parentGOGC := fs.Int("parent-gogc", defaultServeParentGOGC(), "with -procs > 1 (ignored otherwise): garbage collector target in percent of the prefork parent (the embedded NATS server, the machine's directory, the management API), whose heap is small and whose garbage is the NATS server's per message: a higher target collects it less often for a few MB (default $GOGC if set; negative: off)")
	memLimit := fs.String("gomemlimit", "", "Go runtime soft memory limit of each gateway process (debug.SetMemoryLimit), e.g. 512MiB or 1GiB; empty: $GOMEMLIMIT, else none")
	var tcfg memtrim.Config
	memtrimFlags(fs, &tcfg)
	schedSlice := schedSliceFlag(fs, "every gateway process's threads (with -procs: the parent's and every worker's)")
	var ecfg engine.Config
	var gcfg gateway.Config
	stack.EngineFlags(fs, &ecfg)
	stack.HTTPFlags(fs, &gcfg.HTTP)
	stack.WebSocketFlags(fs, &gcfg.WebSocket)
	mqttFlags(fs, &gcfg)
	var extra serveExtra
	serveExtraFlags(fs, &extra, &gcfg)
	upTLS := serveUpstreamFlags(fs, &gcfg) // -max-response-header-bytes, -max-interim, -upstream-ca, … (serve_upstream.go)
	upConfig := fs.String("upstream-config", "", "-upstream: JSON file of warren proxy's cluster policy settings for the legacy cluster, under their flag names ({\"breaker-off\": true, \"retries\": 2, \"hc-interval\": \"5s\", \"hc-path\": \"/healthz\", \"balancer\": \"maglev\", \"hash-header\": \"X-Device-Id\"}); settings left out take warren proxy's defaults (see docs/upstream.md)")
	deviceLimitFlags(fs, &gcfg.DeviceLimits)
	fs.IntVar(&gcfg.DeviceHeldBytes, "device-held-bytes", gateway.DefaultDeviceHeldBytes, "telemetry bytes each device paused for NATS backpressure holds (the rest of its read); past it they are dropped, counted (held_overflow)")
	fs.DurationVar(&gcfg.HandoffWait, "handoff-wait", gateway.DefaultHandoffWait, "how long a device whose MQTT connection another connection took over by its client id waits for that connection to register before it is dropped and announced offline (reason replaced)")
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if err := extra.check(*mqttAddr); err != nil {
		fmt.Fprintf(stderr, "warren serve: %v\n", err)
		return 2
	}
	if err := checkServeUpstreamFlags(fs); err != nil { // serve_upstream.go
		fmt.Fprintf(stderr, "warren serve: %v\n", err)
		return 2
	}
	if err := serveUpstreamConfig(fs, *upConfig, &gcfg); err != nil { // serve_upstream.go
		fmt.Fprintf(stderr, "warren serve: %v\n", err)
		return 2
	}
	if err := checkDeviceLimits(&gcfg.DeviceLimits); err != nil {
		fmt.Fprintf(stderr, "warren serve: %v\n", err)
		return 2
	}
	if err := applyGC(*gogc, *memLimit); err != nil {
		fmt.Fprintf(stderr, "warren serve: %v\n", err)
		return 2
	}
	trim := memtrim.New(tcfg)
	trimCtx, stopTrim := context.WithCancel(context.Background())
	defer stopTrim()
	go trim.Run(trimCtx)
	envDefault(fs, "api-token", "WARREN_API_TOKEN")
	envDefault(fs, "admin-token", "WARREN_ADMIN_TOKEN")
	envDefault(fs, "jwt-secret", "WARREN_JWT_SECRET")
	log := newLogger(stderr, *logLevel)
	sweeper, stopSweep := startSweeper("serve", *schedSlice, log, stderr)
	if sweeper == nil {
		return 2
	}
	defer stopSweep()

	switch {
	case *auth == "none":
		log.Warn("warren serve: -auth none accepts any device id without a token; development only")
		gcfg.Auth = gateway.NoAuth()
	case *auth != "":
		fmt.Fprintf(stderr, "warren serve: -auth %q: the only value is none\n", *auth)
		return 2
	case *jwtKey != "":
		pem, err := os.ReadFile(*jwtKey)
		if err == nil {
			gcfg.Auth, err = gateway.NewPublicKeyAuth(pem)
		}
		if err != nil {
			log.Error("-jwt-public-key", "file", *jwtKey, "error", err)
			return 1
		}
	case *jwtSecret != "":
		gcfg.Auth = gateway.NewHMACAuth([]byte(*jwtSecret))
	}
	gcfg.Addr, gcfg.APIToken, gcfg.DataDir, gcfg.Node = *addr, *apiToken, *dataDir, *node
	gcfg.API, gcfg.MQTT = *api, *mqttAddr
	if gcfg.API == "" {
		gcfg.API = "-"
	}
	gcfg.CommandTimeout, gcfg.MaxBadFrames, gcfg.Logger, gcfg.DrainTimeout = *cmdTimeout, *maxBad, log, *drain
	gcfg.BadFrameWindow = *badWindow
	gcfg.MaxPending, gcfg.MaxCommandTimeout = *maxPending, *maxCmdTimeout
	gcfg.Bus = gateway.BusConfig{Listen: *natsListen, ClusterListen: *natsCluster, Routes: splitList(*natsRoutes),
		URLs: splitList(*natsURLs), PendingLimit: *natsPending, ReconnectBuffer: *natsReconnectBuf}

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)

	worker, _, isWorker := prefork.Worker()
	if isWorker {
		if gcfg.Node != "" {
			// Every worker is a node of its own and node names must be
			// unique: -node names the workers <node>-<index>.
			gcfg.Node = fmt.Sprintf("%s-%d", gcfg.Node, worker)
		}
		if u := os.Getenv(preforkNATSEnv); u != "" && len(gcfg.Bus.URLs) == 0 {
			gcfg.Bus = gateway.BusConfig{URLs: []string{u}}
		}
		gcfg.Directory = os.Getenv(preforkDirEnv)
	} else if *procs > 1 {
		if err := extra.fixPorts(); err != nil {
			log.Error("-tls-addr/-mqtts", "error", err)
			return 1
		}
		debug.SetGCPercent(*parentGOGC) // after applyGC: -gogc is the workers'
		if n := workerGOMAXPROCS(*workerProcs, *procs, runtime.NumCPU(), os.Getenv("GOMAXPROCS")); n > 0 {
			os.Setenv("GOMAXPROCS", strconv.Itoa(n)) // the workers' environment; the parent's runtime is set already
		}
		return serveSupervisor(sig, *procs, ecfg, gcfg, *adminAddr, *adminToken, *drain, extra.tls.CertFile != "", trim, sweeper, log)
	}

	st, err := stack.New(stack.Config{Engine: ecfg, DrainTimeout: *drain, Logger: log,
		Admin: admin.Config{Addr: *adminAddr, Token: *adminToken}})
	if err != nil {
		log.Error("engine", "error", err)
		return 1
	}
	log = st.Logger()
	gcfg.Logger = log
	gcfg.Addr = st.Addr(gcfg.Addr)
	if st.WorkerAddr != "" {
		gcfg.API = "-" // the prefork parent serves the API (serveSupervisor)
	}
	stopTLS, err := extra.apply(st, &gcfg)
	if err == nil {
		err = upTLS.apply(&gcfg, log) // https:// -upstream and -webhook (serve_upstream.go)
	}
	if err != nil {
		log.Error("tls", "error", err)
		st.Engine.Close()
		return 1
	}
	defer stopTLS()
	g, err := gateway.New(st.Engine, gcfg)
	if err != nil {
		log.Error("gateway", "error", err)
		st.Engine.Close()
		return 1
	}
	for _, c := range g.Collectors() {
		st.AddCollector(c)
	}
	st.AddCollector(trim.Collector())
	if sweeper.Slice() != 0 {
		st.AddCollector(sweeper.Collector())
	}
	trim.Settle() // start-up done: its fixed costs into the baseline
	log.Info("warren serve listening", "devices", g.DeviceAddr(), "api", g.APIAddr(), "mqtt", g.MQTTAddr(),
		"tls", g.TLSAddr(), "mqtts", g.MQTTSAddr(), "upstream", strings.Join(gcfg.Upstream, ","), "webhook", gcfg.Webhook.URL, "node", g.Node(),
		"nats", natsDescription(g.Bus()), "loops", st.Engine.Config().Loops)
	code := st.Run(sig)
	g.Close()
	return code
}

// serveSupervisor is the prefork parent of warren serve: it runs the
// embedded NATS server the workers share (unless -nats names a cluster),
// the machine's Directory, the one copy of the cluster directory the
// workers ask, and the management API on -api, answered from the
// directory on an engine of one loop of its own (the workers serve no
// API): a command goes from the API straight to the worker holding the
// device (docs/benchmarks.md §30). Then it supervises the workers.
func serveSupervisor(sig <-chan os.Signal, procs int, ecfg engine.Config, gcfg gateway.Config, adminAddr, adminToken string, drain time.Duration, forwardHUP bool, trim *memtrim.Trimmer, sweeper *schedslice.Sweeper, log interface {
	Info(string, ...any)
	Error(string, ...any)
}) int {
	var bus *gateway.Bus
	if len(gcfg.Bus.URLs) == 0 {
		bc := gcfg.Bus
		if bc.Listen == "" {
			bc.Listen = "127.0.0.1:0" // the workers need a port
		}
		bc.Node = "parent"
		if bc.MaxPayload == 0 {
			bc.MaxPayload = gateway.EmbeddedMaxPayload(&gcfg) // the workers' device limits fit as they are
		}
		var err error
		if bus, err = gateway.StartBus(bc); err != nil {
			log.Error("embedded NATS", "error", err)
			return 1
		}
		defer bus.Close()
		os.Setenv(preforkNATSEnv, bus.ClientURL())
		log.Info("embedded NATS for the workers", "url", bus.ClientURL())
	}
	// The machine's directory: a node of the cluster named after the
	// machine (-node, or the host name and the parent's pid), which the
	// workers ask for devices they do not hold.
	machine := gcfg.Node
	if machine == "" {
		host, _ := os.Hostname()
		machine = fmt.Sprintf("%s-%d", host, os.Getpid())
	}
	dbus := bus
	if dbus == nil {
		var err error
		if dbus, err = gateway.StartBus(gateway.BusConfig{URLs: gcfg.Bus.URLs, Node: machine, Logger: gcfg.Logger}); err != nil {
			log.Error("NATS", "error", err)
			return 1
		}
		defer dbus.Close()
	}
	dir, err := gateway.StartDirectory(dbus, gateway.DirectoryConfig{Machine: machine, Logger: gcfg.Logger,
		CommandTimeout: gcfg.CommandTimeout, MaxCommandTimeout: gcfg.MaxCommandTimeout})
	if err != nil {
		log.Error("directory", "error", err)
		return 1
	}
	defer dir.Close()
	os.Setenv(preforkDirEnv, machine)
	sc := stack.SupervisorConfig{Procs: procs, Addr: gcfg.Addr, AdminAddr: adminAddr,
		AdminToken: adminToken, DrainTimeout: drain, Name: "warren serve", Logger: gcfg.Logger, ForwardHUP: forwardHUP,
		// The parent's runtime (go_gc_*, go_memstats_*{worker="parent"}):
		// its collections are the embedded NATS server's garbage.
		Collectors: []prometheus.Collector{dir.Collector(), trim.Collector(), collectors.NewGoCollector()}}
	if sweeper.Slice() != 0 {
		sc.Collectors = append(sc.Collectors, sweeper.Collector())
	}
	if gcfg.API != "-" {
		// One loop is plenty for the API; its handlers (a command waits
		// for its ack) run on the engine's worker pool.
		ecfg.Loops, ecfg.ReusePort = 1, false
		if ecfg.Logger == nil {
			ecfg.Logger = gcfg.Logger
		}
		eng, err := engine.New(ecfg, nil)
		if err == nil {
			err = eng.Start("")
		}
		if err != nil {
			log.Error("API engine", "error", err)
			return 1
		}
		defer eng.Close()
		api, err := dir.ServeAPI(eng, gateway.APIConfig{Addr: gcfg.API, Token: gcfg.APIToken, HTTP: gcfg.HTTP,
			DrainRetry: gcfg.RetryHintMin + gcfg.RetryHintJitter})
		if err != nil {
			log.Error("-api", "addr", gcfg.API, "error", err)
			return 1
		}
		defer api.Close()
		log.Info("management API in the prefork parent", "api", api.Addr(), "directory", machine)
		sc.Collectors = append(sc.Collectors, api.Collector())
		sc.Drain = func(ctx context.Context) {
			if err := eng.Shutdown(ctx); err != nil {
				log.Info("API drain deadline reached; remaining requests closed", "error", err)
			}
		}
	}
	// The parent's start-up done, before RunSupervisor starts prefork's
	// listener, the workers and the admin endpoint: what the parent made so
	// far goes into its baseline (each worker settles its own).
	trim.Settle()
	return stack.RunSupervisor(sig, sc)
}

func natsDescription(b *gateway.Bus) string {
	if b.Embedded() == nil {
		return "external"
	}
	if u := b.ClientURL(); u != "" {
		return "embedded " + u
	}
	return "embedded (in-process)"
}

func splitList(s string) []string {
	var out []string
	for _, p := range strings.Split(s, ",") {
		if p = strings.TrimSpace(p); p != "" {
			out = append(out, p)
		}
	}
	return out
}

// fixPort returns addr with a free port in place of port 0.
func fixPort(addr string) (string, error) {
	host, port, err := net.SplitHostPort(addr)
	if err != nil || port != "0" {
		return addr, err
	}
	ln, err := net.Listen("tcp", net.JoinHostPort(host, "0"))
	if err != nil {
		return "", err
	}
	defer ln.Close()
	return ln.Addr().String(), nil
}

// workerGOMAXPROCS is the GOMAXPROCS the prefork workers get (0: leave
// their environment alone). By default the workers divide the machine's
// CPUs among them, at least one each: six workers on two cores that each
// run two Ps keep spinning threads and hand goroutines (the NATS
// flusher, the loops) between threads that contend for the same two
// CPUs, which costs CPU per message and, under load, scheduling delay
// (docs/benchmarks.md §25). A $GOMAXPROCS the operator set wins.
func workerGOMAXPROCS(flagVal, procs, cpus int, env string) int {
	switch {
	case flagVal > 0:
		return flagVal
	case flagVal < 0 || env != "" || procs <= 1:
		return 0
	}
	return max(1, cpus/procs)
}

// DefaultServeGOGC is warren serve's garbage collector target when neither
// -gogc nor $GOGC sets one: a quarter of Go's default of 100, so that a
// process holds about 1.25 times its live heap rather than twice (most of
// a held device's memory is live state that a collection cannot free,
// and the garbage comes from telemetry at a steady rate). At 100,000
// devices it takes the RSS per device from about 1.32 KB (50) to 1.11 KB
// for about 3-15% more gateway CPU per telemetry message; 10 reaches
// 1 KB for about 14% more (docs/benchmarks.md §15).
const DefaultServeGOGC = 25

// defaultServeGOGC is -gogc's default: $GOGC when set, else
// DefaultServeGOGC.
func defaultServeGOGC() int { return envGOGC(DefaultServeGOGC) }

// DefaultServeParentGOGC is the garbage collector target of warren
// serve's prefork parent when neither -parent-gogc nor $GOGC sets one.
// The parent holds no devices (its heap is the NATS server's and the
// machine's directory), and its garbage is the NATS server's, about 620 B per telemetry message (read buffers, match
// results for subjects that miss its caches). At -gogc's 25 it collected
// about 7 times a second at 20,000 messages a second; at 100, 1.5 times,
// for about 0.05 of a core less and ≈ 15-20 B more held RSS per device at
// 100,000 devices (≈ 5-10 MB more in the parent during the traffic). 400
// collects 0.3 times a second but holds ≈ 60 B more per device and ≈ 33
// MB more during the traffic (docs/benchmarks.md §51).
const DefaultServeParentGOGC = 100

// defaultServeParentGOGC is -parent-gogc's default: $GOGC when set, else
// DefaultServeParentGOGC.
func defaultServeParentGOGC() int { return envGOGC(DefaultServeParentGOGC) }

// envGOGC is $GOGC as a GC percent ("off": -1) when set and valid, else
// def (memtrim.EnvGOGC, which bench/cmd/mqtthost uses too).
func envGOGC(def int) int { return memtrim.EnvGOGC(def) }

// memtrimFlags binds the flags of the trim after bursts of allocation
// (internal/memtrim) in every gateway process.
func memtrimFlags(fs *flag.FlagSet, c *memtrim.Config) {
	fs.Int64Var(&c.Burst, "memtrim-burst", memtrim.DefaultBurst, "bytes allocated since the last trim (a connect ramp, a reconnect storm) after which the first quiet -memtrim-interval returns the process's free memory to the OS (a GC and debug.FreeOSMemory; warren_memtrim_trims_total); negative: never")
	fs.Int64Var(&c.Quiet, "memtrim-quiet", memtrim.DefaultQuiet, "allocation rate, bytes a second, under which an interval is quiet: the burst is over")
	fs.DurationVar(&c.Interval, "memtrim-interval", memtrim.DefaultInterval, "how often the allocation rate is read for -memtrim-burst")
	fs.DurationVar(&c.MinGap, "memtrim-gap", memtrim.DefaultMinGap, "least time between two trims")
	fs.BoolFunc("memtrim-start", "collect twice and return free memory to the OS once start-up is done, in every process (the runtime's first-collection metadata counted in the baseline, not per device; warren_memtrim_start_trims_total) (default true; -memtrim-start=false: off)", func(v string) error {
		on, err := strconv.ParseBool(v)
		c.NoSettle = !on
		return err
	})
}

// applyGC sets the collector's target and, when limit is not empty, the
// soft memory limit.
func applyGC(gogc int, limit string) error {
	var n int64
	if limit != "" {
		var err error
		if n, err = parseBytes(limit); err != nil || n <= 0 {
			return fmt.Errorf("-gomemlimit %q: want a size such as 512MiB, 1GiB or a number of bytes", limit)
		}
	}
	debug.SetGCPercent(gogc)
	if n > 0 {
		debug.SetMemoryLimit(n)
	}
	return nil
}

// parseBytes reads a size: a number of bytes with an optional B, KiB,
// MiB, GiB (or KB, MB, GB: powers of 1,000) suffix.
func parseBytes(s string) (int64, error) {
	units := []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1e3}, {"MB", 1e6}, {"GB", 1e9}, {"B", 1}}
	mult := int64(1)
	for _, u := range units {
		if strings.HasSuffix(s, u.suffix) {
			s, mult = strings.TrimSuffix(s, u.suffix), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
	if err != nil || n < 0 || n > (1<<62)/mult {
		return 0, fmt.Errorf("bad size %q", s)
	}
	return n * mult, nil
}
