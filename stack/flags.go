package stack

import (
	"crypto/tls"
	"flag"
	"fmt"
	"strings"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/http1"
	"github.com/warrenhq/warren/internal/ipkey"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// EngineFlags registers a flag for every engine.Config field. Defaults shown
// by -h are the engine's own.
func EngineFlags(fs *flag.FlagSet, c *engine.Config) {
	d := engine.DefaultConfig()
	fs.IntVar(&c.Loops, "loops", 0, "event loops (0: GOMAXPROCS)")
	fs.BoolVar(&c.FixedLoops, "fixed-loops", false, "keep every loop on its own goroutine whatever the load (no folding of idle loops into loop 0)")
	fs.BoolVar(&c.BlockingPoll, "blocking-poll", c.BlockingPoll, "idle loops block their threads in epoll_wait instead of parking in Go's netpoller: lower latency under load, more CPU at many short idle spells; with as many loops as GOMAXPROCS (at most the CPUs), the engine raises GOMAXPROCS by one, once")
	fs.BoolVar(&c.LockOSThread, "lock-threads", c.LockOSThread, "lock each event loop to its own OS thread (with -blocking-poll): a loop's work stays on one thread instead of moving at each of its yields")
	fs.BoolVar(&c.IOUring, "io-uring", c.IOUring, "Linux 6.15+: each loop waits through its own io_uring (IORING_OP_EPOLL_WAIT) and sends a round's writes in the same io_uring_enter as its next wait, fewer system calls per request; loops then block their threads and do not fold; where the kernel refuses, epoll, logged once (metric io_uring_loops); ignored elsewhere")
	fs.Var(balanceFlag{&c.Balance}, "balance", "how new connections are spread over loops: round-robin or least-connections")
	fs.BoolVar(&c.ReusePort, "reuseport", false, "one SO_REUSEPORT listening socket per loop")
	fs.BoolVar(&c.Portable, "portable", false, "use the portable engine (Go net package, goroutine per connection)")
	fs.BoolVar(&c.Inline, "inline", false, "run handlers that do not choose (raw TCP) on the event loop (they must never block); protocol parsers always run there")
	fs.IntVar(&c.MaxConns, "max-conns", d.MaxConns, "maximum open connections (negative: unbounded)")
	fs.IntVar(&c.MaxConnsPerIP, "max-conns-per-ip", 0, "maximum open connections per remote IP (0: unbounded)")
	fs.IntVar(&c.PerIPv6Prefix, "per-ip-v6-prefix", ipkey.DefaultIPv6Bits, "-max-conns-per-ip (and warren proxy's -rate-limit-per-ip and -route-limit by address) count an IPv6 client by this prefix of its address (64: a /64 is one client; 128: each address)")
	fs.Float64Var(&c.AcceptRate, "accept-rate", 0, "maximum accepted connections per second (0: unbounded)")
	fs.IntVar(&c.AcceptBurst, "accept-burst", 0, "accept-rate token bucket depth (0: the rate)")
	fs.DurationVar(&c.IdleTimeout, "conn-idle-timeout", d.IdleTimeout, "close connections idle this long, on listeners whose protocol sets no idle timeout of its own (HTTP has -idle-timeout) (negative: never)")
	fs.DurationVar(&c.ReadTimeout, "read-timeout", d.ReadTimeout, "close connections whose started message is not complete within this, on listeners whose protocol sets no read timeout of its own (HTTP has -header-timeout) (negative: never)")
	fs.DurationVar(&c.WriteTimeout, "write-timeout", d.WriteTimeout, "close connections whose queued output makes no progress this long (negative: never)")
	fs.DurationVar(&c.LingerTimeout, "linger-timeout", d.LingerTimeout, "a lingering close (WebSocket closes, HTTP error answers) reads and throws away what the peer still sends for at most this long after shutting its write side, then resets (negative: no lingering, a plain close)")
	fs.IntVar(&c.LingerBytes, "linger-bytes", d.LingerBytes, "input bytes a lingering close reads and throws away; past them it stops reading (the peer's sending stalls, not its reading of the answer) until the peer closes or -linger-timeout resets it (negative: only -linger-timeout bounds it)")
	fs.DurationVar(&c.TickInterval, "tick", d.TickInterval, "timer wheel resolution")
	fs.IntVar(&c.WriteHighWater, "write-high-water", d.WriteHighWater, "per-connection queued output bytes where the slow-consumer policy applies")
	fs.IntVar(&c.WriteLowWater, "write-low-water", 0, "queued bytes where a paused connection resumes reading (0: high/4)")
	fs.Var(slowFlag{&c.SlowPolicy}, "slow-policy", "past the high watermark: close or pause")
	fs.Int64Var(&c.MaxQueuedBytes, "max-queued-bytes", d.MaxQueuedBytes, "queued output bytes over all connections (negative: unbounded)")
	fs.IntVar(&c.MaxInputBytes, "max-input-bytes", d.MaxInputBytes, "unconsumed input bytes kept per connection")
	fs.IntVar(&c.Workers, "workers", d.Workers, "maximum worker goroutines for blocking handlers")
	fs.IntVar(&c.WorkerQueue, "worker-queue", d.WorkerQueue, "maximum tasks waiting for a worker")
	fs.IntVar(&c.ReadBufferSize, "read-buffer", d.ReadBufferSize, "per-loop shared read buffer bytes")
	fs.IntVar(&c.Backlog, "backlog", d.Backlog, "listen backlog")
}

type balanceFlag struct{ b *engine.Balance }

func (f balanceFlag) String() string {
	if f.b == nil {
		return engine.RoundRobin.String()
	}
	return f.b.String()
}

func (f balanceFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "round-robin", "rr":
		*f.b = engine.RoundRobin
	case "least-connections", "least-conns", "lc":
		*f.b = engine.LeastConnections
	default:
		return fmt.Errorf("want round-robin or least-connections")
	}
	return nil
}

