package loadgen

import (
	"context"
	"crypto/tls"
	"encoding/binary"
	"errors"
	"fmt"
	"net"
	"net/url"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenhq/warren/mqtt"
)

// MQTT load (-url mqtt://host:port/prefix?qos=N, or mqtts:// over TLS with
// ALPN "mqtt", Config.CAFile or Insecure, and CertFile/KeyFile as the
// client certificate; its byte counts are the MQTT bytes, before TLS):
// every connection is an
// MQTT 3.1.1 client (client id warren-load-<i>, clean session, no
// keep-alive) subscribed at QoS N (0, 1 or 2; 0 by default) to a topic of
// its own, <prefix>/<i> ("load/<i>" without a path). The traffic publishes
// MsgSize-byte messages to that topic at QoS N, and a message's latency
// runs from its send (closed loop: Inflight outstanding per connection) or
// from when it was due (open loop, RPS) until the broker delivers it back
// to the same client; the QoS 1 and 2 acknowledgements flow both ways. A
// "request" of the report is such a round trip. Each connection has a
// reader and a writer goroutine: this mode measures brokers, it does not
// aim at the hundreds of thousands of connections of the HTTP and
// WebSocket modes, and it runs in one process (Procs must be 1).

// mqttTarget is an mqtt:// or mqtts:// URL parsed.
type mqttTarget struct {
	addr   string
	host   string // for the TLS handshake
	tls    bool   // mqtts://
	prefix string
	qos    mqtt.QoS
}

func parseMQTTTarget(raw string) (mqttTarget, error) {
	u, err := url.Parse(raw)
	if err != nil || (u.Scheme != "mqtt" && u.Scheme != "mqtts") || u.Hostname() == "" {
		return mqttTarget{}, fmt.Errorf("%w: %q (want mqtt(s)://host:port/prefix?qos=N)", ErrBadURL, raw)
	}
	port := u.Port()
	switch {
	case port != "":
	case u.Scheme == "mqtts":
		port = "8883"
	default:
		port = "1883"
	}
	t := mqttTarget{addr: net.JoinHostPort(u.Hostname(), port), host: u.Hostname(), tls: u.Scheme == "mqtts",
		prefix: strings.Trim(u.Path, "/")}
	if t.prefix == "" {
		t.prefix = "load"
	}
	if !mqtt.ValidTopicName(t.prefix) {
		return mqttTarget{}, fmt.Errorf("%w: topic prefix %q", ErrBadURL, t.prefix)
	}
	if q := u.Query().Get("qos"); q != "" {
		n, err := strconv.Atoi(q)
		if err != nil || n < 0 || n > 2 {
			return mqttTarget{}, fmt.Errorf("%w: qos %q", ErrBadURL, q)
		}
		t.qos = mqtt.QoS(n)
	}
	return t, nil
}

// mqttLoad is the backend of the MQTT mode.
type mqttLoad struct {
	cfg   Config
	tgt   mqttTarget
	tlsc  *tls.Config // mqtts://: the client's TLS settings (ALPN "mqtt")
	t0    time.Time
	conns []*mqttConn

	attempts, connects, failed, open, peak atomic.Int64
	sent, done, bytesIn, bytesOut          atomic.Int64
	errs                                   [numKinds]atomic.Int64
	sending, finished                      atomic.Bool

	// mu guards the histograms and the previous tick.
	mu          sync.Mutex
	lat, conn   Histogram // since the last tick
	totalLat    Histogram
	totalConn   Histogram
	last        tick
	rampSecs    float64
	holdSecs    float64
	trafficSecs float64
	rampConns   int64
}

// mqttConn is one client connection.
type mqttConn struct {
	l     *mqttLoad
	i     int
	c     net.Conn
	topic []byte
	wmu   sync.Mutex // orders writes of the writer and the reader (acks)
	slots chan struct{}
	pid   uint16
	gone  atomic.Bool
}

func newMQTTLoad(cfg Config) (*mqttLoad, error) {
	tgt, err := parseMQTTTarget(cfg.URL)
	if err != nil {
		return nil, err
	}
	if cfg.Procs > 1 {
		return nil, fmt.Errorf("loadgen: the MQTT mode runs in one process (Procs %d)", cfg.Procs)
	}
	l := &mqttLoad{cfg: cfg, tgt: tgt, t0: time.Now()}
	if tgt.tls {
		if l.tlsc, err = clientTLSConfig(cfg, tgt.host, []string{"mqtt"}); err != nil {
			return nil, err
		}
	}
	return l, nil
}

