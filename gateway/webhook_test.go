package gateway

import (
	"bytes"
	"crypto/tls"
	"crypto/x509"
	"encoding/base64"
	"encoding/json"
	"io"
	"log/slog"
	"net/http"
	"net/http/httptest"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// TestWebhookBounds: a sink that does not answer costs bounded memory:
// messages past the queue, and batches past the in-flight bound, are
// dropped and counted, offer never blocks, and every message is either
// delivered, dropped or still queued (none lost uncounted). Once the sink
// answers, batches are delivered again.
func TestWebhookBounds(t *testing.T) {
	release := make(chan struct{})
	var mu sync.Mutex
	delivered := 0
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		<-release
		b, _ := io.ReadAll(r.Body)
		var msgs []WebhookMessage
		if err := json.Unmarshal(b, &msgs); err != nil {
			t.Errorf("batch %q: %v", b, err)
		}
		mu.Lock()
		delivered += len(msgs)
		mu.Unlock()
	}))
	defer sink.Close()
	var once sync.Once
	defer once.Do(func() { close(release) })

	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	w, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook", Queue: 8, MaxInFlight: 1,
		Batch: upstream.BatcherConfig{MaxCount: 2, MaxDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	const n = 2000
	start := time.Now()
	for range n {
		w.offer("dev-1", []byte(`{"t":1}`), time.Now())
	}
	if d := time.Since(start); d > 5*time.Second {
		t.Errorf("offering %d messages to a stuck sink took %v", n, d) // it must never wait on the sink
	}
	// The one batch in flight holds 2 messages, the queue 8, the open
	// batch at most 1: everything else is dropped.
	testutil.Eventually(t, 10*time.Second, "the webhook to settle", func() bool { return len(w.q) == 0 || w.dropped.Load() > 0 })
	st := w.sink.Stats()
	if w.queued.Load()+w.dropped.Load() != n {
		t.Errorf("queued %d + dropped %d != %d offered", w.queued.Load(), w.dropped.Load(), n)
	}
	if w.dropped.Load() == 0 && st.DroppedMessages == 0 {
		t.Errorf("nothing dropped with a stuck sink: queued %d, sink %+v", w.queued.Load(), st)
	}
	if got := st.Messages; got > n {
		t.Errorf("sink batched %d messages of %d", got, n)
	}
	once.Do(func() { close(release) })
	// New telemetry after the sink recovers is delivered.
	testutil.Eventually(t, 10*time.Second, "delivery after the sink answers", func() bool {
		w.offer("dev-1", []byte(`{"t":2}`), time.Now())
		return w.sink.Stats().Delivered >= 2
	})
	mu.Lock()
	defer mu.Unlock()
	if delivered == 0 {
		t.Error("no message reached the sink")
	}
}

// TestWebhookURL: only http:// and https://host[:port]/path endpoints are
// accepted.
func TestWebhookURL(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	for _, u := range []string{"", "ftp://x/", "http://", "https://", "::"} {
		if w, err := newWebhook(e, "n", WebhookConfig{URL: u}); err == nil {
			w.close()
			t.Errorf("URL %q accepted", u)
		}
	}
}

// FuzzWebhookMessage: whatever a device sends and whatever the node's
// name, a webhook element is valid JSON that decodes to the same device,
// node and data (the bytes as sent when they are JSON, else base64).
func FuzzWebhookMessage(f *testing.F) {
	f.Add("dev-1", "node-a", []byte(`{"t":21.5}`))
	f.Add("dev-1", "n\"ode\\\x00\x1f", []byte{0, 1, 2, 0xff})
	f.Add("d\xffev", "\u2028", []byte(`"str"`))
	f.Add("", "", []byte(""))
	f.Add("x", "y", []byte(`  [1, 2 ,3]  `))
	now := time.Date(2026, 12, 5, 0, 0, 0, 123456789, time.UTC)
	f.Fuzz(func(t *testing.T, device, node string, data []byte) {
		b := appendWebhookMessage(nil, device, node, data, now)
		if !json.Valid(b) {
			t.Fatalf("not JSON: %q", b)
		}
		var m WebhookMessage
		if err := json.Unmarshal(b, &m); err != nil {
			t.Fatalf("%q: %v", b, err)
		}
		if m.Device != validUTF8(device) || m.Node != validUTF8(node) {
			t.Fatalf("device %q node %q from %q %q", m.Device, m.Node, device, node)
		}
		if m.Received != "2026-12-05T00:00:00.123456789Z" {
			t.Fatalf("received %q", m.Received)
		}
		if json.Valid(data) {
			if !bytes.Equal(bytes.TrimSpace(m.Data), bytes.TrimSpace(data)) || m.DataBase64 != "" {
				t.Fatalf("data %q, want %q as sent", m.Data, data)
			}
		} else if got, err := base64.StdEncoding.DecodeString(m.DataBase64); err != nil || !bytes.Equal(got, data) || m.Data != nil {
			t.Fatalf("data_base64 %q (%v), want %q", m.DataBase64, err, data)
		}
	})
}

