package tlsx

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/binary"
	"encoding/hex"
	"errors"
	"io"
	"log/slog"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/ipkey"
	"github.com/warrenhq/warren/internal/pool"
)

// ProtoTLS is the protocol name of a connection in its TLS handshake
// (engine.ProtocolNamer); afterwards the wrapped handler names it.
const ProtoTLS = "tls"

// Detail is a typed close detail of the TLS layer (engine.CloseDetail).
type Detail string

// String returns the detail's name.
func (d Detail) String() string { return string(d) }

// Close details of connections closed during the handshake.
const (
	DetailRefusedPerIP     Detail = "tls_refused_per_ip"
	DetailRefusedListener  Detail = "tls_refused_listener"
	DetailBanned           Detail = "tls_refused_banned"
	DetailQueueFull        Detail = "tls_handshake_queue_full"
	DetailNotTLS           Detail = "tls_not_tls"
	DetailPlainHTTP        Detail = "tls_plaintext_http"
	DetailHandshakeFailed  Detail = "tls_handshake_failed"
	DetailBadClientCert    Detail = "tls_bad_client_certificate"
	DetailRevokedCert      Detail = "tls_revoked_client_certificate"
	DetailHandshakeTimeout Detail = "tls_handshake_timeout"
	DetailFlightTimeout    Detail = "tls_flight_timeout"
	DetailServerClosed     Detail = "tls_server_closed"
)

// listenerHandler is a TLS listener's handler: it admits a new connection
// and gives it its own handshake handler.
type listenerHandler struct {
	s       *Server
	inner   engine.Handler                           // the handler without ALPN match
	byProto map[string]engine.Handler                // HandlerALPN; nil for Handler
	protos  []string                                 // ALPN offered
	bucket  interface{ AllowN(time.Time, int) bool } // nil when unbounded
	shared  atomic.Pointer[sharedConfig]             // the handshakes' Config (Server.configFor)
}

var (
	_ engine.Handler       = (*listenerHandler)(nil)
	_ engine.OpenHandler   = (*listenerHandler)(nil)
	_ engine.InlineHandler = (*listenerHandler)(nil)
	_ engine.Handler       = (*hsConn)(nil)
	_ engine.CloseHandler  = (*hsConn)(nil)
)

// Inline runs admission on the loop.
func (*listenerHandler) Inline() bool { return true }

// Protocol names the connection "tls" until its handshake is done.
func (*listenerHandler) Protocol() string { return ProtoTLS }

// OnOpen admits c — flapping bans, the per-IP bucket, then the
// listener's — before any TLS work, and hands it to a handshake handler of
// its own.
func (lh *listenerHandler) OnOpen(c *engine.Conn) {
	s := lh.s
	now := s.cfg.Clock.Now()
	client := ipkey.Of(c.RemoteAddr().Addr(), s.cfg.PerIPv6Prefix)
	if s.flaps != nil && s.flaps.banned(client, now) {
		s.m.refused.WithLabelValues(BoundBanned).Inc()
		c.AbortWithDetail(engine.ReasonLimitReached, DetailBanned)
		return
	}
	if s.perIP != nil && !s.perIP.AllowN(client, now, 1) {
		s.m.refused.WithLabelValues(BoundPerIP).Inc()
		c.AbortWithDetail(engine.ReasonLimitReached, DetailRefusedPerIP)
		return
	}
	if lh.bucket != nil && !lh.bucket.AllowN(now, 1) {
		s.m.refused.WithLabelValues(BoundListener).Inc()
		c.AbortWithDetail(engine.ReasonLimitReached, DetailRefusedListener)
		return
	}
	hs := &hsConn{s: s, lh: lh, c: c}
	hs.cond.L = &hs.mu
	c.SetIdleTimeout(s.cfg.HandshakeTimeout)
	c.SetReadTimeout(s.cfg.HandshakeTimeout)
	c.SetHandler(hs)
}

// OnData is never called: OnOpen replaces the handler.
func (lh *listenerHandler) OnData(c *engine.Conn, in []byte) int { return 0 }

