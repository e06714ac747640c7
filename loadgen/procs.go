package loadgen

import (
	"bufio"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os/exec"
	"strings"
	"sync"
	"sync/atomic"
	"time"
)

// The parent and its workers speak JSON lines: the parent writes the
// worker's Config, then commands ("ramp", "hold", "traffic", "cancel",
// "tick", "finish") on the worker's standard input; the worker answers
// "tick" at once with its counters since the last one (phases run in the
// background), writes "done" when a phase ends, and after "finish" its
// last counters and its report, on its standard output. A worker whose
// standard input ends (the parent died) stops at once.
type wireMsg struct {
	Config  *Config        `json:"config,omitempty"`
	Secrets *workerSecrets `json:"secrets,omitempty"`
	Cmd     string         `json:"cmd,omitempty"`
	Done    string         `json:"done,omitempty"`
	Open    int64          `json:"open,omitempty"`
	Tick    *tick          `json:"tick,omitempty"`
	Report  *Report        `json:"report,omitempty"`
	Error   string         `json:"error,omitempty"`
}

const maxWireLine = 64 << 20

// workerSecrets are the Config fields that never go to JSON (reports
// are written to files): the parent hands them to its workers beside the
// config, on their standard input.
type workerSecrets struct {
	JWTSecret []byte `json:"jwt_secret,omitempty"`
	APIToken  string `json:"api_token,omitempty"`
}

// ServeWorker runs one worker of a multi-process run: it reads its Config
// and commands from in and writes ticks, phase ends and its report to out,
// as Run's parent expects (see Config.WorkerCommand). It returns when the
// parent says "finish", or when in ends (the parent is gone) or ctx ends,
// after closing its connections.
func ServeWorker(ctx context.Context, in io.Reader, out io.Writer) error {
	ctx, cancel := context.WithCancel(ctx)
	defer cancel()
	sc := bufio.NewScanner(in)
	sc.Buffer(make([]byte, 64<<10), maxWireLine)
	var enc struct {
		sync.Mutex
		*json.Encoder
	}
	enc.Encoder = json.NewEncoder(out)
	send := func(m wireMsg) {
		enc.Lock()
		defer enc.Unlock()
		_ = enc.Encode(m)
	}
	if !sc.Scan() {
		return fmt.Errorf("%w: no config on input", ErrWorker)
	}
	var first wireMsg
	if err := json.Unmarshal(sc.Bytes(), &first); err != nil || first.Config == nil {
		return fmt.Errorf("%w: bad config line: %v", ErrWorker, err)
	}
	cfg := *first.Config
	cfg.Procs, cfg.Progress, cfg.WorkerCommand = 1, nil, nil
	if s := first.Secrets; s != nil {
		cfg.Devices.JWTSecret, cfg.Devices.APIToken = s.JWTSecret, s.APIToken
	}
	cfg = cfg.withDefaults()
	r, err := newBackend(ctx, cfg)
	if err != nil {
		send(wireMsg{Error: err.Error()})
		return err
	}
	cmds := make(chan string, 4)
	go func() {
		defer close(cmds)
		for sc.Scan() {
			var m wireMsg
			if json.Unmarshal(sc.Bytes(), &m) == nil && m.Cmd != "" {
				cmds <- m.Cmd
			}
		}
		cancel() // the parent is gone
	}()
	finish := func() {
		rep, _ := r.finish()
		tk := r.tick()
		send(wireMsg{Tick: &tk})
		send(wireMsg{Report: rep})
	}
	var phaseCancel context.CancelFunc = func() {}
	phaseDone := make(chan wireMsg, 1)
	running := false
	for {
		select {
		case m := <-phaseDone:
			running = false
			send(m)
			continue
		case <-ctx.Done():
			phaseCancel()
			if running {
				<-phaseDone
			}
			finish()
			return ctx.Err()
		case cmd, ok := <-cmds:
			if !ok {
				cmds = nil // ctx is cancelled too
				continue
			}
			switch cmd {
			case "tick":
				tk := r.tick()
				send(wireMsg{Tick: &tk})
			case "cancel":
				phaseCancel()
			case "finish":
				phaseCancel()
				if running {
					<-phaseDone
				}
				finish()
				return nil
			case "ramp", "hold", "traffic":
				if running {
					send(wireMsg{Error: "phase " + cmd + " while another runs"})
					continue
				}
				var pctx context.Context
				pctx, phaseCancel = context.WithCancel(ctx)
				running = true
				go func() {
					m := wireMsg{Done: cmd}
					var err error
					switch cmd {
					case "ramp":
						m.Open, err = r.ramp(pctx)
					case "hold":
						err = r.hold(pctx, cfg.Hold)
					case "traffic":
						err = r.traffic(pctx, cfg.Duration)
					}
					if err != nil {
						m.Error = err.Error()
					}
					phaseDone <- m
				}()
			}
		}
	}
}

