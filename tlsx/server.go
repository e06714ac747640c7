package tlsx

import (
	"bytes"
	"context"
	"crypto/tls"
	"crypto/x509"
	"encoding/hex"
	"errors"
	"fmt"
	"io"
	"log/slog"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"slices"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
)

// Defaults of Config fields.
const (
	DefaultHandshakeTimeout  = 10 * time.Second
	DefaultHandshakeQueue    = 1024
	DefaultHandshakeWorkers  = 256
	DefaultFlightTimeout     = 5 * time.Second // a client's turn in a handshake
	DefaultCollectAfter      = 1000            // handshakes before a quiet second runs a collection
	DefaultBurstGCPercent    = 100             // the garbage collector's target during a burst of handshakes
	DefaultBurstRate         = 200             // handshakes a second that make a burst
	DefaultHandshakeNice     = 10              // the nice value of the handshake workers' threads (Linux)
	DefaultRatePerIP         = 20              // handshakes per second per client IP
	DefaultRate              = 5000
	DefaultReloadInterval    = 10 * time.Second
	DefaultIdentityURIScheme = "urn:device:"
	DefaultBanThreshold      = 30 // short connections per BanWindow before a ban
	DefaultBanWindow         = time.Minute
	DefaultBanLifetime       = 2 * time.Second
	DefaultBanDuration       = 2 * time.Minute
	DefaultBanTableSize      = 65536
)