// hsConn is one connection's handshake: the engine.Handler that feeds the
// bytes read on the loop to crypto/tls, and the net.Conn crypto/tls reads
// them from on a handshake worker. It hands crypto/tls whole records only,
// one at a time, so nothing read past the handshake stays inside tls.Conn:
// what follows is the record layer's.
type hsConn struct {
	s  *Server
	lh *listenerHandler
	c  *engine.Conn

	queued  bool      // loop: submitted to the workers
	rnd     *[32]byte // the ClientHello's random, until the handshake ends (Server.shared)
	started time.Time // loop: the ClientHello arrived

	mu      sync.Mutex
	cond    sync.Cond
	in      []byte // bytes read and not yet handed to crypto/tls (pooled)
	recLeft int    // bytes of the current record still to hand out
	closed  bool   // the connection closed, or the handshake ended
	counted bool   // OnClose counted the handshake's end (the worker does not)
	post    bool   // on crypto/tls's record layer (conn12): Read does not block, Write captures
	out     []byte // on crypto/tls's record layer: sealed bytes for Seal

	readLog []byte // what crypto/tls read (under mu), for the TLS 1.2 checks

	// CPU slots (Config.HandshakeCPU, cpuSched), under mu: slot says the
	// handshake holds one; cpuQueued that it waits in the scheduler's
	// FIFO; cpuGone that its handshake ended (a slot given now is passed
	// on); dataWait that its worker waits for the client's bytes.
	slot      bool
	cpuQueued bool
	cpuGone   bool
	dataWait  bool

	// The flight timeout (Config.FlightTimeout), under mu: waiting is
	// set while the worker waits for a record it has not had whole, from
	// the moment it found nothing to read until the record's last byte;
	// flightEnd is when that wait times out (flightT wakes the worker).
	waiting   bool
	flightEnd time.Time
	flightT   *time.Timer

	// The handshake worker's.
	written  []byte // what crypto/tls wrote, for counting records (TLS 1.3) and the TLS 1.2 checks
	clientTS []byte // CLIENT_TRAFFIC_SECRET_0
	serverTS []byte // SERVER_TRAFFIC_SECRET_0
	master   []byte // TLS 1.2: the master secret (CLIENT_RANDOM, or the session ticket's)
	crand    []byte // TLS 1.2: the client random it goes with
}

// Inline: the handshake handler only copies bytes, on the loop.
func (*hsConn) Inline() bool { return true }

// Protocol names the connection "tls" during the handshake.
func (*hsConn) Protocol() string { return ProtoTLS }

// OnData checks the first record header, queues the handshake once a
// whole first record is there, and passes every byte to the worker.
func (hs *hsConn) OnData(c *engine.Conn, in []byte) int {
	c.SetMessagePending(true) // the read timeout bounds the handshake
	hs.mu.Lock()
	if hs.closed {
		hs.mu.Unlock()
		return len(in)
	}
	hs.in = append(pool.Grow(hs.in, len(in)), in...)
	buf := hs.in
	if hs.dataWait {
		// Its worker waits for these bytes: wake it if it may compute
		// on them; otherwise it is woken when given a slot.
		hs.dataWait = false
		if !hs.cpuBound() || hs.s.cpu.acquire(hs) {
			hs.cond.Broadcast()
		}
	}
	hs.mu.Unlock()
	if hs.queued {
		return len(in)
	}
	if len(buf) >= 1 && buf[0] != typeHandshake {
		hs.refuseNotTLS(c, buf)
		return len(in)
	}
	if len(buf) < recordHeaderLen {
		return len(in)
	}
	if buf[1] != 3 || int(binary.BigEndian.Uint16(buf[3:])) > maxPlaintext {
		hs.refuseNotTLS(c, buf)
		return len(in)
	}
	if len(buf) < recordHeaderLen+int(binary.BigEndian.Uint16(buf[3:])) {
		return len(in)
	}
	hs.queued, hs.started = true, time.Now()
	if n := recordHeaderLen + 4 + 2 + 32; len(buf) >= n && buf[recordHeaderLen] == 1 { // a ClientHello: keep its random
		hs.rnd = (*[32]byte)(bytes.Clone(buf[n-32 : n]))
	}
	// The spare Ps first, here on the loop: a raise stops the world, which
	// must not wait for a lowered worker the queued job has just woken.
	hs.s.holdSpare()
	select {
	case hs.s.jobs <- hs:
		hs.s.demand.Add(1)
		hs.s.grow()
	default:
		hs.s.m.refused.WithLabelValues(BoundQueueFull).Inc()
		hs.shut()
		c.AbortWithDetail(engine.ReasonLimitReached, DetailQueueFull)
	}
	return len(in)
}

// refuseNotTLS closes a connection whose first bytes are not a TLS
// handshake record; plaintext HTTP gets a 400 saying so, as Go's net/http
// does.
func (hs *hsConn) refuseNotTLS(c *engine.Conn, buf []byte) {
	hs.queued = true
	hs.shut()
	hs.s.flapped(c)
	if looksLikeHTTP(buf) {
		hs.s.m.handshakes.WithLabelValues(ResultPlainHTTP, "none").Inc()
		c.Write([]byte("HTTP/1.0 400 Bad Request\r\nContent-Type: text/plain\r\nConnection: close\r\n\r\nClient sent an HTTP request to an HTTPS server.\n"))
		c.CloseWithDetail(engine.ReasonProtocolError, DetailPlainHTTP)
		return
	}
	hs.s.m.handshakes.WithLabelValues(ResultNotTLS, "none").Inc()
	c.CloseWithDetail(engine.ReasonProtocolError, DetailNotTLS)
}

