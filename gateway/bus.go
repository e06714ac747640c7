package gateway

import (
	"errors"
	"fmt"
	"log/slog"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats-server/v2/server"
	"github.com/nats-io/nats.go"
)

// BusConfig configures the gateway's connection to NATS: an external
// cluster (URLs), or a NATS server embedded in this process, which other
// programs reach at Listen and which joins other nodes' embedded servers as
// a NATS cluster through Routes.
type BusConfig struct {
	// URLs are an external NATS cluster's servers. Empty means an
	// embedded server.
	URLs []string
	// Listen is the embedded server's client address, for other
	// programs: this process always reaches its embedded server through
	// an in-process connection. Empty means no port; a
	// clustered server then listens on a random loopback port, which
	// nats-server needs before it starts its routes.
	Listen string
	// ClusterListen is the embedded server's route address for a NATS
	// cluster of warren nodes; empty means no clustering.
	ClusterListen string
	// Routes are other nodes' route URLs (nats://host:port).
	Routes []string
	// ClusterName names the NATS cluster. Zero means "warren".
	ClusterName string
	// Node names this gateway node in NATS (connection name, server
	// name, presence, headers).
	Node string
	// ReconnectBuffer bounds what is published while NATS is unreachable
	// (nats.go's reconnect buffer). Zero means 8 MiB.
	ReconnectBuffer int
	// PendingLimit bounds the bytes queued toward NATS while connected;
	// past it telemetry pauses the devices sending it. Zero means 16 MiB.
	PendingLimit int
	// MaxPayload is the embedded server's largest message (nats-server's
	// max_payload, headers included). Zero means 1 MiB; a gateway sets it
	// to what its device limits need (see Config.WebSocket and
	// MQTTConfig). At most 64 MiB.
	MaxPayload int
	// Logger receives the bus's logs.
	Logger *slog.Logger
	// OnReconnect runs after NATS reconnects (the gateway re-announces
	// presence).
	OnReconnect func()
}

// Bus is the gateway's NATS connection, and the embedded server when it
// runs one. Its methods are safe for concurrent use.
type Bus struct {
	cfg  BusConfig
	nc   *nats.Conn
	srv  *server.Server // embedded, or nil
	log  *slog.Logger
	up   atomic.Bool
	disc atomic.Uint64 // disconnects seen
	reco atomic.Uint64 // reconnects seen
	errs asyncErrLog
}

// busWriteTimeout bounds a write of the bus's NATS connection (nats.go's
// FlusherTimeout, whose default is a minute): a publish that finds 32 KiB
// buffered writes to the socket itself, holding the connection's lock,
// and every publisher waits behind it while NATS is stalled. Ten seconds
// is nats-server's own default write deadline for its clients (the
// server cuts a consumer that stalls that long); past it the connection
// is treated as broken and reconnects, buffering publishes meanwhile
// (BusConfig.ReconnectBuffer).
const busWriteTimeout = 10 * time.Second

// StartBus starts the embedded server when cfg has no URLs, and connects.
// The connection reconnects forever with jitter; telemetry published while
// it is away waits in a bounded buffer.
func StartBus(cfg BusConfig) (*Bus, error) {
	if cfg.Logger == nil {
		cfg.Logger = slog.Default()
	}
	if cfg.ReconnectBuffer <= 0 {
		cfg.ReconnectBuffer = 8 << 20
	}
	if cfg.PendingLimit <= 0 {
		cfg.PendingLimit = 16 << 20
	}
	if cfg.ClusterName == "" {
		cfg.ClusterName = "warren"
	}
	b := &Bus{cfg: cfg, log: cfg.Logger}
	opts := []nats.Option{
		nats.Name("warren " + cfg.Node),
		nats.MaxReconnects(-1),
		nats.ReconnectWait(250 * time.Millisecond),
		nats.ReconnectJitter(250*time.Millisecond, time.Second),
		nats.ReconnectBufSize(cfg.ReconnectBuffer),
		nats.RetryOnFailedConnect(true),
		nats.FlusherTimeout(busWriteTimeout),
		nats.DisconnectErrHandler(func(nc *nats.Conn, err error) {
			b.up.Store(false)
			if nc.IsClosed() {
				return // our own Close at shutdown: nothing went wrong
			}
			b.disc.Add(1)
			b.log.Warn("gateway: NATS disconnected", "error", err)
		}),
		nats.ReconnectHandler(func(nc *nats.Conn) {
			b.up.Store(true)
			b.reco.Add(1)
			b.log.Info("gateway: NATS reconnected", "url", nc.ConnectedUrlRedacted())
			if cfg.OnReconnect != nil {
				cfg.OnReconnect()
			}
		}),
		nats.ConnectHandler(func(*nats.Conn) { b.up.Store(true) }),
		// Without one nats.go prints every asynchronous error to
		// stderr: a line per slow-consumer episode, hundreds a second.
		nats.ErrorHandler(func(_ *nats.Conn, sub *nats.Subscription, err error) {
			b.asyncError(sub, err, time.Now())
		}),
	}
	url := strings.Join(cfg.URLs, ",")
	if len(cfg.URLs) == 0 {
		srv, err := startEmbedded(cfg)
		if err != nil {
			return nil, err
		}
		b.srv = srv
		// This process's own connection is in-process whether or not the
		// server listens (the port is for other programs): no socket, no
		// system calls, no poller wake-up between this process's
		// publishes and requests and its server — in the prefork parent,
		// two crossings of every management API command.
		opts = append(opts, nats.InProcessServer(srv))
	}
	nc, err := nats.Connect(url, opts...)
	if err != nil {
		if b.srv != nil {
			b.srv.Shutdown()
		}
		return nil, fmt.Errorf("gateway: connect to NATS %s: %w", url, err)
	}
	b.nc = nc
	if nc.IsConnected() {
		b.up.Store(true)
	} else {
		// nats.go retries in the background (RetryOnFailedConnect; its
		// first connect is logged as a reconnect), and the node runs
		// meanwhile with its publishes buffered: say so, or a mistyped
		// -nats URL goes unnoticed.
		b.log.Warn("gateway: NATS not reachable; retrying in the background, telemetry and presence buffered until it is",
			"url", redactURLs(cfg.URLs))
	}
	return b, nil
}

