// Package stack assembles one warren process: an engine that every
// protocol's listeners share, the admin listener with the collectors of
// whatever runs on the engine, prefork workers under a supervising parent,
// and the signal-driven graceful drain. The commands (warren echo, warren
// serve) parse their flags into a Config, open their listeners on
// Stack.Engine, and call Run; tests and embedders do the same.
//
//	st, _ := stack.New(stack.Config{Admin: admin.Config{Addr: "127.0.0.1:9901"}})
//	srv, _ := http1.NewServer(st.Engine, http1.Config{}, routes)
//	srv.Listen("127.0.0.1:8080")
//	st.AddCollector(srv.Collector(""))
//	os.Exit(st.Run(sig))
package stack

import (
	"context"
	"errors"
	"log/slog"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/prefork"
)

// Config configures a Stack. The zero value is ready to use; every field
// documents what zero means.
type Config struct {
	// Engine configures the engine every listener shares. In a prefork
	// worker ReusePort is forced on (the workers share the port).
	Engine engine.Config
	// Admin configures the admin listener. An empty Admin.Addr disables
	// it; in a prefork worker it is 127.0.0.1:0 (the parent serves the
	// merged view on the configured address). Its Logger defaults to
	// Logger.
	Admin admin.Config
	// DrainTimeout bounds the graceful drain after SIGTERM or SIGINT.
	// Zero means 10 s.
	DrainTimeout time.Duration
	// Logger receives the stack's logs. Nil means slog.Default(). In a
	// prefork worker it is tagged with the worker's index.
	Logger *slog.Logger
}

// DefaultDrainTimeout is Config.DrainTimeout's default.
const DefaultDrainTimeout = 10 * time.Second

// Stack is one running warren process: its engine, started without a
// listener (protocols add theirs), and its admin listener once Run starts
// it.
type Stack struct {
	// Engine is the engine every protocol attaches to.
	Engine *engine.Engine
	// Worker is the index of this prefork worker, or -1 outside prefork.
	Worker int
	// WorkerAddr is the address the prefork parent asks this worker to
	// listen on (SO_REUSEPORT), or "" outside prefork.
	WorkerAddr string

	cfg        Config
	log        *slog.Logger
	collectors []prometheus.Collector
	overload   func() float64
	adm        *admin.Server
}

// New starts an engine with cfg (no listener yet) and returns the stack.
// In a prefork worker (see prefork.Worker) it applies the worker's
// settings.
func New(cfg Config) (*Stack, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	st := &Stack{Worker: -1}
	if w, addr, ok := prefork.Worker(); ok {
		st.Worker, st.WorkerAddr = w, addr
		cfg.Engine.ReusePort = true
		cfg.Logger = cfg.Logger.With("worker", w)
		if cfg.Admin.Addr != "" {
			cfg.Admin.Addr = "127.0.0.1:0" // the parent's admin endpoint merges the workers'
		}
	}
	if cfg.Engine.Logger == nil {
		cfg.Engine.Logger = cfg.Logger
	}
	if cfg.Admin.Logger == nil {
		cfg.Admin.Logger = cfg.Logger
	}
	e, err := engine.New(cfg.Engine, nil)
	if err != nil {
		return nil, err
	}
	if err := e.Start(""); err != nil {
		return nil, err
	}
	st.Engine, st.cfg, st.log = e, cfg, cfg.Logger
	return st, nil
}

// Logger returns the stack's logger (tagged with the worker in prefork).
func (st *Stack) Logger() *slog.Logger { return st.log }

// Addr returns addr, or, in a prefork worker, the address the parent
// shares with its workers.
func (st *Stack) Addr(addr string) string {
	if st.WorkerAddr != "" {
		return st.WorkerAddr
	}
	return addr
}

// AddCollector adds a protocol's metrics to the admin listener's /metrics;
// call it before Run.
func (st *Stack) AddCollector(c prometheus.Collector) { st.collectors = append(st.collectors, c) }

// AddRoute adds an endpoint to the admin listener (see admin.Config.Routes);
// call it before Run.
func (st *Stack) AddRoute(pattern string, h http.Handler) {
	if st.cfg.Admin.Routes == nil {
		st.cfg.Admin.Routes = map[string]http.Handler{}
	}
	st.cfg.Admin.Routes[pattern] = h
}

// SetOverload gives the admin listener the overload level to report
// (0 normal, higher under load shedding); call it before Run.
func (st *Stack) SetOverload(f func() float64) { st.overload = f }

// StartAdmin starts the admin listener, if configured, and reports its
// address to a prefork parent. Run calls it; call it earlier to learn the
// address.
func (st *Stack) StartAdmin() error {
	if st.cfg.Admin.Addr == "" || st.adm != nil {
		return nil
	}
	acfg := st.cfg.Admin
	if acfg.Overload == nil {
		acfg.Overload = st.overload
	}
	adm, err := admin.New(acfg, st.Engine, st.collectors...)
	if err == nil {
		err = adm.Start()
	}
	if err != nil {
		return err
	}
	st.adm = adm
	prefork.ReportAdmin(adm.Addr().String())
	return nil
}

// Admin returns the admin listener once started, or nil.
func (st *Stack) Admin() *admin.Server { return st.adm }