func looksLikeHTTP(b []byte) bool {
	for _, m := range []string{"GET ", "HEAD ", "POST ", "PUT ", "DELETE ", "OPTIONS ", "PATCH ", "CONNECT ", "PRI "} {
		n := min(len(b), len(m))
		if n >= 3 && string(b[:n]) == m[:n] {
			return true
		}
	}
	return false
}

// OnClose ends a handshake in progress; the worker sees the adapter closed.
func (hs *hsConn) OnClose(c *engine.Conn, r engine.CloseReason, err error) {
	timeout := r == engine.ReasonReadTimeout || r == engine.ReasonIdleTimeout
	hs.mu.Lock()
	wasOpen := !hs.closed
	hs.closed = true
	// A handshake on a worker is counted by the worker when it fails —
	// it knows why (a refused certificate whose alert made the peer
	// close, the peer giving up) — unless it timed out here.
	counted := wasOpen && (!hs.queued || timeout)
	hs.counted = counted
	hs.mu.Unlock()
	hs.shut()
	if f := testHookClosed.Load(); f != nil {
		(*f)()
	}
	if !counted || r == engine.ReasonLimitReached {
		return
	}
	res := ResultAborted // closed before a whole ClientHello: the peer gave up
	if timeout {
		res = ResultTimeout
	}
	hs.s.m.handshakes.WithLabelValues(res, "none").Inc()
	hs.s.flapped(c) // the handshake was abandoned, or timed out
}

// shut marks the adapter closed and frees its input.
func (hs *hsConn) shut() {
	hs.mu.Lock()
	hs.closed = true
	if hs.in != nil && !hs.post {
		pool.Put(hs.in)
		hs.in = nil
	}
	hs.cond.Broadcast()
	hs.mu.Unlock()
}

// errWouldBlock is the adapter's temporary read error after a TLS 1.2
// handshake: crypto/tls does not make a temporary error sticky.
var errWouldBlock net.Error = wouldBlock{}

type wouldBlock struct{}

func (wouldBlock) Error() string   { return "tlsx: no input yet" }
func (wouldBlock) Timeout() bool   { return true }
func (wouldBlock) Temporary() bool { return true }

// Read hands crypto/tls the bytes of at most one record.
func (hs *hsConn) Read(p []byte) (int, error) {
	hs.mu.Lock()
	defer hs.mu.Unlock()
	for {
		if hs.closed && !hs.post {
			return 0, net.ErrClosed
		}
		if hs.recLeft == 0 && len(hs.in) >= recordHeaderLen {
			hs.recLeft = recordHeaderLen + int(binary.BigEndian.Uint16(hs.in[3:]))
		}
		if hs.recLeft > 0 && len(hs.in) > 0 {
			if hs.post || !hs.cpuBound() || hs.s.cpu.acquire(hs) {
				break
			}
			// Input for the handshake: compute again once given a slot.
			if hs.s.cpu.isStopped() {
				return 0, net.ErrClosed // the Server closed
			}
			hs.cond.Wait()
			continue
		}
		if hs.post {
			if hs.closed {
				return 0, io.EOF
			}
			return 0, errWouldBlock
		}
		if hs.waiting && !time.Now().Before(hs.flightEnd) {
			return 0, errFlightTimeout
		}
		hs.armFlight()
		if hs.slot {
			// Waiting for the client computes nothing: the slot goes to
			// the next handshake with input.
			hs.slot = false
			hs.mu.Unlock()
			hs.s.cpu.release()
			hs.mu.Lock()
			continue // bytes may have come meanwhile
		}
		hs.dataWait = true
		hs.cond.Wait()
		hs.dataWait = false
	}
	n := min(len(p), hs.recLeft, len(hs.in))
	copy(p, hs.in[:n])
	if !hs.post {
		hs.readLog = append(hs.readLog, p[:n]...)
	}
	hs.in = hs.in[:copy(hs.in, hs.in[n:])]
	hs.recLeft -= n
	if hs.recLeft == 0 {
		hs.waiting = false // the record is whole: the client's turn ended in time
	}
	return n, nil
}

// errFlightTimeout ends a handshake whose client did not send a whole
// record within Config.FlightTimeout of the server waiting for it. It is
// not temporary: crypto/tls keeps it and fails the handshake.
var errFlightTimeout net.Error = flightTimeout{}

type flightTimeout struct{}

func (flightTimeout) Error() string {
	return "tlsx: the client's next handshake record did not come in time"
}
func (flightTimeout) Timeout() bool   { return true }
func (flightTimeout) Temporary() bool { return false }

// armFlight starts the flight timeout when the worker begins waiting for
// a record (under mu). A Client's handshakes have none.
func (hs *hsConn) armFlight() {
	if hs.waiting || hs.s == nil || hs.s.cfg.FlightTimeout <= 0 {
		return
	}
	d := hs.s.cfg.FlightTimeout
	hs.waiting, hs.flightEnd = true, time.Now().Add(d)
	if hs.flightT == nil {
		hs.flightT = time.AfterFunc(d, hs.flightExpired)
	} else {
		hs.flightT.Reset(d)
	}
}