// Config configures a Server. The zero value needs only a certificate
// (CertFile and KeyFile, or Certificate).
type Config struct {
	// CertFile and KeyFile are PEM files: the certificate (a chain
	// allowed, leaf first) and its private key. Reload reads them again.
	CertFile, KeyFile string
	// Certificate is used instead of the files when set (tests, embedding).
	Certificate *tls.Certificate
	// ClientCAFile is a PEM bundle of CAs that sign client certificates;
	// set, it turns on mutual TLS. Empty: no client certificates asked.
	ClientCAFile string
	// ClientCAs is used instead of ClientCAFile when set.
	ClientCAs *x509.CertPool
	// CRLFile is a file of certificate revocation lists (PEM "X509 CRL"
	// blocks, or one DER list), each signed by a CA of ClientCAFile: a
	// client certificate (or intermediate) one of them lists is refused
	// (ErrRevoked, result revoked_client_certificate), resumed sessions
	// included. Reload and Watch read it again with the certificate. A
	// list past its NextUpdate stays in force; the staleness shows in
	// warren_tls_crl_next_update_seconds and a warning when loaded. Empty:
	// no revocation check.
	CRLFile string
	// CRLs is used instead of CRLFile when set (embedding): lists whose
	// signatures the caller has checked.
	CRLs []*x509.RevocationList
	// ClientAuth is the client-certificate policy when client CAs are set.
	// Zero means tls.RequireAndVerifyClientCert.
	ClientAuth tls.ClientAuthType
	// MinVersion is the lowest TLS version accepted: tls.VersionTLS12 or
	// tls.VersionTLS13. Zero means TLS 1.2.
	MinVersion uint16
	// MaxVersion is the highest TLS version accepted: tls.VersionTLS12 or
	// tls.VersionTLS13, not below MinVersion. Zero means TLS 1.3. (TLS 1.2
	// only is for benchmarks and for clients that mishandle TLS 1.3.)
	MaxVersion uint16
	// NextProtos are the ALPN protocols offered, in preference order. Nil
	// means {"http/1.1"}; an MQTT listener sets {"mqtt"}. A client that
	// offers none of them is still served (no ALPN).
	NextProtos []string
	// IdentityURIPrefix, when set, takes a client certificate's identity
	// from its first SAN URI with this prefix (for example
	// "urn:device:"), the rest of the URI being the id. Empty means the
	// subject common name.
	IdentityURIPrefix string

	// HandshakeTimeout bounds a handshake from the first byte to the end.
	// Zero means 10s.
	HandshakeTimeout time.Duration
	// FlightTimeout bounds each of the client's turns in a handshake: a
	// handshake waiting for a record of its client's next flight (the
	// ClientKeyExchange or Finished after the server's flight, a record
	// split over several reads) that has not come whole this long after
	// the server began waiting for it fails (ResultFlightTimeout,
	// DetailFlightTimeout). A slow or stalled client then holds its
	// handshake worker for at most this long per flight instead of
	// HandshakeTimeout. Zero means 5s; negative means none (only
	// HandshakeTimeout).
	FlightTimeout time.Duration
	// HandshakeWorkers bounds the handshakes in progress: each runs on a
	// goroutine of its own while in progress (crypto/tls's handshake
	// blocks, so it cannot run on the loops), and one waiting for a slow
	// client's next flight keeps its goroutine until FlightTimeout. CPU
	// is bounded by HandshakeCPU; this bounds the memory (about
	// 40 KB per handshake in progress) and how many slow clients can hold
	// handshakes at once. Zero means 256. Only GOMAXPROCS of them (at most
	// HandshakeWorkers) stay when there is nothing to do: the others are
	// started when a handshake finds no worker free and end after
	// WorkerIdle without one, so that an idle server keeps no 256 grown
	// goroutine stacks after a burst of handshakes.
	HandshakeWorkers int
	// HandshakeCPU bounds the handshakes computing at once: a handshake
	// holds one of these slots while crypto/tls works on it (key shares,
	// the signature, the Finished) and gives it back while it waits for
	// its client. Go's scheduler has no priorities: without the bound, a
	// storm's handshakes in progress wake as their clients' flights
	// arrive and fill every P's run queue, and an event loop woken by the
	// network, a NATS client or a request handler waits behind them
	// (measured through a 20,000-client storm on 2 cores: loops waited
	// runnable 16 ms at p90 and 48 ms at p99, and a command crossing ten
	// such hops 0.4-0.8 s; docs/benchmarks.md §26). With half the Ps at
	// most for handshakes, the other half stays free for the loops; the
	// cost is the rate a storm reconnects at on a machine busy with
	// nothing else. Zero means GOMAXPROCS/2 (at least 1); negative means
	// no bound (every worker computes at will).
	HandshakeCPU int
	// HandshakeNice (Linux only; ignored elsewhere) is how many nice levels
	// below the process's the threads handshakes compute on run (to 19 at
	// most; relative, so that a process started at nice 15 never raises
	// them above its loops): each handshake worker locks its goroutine to
	// an OS thread of its own and lowers that thread's priority, so that
	// the kernel runs the threads of the event loops, the NATS clients and
	// the request handlers — of this process and of
	// any other at the normal priority — ahead of handshake crypto, which
	// gets the cores they leave. HandshakeCPU bounds what Go's scheduler
	// runs; this is the same for the kernel's run queues, where a storm's
	// handshakes otherwise delay every hop of a command on a busy machine
	// (docs/benchmarks.md §47). So that a lowered thread the kernel keeps
	// waiting cannot hold a P the loops need (a prefork worker has one),
	// GOMAXPROCS is raised by HandshakeCPU (GOMAXPROCS, with no CPU
	// bound) while handshakes run, and put back SpareLinger after the
	// last, with none in progress (runtime.GOMAXPROCS: Go then stops
	// adjusting it to CPU limits itself). A lowered thread is never
	// raised again (that needs CAP_SYS_NICE): it ends with its worker.
	// Zero means 10 (DefaultHandshakeNice); 1-19 nice levels, as nice(1)'s
	// -n; negative means the process's priority and no spare P, as when
	// no thread could be lowered (no spare P is then added either). The
	// costs, measured through 20,000-client storms (docs/benchmarks.md
	// §47, §52): about a quarter more CPU per handshake through a storm (a
	// thread hand-off at each wake-up of a locked worker, the spare P's
	// idle GC workers), handshakes per CPU-second on one pinned CPU at
	// 0.89-1.04x nginx's (1.10x without, §47), and stop-the-world pauses
	// that wait for a lowered thread the kernel holds back. 19 measured
	// worse than 10: lowered threads held back longer hold their Ps, and
	// pauses, longer.
	HandshakeNice int
	// CollectAfter: once this many handshakes have started since the last
	// such collection, a second without a new handshake runs one garbage
	// collection (runtime.GC), so that the heap's goal is set by the
	// connections held and not by a burst's handshake state and garbage,
	// and the runtime returns the difference to the OS. Go's own forced
	// collection, two minutes after the last one, would reach the same
	// heap for idle connections later; this gets there a second after a
	// reconnect storm. Zero means 1000; negative means never.
	CollectAfter int
	// BurstGCPercent and BurstRate: while handshakes come in a burst —
	// BurstRate or more started within a second — the garbage collector's
	// target (GOGC, debug.SetGCPercent) is raised to at least
	// BurstGCPercent, and the target found is put back when a second
	// passes with fewer, or without any (CollectAfter's collection then
	// runs under the restored target). Each handshake leaves tens of KB of
	// garbage, and under a low target (warren serve's default is 25) a
	// process with a small live heap would otherwise collect every few
	// tens of milliseconds through a reconnect storm, its mark assists
	// and pauses landing on the event loops (docs/benchmarks.md §26). The
	// target is process-wide: the heap may grow to (1 + BurstGCPercent/100)
	// times the live heap during the burst. Zero means 100 and 200 a
	// second; a negative BurstGCPercent never changes the target.
	BurstGCPercent int
	BurstRate      int
	// HandshakeQueue bounds the handshakes waiting for a worker; a
	// connection arriving when it is full is refused (BoundQueueFull).
	// Zero means 1024.
	HandshakeQueue int
	// RatePerIP and BurstPerIP bound new TLS connections per client IP
	// (per second, and bucket depth), checked before any TLS work. Zero
	// means 20/s and a burst of twice the rate; negative disables.
	RatePerIP  float64
	BurstPerIP int
	// PerIPv6Prefix is the prefix length an IPv6 client is counted by for
	// RatePerIP and the flapping bans: every address of one /64 is one
	// client by default, since a subscriber or a host is usually given a
	// whole /64 and could otherwise step around both by changing address.
	// Zero means 64; 128 counts each address on its own. IPv4 clients are
	// counted by their address.
	PerIPv6Prefix int
	// Rate and Burst bound new TLS connections per listener. Zero means
	// 5000/s and a burst of the rate; negative disables.
	Rate  float64
	Burst int

	// BanThreshold, BanWindow, BanLifetime and BanDuration ban flapping
	// clients (connect/disconnect loops): a client IP with more than
	// BanThreshold connections that end short — a handshake that failed,
	// timed out or was abandoned, plaintext or garbage instead of TLS, or
	// a connection closed within BanLifetime of opening — over BanWindow
	// is refused at admission, before any TLS work, for BanDuration
	// (BoundBanned, DetailBanned). Counting is a leaky bucket per IP, so
	// a client flapping slower than BanThreshold per BanWindow is never
	// banned. Zero means 30 per minute, 2s, 2 minutes; a negative
	// BanThreshold disables bans, a negative BanLifetime counts failed
	// handshakes only.
	BanThreshold int
	BanWindow    time.Duration
	BanLifetime  time.Duration
	BanDuration  time.Duration
	// BanTableSize bounds the client IPs tracked for flapping, and
	// separately the IPs banned at once (when full, the ban closest to
	// its end is lifted early). Zero means 65536.
	BanTableSize int

	// KeepCiphers keeps each connection's two AEAD ciphers between bursts
	// of records: about 1.8 KB more per idle AES-GCM connection, for
	// about 0.4 µs less per read or write burst. False (the default)
	// builds them per burst, so an idle connection holds only keys.
	KeepCiphers bool
	// SessionTicketsDisabled turns off TLS session resumption tickets.
	SessionTicketsDisabled bool
	// CurvePreferences are the key exchanges accepted, in preference order
	// (tls.Config.CurvePreferences). Nil means crypto/tls's defaults,
	// which put the hybrid post-quantum X25519MLKEM768 first for clients
	// that offer it (about a fifth more handshake CPU than X25519 alone).
	CurvePreferences []tls.CurveID
	// ReloadInterval is how often the certificate files are checked for
	// changes. Zero means 10s; negative disables (SIGHUP still reloads,
	// see Watch).
	ReloadInterval time.Duration

	// Clock is the time source of admission: the rate buckets and the
	// flapping bans. Nil means the system clock; give it the engine's
	// (engine.Config.Clock) when that is not the system's, since a
	// connection's lifetime is measured from engine.Conn.Created.
	Clock engine.Clock

	// Namespace prefixes metric names. Empty means "warren".
	Namespace string
	// Logger receives reload and refusal logs. Nil means slog.Default().
	Logger *slog.Logger
}

