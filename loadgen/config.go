package loadgen

import (
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/netip"
	"net/url"
	"os/exec"
	"strconv"
	"strings"
	"time"
)

// Sentinel errors returned by Run and the helpers.
var (
	// ErrBadURL is returned for a URL that is not http:// or ws:// with a
	// host and port that resolve.
	ErrBadURL = errors.New("loadgen: bad URL")
	// ErrNoWorkerCommand is returned when Procs > 1 and Config.WorkerCommand
	// is nil.
	ErrNoWorkerCommand = errors.New("loadgen: Procs > 1 needs a WorkerCommand")
	// ErrWorker is returned when a worker process fails.
	ErrWorker = errors.New("loadgen: worker failed")
	// ErrScenario is returned for a Scenario other than "" and
	// ScenarioDevices, or a scenario setting Run cannot honour.
	ErrScenario = errors.New("loadgen: bad scenario")
)

// Config configures a load run. The zero value is a valid run only once
// URL is set: every other field documents what zero means.
//
// A run has up to three phases: the ramp opens Conns connections at Rate
// per second; the hold keeps them open and idle for Hold; the traffic
// phase sends requests (HTTP) or messages (WebSocket) for Duration, either
// closed-loop (each connection keeps Inflight outstanding) or, when RPS is
// set, open-loop at a fixed total rate with latency measured from each
// request's intended send time. Every phase is bounded in time, so Run
// always ends by itself.
type Config struct {
	// URL is the target: http://host:port/path for HTTP/1.1 keep-alive
	// GET requests, ws://host:port/path for WebSocket echo messages,
	// mqtt://host:port/prefix?qos=N for MQTT round trips (see mqtt.go). The
	// host is resolved once, at the start.
	URL string `json:"url"`
	// Conns is the number of connections to open. Zero means 100.
	Conns int `json:"conns"`
	// Rate is how many connections per second the ramp opens. Zero means
	// as fast as they are accepted, with at most 1024 connects in progress.
	Rate float64 `json:"rate"`
	// Sources are the local addresses connections are made from, in turn
	// (see ParseSources). Each source address has its own ephemeral ports,
	// so spreading connections over many (127.0.1.1 … 127.0.1.60 on
	// loopback) keeps ports from running out. Empty means the kernel
	// chooses.
	Sources []netip.Addr `json:"sources,omitempty"`
	// Hold keeps the connections open and idle for this long after the
	// ramp, to measure what idle connections cost the server. Zero skips
	// the hold.
	Hold time.Duration `json:"hold"`
	// Duration is the length of the traffic phase. Zero with a zero Hold
	// means 10 s; zero with a Hold means no traffic.
	Duration time.Duration `json:"duration"`
	// RPS, when positive, makes the traffic open-loop: requests (or
	// messages) are due at a fixed total rate spread over the connections,
	// and latency is measured from when each was due, so a stalled server
	// cannot hide its stall (coordinated omission). Zero means closed-loop.
	RPS float64 `json:"rps"`
	// Inflight is how many requests each connection keeps outstanding in
	// closed-loop traffic, and the most it may have outstanding in
	// open-loop traffic (a request due when every connection is full waits,
	// and its wait counts in its latency). More than one pipelines HTTP
	// requests. Zero means 1.
	Inflight int `json:"inflight"`
	// MsgSize is the payload size of WebSocket messages in bytes. Zero
	// means 32.
	MsgSize int `json:"msg_size"`
	// Timeout bounds a connect (with the WebSocket handshake) and each
	// request; past it the attempt counts as a timeout error and the
	// connection is closed. It also bounds the wait for outstanding
	// responses after the traffic phase. Zero means 10 s.
	Timeout time.Duration `json:"timeout"`
	// ServerPID is the server's process id. When set, the report includes
	// the server's resident memory per connection and CPU time per request,
	// read from /proc/PID/status and /proc/PID/stat (Linux) at the phase
	// boundaries. Zero means not measured unless AdminURL is set.
	ServerPID int `json:"server_pid,omitempty"`
	// AdminURL is the server's admin listener (http://127.0.0.1:9901); its
	// /metrics supplies process_resident_memory_bytes,
	// process_cpu_seconds_total and warren_connections_active when
	// ServerPID is not set (and warren_connections_active always). Empty
	// means not used.
	AdminURL string `json:"admin_url,omitempty"`
	// Loops is the number of the client engine's event loops. Zero means
	// GOMAXPROCS.
	Loops int `json:"loops,omitempty"`
	// BlockingPoll makes the client engine's idle loops block their
	// threads in epoll_wait instead of parking in Go's netpoller
	// (engine.Config.BlockingPoll); with -procs it reaches every worker.
	// Zero means false, the engine's default.
	BlockingPoll bool `json:"blocking_poll,omitempty"`
	// LockOSThread locks each of the client engine's loops to its own OS
	// thread (engine.Config.LockOSThread); with Procs it reaches every
	// worker, which is where the devices' loops run. Zero means false,
	// the engine's default.
	LockOSThread bool `json:"lock_os_thread,omitempty"`
	// Procs spreads the connections over this many worker processes, to
	// pass the per-process open-file limit. Zero or one runs in this
	// process. More needs WorkerCommand.
	Procs int `json:"procs,omitempty"`
	// WorkerCommand returns the command that starts worker i of a
	// multi-process run: a process that calls ServeWorker on its standard
	// input and output (warren load -worker). Run sets its Stdin and
	// Stdout; it keeps a Stderr the command has, and on Linux asks the
	// kernel to kill the worker when the parent dies. Nil means Procs must
	// be at most one.
	WorkerCommand func(i int) *exec.Cmd `json:"-"`
	// Progress receives one status line per second (connections open,
	// requests per second, p99 so far, errors). Nil means none.
	Progress io.Writer `json:"-"`
	// Scenario selects what the connections do. Empty means the HTTP or
	// WebSocket echo load described above; ScenarioDevices makes each
	// connection a device of warren's gateway, configured by Devices (URL
	// is then the gateway's ws://host:port/v1/connect).
	Scenario string `json:"scenario,omitempty"`
	// Devices configures the devices scenario; it is ignored otherwise.
	Devices DeviceConfig `json:"devices"`

	// Insecure skips the verification of the server's certificate on
	// https:// targets.
	Insecure bool `json:"insecure,omitempty"`
	// CAFile is a PEM bundle of CAs that sign the server's certificate on
	// https:// targets. Empty means the system's roots.
	CAFile string `json:"ca_file,omitempty"`
	// CertFile and KeyFile are a PEM client certificate (a chain
	// allowed, leaf first) and its key, presented on https:// and wss://
	// targets when the server asks (mutual TLS), in the devices scenario
	// too: one certificate for every connection of the process. Empty
	// means none.
	CertFile string `json:"cert_file,omitempty"`
	KeyFile  string `json:"key_file,omitempty"`
	// CertDir gives each device of the devices scenario its own client
	// certificate over wss://: device dev-<n> presents CertDir/dev-<n>.pem,
	// one PEM file with the certificate (a chain allowed, leaf first) and
	// its key, read at each handshake. A device whose file is missing
	// presents CertFile, if set, or none. Empty means CertFile for all.
	CertDir string `json:"cert_dir,omitempty"`
}