// worker is one child process of a procGroup.
type worker struct {
	i      int
	cmd    *exec.Cmd
	stdin  io.WriteCloser
	inMu   sync.Mutex
	msgs   chan wireMsg  // everything but ticks
	ticks  chan *tick    // answers to "tick", and the last one after "finish"
	exited chan struct{} // closed once the process is reaped
	tail   *tailBuffer   // its standard error, when the command had none
	err    error         // from Wait; read after exited
	failed bool          // its failure was reported; owned by the coordinator
}

func (w *worker) send(m wireMsg) error {
	w.inMu.Lock()
	defer w.inMu.Unlock()
	b, err := json.Marshal(m)
	if err != nil {
		return err
	}
	_, err = w.stdin.Write(append(b, '\n'))
	return err
}

// failure describes a worker that went away, once; later calls return
// nil.
func (w *worker) failure() error {
	if w.failed {
		return nil
	}
	w.failed = true
	msg := fmt.Sprintf("worker %d stopped answering", w.i)
	select {
	case <-w.exited:
		msg = fmt.Sprintf("worker %d exited", w.i)
		if w.err != nil {
			msg += ": " + w.err.Error()
		}
	default:
	}
	if w.tail != nil {
		if s := strings.TrimSpace(w.tail.String()); s != "" {
			msg += "; stderr: " + s
		}
	}
	return fmt.Errorf("%w: %s", ErrWorker, msg)
}

// procGroup is the backend of a multi-process run. Its methods are called
// by the coordinator, one at a time except tick, which the coordinator's
// ticker calls during phases; tick touches only the workers' tick
// channels and stdin (under worker.inMu).
type procGroup struct {
	cfg      Config
	workers  []*worker
	finished atomic.Bool // "finish" was sent: ask for no more ticks
}

// workerConfig is worker i's share of cfg among p workers.
func workerConfig(cfg Config, i, p int) Config {
	wc := cfg
	wc.Conns = cfg.Conns / p
	if i < cfg.Conns%p {
		wc.Conns++
	}
	wc.Rate = cfg.Rate / float64(p)
	wc.RPS = cfg.RPS / float64(p)
	// Devices: worker i's devices follow worker i-1's; the parent watches
	// NATS for all of them (one run id) and sends the commands, unless
	// each worker drives its share of them to its own devices
	// (DeviceConfig.CommandsInDevices).
	wc.Devices.First = cfg.Devices.First + i*(cfg.Conns/p) + min(i, cfg.Conns%p)
	wc.Devices.CommandRPS = 0
	if cfg.Devices.CommandsInDevices {
		wc.Devices.CommandRPS = cfg.Devices.CommandRPS / float64(p)
	}
	wc.Devices.NATS, wc.Devices.NATSConn = "", nil
	if n := len(cfg.Sources); n >= p {
		wc.Sources = cfg.Sources[i*n/p : (i+1)*n/p]
	}
	wc.Procs, wc.ServerPID, wc.AdminURL, wc.Progress, wc.WorkerCommand = 1, 0, "", nil, nil
	return wc
}