func (l *mqttLoad) fail(k ErrorKind) { l.errs[k].Add(1) }

// ramp connects and subscribes every client, at cfg.Rate per second.
func (l *mqttLoad) ramp(ctx context.Context) (int64, error) {
	start := time.Now()
	sem := make(chan struct{}, maxConnecting)
	var wg sync.WaitGroup
	var mu sync.Mutex
	var gap time.Duration
	if l.cfg.Rate > 0 {
		gap = time.Duration(float64(time.Second) / l.cfg.Rate)
	}
	for i := 0; i < l.cfg.Conns && ctx.Err() == nil; i++ {
		if gap > 0 {
			if d := time.Until(start.Add(time.Duration(i) * gap)); d > 0 {
				time.Sleep(d)
			}
		}
		sem <- struct{}{}
		wg.Add(1)
		go func(i int) {
			defer func() { <-sem; wg.Done() }()
			if c := l.dial(ctx, i); c != nil {
				mu.Lock()
				l.conns = append(l.conns, c)
				mu.Unlock()
			}
		}(i)
	}
	wg.Wait()
	l.mu.Lock()
	l.rampSecs = time.Since(start).Seconds()
	l.rampConns = l.connects.Load()
	l.mu.Unlock()
	return l.open.Load(), ctx.Err()
}

// dial opens connection i: CONNECT, SUBSCRIBE, and its reader.
func (l *mqttLoad) dial(ctx context.Context, i int) *mqttConn {
	l.attempts.Add(1)
	d := net.Dialer{Timeout: l.cfg.Timeout}
	if src := l.cfg.Sources; len(src) > 0 {
		d.LocalAddr = &net.TCPAddr{IP: src[i%len(src)].AsSlice()}
	}
	start := time.Now()
	c, err := d.DialContext(ctx, "tcp", l.tgt.addr)
	if err != nil {
		l.failed.Add(1)
		switch {
		case errors.Is(err, syscall.ECONNREFUSED):
			l.fail(KindConnectRefused)
		case errors.Is(err, context.DeadlineExceeded) || isTimeout(err):
			l.fail(KindConnectTimeout)
		default:
			l.fail(KindConnect)
		}
		return nil
	}
	if l.tlsc != nil {
		// mqtts://: crypto/tls on this connection's goroutines, like the
		// rest of the MQTT mode; the handshake counts in the connect time.
		tc := tls.Client(c, l.tlsc)
		hctx, cancel := context.WithTimeout(ctx, l.cfg.Timeout)
		err := tc.HandshakeContext(hctx)
		cancel()
		if err != nil {
			if hctx.Err() != nil || isTimeout(err) {
				return l.dialFailed(c, KindConnectTimeout)
			}
			return l.dialFailed(c, KindConnect)
		}
		c = tc
	}
	mc := &mqttConn{l: l, i: i, c: c, topic: []byte(l.tgt.prefix + "/" + strconv.Itoa(i)),
		slots: make(chan struct{}, max(1, l.cfg.Inflight))}
	b := mqtt.AppendConnect(nil, &mqtt.Connect{Version: mqtt.Version311, CleanStart: true,
		ClientID: []byte("warren-load-" + strconv.Itoa(i))})
	b = mqtt.AppendSubscribe(b, mqtt.Version311, &mqtt.Subscribe{PacketID: 1,
		Filters: []mqtt.Subscription{{Filter: mc.topic, QoS: l.tgt.qos}}})
	c.SetDeadline(time.Now().Add(l.cfg.Timeout))
	if _, err := c.Write(b); err != nil {
		return l.dialFailed(c, KindIO)
	}
	l.bytesOut.Add(int64(len(b)))
	dec := mqtt.Decoder{Version: mqtt.Version311}
	var buf []byte
	tmp := make([]byte, 512)
	for acked := false; !acked; {
		n, p, err := dec.Decode(buf, nil)
		switch {
		case err != nil:
			return l.dialFailed(c, KindProtocol)
		case n == 0:
			k, err := c.Read(tmp)
			if err != nil {
				if isTimeout(err) {
					return l.dialFailed(c, KindConnectTimeout)
				}
				return l.dialFailed(c, KindConnect)
			}
			l.bytesIn.Add(int64(k))
			buf = append(buf, tmp[:k]...)
			continue
		}
		buf = buf[n:]
		switch p := p.(type) {
		case *mqtt.Connack:
			if p.ReasonCode != mqtt.Success {
				return l.dialFailed(c, KindBadStatus)
			}
		case *mqtt.Suback:
			if len(p.ReasonCodes) != 1 || p.ReasonCodes[0].IsError() {
				return l.dialFailed(c, KindBadStatus)
			}
			acked = true
		}
	}
	c.SetDeadline(time.Time{})
	l.connects.Add(1)
	if n := l.open.Add(1); n > l.peak.Load() {
		l.peak.Store(n) // approximate under races: a lower bound of the peak
	}
	l.mu.Lock()
	l.conn.Record(time.Since(start))
	l.mu.Unlock()
	go mc.read(buf)
	return mc
}