// Defaults applied by withDefaults.
const (
	defaultConns      = 100
	defaultDuration   = 10 * time.Second
	defaultMsgSize    = 32
	defaultTimeout    = 10 * time.Second
	maxConnecting     = 1024
	maxInflightClosed = 1 << 16
)

func (c Config) withDefaults() Config {
	if c.Conns <= 0 {
		c.Conns = defaultConns
	}
	if c.Duration <= 0 {
		c.Duration = 0
		if c.Hold <= 0 {
			c.Duration = defaultDuration
		}
	}
	if c.Hold < 0 {
		c.Hold = 0
	}
	if c.Rate < 0 {
		c.Rate = 0
	}
	if c.RPS < 0 {
		c.RPS = 0
	}
	if c.Inflight <= 0 {
		c.Inflight = 1
	}
	if c.Inflight > maxInflightClosed {
		c.Inflight = maxInflightClosed
	}
	if c.MsgSize <= 0 {
		c.MsgSize = defaultMsgSize
	}
	if c.Timeout <= 0 {
		c.Timeout = defaultTimeout
	}
	if c.Procs <= 0 {
		c.Procs = 1
	}
	c.Procs = min(c.Procs, c.Conns)
	return c
}

// target is a parsed, resolved URL.
type target struct {
	ws   bool
	tls  bool   // https://
	sni  string // the host name, for the TLS handshake
	addr netip.AddrPort
	host string // Host header value
	path string // request-target
}

