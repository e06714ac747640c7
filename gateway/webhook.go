package gateway

import (
	"encoding/base64"
	"encoding/json"
	"fmt"
	"net/url"
	"sync"
	"sync/atomic"
	"time"
	"unicode/utf8"

	"github.com/prometheus/client_golang/prometheus"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/upstream"
	"github.com/warrenhq/warren/upstream/upstreamtls"
)

// WebhookConfig configures the telemetry webhook: every telemetry message
// a device sends is also delivered, in JSON batches, to an HTTP endpoint
// (POST, Content-Type application/json, the body a JSON array of
// WebhookMessage). The NATS path never waits for it: a message is offered
// to a bounded queue and dropped (counted, reason queue_full) when the
// queue is at its messages, or queue_bytes_full at its bytes; a batch closed while MaxInFlight batches are being
// delivered is dropped too (reason in_flight).
type WebhookConfig struct {
	// URL is the endpoint, http://host:port/path or
	// https://host:port/path. Empty disables the webhook. An https
	// endpoint uses Cluster.DialTLS, or when it is nil TLS verified
	// against the system roots (upstreamtls.New with a zero Config).
	URL string
	// Queue bounds the messages waiting to be batched. Zero means
	// DefaultWebhookQueue.
	Queue int
	// QueueBytes bounds the bytes of the messages waiting to be batched,
	// as encoded (their JSON, a binary payload in base64). A message that
	// would pass it is dropped (reason queue_bytes_full), unless the
	// queue is empty. Zero means DefaultWebhookQueueBytes; negative means
	// no byte bound.
	QueueBytes int64
	// Batch bounds a batch by count, bytes and time (zero fields: 128
	// messages, 1 MiB, 50 ms).
	Batch upstream.BatcherConfig
	// MaxInFlight caps the batches being delivered at once. Zero means 4.
	MaxInFlight int
	// Cluster configures the endpoint's cluster (pools, breaker, retries,
	// timeouts); Hosts and Name are the webhook's, and its breaker counts
	// every 5xx answer as a failure (BreakerOn5xx): the endpoint is a
	// single route, so a 500 from it is the sink failing.
	Cluster upstream.ClusterConfig
}

// DefaultWebhookQueue is WebhookConfig.Queue's default.
const DefaultWebhookQueue = 10_000

// DefaultWebhookQueueBytes is WebhookConfig.QueueBytes's default: 64 MiB,
// the default queue's 10,000 messages at 6.5 KiB each.
const DefaultWebhookQueueBytes = 64 << 20

// WebhookMessage is one element of a webhook batch. Data is the device's
// telemetry exactly as sent when it is JSON (a text frame's data value, a
// binary frame or MQTT payload that is valid JSON); otherwise the payload
// is in DataBase64 (standard encoding) and Data is absent.
type WebhookMessage struct {
	Device     string          `json:"device"`
	Received   string          `json:"received"` // RFC 3339 with nanoseconds, UTC
	Node       string          `json:"node"`
	Data       json.RawMessage `json:"data,omitempty"`
	DataBase64 string          `json:"data_base64,omitempty"`
}

// webhook feeds telemetry to an upstream.HTTPSink from a bounded queue.
type webhook struct {
	node    string
	cl      *upstream.Cluster
	sink    *upstream.HTTPSink
	q       chan []byte
	done    chan struct{}
	exited  chan struct{}
	once    sync.Once
	queued  atomic.Uint64
	dropped atomic.Uint64
	// maxBytes bounds qbytes, the bytes (capacity) of the messages in q;
	// bytesDropped counts the messages it refused.
	maxBytes     int64
	qbytes       atomic.Int64
	bytesDropped atomic.Uint64
}