func (c Config) withDefaults() Config {
	if c.MinVersion == 0 {
		c.MinVersion = tls.VersionTLS12
	}
	if c.MaxVersion == 0 {
		c.MaxVersion = tls.VersionTLS13
	}
	if c.NextProtos == nil {
		c.NextProtos = []string{"http/1.1"}
	}
	if c.HandshakeTimeout <= 0 {
		c.HandshakeTimeout = DefaultHandshakeTimeout
	}
	if c.FlightTimeout == 0 {
		c.FlightTimeout = DefaultFlightTimeout
	}
	if c.HandshakeWorkers <= 0 {
		c.HandshakeWorkers = DefaultHandshakeWorkers
	}
	if c.HandshakeQueue <= 0 {
		c.HandshakeQueue = DefaultHandshakeQueue
	}
	if c.CollectAfter == 0 {
		c.CollectAfter = DefaultCollectAfter
	}
	if c.BurstGCPercent == 0 {
		c.BurstGCPercent = DefaultBurstGCPercent
	}
	if c.BurstRate <= 0 {
		c.BurstRate = DefaultBurstRate
	}
	if c.HandshakeCPU == 0 {
		c.HandshakeCPU = max(1, runtime.GOMAXPROCS(0)/2)
	}
	if c.HandshakeNice == 0 {
		c.HandshakeNice = DefaultHandshakeNice
	}
	c.HandshakeNice = min(c.HandshakeNice, 19)
	if c.RatePerIP == 0 {
		c.RatePerIP = DefaultRatePerIP
	}
	if c.BurstPerIP <= 0 {
		c.BurstPerIP = max(1, int(2*c.RatePerIP))
	}
	if c.Rate == 0 {
		c.Rate = DefaultRate
	}
	if c.Burst <= 0 {
		c.Burst = max(1, int(c.Rate))
	}
	if c.BanThreshold == 0 {
		c.BanThreshold = DefaultBanThreshold
	}
	if c.BanWindow <= 0 {
		c.BanWindow = DefaultBanWindow
	}
	if c.BanLifetime == 0 {
		c.BanLifetime = DefaultBanLifetime
	}
	if c.BanDuration <= 0 {
		c.BanDuration = DefaultBanDuration
	}
	if c.BanTableSize <= 0 {
		c.BanTableSize = DefaultBanTableSize
	}
	if c.Clock == nil {
		c.Clock = sysClock{}
	}
	if c.ReloadInterval == 0 {
		c.ReloadInterval = DefaultReloadInterval
	}
	if c.Logger == nil {
		c.Logger = slog.Default()
	}
	return c
}

