package admin

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/http"
	"sync"
	"time"

	"github.com/prometheus/client_golang/prometheus"
	"github.com/prometheus/client_golang/prometheus/collectors"
	"github.com/prometheus/client_golang/prometheus/promhttp"
	"golang.org/x/time/rate"

	"github.com/warrenhq/warren/engine"
)

// DefaultAddr is where the admin listener binds when Config.Addr is empty:
// the loopback interface only.
const DefaultAddr = "127.0.0.1:9901"

// Sentinel errors returned by Server.
var (
	// ErrStarted is returned by Start on a server that was already started.
	ErrStarted = errors.New("admin: already started")
	// ErrServerClosed is returned by Start after Shutdown.
	ErrServerClosed = errors.New("admin: server closed")
)

// Config configures a Server. The zero value serves on DefaultAddr without
// a token, with a registry of its own.
type Config struct {
	// Addr is the listening address, "host:port". Empty means DefaultAddr;
	// port 0 picks a free port (Start logs it, Addr returns it). A public
	// interface is used only when named here.
	Addr string
	// Token, when set, is required as "Authorization: Bearer <token>" on
	// every endpoint but /healthz, /readyz and the dashboard's static page.
	// Empty means no authentication.
	Token string
	// Registerer receives the engine collector and the extra collectors.
	// Nil means a new registry of the server's own, which also gets the Go
	// runtime and process collectors.
	Registerer prometheus.Registerer
	// Gatherer is what /metrics exposes. Nil means Registerer when it is
	// also a Gatherer (a *prometheus.Registry is), or the server's own
	// registry when Registerer is nil too; New fails when Registerer cannot
	// gather and Gatherer is nil. With Registerer nil and Gatherer set,
	// /metrics exposes both the server's registry and Gatherer.
	Gatherer prometheus.Gatherer
	// Logger receives the server's few logs: its address, admin closes,
	// serve errors. Nil means slog.Default().
	Logger *slog.Logger
	// Namespace prefixes every metric name. Empty means "warren".
	Namespace string
	// Overload reports the overload state exported as
	// <namespace>_overload_state (0 normal). It is called on each scrape
	// and dashboard poll, from any goroutine. Nil means always 0.
	Overload func() float64
	// Clock tells the time used for connection ages and idle times; give
	// the engine's clock when it has one. Nil means the system clock.
	Clock engine.Clock
	// Routes adds endpoints, keyed by http.ServeMux pattern ("GET
	// /api/upstream"), behind the same token and address guard as the
	// others: a protocol layer's own views and actions. Nil adds none.
	Routes map[string]http.Handler
}

// Source is what the admin server reads and acts on. *engine.Engine
// implements it; a protocol server that wraps an engine can too. Its
// methods are called from HTTP handler goroutines, concurrently.
type Source interface {
	// Stats returns a snapshot of the counters.
	Stats() engine.Stats
	// Conns returns a snapshot of the live connections.
	Conns() []engine.ConnInfo
	// CloseConn closes the live connection id with reason r and reports
	// whether it was found.
	CloseConn(id uint64, r engine.CloseReason) bool
	// Draining reports whether shutdown has begun.
	Draining() bool
}

var _ Source = (*engine.Engine)(nil)

// Server is the admin listener. Create it with New, serve with Start (or
// mount Handler elsewhere), stop with Shutdown. Its methods are safe for
// concurrent use.
type Server struct {
	cfg     Config
	src     Source
	log     *slog.Logger
	clock   engine.Clock
	reg     prometheus.Registerer
	owned   []prometheus.Collector // registered by New into reg, unregistered by Shutdown
	extra   *prometheus.Registry   // the extra collectors alone, read by the dashboard
	ns      string
	handler http.Handler

	// topMu guards the busiest-connections cache of /api/stats.
	topMu   sync.Mutex
	topNext time.Time
	topN    int
	top     []Conn

	// partialMu guards the limit on the warning of a partial
	// /debug/conns: a dashboard polling while a loop is stuck would log
	// every poll.
	partialMu      sync.Mutex
	partialLim     *rate.Limiter
	partialSkipped int // warnings not logged since the last one

	// mu guards the listener state below.
	mu      sync.Mutex
	srv     *http.Server
	served  chan struct{} // closed when srv.Serve has returned (and closed the listener)
	addr    net.Addr
	started bool
	closed  bool
}

