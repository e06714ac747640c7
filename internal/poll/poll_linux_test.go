//go:build linux

package poll

import (
	"fmt"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// newPoller returns a Poller closed when the test ends.
func newPoller(t *testing.T, maxEvents int) *Poller {
	t.Helper()
	p, err := New(maxEvents, true)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { p.Close() })
	return p
}

// Wait returns at its timeout when nothing happens, and at once on Wake,
// whether it parks in Go's netpoller or blocks in epoll_wait.
func TestWaitTimeoutAndWake(t *testing.T) {
	for _, park := range []bool{true, false} {
		t.Run(fmt.Sprint("park=", park), func(t *testing.T) {
			t.Setenv("WARREN_NETPOLL", "")
			p, err := New(8, park)
			if err != nil {
				t.Fatal(err)
			}
			defer p.Close()
			if p.Parks() != park {
				t.Fatalf("Parks() = %v, want %v", p.Parks(), park)
			}
			testWaitTimeoutAndWake(t, p)
		})
	}
}

func testWaitTimeoutAndWake(t *testing.T, p *Poller) {
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
	// A wait of a minute that ends long before it: only the Wake ended
	// it, however slow the machine.
	start = time.Now()
	p.Wait(ev, 60000)
	if el := time.Since(start); el > 50*time.Second {
		t.Fatalf("Wake did not end the wait (%v)", el)
	}
}

// A nested poller's readiness, and its Wake, surface as one event in the
// outer poller; its own Wait then collects the events.
func TestNest(t *testing.T) {
	p := newPoller(t, 8)
	q := newPoller(t, 8)
	var fds [2]int
	if err := unix.Pipe2(fds[:], unix.O_NONBLOCK|unix.O_CLOEXEC); err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := q.Add(fds[0], true, false); err != nil {
		t.Fatal(err)
	}
	if err := p.Nest(q); err != nil {
		t.Fatal(err)
	}
	ev := make([]Event, 8)
	if n, _ := p.Wait(ev, 0); n != 0 {
		t.Fatalf("outer reports %d events before any", n)
	}
	unix.Write(fds[1], []byte("x"))
	if n, _ := p.Wait(ev, 1000); n != 1 || ev[0].Fd != q.Fd() || !ev[0].Readable {
		t.Fatalf("outer: %d events %+v, want the nested poller %d", n, ev[0], q.Fd())
	}
	if n, _ := q.Wait(ev, 0); n != 1 || ev[0].Fd != fds[0] {
		t.Fatalf("inner: %d events %+v, want the pipe", n, ev[0])
	}
	var b [1]byte
	unix.Read(fds[0], b[:])
	if n, _ := p.Wait(ev, 0); n != 0 {
		t.Fatalf("outer still reports %d events after the inner drained", n)
	}
	q.Wake()
	if n, _ := p.Wait(ev, 1000); n != 1 || ev[0].Fd != q.Fd() {
		t.Fatalf("outer after inner Wake: %d events", n)
	}
	if n, _ := q.Wait(ev, 0); n != 0 {
		t.Fatalf("inner Wake reported as %d events", n)
	}
	if err := p.Unnest(q); err != nil {
		t.Fatal(err)
	}
	unix.Write(fds[1], []byte("x"))
	if n, _ := p.Wait(ev, 0); n != 0 {
		t.Fatalf("outer reports %d events after Unnest", n)
	}
}

// A peer's half-close is not an event for a descriptor that is not read:
// level-triggered EPOLLRDHUP registered without EPOLLIN was reported by
// every Wait, and a loop flushing output to a peer that had shut its
// side spun at full CPU until the queue drained (up to the write
// timeout). A hang-up (both sides shut) is still reported without
// interest.
func TestHalfCloseWithoutReadInterest(t *testing.T) {
	p := newPoller(t, 8)
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	if err := p.Add(fds[0], false, false); err != nil {
		t.Fatal(err)
	}
	if err := unix.Shutdown(fds[1], unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	evs := make([]Event, 8)
	if n, err := p.Wait(evs, 0); err != nil || n != 0 {
		t.Fatalf("Wait after the peer's half-close, no interest: %d events %+v, %v; want none", n, evs[:n], err)
	}
	if err := p.Mod(fds[0], true, false); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Wait(evs, 0); err != nil || n != 1 || !evs[0].Readable || evs[0].Hangup {
		t.Fatalf("Wait reading: %d events %+v, %v; want one readable (the end of stream)", n, evs[:n], err)
	}
	if err := p.Mod(fds[0], false, false); err != nil {
		t.Fatal(err)
	}
	if err := unix.Shutdown(fds[0], unix.SHUT_WR); err != nil {
		t.Fatal(err)
	}
	if n, err := p.Wait(evs, 0); err != nil || n != 1 || !evs[0].Hangup {
		t.Fatalf("Wait after both sides shut, no interest: %d events %+v, %v; want a hang-up", n, evs[:n], err)
	}
}