// asyncErrEvery is how often the bus logs one kind of asynchronous NATS
// error at most.
const asyncErrEvery = 10 * time.Second

// asyncErrKinds bounds the kinds of asynchronous NATS error the bus
// remembers for asyncErrEvery: past it, the rest share one.
const asyncErrKinds = 64

// asyncErrLog rate-limits the bus's log lines for asynchronous NATS
// errors: one per kind (the error's text) per asyncErrEvery, with the
// number of the kind's errors left unlogged since the last line.
type asyncErrLog struct {
	mu    sync.Mutex
	kinds map[string]*asyncErrKind
}

type asyncErrKind struct {
	at      time.Time // logged last
	skipped int       // since
}

// allow reports whether an error of kind may be logged at now, and how
// many of its kind were not since the last one that was.
func (l *asyncErrLog) allow(kind string, now time.Time) (ok bool, skipped int) {
	l.mu.Lock()
	defer l.mu.Unlock()
	if l.kinds == nil {
		l.kinds = map[string]*asyncErrKind{}
	}
	k := l.kinds[kind]
	if k == nil {
		if len(l.kinds) >= asyncErrKinds {
			for s, o := range l.kinds {
				if now.Sub(o.at) >= asyncErrEvery {
					delete(l.kinds, s)
				}
			}
		}
		if len(l.kinds) >= asyncErrKinds {
			kind = "other"
			k = l.kinds[kind]
		}
		if k == nil {
			k = &asyncErrKind{}
			l.kinds[kind] = k
			k.at, ok = now, true
			return ok, 0
		}
	}
	if now.Sub(k.at) < asyncErrEvery {
		k.skipped++
		return false, 0
	}
	k.at, skipped, k.skipped = now, k.skipped, 0
	return true, skipped
}

// asyncError handles an asynchronous NATS error at now: a slow consumer
// on an MQTT bridge's subscription is not logged (the bridge counts and
// logs what it drops, reason queue_full); the others — a slow consumer
// on any other subscription included — are, once a kind per
// asyncErrEvery.
func (b *Bus) asyncError(sub *nats.Subscription, err error, now time.Time) {
	if err == nil {
		return
	}
	if errors.Is(err, nats.ErrSlowConsumer) && sub != nil && strings.HasPrefix(sub.Queue, bridgeGroupPrefix) {
		return
	}
	ok, skipped := b.errs.allow(err.Error(), now)
	if !ok {
		return
	}
	subject := ""
	if sub != nil {
		subject = sub.Subject
	}
	b.log.Warn("gateway: NATS error", "error", err, "subject", subject, "not_logged_before", skipped)
}

// embeddedMaxPayload is the embedded server's max_payload for a
// configured n: 1 MiB for zero, at most 64 MiB (nats-server's bound).
func embeddedMaxPayload(n int) int {
	if n <= 0 {
		return 1 << 20
	}
	return min(n, 64<<20)
}