// Run starts the admin listener and serves until a signal arrives on sig
// (or the engine stops), then drains: the engine first, so /readyz
// answers 503 throughout, for at most DrainTimeout. It returns the exit
// code.
func (st *Stack) Run(sig <-chan os.Signal) int {
	if err := st.StartAdmin(); err != nil {
		st.log.Error("admin listener", "addr", st.cfg.Admin.Addr, "error", err)
		st.Engine.Close()
		return 1
	}
	select {
	case s := <-sig:
		st.log.Info("draining", "signal", s.String(), "connections", st.Engine.NumConns(), "timeout", st.cfg.DrainTimeout)
	case <-st.Engine.Done():
		return 0
	}
	ctx, cancel := context.WithTimeout(context.Background(), st.cfg.DrainTimeout)
	defer cancel()
	if err := st.Engine.Shutdown(ctx); err != nil {
		st.log.Warn("drain deadline reached; remaining connections closed", "error", err)
	}
	if st.adm != nil {
		st.adm.Shutdown(ctx)
	}
	st.log.Info("stopped")
	return 0
}

// SupervisorConfig configures RunSupervisor.
type SupervisorConfig struct {
	// Procs is the number of worker processes.
	Procs int
	// Addr is the address the workers share with SO_REUSEPORT.
	Addr string
	// AdminAddr is the parent's admin listener, serving the workers'
	// merged metrics; empty disables it.
	AdminAddr string
	// AdminToken protects the parent's admin listener and is forwarded
	// when the parent scrapes its workers.
	AdminToken string
	// DrainTimeout is the workers' drain timeout; the parent allows 5 s
	// more before killing them. Zero means 10 s.
	DrainTimeout time.Duration
	// Name names the command in logs ("warren echo").
	Name   string
	Logger *slog.Logger
	// ForwardHUP makes the parent pass SIGHUP on to its workers (which
	// reload their TLS certificates on it) instead of dying of it. Set it
	// only when the workers handle SIGHUP.
	ForwardHUP bool
	// Collectors are the parent's own metrics, merged into its admin
	// listener's /metrics labelled worker="parent" (prefork.Config's
	// Collectors). Nil: none.
	Collectors []prometheus.Collector
	// Drain, when set, drains what the parent itself serves (warren
	// serve's management API) after SIGTERM or SIGINT: it runs while the
	// workers drain, with a context that ends after DrainTimeout, and the
	// parent waits for it before it returns.
	Drain func(ctx context.Context)
}

// RunSupervisor is the prefork parent: it starts the workers (this same
// program, re-executed), serves their merged figures on the admin address
// behind admin's guard, restarts crashed workers and forwards SIGTERM or
// SIGINT for a graceful drain. It returns the exit code.
func RunSupervisor(sig <-chan os.Signal, cfg SupervisorConfig) int {
	log := cfg.Logger
	if log == nil {
		log = slog.Default()
	}
	if cfg.DrainTimeout <= 0 {
		cfg.DrainTimeout = DefaultDrainTimeout
	}
	sup, err := prefork.Start(prefork.Config{Procs: cfg.Procs, Addr: cfg.Addr, Logger: log, AdminToken: cfg.AdminToken,
		Collectors: cfg.Collectors})
	if err != nil {
		log.Error("prefork", "error", err)
		return 1
	}
	log.Info(cfg.Name+" listening", "addr", sup.Addr(), "procs", cfg.Procs)
	var adm *http.Server
	if cfg.AdminAddr != "" {
		ln, err := net.Listen("tcp", cfg.AdminAddr)
		if err != nil {
			log.Error("admin listener", "addr", cfg.AdminAddr, "error", err)
			sup.Shutdown(context.Background())
			return 1
		}
		log.Info("admin: listening", "addr", ln.Addr().String())
		adm = admin.NewHTTPServer(sup.AdminHandler(), log)
		go func() {
			if err := adm.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
				log.Error("admin listener", "error", err)
			}
		}()
	}
	if cfg.ForwardHUP {
		stop := forwardHUP(sup, log)
		defer stop()
	}
	s := <-sig
	log.Info("draining workers", "signal", s.String(), "timeout", cfg.DrainTimeout)
	ctx, cancel := context.WithTimeout(context.Background(), cfg.DrainTimeout+5*time.Second)
	defer cancel()
	drained := make(chan struct{})
	go func() {
		defer close(drained)
		if cfg.Drain != nil {
			dctx, dcancel := context.WithTimeout(context.Background(), cfg.DrainTimeout)
			defer dcancel()
			cfg.Drain(dctx)
		}
	}()
	if err := sup.Shutdown(ctx); err != nil {
		log.Warn("workers killed after the drain deadline", "error", err)
	}
	<-drained
	if adm != nil {
		adm.Shutdown(ctx)
	}
	log.Info("stopped")
	return 0
}

// forwardHUP passes the parent's SIGHUPs on to the running workers until
// the returned function is called.
func forwardHUP(sup *prefork.Supervisor, log *slog.Logger) func() {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	done := make(chan struct{})
	go func() {
		for {
			select {
			case <-done:
				return
			case <-hup:
				for _, w := range sup.Workers() {
					if !w.Up || w.PID <= 0 {
						continue
					}
					if p, err := os.FindProcess(w.PID); err == nil {
						if err := p.Signal(syscall.SIGHUP); err != nil {
							log.Warn("SIGHUP to a worker", "pid", w.PID, "error", err)
						}
					}
				}
				log.Info("SIGHUP passed on to the workers")
			}
		}
	}()
	return func() {
		signal.Stop(hup)
		close(done)
	}
}