// parseTarget parses and resolves raw.
func parseTarget(ctx context.Context, raw string) (target, error) {
	u, err := url.Parse(raw)
	if err != nil {
		return target{}, fmt.Errorf("%w: %v", ErrBadURL, err)
	}
	var t target
	switch u.Scheme {
	case "http":
	case "https":
		t.tls = true
	case "ws":
		t.ws = true
	case "wss":
		t.ws, t.tls = true, true
	default:
		return target{}, fmt.Errorf("%w: scheme %q (want http, https, ws or wss)", ErrBadURL, u.Scheme)
	}
	host, port := u.Hostname(), u.Port()
	if host == "" {
		return target{}, fmt.Errorf("%w: no host in %q", ErrBadURL, raw)
	}
	if port == "" {
		port = "80"
		if t.tls {
			port = "443"
		}
	}
	t.sni = host
	p, err := strconv.ParseUint(port, 10, 16)
	if err != nil {
		return target{}, fmt.Errorf("%w: port %q", ErrBadURL, port)
	}
	ip, err := netip.ParseAddr(host)
	if err != nil {
		ips, lerr := net.DefaultResolver.LookupNetIP(ctx, "ip", host)
		if lerr != nil || len(ips) == 0 {
			return target{}, fmt.Errorf("%w: resolve %q: %v", ErrBadURL, host, lerr)
		}
		ip = ips[0]
		for _, a := range ips {
			if a.Is4() || a.Is4In6() {
				ip = a
				break
			}
		}
	}
	t.addr = netip.AddrPortFrom(ip.Unmap(), uint16(p))
	t.host = u.Host
	t.path = u.RequestURI()
	if t.path == "" {
		t.path = "/"
	}
	return t, nil
}

// ParseSources parses a list of source addresses: a count ("60" means
// 127.0.1.1, 127.0.1.2 … 60 loopback addresses, skipping .0 and .255), a
// range of IPv4 addresses ("127.0.1.1-127.0.1.60", skipping those ending in
// .0 or .255), or addresses and ranges separated by commas. The empty
// string means none.
func ParseSources(s string) ([]netip.Addr, error) {
	s = strings.TrimSpace(s)
	if s == "" {
		return nil, nil
	}
	if n, err := strconv.Atoi(s); err == nil {
		if n <= 0 || n > 1<<16 {
			return nil, fmt.Errorf("loadgen: source count %d out of range", n)
		}
		return addrRange(netip.AddrFrom4([4]byte{127, 0, 1, 1}), n, netip.Addr{})
	}
	var out []netip.Addr
	for _, part := range strings.Split(s, ",") {
		part = strings.TrimSpace(part)
		lo, hi, isRange := strings.Cut(part, "-")
		a, err := netip.ParseAddr(strings.TrimSpace(lo))
		if err != nil {
			return nil, fmt.Errorf("loadgen: source %q: %v", part, err)
		}
		if !isRange {
			out = append(out, a)
			continue
		}
		b, err := netip.ParseAddr(strings.TrimSpace(hi))
		if err != nil {
			return nil, fmt.Errorf("loadgen: source %q: %v", part, err)
		}
		if !a.Is4() || !b.Is4() || b.Less(a) {
			return nil, fmt.Errorf("loadgen: source range %q: want ascending IPv4 addresses", part)
		}
		r, err := addrRange(a, 1<<16, b)
		if err != nil {
			return nil, err
		}
		out = append(out, r...)
	}
	return out, nil
}

// addrRange returns up to n IPv4 addresses from first, stopping after last
// when it is valid, and skipping addresses ending in .0 or .255.
func addrRange(first netip.Addr, n int, last netip.Addr) ([]netip.Addr, error) {
	var out []netip.Addr
	for a := first; len(out) < n; a = a.Next() {
		if !a.IsValid() || !a.Is4() {
			return nil, fmt.Errorf("loadgen: source range overflows")
		}
		if b := a.As4(); b[3] != 0 && b[3] != 255 {
			out = append(out, a)
		}
		if last.IsValid() && a == last {
			break
		}
	}
	if len(out) >= 1<<16 && last.IsValid() {
		return nil, fmt.Errorf("loadgen: source range longer than 65536 addresses")
	}
	return out, nil
}