type sysClock struct{}

func (sysClock) Now() time.Time { return time.Now() }

// Errors.
var (
	ErrNoCertificate = errors.New("tlsx: no certificate (CertFile and KeyFile, or Certificate)")
	ErrBadVersion    = errors.New("tlsx: MinVersion and MaxVersion must be TLS 1.2 or 1.3, MinVersion not above MaxVersion")
	ErrClosed        = errors.New("tlsx: server closed")
	// ErrCRLWithoutCAFile: a CRLFile's lists are checked against the
	// ClientCAFile's certificates, so it needs one.
	ErrCRLWithoutCAFile = errors.New("tlsx: CRLFile needs ClientCAFile (the CAs whose signatures its lists carry)")
)

// certState is the certificate served now.
type certState struct {
	cert     *tls.Certificate
	notAfter time.Time
	modCert  time.Time // file modification times, for the change watch
	modKey   time.Time
	modCA    time.Time
	modCRL   time.Time
}

// Server terminates TLS for engine listeners: Handler wraps a protocol's
// engine.Handler so each accepted connection is admitted, handshaken on a
// bounded worker pool and then handed, as plain bytes, to that handler,
// with warren's record layer below it (TLS 1.3, and TLS 1.2 on the ECDHE
// AEAD suites; crypto/tls's, driven from the loop, for a TLS 1.2
// connection that layer does not take). A Server is safe for concurrent use and may serve
// several listeners and engines.
type Server struct {
	cfg  Config
	log  *slog.Logger
	base *tls.Config

	cert atomic.Pointer[certState]
	cas  atomic.Pointer[x509.CertPool]
	crls atomic.Pointer[crlSet] // nil: no revocation lists
	// revFns are the OnRevocationReload functions, by registration.
	revMu  sync.Mutex
	revFns map[uint64]func()
	revSeq uint64

	jobs chan *hsConn
	cpu  *cpuSched // HandshakeCPU's slots; nil: no bound
	// The handshake workers: live running (resident of them never end),
	// demand the handshakes queued or running; spawn serialises starting
	// and ending a worker, and starting one against Close.
	live, demand atomic.Int32
	resident     int32
	// sinceGC counts the handshakes started since the last collection
	// (Config.CollectAfter).
	sinceGC atomic.Int64
	gc      *time.Timer // runs collect WorkerIdle after the last handshake started; nil: never
	// A burst of handshakes (Config.BurstGCPercent): the current second
	// window's start and count, and whether this Server holds the
	// collector's target raised.
	burstMu  sync.Mutex
	winStart time.Time
	winCount int
	raised   bool
	spawn    sync.Mutex
	stopped  bool // under spawn: Close has begun
	// Lowered handshake threads and spare Ps (Config.HandshakeNice):
	// lowered counts the workers on a lowered thread; spareN is the Ps
	// added while handshakes run, spareHeld whether they are, lastStart
	// when the last handshake started (UnixNano), spareT the release
	// check, spareLinger SpareLinger (tests shorten it).
	lowered     atomic.Int32
	lowerFailed atomic.Bool // a worker could not lower its thread: no spare Ps
	lowerErr    sync.Once
	spareN      int
	spareHeld   atomic.Bool
	lastStart   atomic.Int64
	spareMu     sync.Mutex
	spareT      *time.Timer
	spareClosed bool // under spareMu: Close has begun
	spareLinger time.Duration
	// byRandom maps a handshake's ClientHello random to its hsConn while
	// it runs on a shared Config (sharedKeyLog).
	byRandom sync.Map
	perIP    *upstream.KeyedLimiter[netip.Addr] // nil when disabled
	flaps    *flapGuard                         // nil when disabled
	m        *metrics
	once     sync.Once
	closed   chan struct{}
	wg       sync.WaitGroup
}

