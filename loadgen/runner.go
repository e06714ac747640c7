package loadgen

import (
	"context"
	"errors"
	"fmt"
	"log/slog"
	"net/netip"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/tlsx"
	"github.com/warrenhq/warren/websocket"
)

// Connection states, guarded by conn.mu.
const (
	csIdle       uint8 = iota // not connected: before the first dial, or closed
	csConnecting              // connect (and WebSocket handshake) in progress
	csOpen                    // ready for requests
	csClosing                 // closed by us after an error, OnClose pending
)

// conn is the client side of one connection slot. A slot is redialled
// after a clean close during traffic, so one conn may see several engine
// connections in turn, never two at once.
//
// Lock order: runner.dialMu, then conn.mu, then shard.mu; runner.tickMu,
// then shard.mu.
type conn struct {
	r   *runner
	idx int32

	// mu guards the fields below it: the engine connection, the state and
	// the queue of outstanding requests, which the event loop (responses,
	// closed-loop sends) and the open-loop senders share. A request is
	// queued and written under mu, so the queue's order is the wire order.
	mu        sync.Mutex
	state     uint8
	announced bool // the server said it will close: send nothing more
	holdsSem  bool // this connect holds a slot of runner.connecting
	settled   bool // the slot's first connect has succeeded or failed
	ec        *engine.Conn
	wc        *websocket.Conn // the WebSocket over ec
	since     int64           // when the current connect started (runner clock)
	q         ring            // due times of outstanding requests, oldest first

	// Owned by the connection's callbacks (one at a time, on its loop).
	p respParser
}

// ring is a growable FIFO of int64.
type ring struct {
	buf  []int64
	head int32
	n    int32
}

func (q *ring) len() int { return int(q.n) }

func (q *ring) push(v int64) {
	if int(q.n) == len(q.buf) {
		nb := make([]int64, max(4, 2*len(q.buf)))
		for i := range int(q.n) {
			nb[i] = q.buf[(int(q.head)+i)%len(q.buf)]
		}
		q.buf, q.head = nb, 0
	}
	q.buf[(int(q.head)+int(q.n))%len(q.buf)] = v
	q.n++
}

func (q *ring) pop() int64 {
	v := q.buf[q.head]
	q.head = int32((int(q.head) + 1) % len(q.buf))
	q.n--
	return v
}

func (q *ring) front() int64 { return q.buf[q.head] }

// popBack removes the newest entry.
func (q *ring) popBack() { q.n-- }

// clear empties q and, when it grew large, drops its buffer.
func (q *ring) clear() {
	q.head, q.n = 0, 0
	if len(q.buf) > 64 {
		q.buf = nil
	}
}

// shard holds the latency histograms of the current interval for one
// event loop or sender, so recording rarely contends.
type shard struct {
	mu      sync.Mutex
	lat     Histogram
	connect Histogram
	_       [64]byte
}

// runner drives the connections of one process.
type runner struct {
	cfg     Config
	tgt     target
	tlsc    *tlsx.Client // https:// targets
	eng     *engine.Engine
	t0      time.Time
	start   time.Time // wall clock of t0
	conns   []conn
	shards  []shard
	senders int

	req     []byte              // one HTTP request
	reqs    []byte              // reqBatch copies of req
	payload []byte              // WebSocket message payload
	ws      []*websocket.Client // by source address
	wsURL   string              // the target with its address resolved

	// dialMu is held from before a Dial until its connection's context is
	// set, so callbacks that win the race wait for it.
	dialMu sync.Mutex
	ramper[*conn]
	stop chan struct{}
	wg   sync.WaitGroup

	settledN    atomic.Int64
	open        atomic.Int64
	peak        atomic.Int64
	attempts    atomic.Int64
	connects    atomic.Int64
	failed      atomic.Int64
	sent        atomic.Int64
	done        atomic.Int64
	unanswered  atomic.Int64
	outstanding atomic.Int64
	bytesIn     atomic.Int64
	bytesOut    atomic.Int64
	errs        [numKinds]atomic.Int64

	rampConns  atomic.Int64
	closedLoop atomic.Bool // responses trigger new requests
	traffic    atomic.Bool // clean closes are redialled
	finished   atomic.Bool // closes are expected; count nothing

	// tickMu guards the interval bookkeeping and the totals built from it.
	tickMu      sync.Mutex
	last        tick // counters at the previous tick
	stash       *tick
	totalLat    Histogram
	totalConn   Histogram
	rampSeconds float64
	holdSecs    float64
	trafficSecs float64
}