type slowFlag struct{ p *engine.SlowPolicy }

func (f slowFlag) String() string {
	if f.p == nil {
		return engine.SlowClose.String()
	}
	return f.p.String()
}

func (f slowFlag) Set(s string) error {
	switch strings.ToLower(s) {
	case "close":
		*f.p = engine.SlowClose
	case "pause":
		*f.p = engine.SlowPause
	default:
		return fmt.Errorf("want close or pause")
	}
	return nil
}

// HTTPFlags registers a flag for every http1.Config field an operator
// sets; -h shows the defaults of http1.DefaultConfig.
func HTTPFlags(fs *flag.FlagSet, c *http1.Config) {
	d := http1.DefaultConfig(engine.DefaultConfig())
	fs.DurationVar(&c.IdleTimeout, "idle-timeout", d.IdleTimeout, "HTTP keep-alive idle timeout (negative: never; shrinks under overload)")
	fs.DurationVar(&c.HeaderTimeout, "header-timeout", d.HeaderTimeout, "time to receive a request head once started; 408 after (negative: never)")
	fs.DurationVar(&c.BodyTimeout, "body-timeout", d.BodyTimeout, "time to receive a request body after its head; 408 after (negative: never)")
	fs.IntVar(&c.MaxRequestsPerConn, "max-requests-per-conn", d.MaxRequestsPerConn, "requests per connection before Connection: close (negative: unlimited)")
	fs.DurationVar(&c.MaxConnAge, "max-conn-age", d.MaxConnAge, "connection age after which the next response closes it (negative: unlimited)")
	fs.IntVar(&c.MaxStreams, "max-streams", 0, "streamed-body requests in progress at once; 503 over it (0: half the workers; negative: unlimited)")
	fs.IntVar(&c.Limits.MaxHeaderBytes, "max-header-bytes", d.Limits.MaxHeaderBytes, "request header section limit, 431 over it")
	fs.IntVar(&c.Limits.MaxHeaders, "max-headers", d.Limits.MaxHeaders, "request header field count limit, 431 over it")
	fs.IntVar(&c.Limits.MaxURIBytes, "max-uri-bytes", d.Limits.MaxURIBytes, "request-target limit, 414 over it")
	fs.Int64Var(&c.Limits.MaxBodyBytes, "max-body-bytes", d.Limits.MaxBodyBytes, "request body limit, 413 over it (negative: unlimited)")
	fs.BoolVar(&c.Overload.Disabled, "overload-off", false, "disable adaptive keep-alive")
	fs.Int64Var(&c.Overload.MemoryLimit, "memory-limit", 0, "process RSS bytes counted as full memory pressure (0: memory not watched)")
	fs.Float64Var(&c.Overload.ReduceAt, "overload-reduce-at", d.Overload.ReduceAt, "pressure where the idle timeout starts shrinking")
	fs.Float64Var(&c.Overload.DisableKeepAliveAt, "overload-disable-keepalive-at", d.Overload.DisableKeepAliveAt, "pressure where keep-alive is switched off")
	fs.DurationVar(&c.Overload.MinIdleTimeout, "overload-min-idle-timeout", d.Overload.MinIdleTimeout, "idle timeout at full pressure")
	fs.DurationVar(&c.Overload.Interval, "overload-interval", d.Overload.Interval, "how often pressure is sampled")
}

