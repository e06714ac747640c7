package loadgen

import (
	"context"
	"crypto/rand"
	"crypto/tls"
	"encoding/hex"
	"encoding/json"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"net/url"
	"os"
	"path/filepath"
	"runtime"
	"strconv"
	"sync"
	"sync/atomic"
	"time"

	"github.com/nats-io/nats.go"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/gateway"
	"github.com/warrenhq/warren/internal/pool"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// ScenarioDevices is the Config.Scenario that simulates the devices of
// warren's gateway (docs/gateway.md). Device n, counted from 1, connects to
// the WebSocket URL as dev-<n> with its own HS256 token; during the
// traffic phase the devices send telemetry frames
//
//	{"type":"telemetry","data":{"t":<intended send time, Unix ns>,"run":…,"dev":n,"seq":…,…}}
//
// (data is 100 bytes) at RPS in total, open-loop and spread over the
// devices, and every device answers each command frame it receives with
// {"type":"ack","id":…,"status":"ok"} (a command of the load generator's
// own, whose payload is {"n":…}, with "result":{"at":<Unix ns it
// arrived>}, which splits its round trip). With DeviceConfig.NATS the run
// subscribes to devices.*.telemetry and measures each message's latency
// from when it was due to when it arrived, and the telemetry lost; with
// DeviceConfig.CommandRPS it sends commands through the management API to
// random connected devices and measures their round trips. The report has
// a DeviceReport.
const ScenarioDevices = "devices"

// DeviceConfig configures the devices scenario. Only JWTSecret is
// required; every other field says what zero means.
type DeviceConfig struct {
	// JWTSecret is the gateway's HS256 secret: each device's token is
	// signed with it (gateway.IssueToken, role device). Required.
	JWTSecret []byte `json:"-"`
	// TokenTTL is the lifetime of the device tokens. Zero means 24 h.
	TokenTTL time.Duration `json:"token_ttl,omitempty"`
	// TokenInQuery sends each token as ?token= on the URL, as browsers
	// must, instead of in an Authorization: Bearer header.
	TokenInQuery bool `json:"token_in_query,omitempty"`
	// NATS is the URL of a NATS server of the gateway's cluster. When set
	// (or NATSConn is), the run subscribes to devices.*.telemetry and
	// reports the telemetry received, lost, and its end-to-end latency.
	// Empty means none of these are measured.
	NATS string `json:"nats,omitempty"`
	// NATSConn, when set, is the connection to subscribe on instead of
	// dialling NATS; the caller keeps it and closes it. Tests pass an
	// in-process connection to a gateway's embedded server.
	NATSConn *nats.Conn `json:"-"`
	// Grace is how long the run waits after the traffic for telemetry
	// still on its way to NATS; what has not arrived by then is lost.
	// Zero means 2 s.
	Grace time.Duration `json:"grace,omitempty"`
	// CommandRPS, when positive, is how many commands per second go
	// through the management API at APIURL during the traffic phase
	// (POST /v1/devices/dev-<n>/commands {"name":"ping","timeout":…}),
	// open-loop, each to a connected device picked at random; their
	// round trips are measured from when each was due. Zero means none.
	CommandRPS float64 `json:"command_rps,omitempty"`
	// APIURL is the gateway's management API, http://host:port.
	// Required with CommandRPS.
	APIURL string `json:"api_url,omitempty"`
	// APIToken is sent as Authorization: Bearer to the management API.
	// Empty sends none.
	APIToken string `json:"-"`
	// CommandTimeout is the ack timeout each command asks for. Zero
	// means 5 s.
	CommandTimeout time.Duration `json:"command_timeout,omitempty"`
	// CommandsInDevices, in a multi-process run (Config.Procs > 1), sends
	// the commands from the worker processes that run the devices, each
	// its share of CommandRPS to its own connected devices. False (the
	// default) sends them all from the parent, which runs no devices: a
	// management API client is not inside a device fleet, and a worker's
	// HTTP client would wait for the CPU behind its thousands of devices'
	// telemetry, which the round trip would then measure. The parent
	// picks among all the run's devices without knowing which are
	// connected (one that is not answers 404). A one-process run always
	// sends them beside its devices.
	CommandsInDevices bool `json:"commands_in_devices,omitempty"`
	// First is the index of this run's first device: device i of the run
	// is dev-<First+i+1>. A multi-process run gives each worker its own
	// range. Zero (or negative) means the devices are dev-1 and up.
	First int `json:"first,omitempty"`
	// Retries is how many more times a device whose connect fails
	// (refused before or during the TLS handshake, reset, timed out, its
	// upgrade refused) tries, after a jittered exponential backoff,
	// before it counts as failed: what real devices do in a reconnect
	// storm. Zero (or negative) means none: a failed connect fails the
	// device at once; more than 65,535 counts as 65,535.
	Retries int `json:"retries,omitempty"`
	// RetryBackoff is the wait before a device's first retry; it doubles
	// with each retry up to RetryBackoffMax, and each wait is drawn at
	// random between half of it and all of it ("equal jitter"), so that
	// refused devices spread out. Zero means 1 s.
	RetryBackoff time.Duration `json:"retry_backoff,omitempty"`
	// RetryBackoffMax caps the doubling of RetryBackoff. Zero means 30 s.
	RetryBackoffMax time.Duration `json:"retry_backoff_max,omitempty"`
	// Run is the run's id, written in every telemetry message so that
	// the NATS watcher counts only this run's. Empty means a random one;
	// a multi-process run gives its workers the parent's.
	Run string `json:"run,omitempty"`
	// MQTT configures the devices of an mqtt:// or mqtts:// run
	// (devices_mqtt.go); a ws:// run ignores it.
	MQTT MQTTDeviceConfig `json:"mqtt,omitzero"`
}

// Defaults of DeviceConfig.
const (
	defaultTokenTTL       = 24 * time.Hour
	defaultGrace          = 2 * time.Second
	defaultCommandTimeout = 5 * time.Second
	// telemetryDataSize is the size of a telemetry frame's data object.
	telemetryDataSize = 100
)

func (d DeviceConfig) withDefaults() DeviceConfig {
	if d.TokenTTL <= 0 {
		d.TokenTTL = defaultTokenTTL
	}
	if d.Grace <= 0 {
		d.Grace = defaultGrace
	}
	if d.CommandRPS < 0 {
		d.CommandRPS = 0
	}
	if d.CommandTimeout <= 0 {
		d.CommandTimeout = defaultCommandTimeout
	}
	d.First = max(d.First, 0)
	d.Retries = max(d.Retries, 0)
	if d.RetryBackoff <= 0 {
		d.RetryBackoff = defaultRetryBackoff
	}
	if d.RetryBackoffMax <= 0 {
		d.RetryBackoffMax = defaultRetryBackoffMax
	}
	d.RetryBackoffMax = max(d.RetryBackoffMax, d.RetryBackoff)
	return d
}

// DeviceID returns the id of device i of a devices run, counted from 0:
// dev-<i+1>.
func DeviceID(i int) string { return "dev-" + strconv.Itoa(i+1) }

// devConn is one simulated device: a connection slot redialled after the
// gateway closes it cleanly during traffic, like the runner's conn.
//
// Lock order: devRunner.dialMu, then devConn.mu, then shard.mu;
// devRunner.tickMu, then shard.mu; devRunner.closeMu and commander.mu are
// taken alone.
type devConn struct {
	r   *devRunner
	idx int32

	// mu guards the fields below it, which the connection's callbacks,
	// the telemetry senders and the command driver share. Frames are
	// written under mu.
	mu        sync.Mutex
	state     uint8  // csIdle … csClosing, as conn.state
	announced bool   // the gateway sent a Close: send nothing more
	holdsSem  bool   // this connect holds a slot of devRunner.connecting
	settled   bool   // the slot's first connect has succeeded or failed
	retryDue  bool   // a failed connect is to be retried once its connection is gone
	retries   uint16 // retries made since the device last connected (DeviceConfig.Retries is capped at 65535)
	seq       uint32
	ec        *engine.Conn
	since     int64 // when the current connect started (runner clock)
	first     int64 // when the first try of the current connect started

	// Owned by the connection's callbacks (one at a time, on its loop).
	p   respParser
	ws  *websocket.Reader
	key [24]byte
	mq  mqttDevState // an MQTT device's session (devices_mqtt.go)
}

// devRunner drives the simulated devices of one process on a client
// engine: a ramp of connects, telemetry paced by one goroutine per event
// loop, acks written by the loops, and a NATS subscriber and a command
// driver beside them. It is the backend of a devices run.
type devRunner struct {
	cfg     Config
	dc      DeviceConfig
	tgt     target
	eng     *engine.Engine
	tlsc    *tlsx.Client // wss:// targets
	mq      *mqttDevices // mqtt:// and mqtts:// targets; nil over WebSocket
	t0      time.Time
	wall0   int64  // t0 as Unix nanoseconds: telemetry "t" is wall0 + due
	run     string // this run's id, in every telemetry message
	devs    []devConn
	shards  []shard // connect latencies, by loop
	senders int
	cmd     *commander // nil without commands

	watch *telemetryWatch // nil without NATS

	// dialMu is held from before a Dial until its connection's context is
	// set, so callbacks that win the race wait for it.
	dialMu sync.Mutex
	ramper[*devConn]
	stop chan struct{}
	wg   sync.WaitGroup

	settledN  atomic.Int64
	open      atomic.Int64
	peak      atomic.Int64
	attempts  atomic.Int64
	connects  atomic.Int64
	failed    atomic.Int64
	retried   atomic.Int64 // failed connects tried again (DeviceConfig.Retries)
	rampConns atomic.Int64
	sent      atomic.Int64 // telemetry frames written
	cmdFrames atomic.Int64 // command frames the devices received
	acks      atomic.Int64
	gwErrors  atomic.Int64 // error frames from the gateway
	bytesIn   atomic.Int64
	bytesOut  atomic.Int64
	errs      [numKinds]atomic.Int64

	inTraffic atomic.Bool // clean closes are redialled
	finished  atomic.Bool // closes are expected; count nothing

	// closeMu guards the count of Close frames from the gateway by code.
	closeMu sync.Mutex
	closes  map[uint16]int64

	// tickMu guards the interval bookkeeping and the totals built from it.
	tickMu      sync.Mutex
	last        tick
	stash       *tick
	totalLat    Histogram
	totalConn   Histogram
	rampSeconds float64
	holdSecs    float64
	trafficSecs float64
}

var _ backend = (*devRunner)(nil)

// newDevRunner checks cfg, resolves the target, subscribes to NATS and
// starts a client engine.
func newDevRunner(ctx context.Context, cfg Config) (*devRunner, error) {
	dc := cfg.Devices.withDefaults()
	tgt, err := checkDevices(ctx, cfg)
	if err != nil {
		return nil, err
	}
	r := &devRunner{
		cfg:    cfg,
		dc:     dc,
		tgt:    tgt,
		t0:     time.Now(),
		run:    dc.Run,
		devs:   make([]devConn, cfg.Conns),
		ramper: newRamper[*devConn](maxConnecting, cfg.Conns),
		stop:   make(chan struct{}),
		closes: map[uint16]int64{},
	}
	if r.run == "" {
		r.run = newRunID()
	}
	r.wall0 = r.t0.UnixNano()
	if isMQTTURL(cfg.URL) {
		r.mq = newMQTTDevices(r)
	}
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	r.senders = max(1, min(loops, cfg.Conns))
	r.shards = make([]shard, loops)
	for i := range r.devs {
		r.devs[i].r, r.devs[i].idx = r, int32(i)
	}
	r.ramper.extra = dc.retryBound(cfg.Timeout)
	if r.watch, err = watchTelemetry(dc, r.run); err != nil {
		return nil, err
	}
	if dc.CommandRPS > 0 {
		if r.cmd, err = newCommander(dc, cfg.Timeout, r.t0, func() int { return pickConnected(r) }); err != nil {
			r.closeNATS()
			return nil, err
		}
	}
	r.eng, err = engine.New(engine.Config{
		Loops:        loops,
		BlockingPoll: cfg.BlockingPoll,
		LockOSThread: cfg.LockOSThread,
		Inline:       true,
		MaxConns:     -1,
		IdleTimeout:  -1,
		ReadTimeout:  -1,
		WriteTimeout: cfg.Timeout, // also bounds connects
		Logger:       slog.New(slog.DiscardHandler),
	}, devHandler{r})
	if err == nil {
		if err = r.eng.Start(""); err != nil {
			r.eng.Close()
		}
	}
	if err == nil && tgt.tls {
		if r.tlsc, err = r.newTLSClient(); err != nil {
			r.eng.Close()
		}
	}
	if err != nil {
		r.closeNATS()
		if r.cmd != nil {
			r.cmd.close()
		}
		return nil, err
	}
	r.wg.Add(1)
	go r.housekeep()
	return r, nil
}

// newTLSClient is the TLS client of a wss:// run; with Config.CertDir it
// picks each device's certificate at its handshake.
func (r *devRunner) newTLSClient() (*tlsx.Client, error) {
	tc, err := tlsConfig(r.cfg, r.tgt)
	if err != nil {
		return nil, err
	}
	if r.mq != nil {
		tc.NextProtos = []string{"mqtt"}
	}
	if r.cfg.CertDir == "" {
		return tlsx.NewClient(tc, 0, r.cfg.Timeout), nil
	}
	fallback := tc.Certificates
	tc.Certificates = nil
	tc.GetClientCertificate = func(cri *tls.CertificateRequestInfo) (*tls.Certificate, error) {
		if c := tlsx.HandshakeConn(cri.Context()); c != nil {
			if d := (devHandler{r}).devOf(c); d != nil {
				name := filepath.Join(r.cfg.CertDir, DeviceID(r.dc.First+int(d.idx))+".pem")
				if b, err := os.ReadFile(name); err == nil {
					pair, err := tls.X509KeyPair(b, b)
					if err != nil {
						return nil, fmt.Errorf("loadgen: %s: %w", name, err)
					}
					return &pair, nil
				}
			}
		}
		if len(fallback) > 0 {
			return &fallback[0], nil
		}
		return &tls.Certificate{}, nil // none: the server decides
	}
	return tlsx.NewClient(tc, 0, r.cfg.Timeout), nil
}

// checkDevices checks a devices run's configuration and resolves its
// target.
func checkDevices(ctx context.Context, cfg Config) (target, error) {
	dc := cfg.Devices.withDefaults()
	switch {
	case len(dc.JWTSecret) == 0:
		return target{}, fmt.Errorf("%w: the devices scenario needs a JWT secret to sign device tokens", ErrScenario)
	case dc.CommandRPS > 0 && dc.APIURL == "":
		return target{}, fmt.Errorf("%w: commands need the management API's URL", ErrScenario)
	case dc.CommandRPS > 0:
		if u, err := url.Parse(dc.APIURL); err != nil || (u.Scheme != "http" && u.Scheme != "https") || u.Host == "" {
			return target{}, fmt.Errorf("%w: management API URL %q: want http://host:port", ErrBadURL, dc.APIURL)
		}
	}
	if isMQTTURL(cfg.URL) {
		return checkMQTTDevices(ctx, cfg)
	}
	tgt, err := parseTarget(ctx, cfg.URL)
	if err != nil {
		return target{}, err
	}
	if !tgt.ws {
		return target{}, fmt.Errorf("%w: devices connect over WebSocket: want ws://host:port/v1/connect, got %q",
			ErrBadURL, cfg.URL)
	}
	return tgt, nil
}

// closeNATS ends the telemetry watch, if any.
func (r *devRunner) closeNATS() int {
	if r.watch == nil {
		return 0
	}
	return r.watch.close()
}

// newRunID returns a random run id.
func newRunID() string {
	var id [4]byte
	rand.Read(id[:])
	return hex.EncodeToString(id[:])
}

// appendTelemetry appends a telemetry frame's JSON text: its data object
// is telemetryDataSize bytes and starts with the intended send time t and
// the run's id, which parseTelemetry reads back from NATS.
func appendTelemetry(b []byte, t int64, run string, dev int32, seq uint32) []byte {
	b = append(b, `{"type":"telemetry","data":`...)
	start := len(b)
	b = append(b, `{"t":`...)
	b = strconv.AppendInt(b, t, 10)
	b = append(b, `,"run":"`...)
	b = append(b, run...)
	b = append(b, `","dev":`...)
	b = strconv.AppendInt(b, int64(dev)+1, 10)
	b = append(b, `,"seq":`...)
	b = strconv.AppendUint(b, uint64(seq), 10)
	b = append(b, `,"temp":21.5,"hum":40,"pad":"`...)
	for len(b)-start < telemetryDataSize-2 {
		b = append(b, 'x')
	}
	return append(b, `"}}`...)
}

// parseTelemetry reads the intended send time from a telemetry data
// object of run, as appendTelemetry writes it.
func parseTelemetry(data []byte, run string) (int64, bool) {
	const head, mid = `{"t":`, `,"run":"`
	if len(data) < len(head) || string(data[:len(head)]) != head {
		return 0, false
	}
	i := len(head)
	var t int64
	for ; i < len(data) && data[i] >= '0' && data[i] <= '9' && i < len(head)+19; i++ {
		t = t*10 + int64(data[i]-'0')
	}
	rest := data[i:]
	if i == len(head) || len(rest) < len(mid)+len(run)+1 || string(rest[:len(mid)]) != mid ||
		string(rest[len(mid):len(mid)+len(run)]) != run || rest[len(mid)+len(run)] != '"' {
		return 0, false
	}
	return t, true
}

func (r *devRunner) now() int64 { return int64(time.Since(r.t0)) }

func (r *devRunner) fail(k ErrorKind) { r.errs[k].Add(1) }

// ramp opens the connections at the configured rate and returns the
// number open once every one has connected or failed (or the ramp's time
// bound, ctx or the run ended).
func (r *devRunner) ramp(ctx context.Context) (int64, error) {
	took := r.ramper.run(ctx, &r.cfg, r.t0, &r.wg, r.stop, len(r.devs),
		func(i int) { r.dial(&r.devs[i]) }, r.redialIdle)
	r.tickMu.Lock()
	r.rampSeconds = took.Seconds()
	r.tickMu.Unlock()
	return r.open.Load(), ctx.Err()
}

// redialIdle dials d again unless it is connecting or connected already (a
// connect retry and an MQTT reconnect can both queue it); the caller
// holds a connecting slot, given back when d is not dialled.
func (r *devRunner) redialIdle(d *devConn) {
	d.mu.Lock()
	idle := d.state == csIdle
	d.mu.Unlock()
	if !idle {
		<-r.connecting
		return
	}
	r.dial(d)
}

// dial starts a connect for d; the caller holds a connecting slot.
func (r *devRunner) dial(d *devConn) {
	var src netip.Addr
	if n := len(r.cfg.Sources); n > 0 {
		src = r.cfg.Sources[int(d.idx)%n]
	}
	r.attempts.Add(1)
	r.dialMu.Lock()
	d.mu.Lock()
	d.state, d.announced, d.holdsSem, d.since, d.ec = csConnecting, false, true, r.now(), nil
	if d.retries == 0 {
		d.first = d.since
	}
	d.mu.Unlock()
	var ec *engine.Conn
	var err error
	var h engine.Handler = devHandler{r}
	if r.mq != nil {
		h = mqttDevHandler{r}
	}
	if r.tlsc != nil { // wss://, mqtts://: the device's OnOpen runs after the TLS handshake
		ec, err = r.eng.DialHandler(r.tgt.addr, src, r.tlsc.Handler(h))
	} else if r.mq != nil {
		ec, err = r.eng.DialHandler(r.tgt.addr, src, h)
	} else {
		ec, err = r.eng.Dial(r.tgt.addr, src)
	}
	if err == nil {
		ec.SetContext(d)
		d.mu.Lock()
		if d.state == csConnecting || d.state == csHandshake || d.state == csOpen {
			d.ec = ec
		}
		d.mu.Unlock()
	}
	r.dialMu.Unlock()
	if err != nil {
		d.mu.Lock()
		d.state = csIdle
		r.endConnectLocked(d, false)
		retry := d.takeRetryLocked()
		d.mu.Unlock()
		r.fail(classifyConnect(engine.ReasonIOError, err))
		if retry {
			r.retryLater(d)
		} else {
			r.reconnectLater(d) // MQTT devices with a reconnect delay
		}
	}
}

// endConnectLocked releases d's connecting slot and settles its ramp
// attempt; ok says whether it connected. A connect cut short by the end of
// the run is not a failure.
func (r *devRunner) endConnectLocked(d *devConn, ok bool) {
	if d.holdsSem {
		d.holdsSem = false
		<-r.connecting
	}
	if !ok && r.retryLocked(d) {
		return // not settled: the device tries again
	}
	d.retries = 0
	if !ok && !r.finished.Load() {
		r.failed.Add(1)
	}
	if !d.settled {
		d.settled = true
		if r.settledN.Add(1) == int64(len(r.devs)) {
			close(r.rampDone)
		}
	}
}

// openedLocked marks d upgraded. It settles the connect last, so that a
// ramp that ends with it sees it counted.
func (r *devRunner) openedLocked(d *devConn, c *engine.Conn, now int64) {
	d.state = csOpen
	r.connects.Add(1)
	if r.inRamp.Load() {
		r.rampConns.Add(1)
	}
	n := r.open.Add(1)
	for p := r.peak.Load(); n > p && !r.peak.CompareAndSwap(p, n); p = r.peak.Load() {
	}
	sh := &r.shards[c.Loop()%len(r.shards)]
	sh.mu.Lock()
	sh.connect.Record(time.Duration(now - d.first))
	sh.mu.Unlock()
	r.endConnectLocked(d, true)
}

// protocolErrorLocked counts an error of kind k and closes d.
func (r *devRunner) protocolErrorLocked(d *devConn, c *engine.Conn, k ErrorKind) {
	r.fail(k)
	switch d.state {
	case csHandshake, csConnecting:
		r.endConnectLocked(d, false)
	case csOpen:
		r.failed.Add(1)
		r.open.Add(-1)
	}
	d.state = csClosing
	c.Abort(engine.ReasonProtocolError)
}

// handshake returns d's upgrade request, with a fresh key (kept in d.key)
// and a token for the device.
func (r *devRunner) handshake(d *devConn) ([]byte, error) {
	tok, err := gateway.IssueToken(r.dc.JWTSecret, DeviceID(r.dc.First+int(d.idx)), gateway.RoleDevice, r.dc.TokenTTL,
		time.Now())
	if err != nil {
		return nil, err
	}
	copy(d.key[:], websocket.NewKey())
	b := make([]byte, 0, 256+len(r.tgt.path)+len(tok))
	b = append(b, "GET "...)
	b = append(b, r.tgt.path...)
	if r.dc.TokenInQuery {
		sep := byte('?')
		for i := range len(r.tgt.path) {
			if r.tgt.path[i] == '?' {
				sep = '&'
			}
		}
		b = append(b, sep)
		b = append(b, "token="...)
		b = append(b, tok...) // base64url and dots: nothing to escape
	}
	b = append(b, " HTTP/1.1\r\nHost: "...)
	b = append(b, r.tgt.host...)
	b = append(b, "\r\nUpgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: "...)
	b = append(b, d.key[:]...)
	b = append(b, "\r\nSec-WebSocket-Version: 13\r\nUser-Agent: warren-load\r\n"...)
	if !r.dc.TokenInQuery {
		b = append(b, "Authorization: Bearer "...)
		b = append(b, tok...)
		b = append(b, "\r\n"...)
	}
	return append(b, "\r\n"...), nil
}

// devHandler is the devices' engine handler.
type devHandler struct{ r *devRunner }

var (
	_ engine.OpenHandler  = devHandler{}
	_ engine.CloseHandler = devHandler{}
)

// devOf returns the device behind c (see attached).
func (h devHandler) devOf(c *engine.Conn) *devConn { return attached[*devConn](c, &h.r.dialMu) }

func (h devHandler) OnOpen(c *engine.Conn) {
	r := h.r
	d := h.devOf(c)
	if d == nil {
		c.Abort(engine.ReasonLocal)
		return
	}
	d.p.reset()
	if d.ws == nil {
		d.ws = &websocket.Reader{Role: websocket.RoleClient, Pool: bufferPool{}}
	}
	hs, err := r.handshake(d)
	d.mu.Lock()
	defer d.mu.Unlock()
	d.ec = c
	d.state = csHandshake
	if err != nil {
		r.protocolErrorLocked(d, c, KindProtocol)
		return
	}
	if n, err := c.Write(hs); err == nil {
		r.bytesOut.Add(int64(n))
	}
}

func (h devHandler) OnData(c *engine.Conn, in []byte) int {
	d := h.devOf(c)
	if d == nil {
		return len(in)
	}
	used := h.r.onData(d, c, in)
	h.r.bytesIn.Add(int64(used))
	return used
}

// onData completes the upgrade, then reads the gateway's frames: commands
// are acknowledged, pings answered, a Close echoed. The replies to one
// read leave in one write.
func (r *devRunner) onData(d *devConn, c *engine.Conn, in []byte) int {
	now := r.now()
	var out []byte
	flush := func() { // before a close, which would refuse the write
		if len(out) > 0 {
			if n, err := c.Write(out); err == nil {
				r.bytesOut.Add(int64(n))
			}
			pool.Put(out)
			out = nil
		}
	}
	used := 0
	d.mu.Lock()
	defer func() {
		flush()
		d.mu.Unlock()
	}()
	if d.state == csHandshake {
		end, kind, err := d.p.upgrade(in, d.key[:])
		if err != nil {
			r.protocolErrorLocked(d, c, kind)
			return len(in)
		}
		if end == 0 {
			return 0
		}
		used = end
		d.ws.Reset()
		r.openedLocked(d, c, now)
	}
	for d.state == csOpen {
		n, ev, err := d.ws.Next(in[used:])
		used += n
		if err != nil {
			code := uint16(websocket.CloseProtocolError)
			var ce *websocket.CloseError
			if errors.As(err, &ce) {
				code = ce.Code
			}
			out = appendControl(out, websocket.OpClose, websocket.AppendClosePayload(nil, code, ""))
			flush()
			r.protocolErrorLocked(d, c, KindProtocol)
			return len(in)
		}
		switch ev.Op {
		case websocket.OpContinuation:
			return used
		case websocket.OpText:
			out = r.onFrame(ev.Payload, out)
		case websocket.OpPing:
			out = appendControl(out, websocket.OpPong, ev.Payload)
		case websocket.OpClose:
			// The gateway is closing (shutdown, replaced, token expired,
			// abuse): answer and let it close.
			r.closeMu.Lock()
			r.closes[ev.Code]++
			r.closeMu.Unlock()
			d.announced = true
			out = appendControl(out, websocket.OpClose, websocket.AppendClosePayload(nil, ev.Code, ""))
			flush()
			c.Close()
			return len(in)
		}
	}
	return len(in)
}

// commandFrame is what a device reads of the gateway's text frames.
type commandFrame struct {
	Type    string `json:"type"`
	ID      string `json:"id"`
	Payload struct {
		N uint64 `json:"n"` // the load generator's command number
	} `json:"payload"`
}

// onFrame handles a text frame from the gateway, appending an ack to out
// for a command.
func (r *devRunner) onFrame(payload, out []byte) []byte {
	var f commandFrame
	if json.Unmarshal(payload, &f) != nil {
		r.fail(KindProtocol)
		return out
	}
	switch f.Type {
	case "command":
		r.cmdFrames.Add(1)
		id, _ := json.Marshal(f.ID)
		var buf [160]byte
		ack := append(append(append(buf[:0], `{"type":"ack","id":`...), id...), `,"status":"ok"`...)
		if f.Payload.N != 0 { // a load generator's: when it arrived, for the commander's split
			ack = appendArrival(append(ack, `,"result":`...), r.wall0+r.now())
		}
		ack = append(ack, '}')
		if out == nil {
			out = pool.Get(websocket.MaxHeaderLen + len(ack))[:0]
		}
		out = websocket.AppendMaskedFrame(out, websocket.OpText, true, websocket.NewMask(), ack)
		r.acks.Add(1)
	case "error":
		r.gwErrors.Add(1)
	}
	return out
}

// appendControl appends a masked control frame to out.
func appendControl(out []byte, op websocket.Opcode, payload []byte) []byte {
	if len(payload) > websocket.MaxControlPayload {
		payload = payload[:websocket.MaxControlPayload]
	}
	if out == nil {
		out = pool.Get(websocket.MaxHeaderLen + websocket.MaxControlPayload)[:0]
	}
	return websocket.AppendMaskedFrame(out, op, true, websocket.NewMask(), payload)
}

func (h devHandler) OnClose(c *engine.Conn, reason engine.CloseReason, err error) {
	r := h.r
	d := h.devOf(c)
	if d == nil {
		return
	}
	d.mu.Lock()
	if d.ec != nil && d.ec != c {
		d.mu.Unlock() // a stale connection of this slot
		return
	}
	prev := d.state
	d.state, d.ec = csIdle, nil
	announced := d.announced

	finished := r.finished.Load()
	switch prev {
	case csConnecting, csHandshake:
		r.endConnectLocked(d, false)
		if !finished {
			if prev == csConnecting {
				r.fail(classifyConnect(reason, err))
			} else {
				r.fail(closeKind(reason))
			}
		}
	case csOpen:
		r.open.Add(-1)
		if !finished && !(announced && (reason == engine.ReasonPeerClosed || reason == engine.ReasonLocal ||
			reason == engine.ReasonPeerReset)) {
			r.fail(closeKind(reason))
			r.failed.Add(1)
		}
	}
	retry := d.takeRetryLocked()
	d.mu.Unlock()
	if d.ws != nil {
		d.ws.Reset()
	}
	if retry {
		r.retryLater(d)
		return
	}
	// Reconnect a device the gateway closed cleanly while traffic runs
	// (MQTT devices with a reconnect delay wait for it instead).
	if prev == csOpen && announced && !finished && r.inTraffic.Load() && r.redialAtOnce() {
		select {
		case r.redial <- d:
		default:
		}
	}
}

// housekeep times out handshakes.
func (r *devRunner) housekeep() {
	defer r.wg.Done()
	t := time.NewTicker(sweepInterval)
	defer t.Stop()
	for {
		select {
		case <-r.stop:
			return
		case <-t.C:
		}
		now := r.now()
		limit := int64(r.cfg.Timeout)
		for i := range r.devs {
			d := &r.devs[i]
			d.mu.Lock()
			if d.state == csHandshake && now-d.since > limit && d.ec != nil {
				r.fail(KindTimeout)
				r.endConnectLocked(d, false)
				d.state = csClosing
				d.ec.Abort(engine.ReasonReadTimeout)
			}
			d.mu.Unlock()
		}
	}
}

// hold keeps the devices connected and quiet for d.
func (r *devRunner) hold(ctx context.Context, d time.Duration) error {
	start := r.now()
	sleepCtx(ctx, d)
	r.tickMu.Lock()
	r.holdSecs = float64(r.now()-start) / 1e9
	r.tickMu.Unlock()
	return ctx.Err()
}

// traffic sends telemetry and commands for d, then waits for the
// commands in flight and, for up to the grace, for the telemetry still on
// its way to NATS.
func (r *devRunner) traffic(ctx context.Context, d time.Duration) error {
	start := r.now()
	end := start + int64(d)
	r.inTraffic.Store(true)
	var wg sync.WaitGroup
	if r.cfg.RPS > 0 {
		for s := range r.senders {
			sd := &devSender{r: r}
			for i := s; i < len(r.devs); i += r.senders {
				sd.devs = append(sd.devs, &r.devs[i])
			}
			wg.Add(1)
			go func() {
				defer wg.Done()
				p := newPacer(start, r.cfg.RPS, s, r.senders)
				pace(ctx, newRealClock(r.t0), p, end, int64(r.cfg.Timeout), sd.send,
					func(n int64) { r.errs[KindUnsent].Add(n) })
			}()
		}
	}
	if r.cmd != nil {
		wg.Add(1)
		go func() {
			defer wg.Done()
			r.cmd.drive(ctx, start, end)
		}()
	}
	wg.Wait()
	sleepCtx(ctx, time.Duration(end-r.now()))
	r.inTraffic.Store(false)
	r.tickMu.Lock()
	r.trafficSecs = float64(min(r.now(), max(end, start))-start) / 1e9
	r.tickMu.Unlock()
	if r.cmd != nil {
		r.cmd.wait(ctx, r.dc.CommandTimeout+r.cfg.Timeout)
	}
	if r.watch != nil {
		r.watch.waitFor(r.sent.Load, r.dc.Grace, ctx.Done())
	}
	return ctx.Err()
}

// devSender is one open-loop telemetry shard: it owns every senders-th
// device.
type devSender struct {
	r    *devRunner
	devs []*devConn
	rr   int
	msg  []byte // one frame's JSON text
}

// send hands telemetry frames, oldest first, to the next connected
// devices, trying a bounded number of them; when there are more frames
// than devices, a device takes several, in one write. It returns how many
// it placed.
func (sd *devSender) send(dues []int64) int {
	n := len(sd.devs)
	share := (len(dues) + n - 1) / n
	placed := 0
	for range min(n, 256) {
		d := sd.devs[sd.rr]
		sd.rr++
		if sd.rr == n {
			sd.rr = 0
		}
		k := min(share, len(dues)-placed)
		if sd.telemetry(d, dues[placed:placed+k]) {
			placed += k
		}
		if placed == len(dues) {
			break
		}
	}
	return placed
}

// telemetry writes a frame for each of dues on d, in one write, and
// reports whether they went out.
func (sd *devSender) telemetry(d *devConn, dues []int64) bool {
	r := sd.r
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.state != csOpen || d.announced || d.ec == nil {
		return false
	}
	if r.mq != nil && !r.mq.canPublishLocked(d, len(dues)) {
		return false
	}
	b := pool.Get(len(dues) * (websocket.MaxHeaderLen + telemetryDataSize + 64))[:0]
	for _, due := range dues {
		d.seq++
		sd.msg = appendTelemetry(sd.msg[:0], r.wall0+due, r.run, int32(r.dc.First)+d.idx, d.seq)
		if r.mq != nil {
			b = r.mq.appendTelemetryLocked(b, d, sd.msg)
			continue
		}
		b = websocket.AppendMaskedFrame(b, websocket.OpText, true, websocket.NewMask(), sd.msg)
	}
	n, err := d.ec.Write(b) // Write copies what it cannot send at once
	pool.Put(b)
	if err != nil && n == 0 {
		return false
	}
	r.bytesOut.Add(int64(n))
	r.sent.Add(int64(len(dues)))
	return true
}

// errorCount is every error so far: the connections' by kind and the
// gateway's error frames.
func (r *devRunner) errorCount() int64 {
	n := r.gwErrors.Load()
	for k := range numKinds {
		n += r.errs[k].Load()
	}
	return n
}

// tick returns the counters since the previous call. Done counts
// telemetry received on NATS, or sent without NATS; Lat holds the
// end-to-end latencies.
func (r *devRunner) tick() tick {
	t := r.collect()
	r.tickMu.Lock()
	if r.stash != nil {
		s := *r.stash
		r.stash = nil
		s.add(&t)
		t = s
	}
	r.tickMu.Unlock()
	return t
}

// collect folds the interval histograms into the totals and returns the
// interval since the last collect.
func (r *devRunner) collect() tick {
	done := r.sent.Load()
	if r.watch != nil {
		done = r.watch.received.Load()
	}
	now := tick{Open: r.open.Load(), Connects: r.connects.Load(), Sent: r.sent.Load(), Done: done,
		Errors: r.errorCount()}
	lat := &Histogram{}
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		r.totalConn.Merge(&sh.connect)
		sh.connect.Reset()
		sh.mu.Unlock()
	}
	if r.watch != nil {
		r.watch.take(lat)
	}
	r.totalLat.Merge(lat)
	d := tick{Open: now.Open, Connects: now.Connects - r.last.Connects, Sent: now.Sent - r.last.Sent,
		Done: now.Done - r.last.Done, Errors: now.Errors - r.last.Errors, Lat: lat}
	r.last = now
	return d
}

