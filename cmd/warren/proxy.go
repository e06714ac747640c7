package main

import (
	"bytes"
	"context"
	"encoding/json"
	"flag"
	"fmt"
	"io"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/proxy"
	"github.com/warrenhq/warren/stack"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/upstream"
)

// runProxy is warren proxy: a reverse proxy from -listen to the -upstream
// hosts, with the upstream toolkit's policies set by flags (or -config).
func runProxy(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren proxy", flag.ContinueOnError)
	fs.SetOutput(stderr)
	listen := fs.String("listen", "127.0.0.1:8080", "listen address")
	var tcfg tlsx.Config
	stack.TLSFlags(fs, &tcfg)
	ups := fs.String("upstream", "", "backends, comma-separated: http://host:port or https://host:port,... (required)")
	utls := upstreamTLSFlags(fs)
	configFile := fs.String("config", "", "JSON file of flag values ({\"upstream\": \"http://a:80,http://b:80\", \"timeout\": \"5s\"}); command-line flags win")
	adminAddr := fs.String("admin", admin.DefaultAddr, "admin listener (metrics, /api/upstream, /debug/conns, pprof, dashboard); empty disables")
	adminToken := fs.String("admin-token", "", "bearer token for the admin listener (default $WARREN_ADMIN_TOKEN; empty: none)")
	drain := fs.Duration("drain-timeout", stack.DefaultDrainTimeout, "how long SIGTERM/SIGINT waits for connections to finish")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	name := fs.String("cluster", "default", "cluster name in metrics and the admin API")

	var ecfg engine.Config
	ecfg.BlockingPoll = true // busy loops must not wait for each other: the proxy's p99 (docs/benchmarks.md section 43)
	ecfg.LockOSThread = true // each loop on its own thread: the proxy's p99 (docs/benchmarks.md section 57)
	stack.EngineFlags(fs, &ecfg)

	var cc upstream.ClusterConfig
	var pc proxy.Config
	fs.DurationVar(&pc.IdleTimeout, "idle-timeout", proxy.DefaultIdleTimeout, "client keep-alive idle timeout (keep it above a fronting load balancer's)")
	fs.DurationVar(&pc.HeaderTimeout, "header-timeout", proxy.DefaultHeaderTimeout, "time to receive a request head once started; 408 after")
	fs.IntVar(&pc.MaxBacklog, "max-backlog", proxy.DefaultMaxBacklog, "bytes queued toward a slow peer before the other side is paused")
	fs.StringVar(&pc.Via, "via", "warren", "pseudonym in the Via header")
	fs.Int64Var(&pc.Limits.MaxBodyBytes, "max-body-bytes", 0, "request body limit, 413 over it (0: none, the backend decides)")
	fs.IntVar(&pc.Limits.MaxHeaderBytes, "max-header-bytes", http1.DefaultMaxHeaderBytes, "request head limit (and a chunked request's trailer section), 431 over it")
	fs.IntVar(&pc.Limits.MaxHeaders, "max-headers", http1.DefaultMaxHeaders, "request header field count limit (and trailer fields), 431 over it")
	fs.IntVar(&pc.Limits.MaxURIBytes, "max-uri-bytes", http1.DefaultMaxURIBytes, "request-target limit, 414 over it")
	fs.IntVar(&cc.MaxResponseHeaderBytes, "max-response-header-bytes", http1.DefaultMaxHeaderBytes, "backend response head limit (and a chunked response's trailer section); over it 502 bad_response")
	fs.IntVar(&cc.MaxResponseHeaders, "max-response-headers", http1.DefaultMaxHeaders, "backend response header field count limit (and trailer fields); over it 502 bad_response")
	fs.IntVar(&pc.MaxInterim, "max-interim", proxy.DefaultMaxInterim, "interim (1xx) responses other than 100 Continue (103 Early Hints ...) passed on per request; 0: none (CPython's http.client takes a 103 for the final response); more are dropped and counted")
	fs.IntVar(&pc.MaxInterimBytes, "max-interim-bytes", proxy.DefaultMaxInterimBytes, "bytes of the interim response heads passed on per request under -max-interim; more are dropped and counted (0: 16 KiB)")
	fs.Float64Var(&pc.RatePerIP, "rate-limit-per-ip", 0, "requests a second each client address may make; over it: 429 from the proxy itself (0: no limit)")
	fs.IntVar(&pc.BurstPerIP, "rate-limit-per-ip-burst", 0, "burst of -rate-limit-per-ip (0: the rate rounded up, at least 1)")
	fs.Var((*routeLimitsFlag)(&pc.RouteLimits), "route-limit",
		"inbound limit of a path prefix, repeatable: PREFIX=RATE[,burst=N][,header=NAME][,keys=N][,name=LABEL]; per client address, or per value of header NAME; over it: 429 with Retry-After (none by default)")

	cf := clusterPolicyFlags(fs, &cc)

	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	if *configFile != "" {
		if err := applyConfigFile(fs, *configFile); err != nil {
			fmt.Fprintf(stderr, "warren proxy: -config: %v\n", err)
			return 2
		}
	}
	envDefault(fs, "admin-token", "WARREN_ADMIN_TOKEN")
	pc.PerIPv6Prefix = ecfg.PerIPv6Prefix // one setting for every per-client bound
	if err := proxy.ValidateRouteLimits(pc.RouteLimits); err != nil {
		fmt.Fprintf(stderr, "warren proxy: -route-limit: %v\n", err)
		return 2
	}
	if *ups == "" {
		fmt.Fprintln(stderr, "warren proxy: -upstream is required (http://host:port,...)")
		return 2
	}
	for _, h := range strings.Split(*ups, ",") {
		if h = strings.TrimSpace(h); h != "" {
			cc.Hosts = append(cc.Hosts, h)
		}
	}
	if err := cf.finish(&cc, &pc); err != nil {
		fmt.Fprintf(stderr, "warren proxy: %v\n", err)
		return 2
	}
	cc.Name = *name

	log := newLogger(stderr, *logLevel)
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	st, err := stack.New(stack.Config{Engine: ecfg, DrainTimeout: *drain, Logger: log,
		Admin: admin.Config{Addr: *adminAddr, Token: *adminToken}})
	if err != nil {
		log.Error("engine", "error", err)
		return 1
	}
	log = st.Logger()
	cc.Logger, pc.Logger = log, log
	if d, err := setupUpstreamTLS(utls, &cc, log, "warren proxy"); err != nil {
		log.Error("upstream tls", "error", err)
		st.Engine.Close()
		return 1
	} else if d != nil {
		st.AddCollector(d.Collector(""))
	}
	cl, err := upstream.NewCluster(st.Engine, cc)
	if err != nil {
		log.Error("cluster", "error", err)
		st.Engine.Close()
		return 1
	}
	defer cl.Close()
	// -tls-cert: clients reach the proxy over TLS on -listen.
	var wrap func(engine.Handler) engine.Handler
	if tcfg.CertFile != "" {
		tcfg.Logger = log
		ts, err := tlsx.New(tcfg)
		if err != nil {
			log.Error("tls", "error", err)
			st.Engine.Close()
			return 1
		}
		defer ts.Close()
		st.AddCollector(ts.Collector())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ts.Watch(ctx)  // SIGHUP and file changes reload the certificate
		wrap = ts.Handler // X-Forwarded-Proto follows: https (proxy.Config.Proto)
	}
	px := proxy.New(st.Engine, cl, pc)
	defer px.Close()
	ln, err := px.ListenWrapped(st.Addr(*listen), wrap)
	if err != nil {
		log.Error("listen", "addr", *listen, "error", err)
		st.Engine.Close()
		return 1
	}
	st.AddCollector(px.Collector(""))
	st.AddCollector(cl.Collector(""))
	for pattern, h := range upstream.AdminRoutes(cl) {
		st.AddRoute(pattern, h)
	}
	log.Info("warren proxy listening", "addr", ln.Addr().String(), "upstream", strings.Join(cc.Hosts, ","),
		"balancer", cc.Balancer.String(), "tls", tcfg.CertFile != "", "loops", st.Engine.Config().Loops)
	return st.Run(sig)
}