// flightExpired is the flight timer: it wakes the worker waiting for its
// client, whose Read then fails if the record it waits for has still not
// come (a timer from an earlier wait that fires late finds waiting false
// or flightEnd ahead).
func (hs *hsConn) flightExpired() {
	hs.mu.Lock()
	if hs.waiting && hs.dataWait && !time.Now().Before(hs.flightEnd) {
		hs.cond.Broadcast()
	}
	hs.mu.Unlock()
}

// stopFlight stops the flight timer once the handshake has ended.
func (hs *hsConn) stopFlight() {
	hs.mu.Lock()
	hs.waiting = false
	if hs.flightT != nil {
		hs.flightT.Stop()
	}
	hs.mu.Unlock()
}

// Write sends handshake bytes straight to the connection (and keeps a copy
// to count records); after a TLS 1.2 handshake it captures them for Seal.
func (hs *hsConn) Write(p []byte) (int, error) {
	hs.mu.Lock()
	if hs.post {
		hs.out = append(hs.out, p...)
		hs.mu.Unlock()
		return len(p), nil
	}
	hs.mu.Unlock()
	hs.written = append(hs.written, p...)
	return hs.c.Write(p)
}

// Close ends the adapter (crypto/tls closes it when the context ends).
func (hs *hsConn) Close() error { hs.shut(); return nil }

// LocalAddr returns the connection's local address.
func (hs *hsConn) LocalAddr() net.Addr { return net.TCPAddrFromAddrPort(hs.c.LocalAddr()) }

// RemoteAddr returns the peer's address.
func (hs *hsConn) RemoteAddr() net.Addr { return net.TCPAddrFromAddrPort(hs.c.RemoteAddr()) }

// SetDeadline and friends are no-ops: the handshake is bounded by its
// context and the engine's timeouts.
func (hs *hsConn) SetDeadline(time.Time) error      { return nil }
func (hs *hsConn) SetReadDeadline(time.Time) error  { return nil }
func (hs *hsConn) SetWriteDeadline(time.Time) error { return nil }

// keyLogLine is crypto/tls's KeyLogWriter call: the TLS 1.3 application
// traffic secrets, or the TLS 1.2 master secret and its client random, are
// kept for the record layer.
func (hs *hsConn) keyLogLine(line []byte) {
	f := bytes.Fields(line)
	if len(f) != 3 {
		return
	}
	secret, err := hex.DecodeString(string(f[2]))
	if err != nil {
		return
	}
	switch string(f[0]) {
	case "CLIENT_TRAFFIC_SECRET_0":
		hs.clientTS = secret
	case "SERVER_TRAFFIC_SECRET_0":
		hs.serverTS = secret
	case "CLIENT_RANDOM":
		if crand, err := hex.DecodeString(string(f[1])); err == nil {
			hs.master, hs.crand = secret, crand
		}
	}
}

// cpuBound reports whether the handshake's Server bounds the handshakes
// computing at once (Config.HandshakeCPU; a Client's never does).
func (hs *hsConn) cpuBound() bool { return hs.s != nil && hs.s.cpu != nil }

// takeCPU waits until the handshake holds a CPU slot, its connection
// closes or the Server does. Only its worker calls it.
func (hs *hsConn) takeCPU() {
	if !hs.cpuBound() {
		return
	}
	hs.mu.Lock()
	for !hs.s.cpu.acquire(hs) && !hs.closed && !hs.s.cpu.isStopped() {
		hs.cond.Wait()
	}
	hs.mu.Unlock()
}

// cpuDone ends the handshake's part in the CPU scheduler: a slot it holds
// is given back, and one given to it later is passed on.
func (hs *hsConn) cpuDone() {
	if !hs.cpuBound() {
		return
	}
	hs.mu.Lock()
	hs.cpuGone = true
	held := hs.slot
	hs.slot = false
	hs.mu.Unlock()
	if held {
		hs.s.cpu.release()
	}
}

// keyLog adapts hsConn to io.Writer for Config.KeyLogWriter without making
// hsConn's own Write (the net.Conn one) ambiguous.
type keyLog struct{ hs *hsConn }

func (k keyLog) Write(p []byte) (int, error) { k.hs.keyLogLine(p); return len(p), nil }

// testHookHandshake, when set by a test, runs on the worker at each
// handshake's start.
var testHookHandshake atomic.Pointer[func()]

// testHookClosed, when set by a test, runs at the end of a handshake's
// OnClose.
var testHookClosed atomic.Pointer[func()]

// WorkerIdle is how long a handshake worker beyond the resident ones
// (Config.HandshakeWorkers) waits for a job before it ends.
const WorkerIdle = time.Second