// finish stops everything, closes the connections and NATS, and returns
// the run's report (without server usage or timeline).
func (r *devRunner) finish() (*Report, error) {
	r.finished.Store(true)
	close(r.stop)
	if r.cmd != nil {
		r.cmd.close()
	}
	r.wg.Wait()
	r.failed.Add(r.unsettledRetries())
	r.eng.Close()
	dropped := r.closeNATS()
	t := r.collect()
	r.tickMu.Lock()
	if r.stash != nil {
		r.stash.add(&t)
	} else {
		r.stash = &t
	}
	sent, received := r.sent.Load(), int64(0)
	if r.watch != nil {
		received = r.watch.received.Load()
	}
	dr := &DeviceReport{
		NATS:              r.watch != nil,
		TelemetrySent:     sent,
		SubscriberDropped: int64(dropped),
		CommandFrames:     r.cmdFrames.Load(),
		AcksSent:          r.acks.Load(),
		GatewayErrors:     r.gwErrors.Load(),
		ConnectRetries:    r.retried.Load(),
		CommandOutcomes:   map[string]int64{},
		CommandHist:       &Histogram{},
	}
	rep := &Report{
		URL:             r.cfg.URL,
		Protocol:        r.protocol(),
		Mode:            ScenarioDevices,
		Procs:           1,
		Start:           r.t0.Round(0).UTC(),
		ConnsAsked:      r.cfg.Conns,
		Rate:            r.cfg.Rate,
		RPS:             r.cfg.RPS,
		TimeoutS:        r.cfg.Timeout.Seconds(),
		ConnectAttempts: r.attempts.Load(),
		Connects:        r.connects.Load(),
		ConnsFailed:     r.failed.Load(),
		ConnsPeak:       r.peak.Load(),
		RampConnects:    r.rampConns.Load(),
		RampSeconds:     r.rampSeconds,
		HoldSeconds:     r.holdSecs,
		TrafficSeconds:  r.trafficSecs,
		Sent:            sent,
		Requests:        sent,
		BytesIn:         r.bytesIn.Load(),
		BytesOut:        r.bytesOut.Load(),
		Errors:          map[string]int64{},
		LatencyHist:     &Histogram{},
		ConnectHist:     &Histogram{},
		Devices:         dr,
	}
	if dr.NATS {
		dr.TelemetryReceived, dr.TelemetryLost = received, max(sent-received, 0)
		dr.Hops = r.watch.hopReport()
		rep.Requests, rep.Unanswered = received, dr.TelemetryLost
	}
	rep.LatencyHist.Merge(&r.totalLat)
	rep.ConnectHist.Merge(&r.totalConn)
	r.tickMu.Unlock()
	r.closeMu.Lock()
	for code, n := range r.closes {
		if dr.CloseCodes == nil {
			dr.CloseCodes = map[string]int64{}
		}
		dr.CloseCodes[strconv.Itoa(int(code))] = n
	}
	r.closeMu.Unlock()
	if c := r.cmd; c != nil {
		c.report(dr)
	}
	for k := range numKinds {
		if v := r.errs[k].Load(); v != 0 {
			rep.Errors[k.String()] = v
		}
	}
	if dr.GatewayErrors > 0 {
		rep.Errors[errGatewayFrame] = dr.GatewayErrors
	}
	rep.finalize()
	return rep, nil
}

// errGatewayFrame keys Report.Errors for the error frames the gateway
// sent the devices.
const errGatewayFrame = "gateway_error"