// New returns a Server for cfg, with its certificate loaded and its
// handshake workers started. Close stops them.
func New(cfg Config) (*Server, error) {
	cfg = cfg.withDefaults()
	for _, v := range []uint16{cfg.MinVersion, cfg.MaxVersion} {
		if v != tls.VersionTLS12 && v != tls.VersionTLS13 {
			return nil, ErrBadVersion
		}
	}
	if cfg.MinVersion > cfg.MaxVersion {
		return nil, ErrBadVersion
	}
	s := &Server{cfg: cfg, log: cfg.Logger, closed: make(chan struct{}),
		jobs: make(chan *hsConn, cfg.HandshakeQueue)}
	if err := s.load(); err != nil {
		return nil, err
	}
	if cfg.RatePerIP > 0 {
		s.perIP = upstream.NewKeyedLimiter[netip.Addr](upstream.KeyedConfig{Rate: cfg.RatePerIP, Burst: cfg.BurstPerIP, EvictBusy: true})
	}
	if cfg.BanThreshold > 0 {
		s.flaps = newFlapGuard(cfg)
	}
	s.m = newMetrics(cfg.Namespace, s)
	s.base = &tls.Config{
		MinVersion:             cfg.MinVersion,
		MaxVersion:             cfg.MaxVersion,
		NextProtos:             cfg.NextProtos,
		SessionTicketsDisabled: cfg.SessionTicketsDisabled,
		CurvePreferences:       cfg.CurvePreferences,
		GetCertificate: func(*tls.ClientHelloInfo) (*tls.Certificate, error) {
			return s.cert.Load().cert, nil
		},
		// TLS 1.2: AEAD suites with forward secrecy only.
		CipherSuites: []uint16{
			tls.TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256, tls.TLS_ECDHE_RSA_WITH_AES_128_GCM_SHA256,
			tls.TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384, tls.TLS_ECDHE_RSA_WITH_AES_256_GCM_SHA384,
			tls.TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256, tls.TLS_ECDHE_RSA_WITH_CHACHA20_POLY1305_SHA256,
		},
		Renegotiation: tls.RenegotiateNever,
	}
	s.base.GetConfigForClient = s.configFor
	if cfg.HandshakeCPU > 0 {
		s.cpu = newCPUSched(cfg.HandshakeCPU)
	}
	s.spareN, s.spareLinger = cfg.HandshakeCPU, spareLinger
	if s.spareN <= 0 {
		s.spareN = runtime.GOMAXPROCS(0)
	}
	s.resident = int32(min(cfg.HandshakeWorkers, max(1, runtime.GOMAXPROCS(0))))
	for range s.resident {
		s.live.Add(1)
		s.wg.Add(1)
		go s.worker(true)
	}
	if cfg.CollectAfter > 0 || cfg.BurstGCPercent > 0 {
		s.gc = time.AfterFunc(time.Hour, s.collect)
		s.gc.Stop()
	}
	return s, nil
}

// configFor gives each handshake its own Config, whose KeyLogWriter is
// the connection's adapter: that is how warren's record layer gets the
// traffic secrets.
func (s *Server) configFor(chi *tls.ClientHelloInfo) (*tls.Config, error) {
	hs, ok := chi.Conn.(*hsConn)
	if !ok {
		return nil, errors.New("tlsx: handshake on a foreign connection")
	}
	cas := s.cas.Load()
	if s.cfg.MaxVersion == tls.VersionTLS12 || !slices.Contains(chi.SupportedVersions, tls.VersionTLS13) {
		return s.config12(hs, cas), nil
	}
	if hs.rnd != nil {
		// The listener's shared Config, its key log dispatched by the
		// ClientHello's random: no Config per handshake (a TLS 1.2
		// tls.Conn keeps its Config for its life). A random seen twice at
		// once gets a Config of its own, so a handshake's secrets can only
		// reach its own connection.
		if _, dup := s.byRandom.LoadOrStore(*hs.rnd, hs); !dup {
			if sc := hs.lh.shared.Load(); sc != nil && sc.cas == cas {
				return sc.cfg, nil
			}
			sc := &sharedConfig{cas: cas, cfg: s.newConfig(hs.lh, cas, sharedKeyLog{s})}
			hs.lh.shared.Store(sc)
			return sc.cfg, nil
		}
	}
	return s.newConfig(hs.lh, cas, keyLog{hs}), nil
}

