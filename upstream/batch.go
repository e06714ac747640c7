package upstream

import (
	"sync"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/http1"
)

// BatcherConfig bounds a Batcher's batches. The zero value gives the
// defaults.
type BatcherConfig struct {
	// MaxCount closes a batch at this many messages. Zero means 128.
	MaxCount int
	// MaxBytes closes a batch once its messages reach this many bytes.
	// Zero means 1 MiB.
	MaxBytes int
	// MaxDelay closes a batch this long after its first message. Zero
	// means 50ms.
	MaxDelay time.Duration
}

// Defaults of BatcherConfig.
const (
	DefaultBatchCount = 128
	DefaultBatchBytes = 1 << 20
	DefaultBatchDelay = 50 * time.Millisecond
)

func (c BatcherConfig) withDefaults() BatcherConfig {
	if c.MaxCount <= 0 {
		c.MaxCount = DefaultBatchCount
	}
	if c.MaxBytes <= 0 {
		c.MaxBytes = DefaultBatchBytes
	}
	if c.MaxDelay <= 0 {
		c.MaxDelay = DefaultBatchDelay
	}
	return c
}

// Batch is a closed batch of messages, in the order added.
type Batch struct {
	Messages [][]byte
	Bytes    int
	// Why says which bound closed it: "count", "bytes", "time" or "flush".
	Why string
}

// Batcher groups messages into batches by count, bytes and time, with the
// time given as an argument: Add returns a batch when the message closes
// one by count or bytes; Due returns the open batch once MaxDelay has
// passed since its first message, and Deadline says when that is, for
// the caller's timer. It never blocks and starts no goroutine. It is safe
// for concurrent use.
type Batcher struct {
	cfg BatcherConfig

	mu    sync.Mutex
	cur   [][]byte
	bytes int
	first time.Time
}

// NewBatcher returns an empty Batcher.
func NewBatcher(cfg BatcherConfig) *Batcher { return &Batcher{cfg: cfg.withDefaults()} }

// Add appends msg (kept, not copied) at now. It returns the batch msg
// closed, if it reached MaxCount or MaxBytes.
func (b *Batcher) Add(msg []byte, now time.Time) (Batch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cur) == 0 {
		b.first = now
	}
	b.cur = append(b.cur, msg)
	b.bytes += len(msg)
	switch {
	case len(b.cur) >= b.cfg.MaxCount:
		return b.takeLocked("count"), true
	case b.bytes >= b.cfg.MaxBytes:
		return b.takeLocked("bytes"), true
	}
	return Batch{}, false
}

// Due returns the open batch if MaxDelay has passed since its first
// message at now.
func (b *Batcher) Due(now time.Time) (Batch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cur) == 0 || now.Sub(b.first) < b.cfg.MaxDelay {
		return Batch{}, false
	}
	return b.takeLocked("time"), true
}

// Deadline returns when the open batch is due, and false when none is
// open.
func (b *Batcher) Deadline() (time.Time, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cur) == 0 {
		return time.Time{}, false
	}
	return b.first.Add(b.cfg.MaxDelay), true
}

// Flush returns the open batch, whatever its size and age.
func (b *Batcher) Flush() (Batch, bool) {
	b.mu.Lock()
	defer b.mu.Unlock()
	if len(b.cur) == 0 {
		return Batch{}, false
	}
	return b.takeLocked("flush"), true
}

// Len returns the messages in the open batch.
func (b *Batcher) Len() int {
	b.mu.Lock()
	defer b.mu.Unlock()
	return len(b.cur)
}

func (b *Batcher) takeLocked(why string) Batch {
	bt := Batch{Messages: b.cur, Bytes: b.bytes, Why: why}
	b.cur, b.bytes = nil, 0
	return bt
}

// SinkConfig configures an HTTPSink.
type SinkConfig struct {
	// Batch bounds the batches.
	Batch BatcherConfig
	// Method and Path of the requests. Zero means POST and "/".
	Method, Path string
	// Host is the Host header. Zero means the cluster's first host.
	Host string
	// ContentType of the body. Zero means "application/json".
	ContentType string
	// MaxInFlight caps the batches being delivered at once; a batch
	// closed while that many are in flight is dropped (counted), so a
	// slow endpoint costs bounded memory. Zero means 4.
	MaxInFlight int
	// Encode renders a batch as a request body. Nil means a JSON array of
	// the messages, each of which must be a JSON value.
	Encode func(b Batch) []byte
}

// SinkStats counts what an HTTPSink did: batches (and their messages)
// closed, delivered (2xx), failed (an error or another status after the
// cluster's retries: their messages are lost) and dropped (closed over
// MaxInFlight). Messages = DeliveredMessages + FailedMessages +
// DroppedMessages + those in batches still in flight.
type SinkStats struct {
	Batches, Messages, Delivered, Failed, Dropped, DroppedMessages uint64
	DeliveredMessages, FailedMessages                              uint64
}