// validUTF8 replaces each byte of invalid UTF-8 in s by U+FFFD, as
// encoding/json does.
func validUTF8(s string) string {
	var b strings.Builder
	for _, r := range s {
		b.WriteRune(r)
	}
	return b.String()
}

// TestWebhookHTTPS: batches reach an https endpoint over TLS verified
// with the cluster's DialTLS.
func TestWebhookHTTPS(t *testing.T) {
	var got atomic.Int64
	sink := httptest.NewTLSServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		b, _ := io.ReadAll(r.Body)
		var msgs []WebhookMessage
		if r.TLS == nil || json.Unmarshal(b, &msgs) != nil {
			w.WriteHeader(400)
			return
		}
		got.Add(int64(len(msgs)))
	}))
	defer sink.Close()
	pool := x509.NewCertPool()
	pool.AddCert(sink.Certificate())
	d := upstreamtls.NewFromTLS(&tls.Config{RootCAs: pool}, upstreamtls.Config{})
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	w, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook",
		Batch: upstream.BatcherConfig{MaxCount: 4, MaxDelay: time.Millisecond}, Cluster: upstream.ClusterConfig{DialTLS: d.Handler}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	for range 10 {
		w.offer("dev-1", []byte(`{"t":1}`), time.Now())
	}
	testutil.Eventually(t, 10*time.Second, "10 messages delivered over TLS", func() bool { return got.Load() == 10 })
	if st := w.cl.Stats(); st.TLSHandshakes == 0 {
		t.Errorf("no TLS handshake counted: %+v", st)
	}
	// Without DialTLS the system roots do not know the test CA.
	w2, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook"})
	if err != nil {
		t.Fatal(err)
	}
	defer w2.close()
	w2.offer("dev-1", []byte(`{"t":1}`), time.Now())
	testutil.Eventually(t, 10*time.Second, "a failed handshake", func() bool { return w2.cl.Stats().TLSHandshakeFail > 0 })
}

// TestWebhookFailedCounted: with the endpoint answering 500, the messages
// of the batches that fail (after the cluster's retries) are counted as
// dropped with reason delivery_failed, and those delivered once it
// answers 2xx as delivered: every message queued is accounted for.
func TestWebhookFailedCounted(t *testing.T) {
	var fail atomic.Bool
	fail.Store(true)
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		if fail.Load() {
			w.WriteHeader(500)
		}
	}))
	defer sink.Close()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	w, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook",
		Batch: upstream.BatcherConfig{MaxCount: 5, MaxDelay: time.Millisecond}, MaxInFlight: 100,
		Cluster: upstream.ClusterConfig{BreakerOff: true}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	metric := func(result, reason string) float64 {
		reg := prometheus.NewRegistry()
		reg.MustRegister((*webhookCollector)(w))
		fams, err := reg.Gather()
		if err != nil {
			t.Fatal(err)
		}
		for _, f := range fams {
			if f.GetName() != "warren_gateway_webhook_messages_total" {
				continue
			}
			for _, m := range f.GetMetric() {
				var res, rsn string
				for _, l := range m.GetLabel() {
					switch l.GetName() {
					case "result":
						res = l.GetValue()
					case "reason":
						rsn = l.GetValue()
					}
				}
				if res == result && rsn == reason {
					return m.GetCounter().GetValue()
				}
			}
		}
		t.Fatalf("no messages_total{result=%q,reason=%q}", result, reason)
		return 0
	}
	for range 20 {
		w.offer("dev-1", []byte(`{"t":1}`), time.Now())
	}
	testutil.Eventually(t, 10*time.Second, "20 failed messages", func() bool { return metric("dropped", "delivery_failed") == 20 })
	fail.Store(false)
	for range 10 {
		w.offer("dev-1", []byte(`{"t":2}`), time.Now())
	}
	testutil.Eventually(t, 10*time.Second, "10 delivered messages", func() bool { return metric("delivered", "") == 10 })
	if q, f, d := metric("queued", ""), metric("dropped", "delivery_failed"), metric("delivered", ""); q != 30 || f != 20 || d != 10 {
		t.Fatalf("queued %v, failed %v, delivered %v", q, f, d)
	}
}