func (l *mqttLoad) dialFailed(c net.Conn, k ErrorKind) *mqttConn {
	c.Close()
	l.failed.Add(1)
	l.fail(k)
	return nil
}

func isTimeout(err error) bool {
	var ne net.Error
	return errors.As(err, &ne) && ne.Timeout()
}

// read handles what the broker sends: the client's own messages coming
// back (a round trip done) and acknowledgements.
func (mc *mqttConn) read(buf []byte) {
	l := mc.l
	dec := mqtt.Decoder{Version: mqtt.Version311}
	rb := append(make([]byte, 0, 16<<10), buf...)
	var out []byte
	defer func() {
		if !mc.gone.Swap(true) {
			l.open.Add(-1)
			if !l.finished.Load() {
				l.fail(KindClosed) // the broker closed it
			}
		}
	}()
	for {
		out = out[:0]
		off := 0
		for {
			n, p, err := dec.Decode(rb[off:], nil)
			if err != nil {
				l.fail(KindProtocol)
				mc.c.Close()
				return
			}
			if n == 0 {
				break
			}
			off += n
			switch p := p.(type) {
			case *mqtt.Publish:
				if len(p.Payload) >= 8 {
					sentAt := time.Duration(binary.BigEndian.Uint64(p.Payload))
					l.mu.Lock()
					l.lat.Record(time.Since(l.t0) - sentAt)
					l.mu.Unlock()
				}
				l.done.Add(1)
				select {
				case <-mc.slots:
				default:
				}
				switch p.QoS {
				case mqtt.QoS1:
					out = mqtt.AppendPuback(out, mqtt.Version311, p.PacketID, mqtt.Success)
				case mqtt.QoS2:
					out = mqtt.AppendPubrec(out, mqtt.Version311, p.PacketID, mqtt.Success)
				}
			case *mqtt.Ack:
				if p.Kind == mqtt.TypePubrec {
					out = mqtt.AppendPubrel(out, mqtt.Version311, p.PacketID, mqtt.Success)
				} else if p.Kind == mqtt.TypePubrel {
					out = mqtt.AppendPubcomp(out, mqtt.Version311, p.PacketID, mqtt.Success)
				}
			}
		}
		if len(out) > 0 {
			mc.wmu.Lock()
			_, err := mc.c.Write(out)
			mc.wmu.Unlock()
			if err != nil {
				return
			}
			l.bytesOut.Add(int64(len(out)))
		}
		rb = rb[:copy(rb, rb[off:])]
		if len(rb) == cap(rb) {
			rb = append(rb, make([]byte, len(rb))...)[:len(rb)]
		}
		k, err := mc.c.Read(rb[len(rb):cap(rb)])
		if err != nil {
			return
		}
		l.bytesIn.Add(int64(k))
		rb = rb[:len(rb)+k]
	}
}

func (l *mqttLoad) hold(ctx context.Context, d time.Duration) error {
	start := time.Now()
	defer func() {
		l.mu.Lock()
		l.holdSecs = time.Since(start).Seconds()
		l.mu.Unlock()
	}()
	select {
	case <-ctx.Done():
		return ctx.Err()
	case <-time.After(d):
		return nil
	}
}

// traffic publishes for d: closed loop (Inflight outstanding per
// connection) or open loop at RPS in total.
func (l *mqttLoad) traffic(ctx context.Context, d time.Duration) error {
	start := time.Now()
	end := start.Add(d)
	l.sending.Store(true)
	var wg sync.WaitGroup
	for _, mc := range l.conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			mc.send(ctx, end)
		}()
	}
	wg.Wait()
	// Wait for what is outstanding, within the timeout.
	deadline := time.Now().Add(l.cfg.Timeout)
	for l.done.Load() < l.sent.Load() && time.Now().Before(deadline) && ctx.Err() == nil {
		time.Sleep(10 * time.Millisecond)
	}
	l.sending.Store(false)
	l.mu.Lock()
	l.trafficSecs = time.Since(start).Seconds()
	l.mu.Unlock()
	return ctx.Err()
}

