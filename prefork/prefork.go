// Package prefork runs a server as several worker processes sharing one
// listening port with SO_REUSEPORT, under a supervising parent.
//
// The parent reserves the port (binding, not listening, so it never takes a
// connection), starts Procs copies of its own executable with the worker's
// index and the resolved address in the environment, restarts a worker that
// dies with exponential backoff, forwards SIGTERM so that every worker
// drains gracefully, and serves an admin endpoint that merges the workers'
// metrics (each worker runs its own admin listener on a loopback port and
// reports it to the parent through a pipe). The parent's endpoint is
// guarded as the workers' are, by the same Config.AdminToken, which the
// parent also sends to scrape them; the scrape runs in parallel within
// Config.ScrapeTimeout.
//
// Workers die with the parent on Linux (PR_SET_PDEATHSIG). Prefork needs
// SO_REUSEPORT: Linux, macOS and FreeBSD.
package prefork

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"os"
	"os/exec"
	"strconv"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"
)

// Environment variables set for workers.
const (
	// EnvWorker holds a worker's index, 0 to Procs-1.
	EnvWorker = "WARREN_PREFORK_WORKER"
	// EnvAddr holds the listen address with its port resolved.
	EnvAddr = "WARREN_PREFORK_ADDR"
	// reportFD is the descriptor of the pipe a worker reports on.
	reportFD = 3
)

// ErrUnsupported is returned where SO_REUSEPORT is not available.
var ErrUnsupported = errors.New("prefork: not supported on this platform")

// Worker reports whether this process is a prefork worker, with its index
// and the address to listen on (with SO_REUSEPORT).
func Worker() (index int, addr string, ok bool) {
	v := os.Getenv(EnvWorker)
	if v == "" {
		return 0, "", false
	}
	i, err := strconv.Atoi(v)
	if err != nil {
		return 0, "", false
	}
	return i, os.Getenv(EnvAddr), true
}

// ReportAdmin tells the parent where this worker's admin listener is. It is
// a no-op outside a worker.
func ReportAdmin(addr string) {
	if _, _, ok := Worker(); !ok {
		return
	}
	f := os.NewFile(reportFD, "prefork-report")
	if f == nil {
		return
	}
	fmt.Fprintf(f, "admin %s\n", addr)
}

// Config configures a Supervisor. Zero fields take the defaults noted.
type Config struct {
	// Procs is the number of worker processes. Zero means 2.
	Procs int
	// Addr is the address workers listen on; port 0 is resolved first.
	Addr string
	// Args are the workers' arguments. Nil means os.Args[1:].
	Args []string
	// MinBackoff and MaxBackoff bound the delay before restarting a worker
	// that died; it doubles per crash within 10 s of starting. Zero means
	// 100 ms and 30 s.
	MinBackoff, MaxBackoff time.Duration
	// Stdout and Stderr receive the workers' output. Nil means the
	// parent's.
	Stdout, Stderr io.Writer
	// Logger receives the supervisor's logs. Nil means slog.Default().
	Logger *slog.Logger
	// AdminToken is the admin listeners' bearer token. AdminHandler
	// requires it as "Authorization: Bearer <token>" on every endpoint but
	// /healthz and /readyz, and the parent sends it when it scrapes a
	// worker's /metrics, so the workers' admin listeners must be started
	// with the same token. Empty means none.
	AdminToken string
	// Collectors are the parent's own metrics (in warren serve: the
	// management API and the machine's Directory, which the parent
	// serves). AdminHandler's /metrics merges them with the workers',
	// each sample labelled worker="parent". Nil: none.
	Collectors []prometheus.Collector
	// ScrapeTimeout bounds one merged scrape of AdminHandler's /metrics:
	// the workers are scraped in parallel, and one that has not answered
	// in time is left out of that scrape and counted in
	// warren_prefork_scrape_errors_total. Zero means 2 s. AdminHandler's
	// /debug/conns waits this long too, but never less than 7 s (a
	// worker's walk turn, engine.ConnWalkTurn, and 2 s).
	ScrapeTimeout time.Duration
	// ScrapeStale is how long a worker's last good scrape is served in
	// place of an answer that did not come in time (or failed), so that
	// its counters stay in the merged series while it is busy. Zero means
	// 1 min; negative means never.
	ScrapeStale time.Duration
}

// WorkerInfo describes one worker process.
type WorkerInfo struct {
	Index    int    `json:"index"`
	PID      int    `json:"pid"`
	Admin    string `json:"admin,omitempty"`
	Restarts int    `json:"restarts"`
	Up       bool   `json:"up"`
	LastExit string `json:"last_exit,omitempty"`
}

// Supervisor runs and supervises the workers. Its methods are safe for
// concurrent use.
type Supervisor struct {
	cfg     Config
	log     *slog.Logger
	addr    string
	reserve io.Closer

	// mu guards workers, their fields, and stopping.
	mu       sync.Mutex
	workers  []*worker
	stopping bool

	wg       sync.WaitGroup
	stop     chan struct{} // closed by Shutdown
	stopOnce sync.Once

	// parentReg gathers Config.Collectors; made once, by the first
	// scrape (parentOnce).
	parentOnce sync.Once
	parentReg  *prometheus.Registry
	done       chan struct{}
}

type worker struct {
	info WorkerInfo
	cmd  *exec.Cmd
	// scrapeErrors counts the merged scrapes this slot's worker missed;
	// scrapeFailing is whether the last one did, so that a worker that
	// keeps failing is logged once.
	scrapeErrors  uint64
	scrapeFailing bool
	// last is the worker's last good /metrics answer, taken at lastAt
	// from the process lastPID; AdminHandler serves it in place of a late
	// answer for up to Config.ScrapeStale.
	last    []byte
	lastPID int
	lastAt  time.Time
}