// parseRetryOn parses -retry-on.
func parseRetryOn(s string) (upstream.RetryOn, error) {
	var on upstream.RetryOn
	for _, v := range strings.Split(s, ",") {
		switch strings.TrimSpace(v) {
		case "connect-failure":
			on |= upstream.RetryOnConnectFailure
		case "reset":
			on |= upstream.RetryOnReset
		case "5xx":
			on |= upstream.RetryOn5xx
		case "gateway-error":
			on |= upstream.RetryOnGatewayError
		case "":
		default:
			return 0, fmt.Errorf("unknown condition %q", v)
		}
	}
	return on, nil
}

// repeatable is a flag that may be given more than once; in a -config
// file its value is a JSON array, one element a Set.
type repeatable interface{ repeatable() bool }

// routeLimitsFlag is -route-limit, repeatable.
type routeLimitsFlag []proxy.RouteLimit

func (f *routeLimitsFlag) repeatable() bool { return true }

func (f *routeLimitsFlag) String() string {
	if f == nil {
		return ""
	}
	s := make([]string, len(*f))
	for i, rl := range *f {
		s[i] = rl.String()
	}
	return strings.Join(s, " ")
}

func (f *routeLimitsFlag) Set(s string) error {
	rl, err := proxy.ParseRouteLimit(s)
	if err != nil {
		return err
	}
	*f = append(*f, rl)
	return nil
}

// applyConfigFile sets the flags named in a JSON object, unless the
// command line set them. A repeatable flag (-route-limit) takes an array.
func applyConfigFile(fs *flag.FlagSet, path string) error {
	b, err := os.ReadFile(path)
	if err != nil {
		return err
	}
	var m map[string]any
	d := json.NewDecoder(bytes.NewReader(b))
	d.UseNumber() // 1000000 stays "1000000", not "1e+06" (which an int flag refuses)
	if err := d.Decode(&m); err != nil {
		return err
	}
	for k, v := range m {
		if fs.Lookup(k) == nil {
			return fmt.Errorf("unknown setting %q (settings are the flag names)", k)
		}
		if flagSet(fs, k) || k == "config" {
			continue
		}
		if r, ok := fs.Lookup(k).Value.(repeatable); ok && r.repeatable() {
			vs, ok := v.([]any)
			if !ok {
				vs = []any{v}
			}
			for _, e := range vs {
				if err := fs.Set(k, fmt.Sprint(e)); err != nil {
					return fmt.Errorf("%s: %w", k, err)
				}
			}
			continue
		}
		var s string
		switch v := v.(type) {
		case string:
			s = v
		case []any:
			parts := make([]string, len(v))
			for i, p := range v {
				parts[i] = fmt.Sprint(p)
			}
			s = strings.Join(parts, ",")
		default:
			s = fmt.Sprint(v)
		}
		if err := fs.Set(k, s); err != nil {
			return fmt.Errorf("%s: %w", k, err)
		}
	}
	return nil
}
