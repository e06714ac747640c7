package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/prefork"
	"github.com/warrenhq/warren/stack"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// tcpEcho writes back whatever it receives. It never blocks, so it runs
// on the loops.
type tcpEcho struct{}

func (tcpEcho) OnData(c *engine.Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

// Inline runs tcpEcho on the event loop.
func (tcpEcho) Inline() bool { return true }

func runEcho(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	adminAddr := fs.String("admin", admin.DefaultAddr, "admin listener (metrics, /debug/conns, pprof, dashboard); empty disables")
	adminToken := fs.String("admin-token", "", "bearer token for the admin listener, the prefork parent's included (default $WARREN_ADMIN_TOKEN; empty: none)")
	proto := fs.String("proto", "http", "protocol: http (GET /, GET /delay?ms=N, POST /upload, GET /ws) or tcp (raw echo)")
	drain := fs.Duration("drain-timeout", stack.DefaultDrainTimeout, "how long SIGTERM/SIGINT waits for connections to finish")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	procs := fs.Int("procs", 1, "worker processes sharing the port with SO_REUSEPORT under a supervising parent (1: none)")
	var ecfg engine.Config
	var hcfg http1.Config
	stack.EngineFlags(fs, &ecfg)
	stack.HTTPFlags(fs, &hcfg)
	wsCfg := websocket.Config{Inline: true}
	stack.WebSocketFlags(fs, &wsCfg)
	var tcfg tlsx.Config
	stack.TLSFlags(fs, &tcfg)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	envDefault(fs, "admin-token", "WARREN_ADMIN_TOKEN")
	if *proto != "http" && *proto != "tcp" {
		fmt.Fprintf(stderr, "warren echo: unknown -proto %q\n", *proto)
		return 2
	}
	log := newLogger(stderr, *logLevel)
	// Catch signals before announcing the address, so a SIGTERM sent as
	// soon as the server is up still drains gracefully.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	if _, _, isWorker := prefork.Worker(); !isWorker && *procs > 1 {
		return stack.RunSupervisor(sig, stack.SupervisorConfig{Procs: *procs, Addr: *addr, AdminAddr: *adminAddr,
			AdminToken: *adminToken, DrainTimeout: *drain, Name: "warren echo", Logger: log,
			ForwardHUP: tcfg.CertFile != ""}) // the workers reload their certificate on SIGHUP
	}
	st, err := stack.New(stack.Config{Engine: ecfg, DrainTimeout: *drain, Logger: log,
		Admin: admin.Config{Addr: *adminAddr, Token: *adminToken}})
	if err != nil {
		log.Error("engine", "error", err)
		return 1
	}
	log = st.Logger()
	e := st.Engine
	// -tls-cert: the routes (or the raw echo) are served over TLS.
	wrap := func(h engine.Handler) engine.Handler { return h }
	if tcfg.CertFile != "" {
		tcfg.Logger = log
		ts, err := tlsx.New(tcfg)
		if err != nil {
			log.Error("tls", "error", err)
			e.Close()
			return 1
		}
		defer ts.Close()
		st.AddCollector(ts.Collector())
		ctx, cancel := context.WithCancel(context.Background())
		defer cancel()
		go ts.Watch(ctx) // SIGHUP and file changes reload the certificate
		wrap = ts.Handler
	}
	var ln *engine.Listener
	switch *proto {
	case "tcp":
		ln, err = e.Listen(st.Addr(*addr), wrap(tcpEcho{}))
	case "http":
		ws := websocket.New(wsCfg, websocket.Echo)
		var srv *http1.Server
		if srv, err = http1.NewServer(e, hcfg, echoRoutes(ws)); err == nil {
			ln, err = srv.ListenWrapped(st.Addr(*addr), wrap)
			st.AddCollector(srv.Collector(""))
			st.AddCollector(ws.Collector(""))
			st.SetOverload(func() float64 { return float64(srv.Overload().Level()) })
		}
	}
	if err != nil {
		log.Error("listen", "addr", *addr, "error", err)
		e.Close()
		return 1
	}
	log.Info("warren echo listening", "addr", ln.Addr().String(), "proto", *proto, "tls", tcfg.CertFile != "",
		"loops", e.Config().Loops, "portable", e.Config().Portable)
	return st.Run(sig)
}

// echoRoutes is the benchmark server's HTTP surface.
func echoRoutes(ws *websocket.Server) *http1.Router {
	r := http1.NewRouter()
	hello := []byte("hello")
	// GET / never blocks: it runs on the event loop.
	r.Handle("GET /", http1.InlineFunc(func(c *http1.Ctx) {
		c.Write(hello)
	}))
	// GET /delay?ms=N sleeps in the handler: it runs on the worker pool.
	r.HandleFunc("GET /delay", func(c *http1.Ctx) {
		ms, _ := strconv.Atoi(string(c.Query("ms")))
		if ms > 0 {
			time.Sleep(time.Duration(min(ms, 60_000)) * time.Millisecond)
		}
		c.Write(hello)
	})
	// POST /upload streams the request body through a hash as it arrives
	// (any size; the server holds a bounded window) and answers
	// "<bytes> <sha256>".
	r.Handle("POST /upload", http1.StreamBody(http1.HandlerFunc(func(c *http1.Ctx) {
		h := sha256.New()
		n, err := io.Copy(h, c.BodyReader())
		if err != nil {
			return // answered with the error's status
		}
		fmt.Fprintf(c, "%d %x\n", n, h.Sum(nil))
	}), -1))
	// GET /ws echoes WebSocket text and binary messages as received, on
	// the loop.
	r.Handle("GET /ws", ws.Handler())
	return r
}

func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// envDefault sets flag name from the environment variable env when the
// command line did not: secrets come from the environment without -h ever
// printing them.
func envDefault(fs *flag.FlagSet, name, env string) {
	if v := os.Getenv(env); v != "" && !flagSet(fs, name) {
		fs.Set(name, v)
	}
}

func flagSet(fs *flag.FlagSet, name string) bool {
	set := false
	fs.Visit(func(f *flag.Flag) {
		if f.Name == name {
			set = true
		}
	})
	return set
}