// TestWebhookLogsWithGatewayLogger: the webhook cluster's own logs (a
// dead endpoint ejected by outlier detection) go to Config.Logger, not
// to slog's default logger beside the gateway's.
func TestWebhookLogsWithGatewayLogger(t *testing.T) {
	var buf syncBuffer
	g := startMQTTGatewayWith(t, "n1", BusConfig{}, func(c *Config) {
		c.MQTT = ""
		c.Logger = slog.New(slog.NewTextHandler(&buf, nil))
		c.Webhook = WebhookConfig{URL: "http://" + testutil.RefusedAddr(t) + "/hook",
			Batch: upstream.BatcherConfig{MaxCount: 1}, MaxInFlight: 100}
	})
	testutil.Eventually(t, 10*time.Second, "the dead endpoint's ejection logged", func() bool {
		g.hook.offer("dev-1", []byte(`{"t":1}`), time.Now())
		return strings.Contains(buf.String(), "host ejected") && strings.Contains(buf.String(), "cluster=webhook")
	})
}

// TestWebhookQueueBytes: the webhook's queue holds at most QueueBytes of
// encoded messages; past it a message is dropped with reason
// queue_bytes_full, counted apart from queue_full; a message larger than
// the whole bound passes an empty queue; the queued bytes return to 0
// once the messages are delivered.
func TestWebhookQueueBytes(t *testing.T) {
	// The queue alone, nobody draining it: offer's accounting.
	data := []byte(strings.Repeat(`"x"`, 100)[:300])
	probe := appendWebhookMessage(make([]byte, 0, len("dev-1")+len("n1")+len(data)*4/3+96), "dev-1", "n1", data, time.Now())
	one := int64(cap(probe))
	w := &webhook{node: "n1", q: make(chan []byte, 100), maxBytes: 3 * one}
	for range 10 {
		w.offer("dev-1", data, time.Now())
	}
	if len(w.q) != 3 || w.bytesDropped.Load() != 7 || w.dropped.Load() != 0 || w.qbytes.Load() != 3*one {
		t.Fatalf("queued %d (%d bytes), %d queue_bytes_full, %d queue_full; want 3 (%d), 7, 0",
			len(w.q), w.qbytes.Load(), w.bytesDropped.Load(), w.dropped.Load(), 3*one)
	}
	big := &webhook{node: "n1", q: make(chan []byte, 100), maxBytes: 10}
	big.offer("dev-1", data, time.Now())
	big.offer("dev-1", data, time.Now())
	if len(big.q) != 1 || big.bytesDropped.Load() != 1 {
		t.Fatalf("a message over the whole bound: %d queued, %d dropped; want 1 (into the empty queue), 1", len(big.q), big.bytesDropped.Load())
	}

	// A real webhook: what it hands to the sink leaves the queue's bytes.
	sink := httptest.NewServer(http.HandlerFunc(func(rw http.ResponseWriter, r *http.Request) { io.Copy(io.Discard, r.Body) }))
	defer sink.Close()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	hw, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook", QueueBytes: 1 << 20,
		Batch: upstream.BatcherConfig{MaxCount: 4, MaxDelay: time.Millisecond}})
	if err != nil {
		t.Fatal(err)
	}
	defer hw.close()
	for range 20 {
		hw.offer("dev-1", data, time.Now())
	}
	testutil.Eventually(t, 10*time.Second, "20 handed to the sink and settled", func() bool {
		st := hw.sink.Stats()
		return st.DeliveredMessages+st.DroppedMessages == 20 // (a fifth batch may find four in flight)
	})
	if q := hw.qbytes.Load(); q != 0 || hw.bytesDropped.Load() != 0 {
		t.Fatalf("after delivery: %d bytes queued, %d dropped", q, hw.bytesDropped.Load())
	}
	reg := prometheus.NewRegistry()
	reg.MustRegister((*webhookCollector)(hw))
	mfs, err := reg.Gather()
	if err != nil {
		t.Fatal(err)
	}
	found := false
	for _, mf := range mfs {
		found = found || mf.GetName() == "warren_gateway_webhook_queue_bytes"
	}
	if !found {
		t.Fatal("no warren_gateway_webhook_queue_bytes")
	}
}

// TestWebhookBreakerCountsEvery5xx: the webhook's endpoint is one route,
// so its breaker counts a 500 as a failure (BreakerOn5xx), unlike a
// proxied cluster's: three batches answered 500 open it.
func TestWebhookBreakerCountsEvery5xx(t *testing.T) {
	sink := httptest.NewServer(http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		io.Copy(io.Discard, r.Body)
		w.WriteHeader(500)
	}))
	defer sink.Close()
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	w, err := newWebhook(e, "n1", WebhookConfig{URL: sink.URL + "/hook",
		Batch: upstream.BatcherConfig{MaxCount: 1}, MaxInFlight: 1,
		Cluster: upstream.ClusterConfig{OutlierOff: true, Breaker: upstream.BreakerConfig{ConsecutiveFailures: 3, FailureRatio: -1}}})
	if err != nil {
		t.Fatal(err)
	}
	defer w.close()
	testutil.Eventually(t, 10*time.Second, "the breaker open after batches answered 500", func() bool {
		w.offer("dev-1", []byte(`{"t":1}`), time.Now())
		return w.cl.Stats().BreakerState == "open"
	})
}
