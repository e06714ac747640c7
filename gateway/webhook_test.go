package gateway

import (
	"encoding/json"
	"io"
	"net/http"
	"net/http/httptest"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
	"github.com/warrenhq/warren/upstream"
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
	testutil.Eventually(t, 5*time.Second, "the webhook to settle", func() bool { return len(w.q) == 0 || w.dropped.Load() > 0 })
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

// TestWebhookURL: only http://host[:port]/path endpoints are accepted.
func TestWebhookURL(t *testing.T) {
	e := testutil.StartEngine(t, engine.Config{Logger: quietLog()})
	for _, u := range []string{"", "ftp://x/", "http://", "https://example.com/hook", "::"} {
		if w, err := newWebhook(e, "n", WebhookConfig{URL: u}); err == nil {
			w.close()
			t.Errorf("URL %q accepted", u)
		}
	}
}