// send publishes on one connection until end.
func (mc *mqttConn) send(ctx context.Context, end time.Time) {
	l := mc.l
	payload := make([]byte, max(8, l.cfg.MsgSize))
	var gap time.Duration
	if l.cfg.RPS > 0 {
		gap = time.Duration(float64(len(l.conns)) / l.cfg.RPS * float64(time.Second))
	}
	due := time.Now().Add(time.Duration(mc.i%1000) * gap / 1000)
	var b []byte
	for ctx.Err() == nil && !mc.gone.Load() {
		if gap > 0 {
			if time.Now().Before(due) {
				time.Sleep(time.Until(due))
			}
			if !due.Before(end) {
				return
			}
		} else if !time.Now().Before(end) {
			return
		}
		select {
		case mc.slots <- struct{}{}:
		case <-time.After(time.Until(end)):
			return
		}
		at := time.Since(l.t0)
		if gap > 0 {
			at = due.Sub(l.t0) // open loop: latency from when it was due
			due = due.Add(gap)
		}
		binary.BigEndian.PutUint64(payload, uint64(at))
		p := mqtt.Publish{Topic: mc.topic, QoS: l.tgt.qos, Payload: payload}
		if p.QoS > 0 {
			if mc.pid++; mc.pid == 0 {
				mc.pid = 1
			}
			p.PacketID = mc.pid
		}
		b = mqtt.AppendPublish(b[:0], mqtt.Version311, &p)
		mc.wmu.Lock()
		_, err := mc.c.Write(b)
		mc.wmu.Unlock()
		if err != nil {
			return
		}
		l.sent.Add(1)
		l.bytesOut.Add(int64(len(b)))
	}
}

// tick returns the counters since the previous call.
func (l *mqttLoad) tick() tick {
	l.mu.Lock()
	defer l.mu.Unlock()
	cur := tick{Open: l.open.Load(), Connects: l.connects.Load(), Sent: l.sent.Load(), Done: l.done.Load(),
		Errors: l.errorCount()}
	t := tick{Open: cur.Open, Connects: cur.Connects - l.last.Connects, Sent: cur.Sent - l.last.Sent,
		Done: cur.Done - l.last.Done, Errors: cur.Errors - l.last.Errors, Lat: &Histogram{}}
	t.Lat.Merge(&l.lat)
	l.totalLat.Merge(&l.lat)
	l.totalConn.Merge(&l.conn)
	l.lat.Reset()
	l.conn.Reset()
	l.last = cur
	return t
}

func (l *mqttLoad) errorCount() int64 {
	var n int64
	for k := range l.errs {
		n += l.errs[k].Load()
	}
	return n
}

// finish closes the connections and returns the report.
func (l *mqttLoad) finish() (*Report, error) {
	l.finished.Store(true)
	l.sending.Store(false)
	for _, mc := range l.conns {
		mc.gone.Store(true)
		mc.c.Close()
	}
	l.tick() // fold the last interval into the totals
	l.mu.Lock()
	defer l.mu.Unlock()
	rep := &Report{
		URL: l.cfg.URL, Protocol: "mqtt", Mode: modeOf(l.cfg), Procs: 1, Start: l.t0.Round(0).UTC(),
		ConnsAsked: l.cfg.Conns, Rate: l.cfg.Rate, RPS: l.cfg.RPS, Inflight: l.cfg.Inflight,
		MsgSize: max(8, l.cfg.MsgSize), TimeoutS: l.cfg.Timeout.Seconds(),
		ConnectAttempts: l.attempts.Load(), Connects: l.connects.Load(), ConnsFailed: l.failed.Load(),
		ConnsPeak: l.peak.Load(), RampConnects: l.rampConns, RampSeconds: l.rampSecs,
		HoldSeconds: l.holdSecs, TrafficSeconds: l.trafficSecs,
		Sent: l.sent.Load(), Requests: l.done.Load(), Unanswered: max(0, l.sent.Load()-l.done.Load()),
		BytesIn: l.bytesIn.Load(), BytesOut: l.bytesOut.Load(),
		Errors: map[string]int64{}, LatencyHist: &Histogram{}, ConnectHist: &Histogram{},
	}
	rep.LatencyHist.Merge(&l.totalLat)
	rep.ConnectHist.Merge(&l.totalConn)
	for k := range numKinds {
		if v := l.errs[k].Load(); v != 0 {
			rep.Errors[k.String()] = v
		}
	}
	rep.finalize()
	return rep, nil
}