// ticketMasterTag marks the TLS 1.2 master secret in a session ticket's
// SessionState.Extra.
const ticketMasterTag = "warren-tls12-master:"

// config12 is the Config of a handshake that can only be TLS 1.2 (the
// client offers no TLS 1.3): its own, since its session-ticket hooks must
// reach this handshake. crypto/tls logs no master secret when it resumes a
// TLS 1.2 session, so the ticket carries it: WrapSession adds the master
// secret the key log gave to the SessionState's Extra (the ticket is
// encrypted and authenticated with the Server's ticket keys, as crypto/tls
// does with the master secret it already holds), and UnwrapSession takes
// it back out for warren's record layer. The Config is dropped with the
// tls.Conn once the record layer takes over.
func (s *Server) config12(hs *hsConn, cas *x509.CertPool) *tls.Config {
	c := s.newConfig(hs.lh, cas, keyLog{hs})
	if s.cfg.SessionTicketsDisabled {
		return c
	}
	c.WrapSession = func(cs tls.ConnectionState, ss *tls.SessionState) ([]byte, error) {
		ss.Extra = withTicketMaster(ss.Extra, hs.master)
		return s.base.EncryptTicket(cs, ss)
	}
	c.UnwrapSession = func(identity []byte, cs tls.ConnectionState) (*tls.SessionState, error) {
		ss, err := s.base.DecryptTicket(identity, cs)
		if ss == nil || err != nil {
			return ss, err
		}
		hs.master, hs.crand = ticketMaster(ss), nil
		return ss, nil
	}
	return c
}

// ticketMaster returns the master secret a session ticket carries
// (WrapSession, masterCache), or nil. If crypto/tls does not resume the
// session after all, the full handshake's key log line replaces it.
func ticketMaster(ss *tls.SessionState) []byte {
	for _, e := range ss.Extra {
		if m, ok := bytes.CutPrefix(e, []byte(ticketMasterTag)); ok && len(m) == 48 {
			return bytes.Clone(m)
		}
	}
	return nil
}

// withTicketMaster returns Extra without any master secret, and with
// master's when it is one.
func withTicketMaster(extra [][]byte, master []byte) [][]byte {
	extra = slices.DeleteFunc(extra, func(e []byte) bool { return bytes.HasPrefix(e, []byte(ticketMasterTag)) })
	if len(master) == 48 {
		extra = append(extra, append([]byte(ticketMasterTag), master...))
	}
	return extra
}

// newConfig is the Config of lh's handshakes with the client CAs cas.
func (s *Server) newConfig(lh *listenerHandler, cas *x509.CertPool, kl io.Writer) *tls.Config {
	c := s.base.Clone()
	c.GetConfigForClient = nil
	c.KeyLogWriter = kl
	c.NextProtos = lh.protos
	if cas != nil {
		c.ClientCAs = cas
		c.ClientAuth = s.cfg.ClientAuth
		if c.ClientAuth == tls.NoClientCert {
			c.ClientAuth = tls.RequireAndVerifyClientCert
		}
		if s.cfg.CRLFile != "" || len(s.cfg.CRLs) > 0 {
			c.VerifyConnection = s.verifyConnection
		}
	}
	return c
}

// sharedConfig is a listener's Config shared by its handshakes, for the
// client CAs it was made with (a reload makes a new one).
type sharedConfig struct {
	cas *x509.CertPool
	cfg *tls.Config
}

// sharedKeyLog is the KeyLogWriter of shared Configs: each line goes to
// the handshake registered under the line's client random.
type sharedKeyLog struct{ s *Server }

func (k sharedKeyLog) Write(p []byte) (int, error) {
	f := bytes.Fields(p)
	var rnd [32]byte
	if len(f) == 3 && hex.DecodedLen(len(f[1])) == 32 {
		if _, err := hex.Decode(rnd[:], f[1]); err == nil {
			if hs, ok := k.s.byRandom.Load(rnd); ok {
				hs.(*hsConn).keyLogLine(p)
			}
		}
	}
	return len(p), nil
}

