package mqtt

import (
	"sync"
	"testing"
	"time"
)

// A client silent for 40 hours by the server's clock when the engine's
// idle timer fires is closed: its stamp's 24-bit difference has wrapped
// negative, which since reads as the maximum, not as zero.
func TestKeepAliveSilentPastStampHalfRange(t *testing.T) {
	clk := &testClock{}
	clk.t.Store(time.Date(2026, 1, 1, 0, 0, 0, 0, time.UTC).UnixNano())
	b := startBroker(t, Config{Clock: clk})
	c := dial(t, b.addr, Version311)
	if ca := c.connect(&Connect{ClientID: []byte("silent"), CleanStart: true, KeepAlive: 1}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	clk.t.Add(int64(40 * time.Hour))
	_, err := c.nextErr(10 * time.Second)
	if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
		t.Fatalf("silent 40 h by the server's clock, keep-alive 1 s: still open (since reads %v)", b.since(0, clk.t.Load()))
	}
	b.waitStats(t, "keep-alive close", func(s Stats) bool { return s.KeepAliveTimeouts == 1 })
}

// since reads every silence from the longest keep-alive limit (27 h) to
// 2 s short of the stamps' wrap (74.5 h) as at least that limit (less
// the unit since rounds down by); a stamp a little
// ahead (input racing the sweeper's clock) reads zero.
func TestSinceLongSilence(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	limit := time.Duration(65535) * time.Second * 3 / 2
	wrap := time.Duration(1<<(32-stampShift)) * stampUnit
	for _, start := range []int64{int64(time.Hour), int64(wrap) - int64(time.Minute)} {
		t0 := s.epoch + start
		st := s.stamp(t0)
		for _, d := range []time.Duration{limit, 30 * time.Hour, 37 * time.Hour, 38 * time.Hour, 40 * time.Hour,
			60 * time.Hour, 74 * time.Hour, wrap - 2*time.Second} {
			if got := s.since(st, t0+int64(d)); got < limit-2*stampUnit {
				t.Errorf("start %v: silent %v reads %v, under the longest keep-alive limit %v", time.Duration(start), d, got, limit)
			}
		}
		for _, ahead := range []time.Duration{time.Millisecond, 100 * time.Millisecond, time.Second} {
			if got := s.since(st, t0-int64(ahead)); got != 0 {
				t.Errorf("start %v: a stamp %v ahead reads %v, want 0", time.Duration(start), ahead, got)
			}
		}
	}
}

// A TCP client that never sends but is sent something at least every
// 1.5 times its keep-alive must still be closed by its keep-alive
// [MQTT-3.1.2-24]: the engine's idle timer counts its input only
// (conn.armKeepAlive).
func TestKeepAliveHeldByOutput(t *testing.T) {
	b := startBroker(t, Config{})
	c := dial(t, b.addr, Version311)
	if ca := c.connect(&Connect{ClientID: []byte("silent"), CleanStart: true, KeepAlive: 1}); ca.ReasonCode != Success {
		t.Fatal(ca.ReasonCode)
	}
	c.subscribe(1, QoS0, "t")
	stop := make(chan struct{})
	var wg sync.WaitGroup
	wg.Add(1)
	go func() {
		defer wg.Done()
		tk := time.NewTicker(300 * time.Millisecond)
		defer tk.Stop()
		for {
			select {
			case <-stop:
				return
			case <-tk.C:
				b.Publish(&Message{Topic: "t", Payload: []byte("x")})
			}
		}
	}()
	defer func() { close(stop); wg.Wait() }()
	deadline := time.Now().Add(10 * time.Second)
	for time.Now().Before(deadline) {
		if _, err := c.nextErr(time.Until(deadline)); err != nil {
			if ne, ok := err.(interface{ Timeout() bool }); ok && ne.Timeout() {
				break
			}
			b.waitStats(t, "keep-alive close", func(s Stats) bool { return s.KeepAliveTimeouts == 1 })
			return
		}
	}
	t.Fatal("keep-alive 1 s, client silent while the server published every 300 ms: still open after 10 s (limit 1.5 s)")
}

// A keep-alive timer re-armed after output held it (or after a first
// firing that read just short of the limit) fires when since already
// reads the limit passed, wherever in its stamp unit the client's last
// input fell: it closes on that pass rather than re-arming again.
func TestKeepAliveArmReadsLimit(t *testing.T) {
	s := NewServer(Config{})
	defer s.Close()
	for _, ka := range []uint16{1, 2, 3, 7, 60, 65535} {
		limit := time.Duration(ka) * time.Second * 3 / 2
		for off := time.Duration(0); off < 2*stampUnit; off += time.Millisecond {
			tIn := s.epoch + int64(time.Minute+off)
			for _, fired := range []time.Duration{limit / 3, limit - 40*time.Millisecond, limit - time.Millisecond, limit} {
				tNow := tIn + int64(fired)
				read := s.since(s.stamp(tIn), tNow)
				if read >= limit {
					continue
				}
				if got := s.since(s.stamp(tIn), tNow+int64(keepAliveArm(limit-read))); got < limit {
					t.Fatalf("keep-alive %d s, input %v into its unit, fired at %v reading %v: re-armed, it fires reading %v, under the limit %v",
						ka, off, fired, read, got, limit)
				}
			}
		}
	}
}