func newWebhook(eng *engine.Engine, node string, cfg WebhookConfig) (*webhook, error) {
	u, err := url.Parse(cfg.URL)
	if err != nil || u.Host == "" || (u.Scheme != "http" && u.Scheme != "https") {
		return nil, fmt.Errorf("gateway: webhook URL %q: want http://host:port/path or https://host:port/path", cfg.URL)
	}
	path := u.EscapedPath()
	if path == "" {
		path = "/"
	}
	if u.RawQuery != "" {
		path += "?" + u.RawQuery
	}
	cc := cfg.Cluster
	cc.Hosts = []string{u.Scheme + "://" + u.Host}
	cc.BreakerOn5xx = true
	if cc.Name == "" {
		cc.Name = "webhook"
	}
	if u.Scheme == "https" && cc.DialTLS == nil {
		d, err := upstreamtls.New(upstreamtls.Config{})
		if err != nil {
			return nil, fmt.Errorf("gateway: webhook: %w", err)
		}
		cc.DialTLS = d.Handler
	}
	cl, err := upstream.NewCluster(eng, cc)
	if err != nil {
		return nil, fmt.Errorf("gateway: webhook: %w", err)
	}
	if cfg.Queue <= 0 {
		cfg.Queue = DefaultWebhookQueue
	}
	if cfg.QueueBytes == 0 {
		cfg.QueueBytes = DefaultWebhookQueueBytes
	}
	w := &webhook{node: node, cl: cl, q: make(chan []byte, cfg.Queue), done: make(chan struct{}), exited: make(chan struct{}),
		maxBytes: cfg.QueueBytes,
		sink:     upstream.NewHTTPSink(cl, upstream.SinkConfig{Batch: cfg.Batch, Path: path, Host: u.Host, MaxInFlight: cfg.MaxInFlight})}
	go w.run()
	return w, nil
}

// offer encodes a telemetry message and queues it without blocking; it
// runs on the loops (data is not kept).
func (w *webhook) offer(device string, data []byte, now time.Time) {
	if len(w.q) == cap(w.q) {
		w.dropped.Add(1)
		return
	}
	est := len(device) + len(w.node) + len(data)*4/3 + 96
	if w.maxBytes > 0 {
		if q := w.qbytes.Load(); q > 0 && q+int64(est) > w.maxBytes {
			w.bytesDropped.Add(1) // before it is encoded
			return
		}
	}
	b := appendWebhookMessage(make([]byte, 0, est), device, w.node, data, now)
	n := int64(cap(b))
	if v := w.qbytes.Add(n); w.maxBytes > 0 && v > w.maxBytes && v != n {
		w.qbytes.Add(-n)
		w.bytesDropped.Add(1)
		return
	}
	select {
	case w.q <- b:
		w.queued.Add(1)
	default:
		w.qbytes.Add(-n)
		w.dropped.Add(1)
	}
}

// send hands a queued message to the sink.
func (w *webhook) send(m []byte) {
	w.qbytes.Add(-int64(cap(m)))
	w.sink.Send(m)
}

// appendWebhookMessage appends the JSON of a WebhookMessage to b: data
// as it is when it is valid JSON, else base64 in data_base64.
func appendWebhookMessage(b []byte, device, node string, data []byte, now time.Time) []byte {
	b = append(b, `{"device":`...)
	b = appendJSONString(b, device)
	b = append(b, `,"received":"`...)
	b = now.UTC().AppendFormat(b, time.RFC3339Nano)
	b = append(b, `","node":`...)
	b = appendJSONString(b, node)
	if json.Valid(data) {
		b = append(b, `,"data":`...)
		b = append(b, data...)
	} else {
		b = append(b, `,"data_base64":"`...)
		b = base64.StdEncoding.AppendEncode(b, data)
		b = append(b, '"')
	}
	return append(b, '}')
}

// appendJSONString appends s as a JSON string: quotes, backslashes and
// control characters escaped, invalid UTF-8 replaced by U+FFFD.
func appendJSONString(b []byte, s string) []byte {
	const hex = "0123456789abcdef"
	b = append(b, '"')
	for i := 0; i < len(s); {
		c := s[i]
		if c < utf8.RuneSelf {
			switch {
			case c == '"' || c == '\\':
				b = append(b, '\\', c)
			case c < 0x20:
				b = append(b, '\\', 'u', '0', '0', hex[c>>4], hex[c&0xf])
			default:
				b = append(b, c)
			}
			i++
			continue
		}
		r, size := utf8.DecodeRuneInString(s[i:])
		if r == utf8.RuneError && size == 1 {
			b = utf8.AppendRune(b, utf8.RuneError)
		} else {
			b = append(b, s[i:i+size]...)
		}
		i += size
	}
	return append(b, '"')
}