// worker runs handshakes until the Server closes; one that is not resident
// also ends after WorkerIdle without a job, unless the handshakes queued or
// running need it.
func (s *Server) worker(resident bool) { s.workerOn(resident, nil) }

// workerOn is worker; a worker started by lowerWorker in place of one on
// the main thread closes ready once it has its own thread.
func (s *Server) workerOn(resident bool, ready chan struct{}) {
	defer s.wg.Done()
	lowered, moved := s.lowerWorker(resident, ready)
	if ready != nil {
		close(ready)
	}
	if moved {
		return
	}
	if lowered {
		defer s.lowered.Add(-1)
	}
	var idle <-chan time.Time
	var t *time.Timer
	if !resident {
		t = time.NewTimer(WorkerIdle)
		defer t.Stop()
		idle = t.C
	}
	for {
		select {
		case <-s.closed:
			return
		case hs := <-s.jobs:
			s.handshake(hs)
			s.demand.Add(-1)
		case <-idle:
			if s.leave() {
				return
			}
		}
		if t != nil {
			t.Reset(WorkerIdle)
		}
	}
}

// grow starts a handshake worker when the handshakes queued or running
// outnumber the workers and fewer than Config.HandshakeWorkers run. The
// loop calls it after each handshake it queues.
func (s *Server) grow() {
	if s.demand.Load() <= s.live.Load() {
		return
	}
	s.spawn.Lock()
	defer s.spawn.Unlock()
	if s.stopped || s.demand.Load() <= s.live.Load() || s.live.Load() >= int32(s.cfg.HandshakeWorkers) {
		return
	}
	s.live.Add(1)
	s.wg.Add(1)
	go s.worker(false)
}

// leave reports whether an idle worker beyond the resident ones may end:
// the workers outnumber the handshakes queued or running.
func (s *Server) leave() bool {
	s.spawn.Lock()
	defer s.spawn.Unlock()
	if s.demand.Load() >= s.live.Load() {
		return false
	}
	s.live.Add(-1)
	return true
}

// collect runs a garbage collection when Config.CollectAfter handshakes
// have started since the last one; s.gc calls it WorkerIdle after the
// last handshake started.
func (s *Server) collect() {
	s.endBurst()
	if s.cfg.CollectAfter <= 0 || s.sinceGC.Load() < int64(s.cfg.CollectAfter) {
		return
	}
	s.sinceGC.Store(0)
	s.m.collections.Inc()
	runtime.GC()
}

// handshake runs crypto/tls's server handshake for hs and, when it
// succeeds, hands the connection to the record layer and the wrapped
// handler on its loop.
func (s *Server) handshake(hs *hsConn) {
	hs.mu.Lock()
	closed := hs.closed
	hs.mu.Unlock()
	if closed {
		// Its connection closed while it waited for a worker: no CPU
		// slot, no crypto/tls.
		s.abandoned(hs)
		return
	}
	ctx, cancel := context.WithDeadline(context.WithValue(context.Background(), connKey{}, hs.c), hs.started.Add(s.cfg.HandshakeTimeout))
	defer cancel()
	hs.takeCPU()
	defer hs.cpuDone()
	if f := testHookHandshake.Load(); f != nil {
		(*f)()
	}
	if s.gc != nil {
		s.sinceGC.Add(1)
		s.gc.Reset(WorkerIdle)
	}
	s.noteHandshake(time.Now())
	tc := tls.Server(hs, s.base)
	err := tc.HandshakeContext(ctx)
	hs.stopFlight()
	if hs.rnd != nil {
		s.byRandom.CompareAndDelete(*hs.rnd, hs)
		hs.rnd = nil
	}
	if err != nil {
		hs.mu.Lock()
		counted := hs.counted
		hs.closed = true // OnClose, from now on, counts nothing
		hs.mu.Unlock()
		hs.shut()
		if counted {
			return // OnClose counted its timeout
		}
		res, d := ResultFailed, DetailHandshakeFailed
		level := slog.LevelDebug
		var cv *tls.CertificateVerificationError
		switch {
		case ctx.Err() != nil:
			res, d = ResultTimeout, DetailHandshakeTimeout
		case errors.Is(err, errFlightTimeout):
			res, d = ResultFlightTimeout, DetailFlightTimeout
		case errors.Is(err, net.ErrClosed) || errors.Is(err, io.EOF) || errors.Is(err, io.ErrUnexpectedEOF):
			res = ResultAborted // the peer closed in the middle
		case errors.Is(err, ErrRevoked):
			// Listed by a revocation list: said in the log, with which
			// certificate and since when.
			res, d, level = ResultRevoked, DetailRevokedCert, slog.LevelWarn
		case errors.As(err, &cv):
			// A refused client certificate (expired, unknown CA): said
			// in the log, with crypto/tls's reason.
			res, d, level = ResultBadCert, DetailBadClientCert, slog.LevelWarn
		}
		s.m.handshakes.WithLabelValues(res, "none").Inc()
		s.flapped(hs.c)
		s.log.Log(ctx, level, "tls handshake failed", "remote", hs.c.RemoteAddr().String(), "error", err)
		// crypto/tls has sent its alert already; flush it and close.
		hs.c.CloseWithDetail(engine.ReasonProtocolError, d)
		return
	}
	st := tc.ConnectionState()
	info := ConnState{Version: st.Version, CipherSuite: st.CipherSuite, NegotiatedProtocol: st.NegotiatedProtocol,
		ServerName: st.ServerName, Identity: s.identityOf(&st)}
	if len(st.PeerCertificates) > 0 {
		leaf := st.PeerCertificates[0]
		info.CertNotAfter = leaf.NotAfter.Unix()
		if leaf.SerialNumber != nil {
			info.revKey = revKey(leaf.RawIssuer, leaf.SerialNumber.Bytes())
		}
	}
	s.m.handshakes.WithLabelValues(ResultOK, versionName(st.Version)).Inc()
	s.m.duration.Observe(time.Since(hs.started).Seconds())

	var t engine.Transform
	ours := true
	if st.Version == tls.VersionTLS13 {
		r, err := s.record13For(hs, st.CipherSuite, info)
		if err != nil {
			s.log.Error("tls record layer", "error", err)
			hs.shut()
			hs.c.AbortWithDetail(engine.ReasonProtocolError, DetailHandshakeFailed)
			return
		}
		t = r
	} else if r, err := record12For(hs, st.CipherSuite, true); err == nil {
		r.keep, r.srv, r.info = s.cfg.KeepCiphers, s, info
		t = r
	} else {
		// A ticket from before tickets carried the master secret is
		// expected (debug); any other reason should not happen (warn).
		level := slog.LevelWarn
		if errors.Is(err, errNoMaster) {
			level = slog.LevelDebug
		}
		s.log.Log(context.Background(), level, "tls 1.2 connection kept on crypto/tls's record layer", "remote", hs.c.RemoteAddr().String(), "error", err)
		t, ours = &conn12{hs: hs, tc: tc, info: &info}, false
	}
	s.m.layers.WithLabelValues(versionName(st.Version), layerName(ours)).Inc()
	inner := hs.lh.inner
	if h := hs.lh.byProto[st.NegotiatedProtocol]; h != nil {
		inner = h
	}
	hs.handOver(ours, t, inner, true)
}