// New returns a server exposing src with cfg. Extra collectors (protocol
// layers' metrics) are registered with the others and shown on the
// dashboard. It does not listen yet: see Start and Handler.
func New(cfg Config, src Source, extra ...prometheus.Collector) (*Server, error) {
	if src == nil {
		return nil, errors.New("admin: nil source")
	}
	if cfg.Addr == "" {
		cfg.Addr = DefaultAddr
	}
	if cfg.Namespace == "" {
		cfg.Namespace = "warren"
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.Clock == nil {
		cfg.Clock = systemClock{}
	}
	s := &Server{cfg: cfg, src: src, log: cfg.Logger, clock: cfg.Clock, ns: cfg.Namespace,
		extra: prometheus.NewRegistry(), partialLim: rate.NewLimiter(rate.Every(partialWarnEvery), partialWarnBurst)}

	reg, gath := cfg.Registerer, cfg.Gatherer
	if reg == nil {
		own := prometheus.NewRegistry()
		own.MustRegister(collectors.NewGoCollector(), collectors.NewProcessCollector(collectors.ProcessCollectorOpts{}))
		reg = own
		if gath == nil {
			gath = own
		} else {
			gath = prometheus.Gatherers{own, gath}
		}
	}
	if gath == nil {
		g, ok := reg.(prometheus.Gatherer)
		if !ok {
			return nil, errors.New("admin: Config.Gatherer is nil and Config.Registerer is not a Gatherer")
		}
		gath = g
	}
	s.reg = reg
	for _, c := range append([]prometheus.Collector{newCollector(cfg.Namespace, src, cfg.Overload, residentBytes)}, extra...) {
		if err := reg.Register(c); err != nil {
			s.unregister()
			return nil, fmt.Errorf("admin: register collector: %w", err)
		}
		s.owned = append(s.owned, c)
	}
	for _, c := range extra {
		if err := s.extra.Register(c); err != nil {
			s.unregister()
			return nil, fmt.Errorf("admin: register extra collector: %w", err)
		}
	}
	s.handler = s.routes(promhttp.HandlerFor(gath, promhttp.HandlerOpts{
		ErrorLog:            slog.NewLogLogger(cfg.Logger.Handler(), slog.LevelWarn),
		MaxRequestsInFlight: 4,
		Timeout:             30 * time.Second,
	}))
	return s, nil
}

func (s *Server) unregister() {
	for _, c := range s.owned {
		s.reg.Unregister(c)
	}
	s.owned = nil
}

// Handler returns the server's HTTP handler, with authentication, for
// tests or to mount on another server. It is usable without Start.
func (s *Server) Handler() http.Handler { return s.handler }

// Start listens on Config.Addr, logs the bound address and serves in the
// background.
func (s *Server) Start() error {
	s.mu.Lock()
	defer s.mu.Unlock()
	if s.closed {
		return ErrServerClosed
	}
	if s.started {
		return ErrStarted
	}
	ln, err := net.Listen("tcp", s.cfg.Addr)
	if err != nil {
		return fmt.Errorf("admin: %w", err)
	}
	s.srv = NewHTTPServer(s.handler, s.log)
	s.addr = ln.Addr()
	s.started = true
	attrs := []slog.Attr{slog.String("addr", s.addr.String()), slog.Bool("token", s.cfg.Token != "")}
	s.log.LogAttrs(context.Background(), slog.LevelInfo, "admin: listening", attrs...)
	if s.cfg.Token == "" && !isLoopback(s.addr) {
		s.log.LogAttrs(context.Background(), slog.LevelWarn,
			"admin: listening beyond loopback without a token; anyone who reaches it can read connections and close them",
			slog.String("addr", s.addr.String()))
	}
	s.served = make(chan struct{})
	go func(srv *http.Server, served chan struct{}) {
		defer close(served)
		if err := srv.Serve(ln); err != nil && !errors.Is(err, http.ErrServerClosed) {
			s.log.LogAttrs(context.Background(), slog.LevelError, "admin: serve", slog.String("error", err.Error()))
		}
	}(s.srv, s.served)
	return nil
}

// Addr returns the bound address, or nil before Start.
func (s *Server) Addr() net.Addr {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.addr
}

// Shutdown closes the listener, waits for requests in flight until ctx
// ends and unregisters the server's collectors. It is idempotent.
func (s *Server) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	if s.closed {
		s.mu.Unlock()
		return nil
	}
	s.closed = true
	srv, served := s.srv, s.served
	s.unregister()
	s.mu.Unlock()
	if srv == nil {
		return nil
	}
	err := srv.Shutdown(ctx)
	// Serve may not have reached its listener yet when Shutdown ran; it
	// then returns at once and closes it. Either way the port is free
	// when Shutdown returns.
	<-served
	return err
}

// routes builds the mux and wraps it with the access checks.
func (s *Server) routes(metrics http.Handler) http.Handler {
	mux := http.NewServeMux()
	mux.HandleFunc("GET /healthz", func(w http.ResponseWriter, r *http.Request) {
		writeText(w, http.StatusOK, "ok\n")
	})
	mux.HandleFunc("GET /readyz", func(w http.ResponseWriter, r *http.Request) {
		if s.src.Draining() {
			writeText(w, http.StatusServiceUnavailable, "draining\n")
			return
		}
		writeText(w, http.StatusOK, "ready\n")
	})
	mux.Handle("GET /metrics", metrics)
	mux.HandleFunc("GET /api/stats", s.serveStats)
	mux.HandleFunc("GET /debug/conns", s.serveConns)
	mux.HandleFunc("GET /debug/conns/{id}", s.serveConn)
	mux.HandleFunc("POST /debug/conns/{id}/close", s.serveClose)
	for pattern, h := range s.cfg.Routes {
		mux.Handle(pattern, h)
	}
	pprofRoutes(mux)
	dashboardRoutes(mux)
	return s.guard(mux)
}

// guard applies the access checks of Guard with the server's address and
// token; the dashboard's static shell is open besides the probes.
func (s *Server) guard(next http.Handler) http.Handler {
	return Guard(next, GuardConfig{Addr: s.cfg.Addr, Token: s.cfg.Token, Open: open})
}

func writeText(w http.ResponseWriter, code int, body string) {
	w.Header().Set("Content-Type", "text/plain; charset=utf-8")
	w.Header().Set("Cache-Control", "no-store")
	w.WriteHeader(code)
	_, _ = w.Write([]byte(body))
}

// idleSeconds converts an idle timeout to seconds, 0 when disabled.
func idleSeconds(d time.Duration) float64 {
	if d < 0 {
		return 0
	}
	return d.Seconds()
}

type systemClock struct{}

func (systemClock) Now() time.Time { return time.Now() }