// load reads the certificate and client CAs; on error the current ones
// stay.
func (s *Server) load() error {
	cs := &certState{}
	if s.cfg.Certificate != nil {
		cs.cert = s.cfg.Certificate
	} else {
		if s.cfg.CertFile == "" || s.cfg.KeyFile == "" {
			return ErrNoCertificate
		}
		cs.modCert, cs.modKey = modTime(s.cfg.CertFile), modTime(s.cfg.KeyFile)
		c, err := tls.LoadX509KeyPair(s.cfg.CertFile, s.cfg.KeyFile)
		if err != nil {
			return fmt.Errorf("tlsx: load certificate: %w", err)
		}
		cs.cert = &c
	}
	if len(cs.cert.Certificate) == 0 {
		return ErrNoCertificate
	}
	leaf := cs.cert.Leaf
	if leaf == nil {
		l, err := x509.ParseCertificate(cs.cert.Certificate[0])
		if err != nil {
			return fmt.Errorf("tlsx: parse certificate: %w", err)
		}
		leaf = l
		cs.cert.Leaf = l
	}
	cs.notAfter = leaf.NotAfter
	cas := s.cfg.ClientCAs
	var caPEM []byte
	if cas == nil && s.cfg.ClientCAFile != "" {
		cs.modCA = modTime(s.cfg.ClientCAFile)
		var err error
		if caPEM, err = os.ReadFile(s.cfg.ClientCAFile); err != nil {
			return fmt.Errorf("tlsx: client CAs: %w", err)
		}
		cas = x509.NewCertPool()
		if !cas.AppendCertsFromPEM(caPEM) {
			return fmt.Errorf("tlsx: client CAs: no certificate in %s", s.cfg.ClientCAFile)
		}
	}
	var crls *crlSet
	switch {
	case len(s.cfg.CRLs) > 0:
		crls = newCRLSet(s.cfg.CRLs)
	case s.cfg.CRLFile != "":
		if caPEM == nil {
			return ErrCRLWithoutCAFile
		}
		cs.modCRL = modTime(s.cfg.CRLFile)
		var err error
		if crls, err = loadCRLs(s.cfg.CRLFile, caCertificates(caPEM)); err != nil {
			return err
		}
		if !crls.nextUpdate.IsZero() && time.Now().After(crls.nextUpdate) {
			s.log.Warn("tls: a certificate revocation list is past its next update; it stays in force until a newer one is loaded",
				"file", s.cfg.CRLFile, "next_update", crls.nextUpdate)
		}
	}
	s.cert.Store(cs)
	if cas != nil {
		s.cas.Store(cas)
	}
	if crls != nil {
		s.crls.Store(crls)
	}
	return nil
}

func modTime(name string) time.Time {
	fi, err := os.Stat(name)
	if err != nil {
		return time.Time{}
	}
	return fi.ModTime()
}

// Reload reads the certificate files (and client CAs) again: new
// handshakes use them, established connections are untouched. On error the
// old certificate stays, the error is logged and returned. It is safe for
// concurrent use.
func (s *Server) Reload() error {
	if err := s.load(); err != nil {
		s.m.reloads.WithLabelValues("error").Inc()
		s.log.Error("tls certificate reload failed; keeping the old certificate", "error", err)
		return err
	}
	s.m.reloads.WithLabelValues("ok").Inc()
	s.log.Info("tls certificate reloaded", "not_after", s.cert.Load().notAfter)
	if s.crls.Load() != nil {
		s.revocationReloaded()
	}
	return nil
}

// Watch reloads the certificate on SIGHUP and when the files' modification
// times change (checked every ReloadInterval), until ctx ends. It blocks;
// run it on its own goroutine.
func (s *Server) Watch(ctx context.Context) {
	hup := make(chan os.Signal, 1)
	signal.Notify(hup, syscall.SIGHUP)
	defer signal.Stop(hup)
	s.watch(ctx, hup)
}

// watch is Watch with the signal channel given.
func (s *Server) watch(ctx context.Context, hup <-chan os.Signal) {
	var tick <-chan time.Time
	if s.cfg.ReloadInterval > 0 && s.cfg.Certificate == nil {
		t := time.NewTicker(s.cfg.ReloadInterval)
		defer t.Stop()
		tick = t.C
	}
	for {
		select {
		case <-ctx.Done():
			return
		case <-s.closed:
			return
		case <-hup:
			s.Reload()
		case <-tick:
			cs := s.cert.Load()
			if s.changed(cs) {
				if s.Reload() != nil {
					// Do not retry a bad file every tick: remember its times.
					bad := *s.cert.Load()
					s.modTimes(&bad)
					s.cert.Store(&bad)
				}
			}
		}
	}
}

// modTimes sets cs's file modification times to the files' current ones.
func (s *Server) modTimes(cs *certState) {
	cs.modCert, cs.modKey = modTime(s.cfg.CertFile), modTime(s.cfg.KeyFile)
	if s.cfg.ClientCAs == nil && s.cfg.ClientCAFile != "" {
		cs.modCA = modTime(s.cfg.ClientCAFile)
	}
	if len(s.cfg.CRLs) == 0 && s.cfg.CRLFile != "" {
		cs.modCRL = modTime(s.cfg.CRLFile)
	}
}