// abandoned ends a handshake whose connection closed before a worker began
// it: counted as aborted (the peer gave up) unless OnClose counted its
// timeout, as a handshake failing on a worker for the same reason is.
func (s *Server) abandoned(hs *hsConn) {
	hs.mu.Lock()
	counted := hs.counted
	hs.counted = true
	hs.mu.Unlock()
	if hs.rnd != nil {
		s.byRandom.CompareAndDelete(*hs.rnd, hs)
		hs.rnd = nil
	}
	if counted {
		return
	}
	s.m.handshakes.WithLabelValues(ResultAborted, "none").Inc()
	s.flapped(hs.c)
}

func layerName(ours bool) string {
	if ours {
		return LayerWarren
	}
	return LayerCryptoTLS
}

// handOver makes t the connection's transform and h its handler, on its
// loop, with the input crypto/tls was not handed: it belongs to warren's
// record layer (ours: the adapter is done) or is fed back to crypto/tls by
// conn12.Open. A server connection also drops the handshake's timeouts,
// which the engine's listener settings replace.
func (hs *hsConn) handOver(ours bool, t engine.Transform, h engine.Handler, server bool) {
	hs.written, hs.master, hs.crand = nil, nil, nil
	hs.mu.Lock()
	hs.readLog = nil
	hs.mu.Unlock()
	hs.c.Post(func() {
		hs.mu.Lock()
		if hs.closed {
			hs.mu.Unlock()
			return
		}
		pending := hs.in
		hs.in = nil
		if ours {
			hs.closed = true
		} else {
			hs.post = true
		}
		hs.mu.Unlock()
		c := hs.c
		if server {
			c.SetMessagePending(false)
			c.SetIdleTimeout(0)
			c.SetReadTimeout(0)
		}
		c.SetTransform(t)
		c.SetHandler(h)
		c.InjectInput(pending)
		if pending != nil {
			pool.Put(pending)
		}
	})
}

