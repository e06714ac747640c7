//go:build linux

package uring

import (
	"errors"
	"testing"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

func newTestRing(t *testing.T) *Ring {
	t.Helper()
	r, err := New(8, 16, SetupSubmitAll|SetupCoopTaskrun)
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	t.Cleanup(r.Close)
	return r
}

// TestSendRecvAndTimeout: a send and a recv over a socket pair complete
// with their byte counts and the bytes arrive; a wait with nothing in
// flight ends at its timeout without an error.
func TestSendRecvAndTimeout(t *testing.T) {
	r := newTestRing(t)
	if err := r.Probe(OpSend, OpRecv); err != nil {
		t.Skipf("probe: %v", err)
	}
	fds, err := unix.Socketpair(unix.AF_UNIX, unix.SOCK_STREAM|unix.SOCK_NONBLOCK, 0)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(fds[0])
	defer unix.Close(fds[1])
	out := []byte("hello")
	in := make([]byte, 16)
	s, err := r.GetSQE()
	if err != nil {
		t.Fatal(err)
	}
	s.Opcode, s.Fd, s.Len, s.UserData = OpSend, int32(fds[0]), uint32(len(out)), 1
	s.SetAddr(unsafe.Pointer(&out[0]))
	if err := r.Enter(1, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	s, err = r.GetSQE()
	if err != nil {
		t.Fatal(err)
	}
	s.Opcode, s.Fd, s.Len, s.UserData = OpRecv, int32(fds[1]), uint32(len(in)), 2
	s.SetAddr(unsafe.Pointer(&in[0]))
	got := map[uint64]int32{}
	for len(got) < 2 {
		if err := r.Enter(1, 0, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		if r.ForEachCQE(func(c *CQE) { got[c.UserData] = c.Res }) == 0 {
			t.Fatal("no completion within 5 s")
		}
	}
	if got[1] != 5 || got[2] != 5 || string(in[:5]) != "hello" {
		t.Fatalf("completions %v, read %q", got, in[:5])
	}
	if err := r.Enter(1, 0, 20*time.Millisecond); err != nil {
		t.Fatalf("a timed-out wait: %v", err)
	}
	if r.Ready() != 0 {
		t.Fatal("a completion out of nothing")
	}
}

// TestProbeUnsupported: an opcode past the kernel's last is refused.
func TestProbeUnsupported(t *testing.T) {
	r := newTestRing(t)
	if err := r.Probe(255); !errors.Is(err, ErrUnsupported) {
		t.Fatalf("Probe(255) = %v, want ErrUnsupported", err)
	}
}