const reqBatch = 64

// newRunner resolves the target and starts a client engine.
func newRunner(ctx context.Context, cfg Config) (*runner, error) {
	tgt, err := parseTarget(ctx, cfg.URL)
	if err != nil {
		return nil, err
	}
	r := &runner{
		cfg:    cfg,
		tgt:    tgt,
		t0:     time.Now(),
		conns:  make([]conn, cfg.Conns),
		ramper: newRamper[*conn](maxConnecting, cfg.Conns),
		stop:   make(chan struct{}),
	}
	r.start = r.t0
	loops := cfg.Loops
	if loops <= 0 {
		loops = runtime.GOMAXPROCS(0)
	}
	r.senders = max(1, min(loops, cfg.Conns))
	r.shards = make([]shard, max(loops, r.senders))
	for i := range r.conns {
		r.conns[i].r, r.conns[i].idx = r, int32(i)
	}
	if tgt.ws {
		r.payload = make([]byte, cfg.MsgSize)
		for i := range r.payload {
			r.payload[i] = 'a' + byte(i%26)
		}
	} else {
		r.req = fmt.Appendf(nil, "GET %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: warren-load\r\n\r\n", tgt.path, tgt.host)
		for range reqBatch {
			r.reqs = append(r.reqs, r.req...)
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
	}, handler{r})
	if err != nil {
		return nil, err
	}
	if err := r.eng.Start(""); err != nil {
		r.eng.Close()
		return nil, err
	}
	if tgt.tls {
		if r.tlsc, err = newTLSClient(cfg, tgt); err != nil {
			r.eng.Close()
			return nil, err
		}
	}
	if tgt.ws {
		if err := r.newWSClients(); err != nil {
			r.eng.Close()
			return nil, err
		}
	}
	r.wg.Add(1)
	go r.housekeep()
	return r, nil
}

func (r *runner) now() int64 { return int64(time.Since(r.t0)) }

func (r *runner) shardOf(i int) *shard { return &r.shards[i%len(r.shards)] }

func (r *runner) fail(k ErrorKind) { r.errs[k].Add(1) }

// ramp opens the connections at the configured rate and returns the
// number open once every one has connected or failed (or the ramp's time
// bound, ctx or the run ended).
func (r *runner) ramp(ctx context.Context) (int64, error) {
	took := r.ramper.run(ctx, &r.cfg, r.t0, &r.wg, r.stop, len(r.conns),
		func(i int) { r.dial(&r.conns[i]) }, r.dial)
	r.tickMu.Lock()
	r.rampSeconds = took.Seconds()
	r.tickMu.Unlock()
	return r.open.Load(), ctx.Err()
}

// dial starts a connect for cs; the caller holds a connecting slot.
func (r *runner) dial(cs *conn) {
	var src netip.Addr
	if n := len(r.cfg.Sources); n > 0 {
		src = r.cfg.Sources[int(cs.idx)%n]
	}
	r.attempts.Add(1)
	r.dialMu.Lock()
	cs.mu.Lock()
	cs.state, cs.announced, cs.holdsSem, cs.since, cs.ec, cs.wc = csConnecting, false, true, r.now(), nil, nil
	cs.mu.Unlock()
	var err error
	if r.tgt.ws {
		var wc *websocket.Conn
		// The handler finds cs in wc's context; it stores wc itself when
		// it opens first.
		if wc, err = r.dialWS(cs); err == nil {
			cs.mu.Lock()
			if cs.state == csConnecting || cs.state == csOpen {
				cs.ec, cs.wc = wc.Engine(), wc
			}
			cs.mu.Unlock()
		}
	} else {
		var ec *engine.Conn
		if r.tlsc != nil {
			ec, err = r.eng.DialHandler(r.tgt.addr, src, r.tlsc.Handler(handler{r}))
		} else {
			ec, err = r.eng.Dial(r.tgt.addr, src)
		}
		if err == nil {
			ec.SetContext(cs)
			cs.mu.Lock()
			if cs.state == csConnecting || cs.state == csOpen {
				cs.ec = ec
			}
			cs.mu.Unlock()
		}
	}
	r.dialMu.Unlock()
	if err != nil {
		cs.mu.Lock()
		cs.state = csIdle
		r.endConnectLocked(cs, false)
		cs.mu.Unlock()
		r.fail(classifyConnect(engine.ReasonIOError, err))
	}
}