// record13For builds the TLS 1.3 record layer from the secrets the key log
// caught, and finds how many records crypto/tls has already sealed under
// the server's application key (its NewSessionTicket): the last records
// written that open with that key, in order from sequence number zero.
func (s *Server) record13For(hs *hsConn, suiteID uint16, info ConnState) (*recordLayer, error) {
	suite := suiteByID(suiteID)
	if suite == nil || hs.clientTS == nil || hs.serverTS == nil {
		return nil, errors.New("tlsx: TLS 1.3 secrets not captured")
	}
	r := &recordLayer{suite: suite, keep: s.cfg.KeepCiphers, srv: s, info: info}
	r.in.set(suite, hs.clientTS)
	r.out.set(suite, hs.serverTS)
	// Split what was written into records.
	var recs [][]byte
	for b := hs.written; len(b) >= recordHeaderLen; {
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
		if n > len(b) {
			break
		}
		recs = append(recs, b[:n])
		b = b[n:]
	}
	for k := min(len(recs), 8); k > 0; k-- {
		if r.opensFromZero(recs[len(recs)-k:]) {
			r.out.seq = uint64(k)
			break
		}
	}
	r.out.aead = nil
	return r, nil
}

// opensFromZero reports whether recs open with the server application key
// at sequence numbers 0, 1, …
func (r *recordLayer) opensFromZero(recs [][]byte) bool {
	a, err := r.out.cipher(r.suite)
	if err != nil {
		return false
	}
	d := r.out
	d.seq = 0
	for _, rec := range recs {
		if rec[0] != typeAppData {
			return false
		}
		nonce := d.nonce()
		scratch := pool.Get(len(rec))
		_, err := a.Open(scratch[:0], nonce[:], rec[recordHeaderLen:], rec[:recordHeaderLen])
		pool.Put(scratch)
		if err != nil {
			return false
		}
		d.seq++
	}
	return true
}

// Why a TLS 1.2 connection keeps crypto/tls's record layer (record12For).
var (
	errNotAEAD    = errors.New("tlsx: TLS 1.2 suite without warren's record layer (not an ECDHE AEAD suite)")
	errNoMaster   = errors.New("tlsx: TLS 1.2 master secret not captured")
	errPartRead   = errors.New("tlsx: crypto/tls read part of a record past the handshake")
	errNoHello    = errors.New("tlsx: no hello random")
	errNoFinished = errors.New("tlsx: the Finished records do not open with the derived TLS 1.2 keys")
)

// record12For builds the TLS 1.2 record layer of an AEAD suite from the
// master secret (the key log's CLIENT_RANDOM line with its client random,
// or on resumption the session ticket's, with the random of the
// ClientHello) and the server random from the plaintext ServerHello
// (written by a server, read by a client). The
// key block is the TLS 1.2 PRF's (keyBlock12). It then proves the keys and
// the sequence numbers: the last record crypto/tls wrote must be its own
// Finished and the last it read the peer's, each opening with its
// direction's key at sequence number 0 (the first record under the new
// keys, in full handshakes and resumptions alike), and crypto/tls must
// have read no part of a further record; application data then starts at
// sequence number 1 both ways. Any doubt is an error: the caller keeps
// crypto/tls's record layer for the connection.
func record12For(hs *hsConn, suiteID uint16, server bool) (*recordLayer, error) {
	s := suite12ByID(suiteID)
	if s == nil {
		return nil, errNotAEAD
	}
	hs.mu.Lock()
	left, read := hs.recLeft, hs.readLog
	hs.mu.Unlock()
	if left != 0 {
		return nil, errPartRead
	}
	sh, ch := hs.written, read // the ServerHello and the ClientHello
	if !server {
		sh, ch = read, hs.written
	}
	crand, srand := hs.crand, serverRandom(sh)
	if crand == nil { // a resumption: the master secret came with the ticket
		crand = clientRandom(ch)
	}
	if len(hs.master) != 48 {
		return nil, errNoMaster
	}
	if len(crand) != 32 || srand == nil {
		return nil, errNoHello
	}
	ck, sk, civ, siv := keyBlock12(s, hs.master, crand, srand)
	r := &recordLayer{suite: s, client: !server}
	if server {
		r.in.set12(ck, civ)
		r.out.set12(sk, siv)
	} else {
		r.in.set12(sk, siv)
		r.out.set12(ck, civ)
	}
	if !r.opensFinished(r.out, lastRecord(hs.written)) || !r.opensFinished(r.in, lastRecord(read)) {
		return nil, errNoFinished
	}
	r.in.seq, r.out.seq = 1, 1
	return r, nil
}

// serverRandom returns the random of the ServerHello that starts b (a
// plaintext handshake record), or nil.
func serverRandom(b []byte) []byte { return helloRandom(b, 2) }

// clientRandom returns the random of the ClientHello that starts b, or nil.
func clientRandom(b []byte) []byte { return helloRandom(b, hsClientHello) }

func helloRandom(b []byte, typ byte) []byte {
	const at = recordHeaderLen + 4 + 2 // record header, message header, legacy_version
	if len(b) < at+32 || b[0] != typeHandshake || b[recordHeaderLen] != typ {
		return nil
	}
	return b[at : at+32]
}

// lastRecord returns the last whole record of b, a sequence of records,
// or nil when b does not end with a whole record.
func lastRecord(b []byte) []byte {
	var last []byte
	for len(b) >= recordHeaderLen {
		n := recordHeaderLen + int(binary.BigEndian.Uint16(b[3:]))
		if n > len(b) {
			return nil
		}
		last, b = b[:n], b[n:]
	}
	if len(b) > 0 {
		return nil
	}
	return last
}