func startProcs(cfg Config) (*procGroup, error) {
	p := cfg.Procs // at most cfg.Conns, by withDefaults
	g := &procGroup{cfg: cfg}
	for i := range p {
		w, err := g.startWorker(i, workerConfig(cfg, i, p))
		if w != nil {
			g.workers = append(g.workers, w)
		}
		if err != nil {
			g.kill()
			return nil, err
		}
	}
	return g, nil
}

func (g *procGroup) startWorker(i int, wc Config) (*worker, error) {
	cmd := g.cfg.WorkerCommand(i)
	if cmd == nil {
		return nil, ErrNoWorkerCommand
	}
	w := &worker{i: i, cmd: cmd, msgs: make(chan wireMsg, 16), ticks: make(chan *tick, 16),
		exited: make(chan struct{})}
	if cmd.Stderr == nil {
		w.tail = &tailBuffer{max: 4 << 10}
		cmd.Stderr = w.tail
	}
	setDeathSignal(cmd)
	stdin, err := cmd.StdinPipe()
	if err != nil {
		return nil, err
	}
	stdout, err := cmd.StdoutPipe()
	if err != nil {
		return nil, err
	}
	if err := cmd.Start(); err != nil {
		return nil, fmt.Errorf("%w: start worker %d: %v", ErrWorker, i, err)
	}
	w.stdin = stdin
	go g.read(w, stdout)
	sec := &workerSecrets{JWTSecret: wc.Devices.JWTSecret, APIToken: wc.Devices.APIToken}
	if err := w.send(wireMsg{Config: &wc, Secrets: sec}); err != nil {
		return w, w.failure()
	}
	return w, nil
}

// read takes a worker's output until it exits.
func (g *procGroup) read(w *worker, stdout io.Reader) {
	sc := bufio.NewScanner(stdout)
	sc.Buffer(make([]byte, 64<<10), maxWireLine)
	for sc.Scan() {
		var m wireMsg
		if json.Unmarshal(sc.Bytes(), &m) != nil {
			continue
		}
		if m.Tick != nil {
			select {
			case w.ticks <- m.Tick:
			default: // nobody asked; drop rather than block
			}
			continue
		}
		w.msgs <- m
	}
	io.Copy(io.Discard, stdout)
	w.err = w.cmd.Wait()
	close(w.exited)
}

// errGone is await's answer for a worker that exited or stopped answering.
var errGone = errors.New("loadgen: worker gone")

// await returns the next non-tick message of w, or errGone when w exits
// or the wait passes limit.
func (w *worker) await(limit time.Duration) (wireMsg, error) {
	t := time.NewTimer(limit)
	defer t.Stop()
	select {
	case m := <-w.msgs:
		return m, nil
	case <-w.exited:
		select {
		case m := <-w.msgs:
			return m, nil
		default:
		}
	case <-t.C:
	}
	return wireMsg{}, errGone
}

// phase runs cmd on every worker and waits for them all. When ctx ends it
// tells them to cancel and still waits, within a bound.
func (g *procGroup) phase(ctx context.Context, cmd string, d time.Duration) (int64, error) {
	var errs []error
	for _, w := range g.workers {
		if err := w.send(wireMsg{Cmd: cmd}); err != nil {
			errs = append(errs, w.failure())
		}
	}
	if err := errors.Join(errs...); err != nil {
		return 0, err
	}
	stop := context.AfterFunc(ctx, func() {
		for _, w := range g.workers {
			w.send(wireMsg{Cmd: "cancel"})
		}
	})
	defer stop()
	limit := d + 3*g.cfg.Timeout + 30*time.Second
	if cmd == "ramp" {
		limit += time.Duration(g.cfg.Conns) * time.Millisecond
		if g.cfg.Rate > 0 {
			limit += time.Duration(float64(g.cfg.Conns) / g.cfg.Rate * 1e9)
		}
	}
	var open int64
	for _, w := range g.workers {
		for {
			m, err := w.await(limit)
			if err != nil {
				errs = append(errs, w.failure())
				break
			}
			if m.Done == cmd {
				open += m.Open
				break
			}
			if m.Error != "" {
				errs = append(errs, fmt.Errorf("%w: worker %d: %s", ErrWorker, w.i, m.Error))
				break
			}
		}
	}
	if err := ctx.Err(); err != nil {
		return open, err
	}
	return open, errors.Join(errs...)
}