// endConnectLocked releases cs's connecting slot and settles its ramp
// attempt; ok says whether it connected. A connect cut short by the end of
// the run is not a failure.
func (r *runner) endConnectLocked(cs *conn, ok bool) {
	if cs.holdsSem {
		cs.holdsSem = false
		<-r.connecting
	}
	if !ok && !r.finished.Load() {
		r.failed.Add(1)
	}
	if !cs.settled {
		cs.settled = true
		if r.settledN.Add(1) == int64(len(r.conns)) {
			close(r.rampDone)
		}
	}
}

func classifyConnect(reason engine.CloseReason, err error) ErrorKind {
	switch {
	case errors.Is(err, syscall.ECONNREFUSED):
		return KindConnectRefused
	case errors.Is(err, syscall.ETIMEDOUT) || reason == engine.ReasonWriteTimeout:
		return KindConnectTimeout
	}
	var te interface{ Timeout() bool }
	if errors.As(err, &te) && te.Timeout() {
		return KindConnectTimeout
	}
	return KindConnect
}

// openedLocked marks cs ready for requests. It settles the connect last,
// so that a ramp that ends with it sees it counted.
func (r *runner) openedLocked(cs *conn, now int64) {
	cs.state = csOpen
	r.connects.Add(1)
	if r.inRamp.Load() {
		r.rampConns.Add(1)
	}
	n := r.open.Add(1)
	for p := r.peak.Load(); n > p && !r.peak.CompareAndSwap(p, n); p = r.peak.Load() {
	}
	sh := r.shardOf(int(cs.idx))
	sh.mu.Lock()
	sh.connect.Record(time.Duration(now - cs.since))
	sh.mu.Unlock()
	if r.closedLoop.Load() {
		r.sendLocked(cs, r.cfg.Inflight, now, nil)
	}
	r.endConnectLocked(cs, true)
}

// sendLocked queues k requests on cs and writes them, in one write when
// it can. They were due at dues[i] when dues is given, else all at due. It
// reports whether they went out.
func (r *runner) sendLocked(cs *conn, k int, due int64, dues []int64) bool {
	if cs.state != csOpen || cs.announced || cs.ec == nil || k <= 0 {
		return false
	}
	for i := range k {
		if dues != nil {
			due = dues[i]
		}
		cs.q.push(due)
	}
	var n int
	var err error
	if !r.tgt.ws {
		for left := k; left > 0 && err == nil; {
			m := min(left, reqBatch)
			var w int
			w, err = cs.ec.Write(r.reqs[:m*len(r.req)])
			n += w
			left -= m
		}
	} else {
		// On the loop (closed loop) the messages of one read are gathered
		// into one write; from a sender, each is its own write.
		sent := 0
		for sent < k {
			if err = cs.wc.WriteMessage(websocket.OpBinary, r.payload); err != nil {
				break
			}
			sent++
		}
		for range k - sent {
			cs.q.popBack()
		}
		k = sent
		n = k * int(clientFrameLen(len(r.payload)))
	}
	if err != nil && n == 0 {
		for range k {
			cs.q.popBack()
		}
		return false
	}
	r.bytesOut.Add(int64(n))
	r.sent.Add(int64(k))
	r.outstanding.Add(int64(k))
	return err == nil
}