// HTTPSink delivers messages to an HTTP endpoint through a Cluster in
// batches (count, bytes, time): the cluster's pools, breaker, retries
// and limits apply to every batch. Send never blocks; over MaxInFlight a
// batch is dropped and counted. A timer goroutine exists only while a
// batch is open.
type HTTPSink struct {
	c   *Cluster
	cfg SinkConfig
	b   *Batcher
	st  struct {
		batches, messages, delivered, failed, dropped, droppedMsgs atomic.Uint64
		deliveredMsgs, failedMsgs                                  atomic.Uint64
	}

	inFlight atomic.Int64
	mu       sync.Mutex // guards timer
	timer    *time.Timer
}

// NewHTTPSink returns a sink to c.
func NewHTTPSink(c *Cluster, cfg SinkConfig) *HTTPSink {
	if cfg.Method == "" {
		cfg.Method = "POST"
	}
	if cfg.Path == "" {
		cfg.Path = "/"
	}
	if cfg.Host == "" {
		cfg.Host = c.hosts[0].name
	}
	if cfg.ContentType == "" {
		cfg.ContentType = "application/json"
	}
	if cfg.MaxInFlight <= 0 {
		cfg.MaxInFlight = 4
	}
	if cfg.Encode == nil {
		cfg.Encode = jsonArray
	}
	return &HTTPSink{c: c, cfg: cfg, b: NewBatcher(cfg.Batch)}
}

// jsonArray joins JSON values into an array.
func jsonArray(b Batch) []byte {
	out := make([]byte, 0, b.Bytes+len(b.Messages)+2)
	out = append(out, '[')
	for i, m := range b.Messages {
		if i > 0 {
			out = append(out, ',')
		}
		out = append(out, m...)
	}
	return append(out, ']')
}

// Send adds msg to the open batch; it never blocks.
func (s *HTTPSink) Send(msg []byte) {
	now := s.c.now()
	if bt, ok := s.b.Add(msg, now); ok {
		s.deliver(bt)
		return
	}
	s.mu.Lock()
	if s.timer == nil {
		s.timer = time.AfterFunc(s.cfg.Batch.withDefaults().MaxDelay, s.onTimer)
	}
	s.mu.Unlock()
}

func (s *HTTPSink) onTimer() {
	s.mu.Lock()
	s.timer = nil
	s.mu.Unlock()
	now := s.c.now()
	if bt, ok := s.b.Due(now); ok {
		s.deliver(bt)
	} else if dl, ok := s.b.Deadline(); ok {
		s.mu.Lock()
		if s.timer == nil {
			s.timer = time.AfterFunc(max(dl.Sub(now), time.Millisecond), s.onTimer)
		}
		s.mu.Unlock()
	}
}

// Flush delivers the open batch now.
func (s *HTTPSink) Flush() {
	if bt, ok := s.b.Flush(); ok {
		s.deliver(bt)
	}
}

// Stats returns the sink's counters.
func (s *HTTPSink) Stats() SinkStats {
	return SinkStats{Batches: s.st.batches.Load(), Messages: s.st.messages.Load(), Delivered: s.st.delivered.Load(),
		Failed: s.st.failed.Load(), Dropped: s.st.dropped.Load(), DroppedMessages: s.st.droppedMsgs.Load(),
		DeliveredMessages: s.st.deliveredMsgs.Load(), FailedMessages: s.st.failedMsgs.Load()}
}

// InFlight returns the batches being delivered.
func (s *HTTPSink) InFlight() int { return int(s.inFlight.Load()) }

func (s *HTTPSink) deliver(bt Batch) {
	s.st.batches.Add(1)
	s.st.messages.Add(uint64(len(bt.Messages)))
	if s.inFlight.Add(1) > int64(s.cfg.MaxInFlight) {
		s.inFlight.Add(-1)
		s.st.dropped.Add(1)
		s.st.droppedMsgs.Add(uint64(len(bt.Messages)))
		return
	}
	body := s.cfg.Encode(bt)
	head := AppendRequestHead(nil, s.cfg.Method, s.cfg.Path, s.cfg.Host,
		[]string{"Content-Type", s.cfg.ContentType}, int64(len(body)), false)
	s.c.Do(&Request{Method: s.cfg.Method, Head: head, Body: body, Idempotent: 1, Handler: &sinkHandler{s: s, n: uint64(len(bt.Messages))}})
}

// sinkHandler receives a batch's response.
type sinkHandler struct {
	s *HTTPSink
	n uint64 // the batch's messages
}

// OnResponse ignores the head; the status is read in OnDone.
func (h *sinkHandler) OnResponse(x *Exchange, resp *http1.Response) {}

// OnBody discards the response body.
func (h *sinkHandler) OnBody(x *Exchange, data []byte) {}

// OnDone counts the batch, and its messages, delivered (2xx) or failed.
func (h *sinkHandler) OnDone(x *Exchange, err error) {
	s := h.s
	s.inFlight.Add(-1)
	if err == nil && x.Status() >= 200 && x.Status() < 300 {
		s.st.delivered.Add(1)
		s.st.deliveredMsgs.Add(h.n)
	} else {
		s.st.failed.Add(1)
		s.st.failedMsgs.Add(h.n)
	}
}