// WebSocketFlags registers a flag for the websocket.Config fields an
// operator sets; -h shows the package's defaults.
func WebSocketFlags(fs *flag.FlagSet, c *websocket.Config) {
	fs.IntVar(&c.MaxMessageSize, "ws-max-message", websocket.DefaultMaxMessageSize, "WebSocket message size limit, close 1009 over it")
	fs.DurationVar(&c.PingInterval, "ws-ping-interval", websocket.DefaultPingInterval, "WebSocket ping interval; a peer silent for two intervals is dead (negative: off)")
	fs.IntVar(&c.MaxHandlerBacklog, "ws-max-backlog", websocket.DefaultMaxHandlerBacklog, "bytes of one connection's messages waiting for a handler on the worker pool before it is not read (resumes at a quarter)")
	fs.DurationVar(&c.CloseTimeout, "ws-close-timeout", websocket.DefaultCloseTimeout, "how long a closing WebSocket waits for the peer's close frame (an unanswered close then lingers: -linger-timeout)")
	fs.BoolVar(&c.Deflate.Enabled, "ws-deflate", false, "negotiate permessage-deflate")
	fs.BoolVar(&c.Deflate.ServerNoContextTakeover, "ws-deflate-no-context", false, "permessage-deflate without context takeover (saves ~0.9 MB per connection)")
}

