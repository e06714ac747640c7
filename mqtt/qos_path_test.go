package mqtt

import (
	"sync"
	"testing"
	"time"
	"unsafe"
)

// newMsg copies a message made of views (routeMessage's topic and
// strings point into the read buffer): the copy must not change when the
// buffer is reused.
func TestNewMsgOwnsItsStrings(t *testing.T) {
	buf := []byte("dev/a/topic" + "text/plain" + "dev/a/reply" + "payload" + "corr")
	m := Message{Topic: stringOf(buf[0:11]), ContentType: stringOf(buf[11:21]), ResponseTopic: stringOf(buf[21:32]),
		Payload: buf[32:39], CorrelationData: buf[39:43], QoS: QoS1,
		User: []UserProperty{{Key: buf[0:3], Value: buf[32:39]}}}
	out := newMsg(&m, "me", time.Unix(0, 0))
	for i := range buf {
		buf[i] = 'x'
	}
	if out.Topic != "dev/a/topic" || out.ContentType != "text/plain" || out.ResponseTopic != "dev/a/reply" ||
		string(out.Payload) != "payload" || string(out.CorrelationData) != "corr" ||
		string(out.User[0].Key) != "dev" || string(out.User[0].Value) != "payload" {
		t.Fatalf("copy changed with its source: %+v", out.Message)
	}
	// Appending to a field of the copy must not overwrite the next one.
	_ = append(out.Payload, 'z')
	if string(out.CorrelationData) != "corr" {
		t.Fatalf("payload's capacity reaches the correlation data: %q", out.CorrelationData)
	}
	empty := newMsg(&Message{Topic: "t"}, "", time.Time{})
	if empty.Topic != "t" || len(empty.Payload) != 0 || empty.ContentType != "" {
		t.Fatalf("empty message copied as %+v", empty.Message)
	}
}

// A retained message that replaces another is the map's key too: the old
// message's topic (which shares its buffer with the old payload, newMsg)
// is not kept as the key — Go maps update the key of an entry whose key
// type is a string, and this checks that the store relies on it rightly.
func TestRetainedKeyIsTheCurrentMessage(t *testing.T) {
	s := NewServer(Config{})
	for _, p := range []string{"one", "two", "three"} {
		s.retain(newMsg(&Message{Topic: "r/t", Payload: []byte(p), Retain: true}, "", time.Time{}), nil)
	}
	for k, m := range s.retained.m {
		if unsafe.StringData(k) != unsafe.StringData(m.Topic) || string(m.Payload) != "three" {
			t.Fatalf("key %q at %p, message %q at %p", k, unsafe.StringData(k), m.Payload, unsafe.StringData(m.Topic))
		}
	}
	if st := s.Stats(); st.Retained != 1 {
		t.Fatalf("retained %d", st.Retained)
	}
}

// A session's flow state goes back to a pool once it holds nothing; what
// comes out of the pool is empty.
func TestFlowPoolClean(t *testing.T) {
	s := NewServer(Config{})
	ss := newSession("a")
	m := newMsg(&Message{Topic: "t", Payload: []byte("x"), QoS: QoS1}, "", time.Time{})
	ss.mu.Lock()
	f := ss.f()
	f.inflight = append(f.inflight, outflight{m: m, id: ss.packetID(), qos: QoS1})
	f.queue = append(f.queue, outflight{m: m, qos: QoS1})
	f.inQoS2 = append(f.inQoS2, 9)
	ss.account(s, 2*int(m.size), 2)
	ss.mu.Unlock()
	ss.release(s)
	if ss.fl != nil {
		t.Fatal("released session keeps its flow")
	}
	if st := s.Stats(); st.QueuedMessages != 0 || st.QueuedBytes != 0 {
		t.Fatalf("queued after release: %+v", st)
	}
	for range 100 {
		g := flowPool.Get().(*flow)
		if len(g.inflight) != 0 || g.queue != nil || g.inQoS2 != nil || g.qbytes != 0 || g.nextID != 0 {
			t.Fatalf("pooled flow not empty: %+v", g)
		}
		for _, o := range g.inflight[:cap(g.inflight)] {
			if o.m != nil {
				t.Fatal("pooled flow keeps a message")
			}
		}
	}
}

// rwLock: a writer excludes the readers of every shard (the race detector
// checks the data they share), and readers of different shards run
// together.
func TestRWLockShards(t *testing.T) {
	var l rwLock
	l.init()
	shared := map[int]int{}
	var wg sync.WaitGroup
	for g := range 4 {
		wg.Add(2)
		go func() {
			defer wg.Done()
			for i := range 200 {
				mu := l.rlock(g + i)
				_ = shared[i]
				mu.RUnlock()
			}
		}()
		go func() {
			defer wg.Done()
			for i := range 50 {
				l.Lock()
				shared[i] = g
				l.Unlock()
			}
		}()
	}
	wg.Wait()
	// Readers of all shards at once: none waits for another.
	held := make([]*sync.RWMutex, 0, len(l.shards))
	for i := range l.shards {
		held = append(held, l.rlock(i))
	}
	l.RLock()
	l.RUnlock()
	for _, mu := range held {
		mu.RUnlock()
	}
	if len(l.shards)&(len(l.shards)-1) != 0 || len(l.shards) > maxLockShards {
		t.Fatalf("%d shards", len(l.shards))
	}
}

// newSubscription copies its filter (onSubscribe hands it a view of the
// packet), into the subscription's own allocation, right after it, when it
// is at most maxInlineFilter bytes; a longer one apart.
func TestNewSubscriptionOwnsItsFilter(t *testing.T) {
	ss := newSession("s")
	for _, n := range []int{0, 1, 16, 17, 32, 33, 48, 49, 64, 65, 96, 97, 128, 129, 300, 70000} {
		src := make([]byte, n)
		for i := range src {
			src[i] = 'a' + byte(i%26)
		}
		want := string(src)
		sub := newSubscription(ss, stringOf(src))
		for i := range src {
			src[i] = '#'
		}
		if sub.filter() != want || sub.sess != ss {
			t.Fatalf("len %d: filter %q, want %q", n, sub.filter(), want)
		}
		inline := uintptr(unsafe.Pointer(unsafe.StringData(sub.filter()))) - uintptr(unsafe.Pointer(sub))
		if n > 0 && (inline == subSize) != (n <= maxInlineFilter) {
			t.Errorf("len %d: filter %d bytes from its subscription; inline: %v", n, inline, n <= maxInlineFilter)
		}
	}
}