// Start reserves the port and starts the workers.
func Start(cfg Config) (*Supervisor, error) {
	if cfg.Procs <= 0 {
		cfg.Procs = 2
	}
	if cfg.Args == nil {
		cfg.Args = os.Args[1:]
	}
	if cfg.MinBackoff <= 0 {
		cfg.MinBackoff = 100 * time.Millisecond
	}
	if cfg.MaxBackoff <= 0 {
		cfg.MaxBackoff = 30 * time.Second
	}
	if cfg.Stdout == nil {
		cfg.Stdout = os.Stdout
	}
	if cfg.Stderr == nil {
		cfg.Stderr = os.Stderr
	}
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ScrapeTimeout <= 0 {
		cfg.ScrapeTimeout = 2 * time.Second
	}
	if cfg.ScrapeStale == 0 {
		cfg.ScrapeStale = time.Minute
	}
	addr, reserve, err := reservePort(cfg.Addr)
	if err != nil {
		return nil, err
	}
	s := &Supervisor{cfg: cfg, log: cfg.Logger, addr: addr, reserve: reserve,
		stop: make(chan struct{}), done: make(chan struct{})}
	for i := 0; i < cfg.Procs; i++ {
		w := &worker{info: WorkerInfo{Index: i}}
		s.workers = append(s.workers, w)
		s.wg.Add(1)
		go s.supervise(w)
	}
	go func() { s.wg.Wait(); reserve.Close(); close(s.done) }()
	return s, nil
}

// Addr returns the address the workers listen on.
func (s *Supervisor) Addr() string { return s.addr }

// Done is closed when every worker has exited after Shutdown.
func (s *Supervisor) Done() <-chan struct{} { return s.done }

// Workers returns the workers' current figures.
func (s *Supervisor) Workers() []WorkerInfo {
	s.mu.Lock()
	defer s.mu.Unlock()
	out := make([]WorkerInfo, len(s.workers))
	for i, w := range s.workers {
		out[i] = w.info
	}
	return out
}

// supervise runs one worker slot until shutdown, restarting with backoff.
func (s *Supervisor) supervise(w *worker) {
	defer s.wg.Done()
	backoff := s.cfg.MinBackoff
	for {
		start := time.Now()
		err := s.run(w)
		s.mu.Lock()
		w.info.Up = false
		w.info.LastExit = exitString(err)
		stopping := s.stopping
		s.mu.Unlock()
		if stopping {
			return
		}
		if time.Since(start) > 10*time.Second {
			backoff = s.cfg.MinBackoff
		}
		s.log.Warn("prefork: worker exited; restarting", "worker", w.info.Index, "exit", exitString(err), "backoff", backoff)
		t := time.NewTimer(backoff)
		select {
		case <-t.C:
		case <-s.stop:
			t.Stop()
			return
		}
		backoff = min(backoff*2, s.cfg.MaxBackoff)
		s.mu.Lock()
		w.info.Restarts++
		s.mu.Unlock()
	}
}

func exitString(err error) string {
	if err == nil {
		return "exit 0"
	}
	return err.Error()
}

// run starts one worker process and waits for it.
func (s *Supervisor) run(w *worker) error {
	exe, err := os.Executable()
	if err != nil {
		return err
	}
	pr, pw, err := os.Pipe()
	if err != nil {
		return err
	}
	cmd := exec.Command(exe, s.cfg.Args...)
	cmd.Env = append(os.Environ(), EnvWorker+"="+strconv.Itoa(w.info.Index), EnvAddr+"="+s.addr)
	cmd.Stdout, cmd.Stderr = s.cfg.Stdout, s.cfg.Stderr
	cmd.ExtraFiles = []*os.File{pw} // descriptor 3 in the child
	cmd.SysProcAttr = sysProcAttr()
	s.mu.Lock()
	if s.stopping {
		s.mu.Unlock()
		pr.Close()
		pw.Close()
		return errors.New("prefork: stopping")
	}
	err = cmd.Start()
	if err == nil {
		w.cmd = cmd
		w.info.PID, w.info.Up, w.info.Admin = cmd.Process.Pid, true, ""
	}
	s.mu.Unlock()
	pw.Close()
	if err != nil {
		pr.Close()
		return err
	}
	go func() {
		defer pr.Close()
		sc := bufio.NewScanner(pr)
		for sc.Scan() {
			if a, ok := strings.CutPrefix(sc.Text(), "admin "); ok {
				s.mu.Lock()
				w.info.Admin = a
				s.mu.Unlock()
			}
		}
	}()
	return cmd.Wait()
}

// Shutdown sends SIGTERM to every worker and waits for them to exit, then
// kills what is left when ctx ends.
func (s *Supervisor) Shutdown(ctx context.Context) error {
	s.mu.Lock()
	s.stopping = true
	s.stopOnce.Do(func() { close(s.stop) })
	for _, w := range s.workers {
		if w.info.Up && w.cmd != nil {
			w.cmd.Process.Signal(syscall.SIGTERM)
		}
	}
	s.mu.Unlock()
	select {
	case <-s.done:
		return nil
	case <-ctx.Done():
		s.mu.Lock()
		for _, w := range s.workers {
			if w.info.Up && w.cmd != nil {
				w.cmd.Process.Kill()
			}
		}
		s.mu.Unlock()
		<-s.done
		return ctx.Err()
	}
}