// startEmbedded runs a nats-server in this process.
func startEmbedded(cfg BusConfig) (*server.Server, error) {
	opts := &server.Options{
		ServerName: "warren-" + cfg.Node,
		NoLog:      true,
		NoSigs:     true,
		MaxPayload: int32(embeddedMaxPayload(cfg.MaxPayload)),
	}
	if cfg.Listen == "" && cfg.ClusterListen != "" {
		// nats-server starts its routes only once its client listener is
		// up: a clustered server gets a loopback port nobody is told of.
		opts.Host, opts.Port = "127.0.0.1", server.RANDOM_PORT
	} else if cfg.Listen == "" {
		opts.DontListen = true
	} else {
		host, port, err := splitHostPort(cfg.Listen)
		if err != nil {
			return nil, fmt.Errorf("gateway: -nats-listen %q: %w", cfg.Listen, err)
		}
		opts.Host, opts.Port = host, port
	}
	if cfg.ClusterListen != "" {
		host, port, err := splitHostPort(cfg.ClusterListen)
		if err != nil {
			return nil, fmt.Errorf("gateway: -nats-cluster %q: %w", cfg.ClusterListen, err)
		}
		opts.Cluster = server.ClusterOpts{Name: cfg.ClusterName, Host: host, Port: port}
		if len(cfg.Routes) > 0 {
			opts.Routes = server.RoutesFromStr(strings.Join(cfg.Routes, ","))
		}
	}
	srv, err := server.NewServer(opts)
	if err != nil {
		return nil, fmt.Errorf("gateway: embedded NATS: %w", err)
	}
	go srv.Start()
	if !srv.ReadyForConnections(10 * time.Second) {
		srv.Shutdown()
		return nil, errors.New("gateway: embedded NATS did not start in 10s")
	}
	return srv, nil
}

func splitHostPort(addr string) (string, int, error) {
	host, p, err := net.SplitHostPort(addr)
	if err != nil {
		return "", 0, err
	}
	port, err := strconv.Atoi(p)
	if err != nil {
		return "", 0, err
	}
	if port == 0 {
		port = server.RANDOM_PORT
	}
	return host, port, nil
}

// Conn returns the NATS connection.
func (b *Bus) Conn() *nats.Conn { return b.nc }

// Connected reports whether NATS is reachable now.
func (b *Bus) Connected() bool { return b.up.Load() && b.nc.IsConnected() }

// ClientURL returns the embedded server's client URL, or "" when there is
// none or it has no port.
func (b *Bus) ClientURL() string {
	if b.srv == nil || b.cfg.Listen == "" {
		return ""
	}
	return b.srv.ClientURL()
}

// ClusterAddr returns the embedded server's route address, or nil.
func (b *Bus) ClusterAddr() net.Addr {
	if b.srv == nil {
		return nil
	}
	return b.srv.ClusterAddr()
}

// Embedded returns the embedded server, or nil.
func (b *Bus) Embedded() *server.Server { return b.srv }

// ErrBackpressure is returned when telemetry cannot be queued toward NATS:
// the connection's buffer is over its bound (slow or unreachable NATS).
// The gateway then pauses the device instead of dropping silently.
var ErrBackpressure = errors.New("gateway: NATS backpressure")

// Publish publishes m, failing with ErrBackpressure when too much is
// already waiting for NATS.
func (b *Bus) Publish(m *nats.Msg) error {
	if n, err := b.nc.Buffered(); err == nil && n > b.cfg.PendingLimit {
		return ErrBackpressure
	}
	err := b.nc.PublishMsg(m)
	if errors.Is(err, nats.ErrReconnectBufExceeded) {
		return ErrBackpressure
	}
	return err
}

// Relieved reports whether queued output is back under half the bound, so
// paused devices may resume.
func (b *Bus) Relieved() bool {
	n, err := b.nc.Buffered()
	return err == nil && n <= b.cfg.PendingLimit/2 && b.nc.IsConnected()
}

// Close drains subscriptions, closes the connection and stops the
// embedded server.
func (b *Bus) Close() {
	if b.nc != nil {
		if b.nc.IsConnected() { // else Flush waits out its 10 s for nothing
			b.nc.Flush()
		}
		b.nc.Close()
	}
	if b.srv != nil {
		b.srv.Shutdown()
		b.srv.WaitForShutdown()
	}
}

// redactURLs is urls joined with commas, without their user information
// (a password or a token), for logs.
func redactURLs(urls []string) string {
	out := make([]string, len(urls))
	for i, s := range urls {
		u, err := url.Parse(s)
		switch {
		case err != nil:
			out[i] = "(unparsable URL)"
		case u.User != nil:
			u.User = url.User("redacted")
			out[i] = u.String()
		default:
			out[i] = s
		}
	}
	return strings.Join(out, ",")
}
