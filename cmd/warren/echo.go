package main

import (
	"context"
	"crypto/sha256"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"strconv"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/prefork"
	"github.com/warrenhq/warren/websocket"
)

// tcpEcho writes back whatever it receives. It never blocks, so it runs
// inline on the loops unless told otherwise.
type tcpEcho struct{}

func (tcpEcho) OnData(c *engine.Conn, in []byte) int {
	c.Write(in)
	return len(in)
}

func runEcho(args []string, stdout, stderr io.Writer) int {
	fs := flag.NewFlagSet("warren echo", flag.ContinueOnError)
	fs.SetOutput(stderr)
	addr := fs.String("addr", "127.0.0.1:8080", "listen address")
	adminAddr := fs.String("admin", admin.DefaultAddr, "admin listener (metrics, /debug/conns, pprof, dashboard); empty disables")
	adminToken := fs.String("admin-token", os.Getenv("WARREN_ADMIN_TOKEN"), "bearer token for the admin listener; with -procs, the parent's and every worker's (default $WARREN_ADMIN_TOKEN; empty: none)")
	proto := fs.String("proto", "http", "protocol: http (GET /, GET /delay?ms=N) or tcp (raw echo)")
	drain := fs.Duration("drain-timeout", 10*time.Second, "how long SIGTERM/SIGINT waits for connections to finish")
	logLevel := fs.String("log-level", "info", "debug, info, warn or error")
	procs := fs.Int("procs", 1, "worker processes sharing the port with SO_REUSEPORT under a supervising parent (1: none)")
	var hcfg http1.Config
	engineFlags(fs, &hcfg.Engine)
	httpFlags(fs, &hcfg)
	wsCfg := websocket.Config{Inline: true}
	wsFlags(fs, &wsCfg)
	if err := fs.Parse(args); err != nil {
		if err == flag.ErrHelp {
			return 0
		}
		return 2
	}
	log := newLogger(stderr, *logLevel)
	hcfg.Engine.Logger, hcfg.Logger = log, log
	// Catch signals before announcing the address, so a SIGTERM sent as
	// soon as the server is up still drains gracefully.
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	defer signal.Stop(sig)
	worker, workerAddr, isWorker := prefork.Worker()
	switch {
	case isWorker:
		*addr = workerAddr
		*adminAddr = "127.0.0.1:0" // the parent's admin endpoint merges the workers'
		hcfg.Engine.ReusePort = true
		log = log.With("worker", worker)
		hcfg.Engine.Logger, hcfg.Logger = log, log
	case *procs > 1:
		return runSupervisor(sig, *procs, *addr, *adminAddr, *adminToken, *drain, log)
	}
	var e *engine.Engine
	var extra []prometheus.Collector
	var overload func() float64
	switch *proto {
	case "tcp":
		cfg := hcfg.Engine
		if !flagSet(fs, "inline") {
			cfg.Inline = true
		}
		var err error
		if e, err = engine.New(cfg, tcpEcho{}); err != nil {
			log.Error("engine", "error", err)
			return 1
		}
		if err := e.Start(*addr); err != nil {
			log.Error("listen", "addr", *addr, "error", err)
			return 1
		}
	case "http":
		ws := websocket.New(wsCfg, websocket.Echo)
		srv, err := http1.NewServer(hcfg, echoRoutes(ws))
		if err != nil {
			log.Error("http server", "error", err)
			return 1
		}
		if err := srv.Start(*addr); err != nil {
			log.Error("listen", "addr", *addr, "error", err)
			return 1
		}
		e = srv.Engine()
		extra = append(extra, admin.HTTPCollector("", srv), admin.WebSocketCollector("", ws))
		overload = func() float64 { return float64(srv.Overload().Level()) }
	default:
		fmt.Fprintf(stderr, "warren echo: unknown -proto %q\n", *proto)
		return 2
	}
	log.Info("warren echo listening", "addr", e.Addr().String(), "proto", *proto,
		"loops", e.Config().Loops, "portable", e.Config().Portable)
	var adm *admin.Server
	if *adminAddr != "" {
		var err error
		adm, err = admin.New(admin.Config{Addr: *adminAddr, Token: *adminToken, Logger: log, Overload: overload}, e, extra...)
		if err == nil {
			err = adm.Start()
		}
		if err != nil {
			log.Error("admin listener", "addr", *adminAddr, "error", err)
			e.Close()
			return 1
		}
		prefork.ReportAdmin(adm.Addr().String())
	}
	return waitAndDrain(sig, e, adm, *drain, log)
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

// waitAndDrain blocks until a signal arrives on sig, then shuts e (and the
// admin listener) down gracefully within drain. It returns the exit code.
func waitAndDrain(sig <-chan os.Signal, e *engine.Engine, adm *admin.Server, drain time.Duration, log *slog.Logger) int {
	select {
	case s := <-sig:
		log.Info("draining", "signal", s.String(), "connections", e.NumConns(), "timeout", drain)
	case <-e.Done():
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), drain)
	defer cancel()
	// The engine first, so /readyz answers 503 throughout the drain.
	if err := e.Shutdown(ctx); err != nil {
		log.Warn("drain deadline reached; remaining connections closed", "error", err)
	}
	if adm != nil {
		adm.Shutdown(ctx)
	}
	log.Info("stopped")
	return 0
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

func newLogger(w io.Writer, level string) *slog.Logger {
	var lv slog.Level
	if err := lv.UnmarshalText([]byte(level)); err != nil {
		lv = slog.LevelInfo
	}
	return slog.New(slog.NewTextHandler(w, &slog.HandlerOptions{Level: lv}))
}

// runSupervisor is the prefork parent: it starts procs workers on one port,
// serves their merged figures on the admin address behind adminToken (the
// workers inherit the same -admin-token), restarts crashed workers and
// forwards SIGTERM/SIGINT for a graceful drain.
func runSupervisor(sig <-chan os.Signal, procs int, addr, adminAddr, adminToken string, drain time.Duration, log *slog.Logger) int {
	sup, err := prefork.Start(prefork.Config{Procs: procs, Addr: addr, Logger: log, AdminToken: adminToken})
	if err != nil {
		log.Error("prefork", "error", err)
		return 1
	}
	log.Info("warren echo listening", "addr", sup.Addr(), "procs", procs)
	var adm *http.Server
	if adminAddr != "" {
		ln, err := net.Listen("tcp", adminAddr)
		if err != nil {
			log.Error("admin listener", "addr", adminAddr, "error", err)
			sup.Shutdown(context.Background())
			return 1
		}
		log.Info("admin: listening", "addr", ln.Addr().String(), "token", adminToken != "")
		adm = admin.NewHTTPServer(sup.AdminHandler(), log)
		go adm.Serve(ln)
	}
	s := <-sig
	log.Info("draining workers", "signal", s.String(), "timeout", drain)
	// Workers drain within their own -drain-timeout; allow a margin before
	// killing them.
	ctx, cancel := context.WithTimeout(context.Background(), drain+5*time.Second)
	defer cancel()
	if err := sup.Shutdown(ctx); err != nil {
		log.Warn("workers killed after the drain deadline", "error", err)
	}
	if adm != nil {
		adm.Shutdown(ctx)
	}
	log.Info("stopped")
	return 0
}
