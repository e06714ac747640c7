//go:build linux

package poll

import (
	"testing"
	"time"
)

// Wait returns at its timeout when nothing happens, and at once on Wake.
func TestWaitTimeoutAndWake(t *testing.T) {
	p, err := New(8)
	if err != nil {
		t.Fatal(err)
	}
	defer p.Close()
	ev := make([]Event, 8)
	start := time.Now()
	if n, err := p.Wait(ev, 30); n != 0 || err != nil {
		t.Fatalf("idle wait: %d %v", n, err)
	}
	if el := time.Since(start); el < 25*time.Millisecond {
		t.Fatalf("idle wait returned after %v, before its timeout", el)
	}
	go func() {
		time.Sleep(20 * time.Millisecond)
		p.Wake()
	}()
	start = time.Now()
	p.Wait(ev, 5000)
	if el := time.Since(start); el > 2*time.Second {
		t.Fatalf("Wake did not end the wait (%v)", el)
	}
}