// TLSFlags registers the TLS listener flags (tlsx.Config) shared by the
// commands that serve TLS; -h shows the package's defaults. TLS is on when
// -tls-cert is set.
func TLSFlags(fs *flag.FlagSet, c *tlsx.Config) {
	fs.StringVar(&c.CertFile, "tls-cert", "", "PEM certificate (chain allowed, leaf first); set, the listener speaks TLS")
	fs.StringVar(&c.KeyFile, "tls-key", "", "PEM private key of -tls-cert")
	fs.StringVar(&c.ClientCAFile, "tls-client-ca", "", "PEM CAs of client certificates; set, clients must present one (mutual TLS)")
	fs.StringVar(&c.CRLFile, "tls-crl", "", "certificate revocation lists (PEM or DER), signed by a -tls-client-ca CA: listed client certificates are refused; reloaded with the certificate")
	fs.Var(tlsVersionFlag{&c.MinVersion}, "tls-min-version", "lowest TLS version accepted: 1.2 or 1.3 (default 1.2)")
	fs.Var(tlsMaxVersionFlag{tlsVersionFlag{&c.MaxVersion}}, "tls-max-version", "highest TLS version accepted: 1.2 or 1.3 (default 1.3)")
	fs.StringVar(&c.IdentityURIPrefix, "tls-identity-uri-prefix", "", "take a client certificate's identity from its SAN URI with this prefix (e.g. "+tlsx.DefaultIdentityURIScheme+"); empty: the subject CN")
	fs.DurationVar(&c.HandshakeTimeout, "tls-handshake-timeout", tlsx.DefaultHandshakeTimeout, "TLS handshake time limit, from its first byte")
	fs.DurationVar(&c.FlightTimeout, "tls-flight-timeout", tlsx.DefaultFlightTimeout, "TLS handshake: how long the server waits for each of the client's flights (a record not whole by then fails the handshake and frees its worker); negative: only -tls-handshake-timeout")
	fs.IntVar(&c.HandshakeWorkers, "tls-handshake-workers", tlsx.DefaultHandshakeWorkers, "TLS handshakes in progress at once (each on a goroutine while it waits for its client)")
	fs.IntVar(&c.HandshakeCPU, "tls-handshake-cpu", 0, "TLS handshakes computing at once (a handshake waiting for its client holds none), so that a storm leaves the event loops their share of the CPU; 0: GOMAXPROCS/2, at least 1; negative: no bound")
	fs.IntVar(&c.HandshakeNice, "tls-handshake-nice", tlsx.DefaultHandshakeNice, "Linux: nice levels (1-19, added to the process's, 19 at most; 0: 10) by which the threads TLS handshakes compute on are lowered, so that the kernel runs the event loops and the command path first; GOMAXPROCS gets -tls-handshake-cpu spare Ps while handshakes run; negative: the process's priority")
	fs.IntVar(&c.BurstGCPercent, "tls-burst-gogc", tlsx.DefaultBurstGCPercent, "garbage collector target (GOGC) at least this while TLS handshakes come in a burst (-tls-burst-rate a second or more), the target found put back after it; negative: never changed")
	fs.IntVar(&c.BurstRate, "tls-burst-rate", tlsx.DefaultBurstRate, "TLS handshakes started within a second that make a burst (-tls-burst-gogc)")
	fs.IntVar(&c.CollectAfter, "tls-collect-after", tlsx.DefaultCollectAfter, "after this many TLS handshakes, a second without one runs a garbage collection (the heap's goal set by the connections, not the burst); negative: never")
	fs.IntVar(&c.HandshakeQueue, "tls-handshake-queue", tlsx.DefaultHandshakeQueue, "TLS handshakes waiting for a worker; more are refused")
	fs.Float64Var(&c.RatePerIP, "tls-rate-per-ip", tlsx.DefaultRatePerIP, "new TLS connections per second per client IP, before any TLS work (negative: unbounded)")
	fs.IntVar(&c.BurstPerIP, "tls-burst-per-ip", 0, "per-IP bucket depth (0: twice -tls-rate-per-ip)")
	fs.IntVar(&c.PerIPv6Prefix, "tls-per-ip-v6-prefix", ipkey.DefaultIPv6Bits, "-tls-rate-per-ip and the flapping bans count an IPv6 client by this prefix of its address (64: a /64 is one client; 128: each address)")
	fs.Float64Var(&c.Rate, "tls-rate", tlsx.DefaultRate, "new TLS connections per second per listener (negative: unbounded)")
	fs.IntVar(&c.Burst, "tls-burst", 0, "per-listener bucket depth (0: -tls-rate)")
	fs.IntVar(&c.BanThreshold, "tls-ban-threshold", tlsx.DefaultBanThreshold, "ban a client IP with more short TLS connections than this (failed handshakes, or closed within -tls-ban-lifetime) per -tls-ban-window (negative: no bans)")
	fs.DurationVar(&c.BanWindow, "tls-ban-window", tlsx.DefaultBanWindow, "window of -tls-ban-threshold")
	fs.DurationVar(&c.BanLifetime, "tls-ban-lifetime", tlsx.DefaultBanLifetime, "a TLS connection closed within this of opening counts toward a ban (negative: only failed handshakes count)")
	fs.DurationVar(&c.BanDuration, "tls-ban-duration", tlsx.DefaultBanDuration, "how long a flapping client IP is refused, before any TLS work")
	fs.IntVar(&c.BanTableSize, "tls-ban-table", tlsx.DefaultBanTableSize, "client IPs tracked for flapping, and banned at once")
	fs.BoolVar(&c.SessionTicketsDisabled, "tls-no-session-tickets", false, "do not issue TLS session tickets (no resumption; saves a ticket's encryption per handshake)")
	fs.BoolVar(&c.KeepCiphers, "tls-keep-ciphers", false, "keep each connection's AEAD ciphers between bursts (~1.8 KB more per idle connection, less CPU per burst)")
	fs.DurationVar(&c.ReloadInterval, "tls-reload-interval", tlsx.DefaultReloadInterval, "how often the certificate files are checked for changes (negative: only on SIGHUP)")
}

type tlsVersionFlag struct{ v *uint16 }

func (f tlsVersionFlag) String() string {
	if f.v == nil || *f.v == 0 || *f.v == tls.VersionTLS12 {
		return "1.2"
	}
	return "1.3"
}

func (f tlsVersionFlag) Set(s string) error {
	switch s {
	case "1.2":
		*f.v = tls.VersionTLS12
	case "1.3":
		*f.v = tls.VersionTLS13
	default:
		return fmt.Errorf("want 1.2 or 1.3")
	}
	return nil
}

// tlsMaxVersionFlag is tlsVersionFlag whose zero value is TLS 1.3.
type tlsMaxVersionFlag struct{ tlsVersionFlag }

func (f tlsMaxVersionFlag) String() string {
	if f.v == nil || *f.v == 0 {
		return "1.3"
	}
	return f.tlsVersionFlag.String()
}