func (w *webhook) run() {
	defer close(w.exited)
	for {
		select {
		case m := <-w.q:
			w.send(m)
		case <-w.done:
			for {
				select {
				case m := <-w.q:
					w.send(m)
				default:
					w.sink.Flush()
					return
				}
			}
		}
	}
}

// close hands what is queued to the sink (delivered if the engine still
// runs: best effort), stops, and closes the cluster.
func (w *webhook) close() {
	w.once.Do(func() {
		close(w.done)
		<-w.exited
		w.cl.Close()
	})
}

func (w *webhook) collectors() []prometheus.Collector {
	return []prometheus.Collector{(*webhookCollector)(w), uncheckedCollector{w.cl.Collector("")}}
}

// uncheckedCollector describes nothing, so the webhook cluster's
// warren_upstream_* series (cluster="webhook") join those of the
// -upstream cluster in the same registry without a duplicate description.
type uncheckedCollector struct{ prometheus.Collector }

func (uncheckedCollector) Describe(chan<- *prometheus.Desc) {}

type webhookCollector webhook

var (
	webhookMsgDesc = prometheus.NewDesc("warren_gateway_webhook_messages_total",
		"Telemetry messages offered to the webhook: queued, delivered (their batch answered 2xx), dropped (reason queue_full: the queue was at -webhook-queue messages; queue_bytes_full: at -webhook-queue-bytes bytes; in_flight: their batch was closed while -webhook-max-in-flight batches were being delivered; delivery_failed: their batch failed after the cluster's retries).",
		[]string{"result", "reason"}, nil)
	webhookBatchDesc = prometheus.NewDesc("warren_gateway_webhook_batches_total",
		"Webhook batches by result: delivered (2xx), failed (error or other status after retries), dropped (in_flight).",
		[]string{"result"}, nil)
	webhookQueueDesc = prometheus.NewDesc("warren_gateway_webhook_queue",
		"Telemetry messages waiting to be batched for the webhook.", nil, nil)
	webhookQueueBytesDesc = prometheus.NewDesc("warren_gateway_webhook_queue_bytes",
		"Bytes of the telemetry messages waiting to be batched for the webhook, as encoded (up to -webhook-queue-bytes).", nil, nil)
)

func (c *webhookCollector) Describe(ch chan<- *prometheus.Desc) {
	ch <- webhookMsgDesc
	ch <- webhookBatchDesc
	ch <- webhookQueueDesc
	ch <- webhookQueueBytesDesc
}

func (c *webhookCollector) Collect(ch chan<- prometheus.Metric) {
	st := c.sink.Stats()
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(c.queued.Load()), "queued", "")
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(c.dropped.Load()), "dropped", "queue_full")
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(c.bytesDropped.Load()), "dropped", "queue_bytes_full")
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(st.DroppedMessages), "dropped", "in_flight")
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(st.FailedMessages), "dropped", "delivery_failed")
	ch <- prometheus.MustNewConstMetric(webhookMsgDesc, prometheus.CounterValue, float64(st.DeliveredMessages), "delivered", "")
	ch <- prometheus.MustNewConstMetric(webhookBatchDesc, prometheus.CounterValue, float64(st.Delivered), "delivered")
	ch <- prometheus.MustNewConstMetric(webhookBatchDesc, prometheus.CounterValue, float64(st.Failed), "failed")
	ch <- prometheus.MustNewConstMetric(webhookBatchDesc, prometheus.CounterValue, float64(st.Dropped), "dropped")
	ch <- prometheus.MustNewConstMetric(webhookQueueDesc, prometheus.GaugeValue, float64(len(c.q)))
	ch <- prometheus.MustNewConstMetric(webhookQueueBytesDesc, prometheus.GaugeValue, float64(c.qbytes.Load()))
}