// opensFinished reports whether rec is a TLS 1.2 Finished handshake record
// sealed with d's key at sequence number 0. It opens a copy; d is a copy.
func (r *recordLayer) opensFinished(d direction, rec []byte) bool {
	ex := r.suite.explicit
	if len(rec) < recordHeaderLen+ex+tagLen || rec[0] != typeHandshake {
		return false
	}
	d.seq, d.aead = 0, nil
	a, err := d.cipher(r.suite)
	if err != nil {
		return false
	}
	body := bytes.Clone(rec[recordHeaderLen:])
	nonce := d.nonce()
	copy(nonce[ivLen-ex:], body[:ex])
	ct := body[ex:]
	ad := additionalData12(0, typeHandshake, len(ct)-tagLen)
	plain, err := a.Open(ct[:0], nonce[:], ct, ad[:])
	return err == nil && len(plain) == 4+12 && plain[0] == hsFinished && plain[1] == 0 && plain[2] == 0 && plain[3] == 12
}

// conn12 is a TLS 1.2 connection after its handshake: crypto/tls's own
// record layer, driven from the loop through the adapter (reads that would
// block return a temporary error, which crypto/tls does not keep), its
// output captured and written by the engine. It keeps the tls.Conn and so
// costs several KB per idle connection more than warren's record layer
// (docs/tls.md); it serves the TLS 1.2 connections record12For declines.
type conn12 struct {
	hs    *hsConn
	tc    *tls.Conn
	info  *ConnState
	plain []byte // the last plaintext, until OpenDone
	done  bool   // under the Conn's output lock
}

var _ engine.TransformCloser = (*conn12)(nil)

// Closed counts a connection that ended soon after it opened (flapping).
func (t *conn12) Closed(c *engine.Conn, r engine.CloseReason) {
	if t.hs != nil {
		t.hs.s.closedAfterHandshake(c, r)
	}
}

// Open feeds in to crypto/tls and reads what plaintext it yields.
func (t *conn12) Open(c *engine.Conn, in []byte) ([]byte, error) {
	hs := t.hs
	hs.mu.Lock()
	hs.in = append(hs.in, in...)
	hs.mu.Unlock()
	var err error
	for {
		if cap(t.plain)-len(t.plain) < 4096 {
			t.plain = pool.Grow(t.plain, 16<<10)
		}
		n, rerr := t.tc.Read(t.plain[len(t.plain):cap(t.plain)])
		t.plain = t.plain[:len(t.plain)+n]
		if rerr == nil {
			continue
		}
		var ne net.Error
		if errors.As(rerr, &ne) && ne.Temporary() {
			break
		}
		if errors.Is(rerr, io.EOF) {
			err = closeNotifyError{}
		} else {
			err = &recordError{alert: alertUnexpectedMessage, detail: "tls12_" + classify12(rerr)}
		}
		break
	}
	hs.mu.Lock()
	if len(hs.in) == 0 && cap(hs.in) > 0 {
		hs.in = nil // nothing buffered while idle
	}
	pending := len(hs.out) > 0
	hs.mu.Unlock()
	if pending && err == nil {
		c.FlushTransform() // an alert crypto/tls wrote while reading
	}
	return t.plain, err
}

func classify12(err error) string {
	s := err.Error()
	switch {
	case bytes.Contains([]byte(s), []byte("bad record MAC")):
		return "bad_record_mac"
	case bytes.Contains([]byte(s), []byte("renegotiation")):
		return "renegotiation_refused"
	case bytes.Contains([]byte(s), []byte("oversized")):
		return "record_overflow"
	}
	return "protocol_error"
}

// OpenDone drops the plaintext buffer.
func (t *conn12) OpenDone() {
	if t.plain != nil {
		pool.Put(t.plain)
		t.plain = nil
	}
}

// Seal writes bufs through crypto/tls and returns what it sealed.
func (t *conn12) Seal(bufs [][]byte, total int) ([]byte, error) {
	if t.done {
		return nil, engine.ErrClosed
	}
	for _, b := range bufs {
		if _, err := t.tc.Write(b); err != nil {
			t.done = true
			return nil, err
		}
	}
	return t.take(), nil
}

// take returns the captured output.
func (t *conn12) take() []byte {
	hs := t.hs
	hs.mu.Lock()
	out := hs.out
	hs.out = nil
	hs.mu.Unlock()
	return out
}

// Final sends close_notify (or the alert crypto/tls has queued).
func (t *conn12) Final() []byte {
	if t.done {
		return nil
	}
	t.done = true
	t.tc.CloseWrite()
	return t.take()
}

// Release drops a sealed buffer (crypto/tls's output is not pooled).
func (t *conn12) Release([]byte) {}