func (g *procGroup) ramp(ctx context.Context) (int64, error) { return g.phase(ctx, "ramp", 0) }

func (g *procGroup) hold(ctx context.Context, d time.Duration) error {
	_, err := g.phase(ctx, "hold", d)
	return err
}

func (g *procGroup) traffic(ctx context.Context, d time.Duration) error {
	_, err := g.phase(ctx, "traffic", d)
	return err
}

// tick asks every worker for its counters and adds them up; after
// finish it only takes what the workers sent last.
func (g *procGroup) tick() tick {
	var t tick
	ask := !g.finished.Load()
	if ask {
		for _, w := range g.workers {
			w.send(wireMsg{Cmd: "tick"})
		}
	}
	for _, w := range g.workers {
		got := false
		for {
			select {
			case tk := <-w.ticks:
				open := t.Open
				t.add(tk)
				t.Open = open + tk.Open
				got = true
				continue
			default:
			}
			if got || !ask {
				break
			}
			timer := time.NewTimer(time.Second)
			select {
			case tk := <-w.ticks:
				open := t.Open
				t.add(tk)
				t.Open = open + tk.Open
				got = true
			case <-w.exited:
				got = true
			case <-timer.C:
				got = true // a slow worker's counters come with the next tick
			}
			timer.Stop()
		}
	}
	return t
}

// finish collects every worker's report, then makes sure they are gone.
func (g *procGroup) finish() (*Report, error) {
	var reports []*Report
	var errs []error
	g.finished.Store(true)
	for _, w := range g.workers {
		w.send(wireMsg{Cmd: "finish"})
	}
	for _, w := range g.workers {
		for {
			m, err := w.await(g.cfg.Timeout + 30*time.Second)
			if err != nil {
				errs = append(errs, w.failure())
				break
			}
			if m.Report != nil {
				reports = append(reports, m.Report)
				break
			}
		}
	}
	for _, w := range g.workers {
		w.stdin.Close()
	}
	deadline := time.NewTimer(5 * time.Second)
	defer deadline.Stop()
	for _, w := range g.workers {
		select {
		case <-w.exited:
		case <-deadline.C:
			g.kill()
			<-w.exited
		}
	}
	rep := Merge(reports...)
	rep.ConnsAsked = g.cfg.Conns
	return rep, errors.Join(errs...)
}

// kill ends every worker process still running.
func (g *procGroup) kill() {
	for _, w := range g.workers {
		select {
		case <-w.exited:
		default:
			if w.cmd.Process != nil {
				w.cmd.Process.Kill()
			}
		}
	}
}

// tailBuffer keeps the last max bytes written to it.
type tailBuffer struct {
	mu  sync.Mutex
	max int
	b   []byte
}

func (t *tailBuffer) Write(p []byte) (int, error) {
	t.mu.Lock()
	defer t.mu.Unlock()
	t.b = append(t.b, p...)
	if len(t.b) > t.max {
		t.b = append(t.b[:0], t.b[len(t.b)-t.max:]...)
	}
	return len(p), nil
}

func (t *tailBuffer) String() string {
	t.mu.Lock()
	defer t.mu.Unlock()
	return string(t.b)
}
