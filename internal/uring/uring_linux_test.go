//go:build linux

package uring

import (
	"errors"
	"runtime"
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
		if r.ForEachCQE(func(c CQE) { got[c.UserData] = c.Res }) == 0 {
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

// TestPollDeferTaskrun: on a DEFER_TASKRUN ring an epoll wait whose
// descriptor became ready completes under Poll, which never blocks;
// a bare submit (Enter(0, 0, -1)) would never post it.
func TestPollDeferTaskrun(t *testing.T) {
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := New(8, 16, SetupSubmitAll|SetupSingleIssuer|SetupDeferTaskrun)
	if err != nil {
		t.Skipf("io_uring with DEFER_TASKRUN unavailable: %v", err)
	}
	defer r.Close()
	if err := r.Probe(OpEpollWait); err != nil {
		t.Skipf("probe: %v", err)
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(epfd)
	efd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		t.Fatal(err)
	}
	defer unix.Close(efd)
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, efd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(efd)}); err != nil {
		t.Fatal(err)
	}
	raw := make([]unix.EpollEvent, 8)
	s, err := r.GetSQE()
	if err != nil {
		t.Fatal(err)
	}
	s.Opcode = OpEpollWait
	s.Fd = int32(epfd)
	s.SetAddr(unsafe.Pointer(&raw[0]))
	s.Len = uint32(len(raw))
	s.UserData = 7
	if err := r.Poll(); err != nil {
		t.Fatal(err)
	}
	one := [8]byte{1}
	if _, err := unix.Write(efd, one[:]); err != nil {
		t.Fatal(err)
	}
	// The eventfd's wake-up queues the wait's completion as task work
	// synchronously; Poll runs it. A few tries, for a slow kernel.
	for range 1000 {
		if err := r.Poll(); err != nil {
			t.Fatal(err)
		}
		if r.Ready() > 0 {
			break
		}
	}
	var got []CQE
	r.ForEachCQE(func(c CQE) { got = append(got, c) })
	if len(got) != 1 || got[0].UserData != 7 || got[0].Res != 1 {
		t.Fatalf("completions after Poll: %+v, want the epoll wait's with 1 event", got)
	}
}

// TestForEachCQEBatches: more completions than a batch of 16 are
// each handed out once, also when fn calls ForEachCQE again (the nested
// call takes those not yet copied), and all are marked seen; without
// nesting, in order.
func TestForEachCQEBatches(t *testing.T) {
	r, err := New(32, 64, SetupSubmitAll|SetupCoopTaskrun)
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	defer r.Close()
	const opNop = 0 // IORING_OP_NOP
	const total = 2*16 + 5
	for sent := 0; sent < total; {
		k := min(total-sent, 20)
		for i := range k {
			s, err := r.GetSQE()
			if err != nil {
				t.Fatal(err)
			}
			s.Opcode, s.UserData = opNop, uint64(sent+i+1)
		}
		if err := r.Enter(uint32(k), 0, 5*time.Second); err != nil {
			t.Fatal(err)
		}
		sent += k
	}
	for r.Ready() < total {
		if err := r.Enter(1, 0, time.Second); err != nil {
			t.Fatal(err)
		}
	}
	var got []uint64
	var fn func(c CQE)
	nested := 0
	fn = func(c CQE) {
		got = append(got, c.UserData)
		if len(got) == 3 {
			nested = r.ForEachCQE(fn)
		}
	}
	n := r.ForEachCQE(fn)
	if n+nested != total || len(got) != total || r.Ready() != 0 {
		t.Fatalf("handed out %d+%d (%d calls), %d still ready; want %d", n, nested, len(got), r.Ready(), total)
	}
	if nested == 0 {
		t.Fatal("the nested call handed out nothing")
	}
	seen := map[uint64]bool{}
	for _, ud := range got {
		if seen[ud] || ud < 1 || ud > total {
			t.Fatalf("completion %d handed out twice or unknown: %v", ud, got)
		}
		seen[ud] = true
	}
}

// TestForEachCQEOrder: without nesting, completions come in the order
// they completed, across batches.
func TestForEachCQEOrder(t *testing.T) {
	r, err := New(64, 128, SetupSubmitAll|SetupCoopTaskrun)
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	defer r.Close()
	const total = 3*16 + 1
	for i := range total {
		s, err := r.GetSQE()
		if err != nil {
			t.Fatal(err)
		}
		s.Opcode, s.UserData = 0, uint64(i+1) // IORING_OP_NOP
		s.Flags = 1 << 1                      // IOSQE_IO_LINK: complete in submission order
	}
	if err := r.Enter(total, 0, 5*time.Second); err != nil {
		t.Fatal(err)
	}
	var got []uint64
	r.ForEachCQE(func(c CQE) { got = append(got, c.UserData) })
	if len(got) != total {
		t.Fatalf("got %d completions, want %d", len(got), total)
	}
	for i, ud := range got {
		if ud != uint64(i+1) {
			t.Fatalf("completion %d is %d: %v", i, ud, got)
		}
	}
}