// hold keeps the connections idle for d.
func (r *runner) hold(ctx context.Context, d time.Duration) error {
	start := r.now()
	sleepCtx(ctx, d)
	r.tickMu.Lock()
	r.holdSecs = float64(r.now()-start) / 1e9
	r.tickMu.Unlock()
	return ctx.Err()
}

func sleepCtx(ctx context.Context, d time.Duration) {
	t := time.NewTimer(d)
	defer t.Stop()
	select {
	case <-t.C:
	case <-ctx.Done():
	}
}

// runTraffic sends requests for d, closed- or open-loop, then waits up to
// Timeout for the outstanding responses.
func (r *runner) runTraffic(ctx context.Context, d time.Duration) error {
	start := r.now()
	end := start + int64(d)
	r.traffic.Store(true)
	if r.cfg.RPS > 0 {
		var wg sync.WaitGroup
		for s := range r.senders {
			wg.Add(1)
			go func() {
				defer wg.Done()
				sd := &sender{r: r, shard: s}
				for i := s; i < len(r.conns); i += r.senders {
					sd.conns = append(sd.conns, &r.conns[i])
				}
				p := newPacer(start, r.cfg.RPS, s, r.senders)
				pace(ctx, newRealClock(r.t0), p, end, int64(r.cfg.Timeout), sd.send,
					func(n int64) { r.errs[KindUnsent].Add(n) })
			}()
		}
		wg.Wait()
	} else {
		r.closedLoop.Store(true)
		now := r.now()
		for i := range r.conns {
			cs := &r.conns[i]
			cs.mu.Lock()
			if cs.q.len() == 0 { // else it opened just now and has started
				r.sendLocked(cs, r.cfg.Inflight, now, nil)
			}
			cs.mu.Unlock()
		}
		sleepCtx(ctx, time.Duration(end-r.now()))
		r.closedLoop.Store(false)
	}
	r.traffic.Store(false)
	r.tickMu.Lock()
	r.trafficSecs = float64(min(r.now(), max(end, start))-start) / 1e9
	r.tickMu.Unlock()
	// Wait for what is still outstanding: every request is answered or,
	// by the sweep, timed out.
	deadline := time.Now().Add(r.cfg.Timeout + 2*sweepInterval)
	for r.outstanding.Load() > 0 && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(2 * time.Millisecond)
	}
	return ctx.Err()
}

// sender is one open-loop shard: it owns every senders-th connection.
type sender struct {
	r     *runner
	shard int
	conns []*conn
	rr    int
}

// send hands requests, oldest first, to the next connections with room
// for them, trying a bounded number of connections; a connection with room
// for several takes several, in one write. It returns how many it placed.
func (sd *sender) send(dues []int64) int {
	n := len(sd.conns)
	placed := 0
	for range min(n, 256) {
		cs := sd.conns[sd.rr]
		sd.rr++
		if sd.rr == n {
			sd.rr = 0
		}
		cs.mu.Lock()
		room := min(sd.r.cfg.Inflight-cs.q.len(), len(dues)-placed)
		if room > 0 && sd.r.sendLocked(cs, room, 0, dues[placed:placed+room]) {
			placed += room
		}
		cs.mu.Unlock()
		if placed == len(dues) {
			break
		}
	}
	return placed
}

// sweepInterval is how often housekeep looks for timed-out requests.
const sweepInterval = 100 * time.Millisecond

// housekeep times out handshakes and requests.
func (r *runner) housekeep() {
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
		for i := range r.conns {
			cs := &r.conns[i]
			cs.mu.Lock()
			late := cs.state == csOpen && cs.q.len() > 0 && now-cs.q.front() > limit
			if late && cs.ec != nil {
				r.failLocked(cs, KindTimeout)
				cs.ec.Abort(engine.ReasonReadTimeout)
			}
			cs.mu.Unlock()
		}
	}
}