// changed reports whether a file cs was loaded from has changed since.
func (s *Server) changed(cs *certState) bool {
	now := *cs
	s.modTimes(&now)
	return now.modCert != cs.modCert || now.modKey != cs.modKey || now.modCA != cs.modCA || now.modCRL != cs.modCRL
}

// Collector returns the Server's metrics for a Prometheus registry.
func (s *Server) Collector() prometheus.Collector { return s.m }

// Close stops the handshake workers; handshakes waiting fail. Established
// connections are the engine's to close.
func (s *Server) Close() {
	s.once.Do(func() {
		s.spawn.Lock()
		s.stopped = true
		s.spawn.Unlock()
		if s.gc != nil {
			s.gc.Stop()
		}
		close(s.closed)
		if s.cpu != nil {
			s.cpu.stop()
		}
	})
	s.wg.Wait()
	s.endBurst()
	s.closeSpare()
}

// Handler returns the engine.Handler for a TLS listener whose connections,
// once the handshake is done, are served by h (an http1 server's Handler,
// a websocket or MQTT handler). Each call makes a listener with its own
// rate bound (Config.Rate).
func (s *Server) Handler(h engine.Handler) engine.Handler {
	return s.newListener(h, nil, s.cfg.NextProtos)
}

// HandlerALPN is Handler for a listener that serves several protocols on
// one port, chosen by ALPN: a client that negotiates a key of handlers
// (say "mqtt" or "http/1.1") is served by its handler, one that
// negotiates none by fallback. The protocols offered are Config.NextProtos
// that have a handler, then the other keys in sorted order.
func (s *Server) HandlerALPN(handlers map[string]engine.Handler, fallback engine.Handler) engine.Handler {
	var protos []string
	for _, p := range s.cfg.NextProtos {
		if handlers[p] != nil {
			protos = append(protos, p)
		}
	}
	rest := make([]string, 0, len(handlers))
	for p := range handlers {
		if !slices.Contains(protos, p) {
			rest = append(rest, p)
		}
	}
	slices.Sort(rest)
	return s.newListener(fallback, handlers, append(protos, rest...))
}

func (s *Server) newListener(h engine.Handler, byProto map[string]engine.Handler, protos []string) *listenerHandler {
	lh := &listenerHandler{s: s, inner: h, byProto: byProto, protos: protos}
	if s.cfg.Rate > 0 {
		lh.bucket = upstream.NewTokenBucket(s.cfg.Rate, s.cfg.Burst)
	}
	return lh
}

// Listen is e.Listen(addr, s.Handler(h)).
func (s *Server) Listen(e *engine.Engine, addr string, h engine.Handler) (*engine.Listener, error) {
	return e.Listen(addr, s.Handler(h))
}

// ConnState is what the handshake established for a connection.
type ConnState struct {
	// Version is the negotiated TLS version (tls.VersionTLS12 or 13).
	Version uint16
	// CipherSuite is the negotiated cipher suite.
	CipherSuite uint16
	// NegotiatedProtocol is the ALPN protocol agreed, or "".
	NegotiatedProtocol string
	// ServerName is the SNI name the client asked for, or "".
	ServerName string
	// Identity is the client certificate's identity (Config.IdentityURIPrefix:
	// the SAN URI's rest, else the subject CN), or "" without one.
	Identity string
	// CertNotAfter is the client certificate's NotAfter in Unix seconds
	// (so a holder of the identity can end the session when it expires),
	// or 0 without a certificate.
	CertNotAfter int64
	// revKey is the client certificate's revocation key (revKey), 0
	// without a certificate: Server.Revoked.
	revKey uint64
}

// State returns the TLS state of c, a connection served through a
// Server's Handler, or nil when c is not (or not yet) a TLS connection.
// It is safe for concurrent use.
func State(c *engine.Conn) *ConnState {
	switch t := c.Transform().(type) {
	case *recordLayer:
		return &t.info
	case *conn12:
		return t.info
	}
	return nil
}

// Identity returns the client-certificate identity of c, or "" (see
// ConnState.Identity). It is safe for concurrent use.
func Identity(c *engine.Conn) string {
	if st := State(c); st != nil {
		return st.Identity
	}
	return ""
}

// identityOf takes the identity from a verified client certificate.
func (s *Server) identityOf(cs *tls.ConnectionState) string {
	if len(cs.PeerCertificates) == 0 {
		return ""
	}
	leaf := cs.PeerCertificates[0]
	if p := s.cfg.IdentityURIPrefix; p != "" {
		for _, u := range leaf.URIs {
			if str := u.String(); strings.HasPrefix(str, p) {
				return str[len(p):]
			}
		}
		return ""
	}
	return leaf.Subject.CommonName
}