// finish stops everything, closes the connections and returns the
// process's report (without server usage or timeline).
func (r *runner) finish() *Report {
	r.finished.Store(true)
	close(r.stop)
	r.wg.Wait()
	r.eng.Close()
	t := r.collect()
	r.tickMu.Lock()
	if r.stash != nil {
		r.stash.add(&t)
	} else {
		r.stash = &t
	}
	rep := &Report{
		URL:             r.cfg.URL,
		Protocol:        "http",
		Procs:           1,
		Start:           r.start.Round(0).UTC(),
		ConnsAsked:      r.cfg.Conns,
		Rate:            r.cfg.Rate,
		RPS:             r.cfg.RPS,
		Inflight:        r.cfg.Inflight,
		TimeoutS:        r.cfg.Timeout.Seconds(),
		ConnectAttempts: r.attempts.Load(),
		Connects:        r.connects.Load(),
		ConnsFailed:     r.failed.Load(),
		ConnsPeak:       r.peak.Load(),
		RampConnects:    r.rampConns.Load(),
		RampSeconds:     r.rampSeconds,
		HoldSeconds:     r.holdSecs,
		TrafficSeconds:  r.trafficSecs,
		Sent:            r.sent.Load(),
		Requests:        r.done.Load(),
		Unanswered:      r.unanswered.Load() + max(r.outstanding.Load(), 0),
		BytesIn:         r.bytesIn.Load(),
		BytesOut:        r.bytesOut.Load(),
		Errors:          map[string]int64{},
		LatencyHist:     &Histogram{},
		ConnectHist:     &Histogram{},
	}
	rep.LatencyHist.Merge(&r.totalLat)
	rep.ConnectHist.Merge(&r.totalConn)
	r.tickMu.Unlock()
	rep.Mode = modeOf(r.cfg)
	if r.tgt.ws {
		rep.Protocol, rep.MsgSize = "websocket", r.cfg.MsgSize
	}
	for k := range numKinds {
		if v := r.errs[k].Load(); v != 0 {
			rep.Errors[k.String()] = v
		}
	}
	rep.finalize()
	return rep
}

func modeOf(cfg Config) string {
	switch {
	case cfg.Duration <= 0:
		return "idle"
	case cfg.RPS > 0:
		return "open-loop"
	}
	return "closed-loop"
}

// tick is one interval's worth of counters, as a worker sends it.
type tick struct {
	Open     int64      `json:"open"`
	Connects int64      `json:"connects"`
	Sent     int64      `json:"sent"`
	Done     int64      `json:"done"`
	Errors   int64      `json:"errors"`
	Lat      *Histogram `json:"lat,omitempty"`
}

// add adds o's deltas to t and takes o's gauge.
func (t *tick) add(o *tick) {
	t.Open = o.Open
	t.Connects += o.Connects
	t.Sent += o.Sent
	t.Done += o.Done
	t.Errors += o.Errors
	if o.Lat != nil && o.Lat.Count() > 0 {
		if t.Lat == nil {
			t.Lat = &Histogram{}
		}
		t.Lat.Merge(o.Lat)
	}
}

// tick returns the counters since the previous call.
func (r *runner) tick() tick {
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

// collect folds the shards' interval histograms into the totals and
// returns the interval since the last collect.
func (r *runner) collect() tick {
	var errs int64
	for k := range numKinds {
		errs += r.errs[k].Load()
	}
	now := tick{Open: r.open.Load(), Connects: r.connects.Load(), Sent: r.sent.Load(), Done: r.done.Load(),
		Errors: errs}
	lat := &Histogram{}
	r.tickMu.Lock()
	defer r.tickMu.Unlock()
	for i := range r.shards {
		sh := &r.shards[i]
		sh.mu.Lock()
		lat.Merge(&sh.lat)
		r.totalConn.Merge(&sh.connect)
		sh.lat.Reset()
		sh.connect.Reset()
		sh.mu.Unlock()
	}
	r.totalLat.Merge(lat)
	d := tick{Open: now.Open, Connects: now.Connects - r.last.Connects, Sent: now.Sent - r.last.Sent,
		Done: now.Done - r.last.Done, Errors: now.Errors - r.last.Errors, Lat: lat}
	r.last = now
	return d
}
