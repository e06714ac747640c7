//go:build linux

package engine

import (
	"sync"
	"testing"

	"github.com/warrenhq/warren/internal/uring"
)

var ringProbe struct {
	once sync.Once
	err  error
}

// skipWithoutRing skips t where the kernel refuses the engine's io_uring
// mode (no io_uring, or no IORING_OP_EPOLL_WAIT).
func skipWithoutRing(t testing.TB) {
	t.Helper()
	ringProbe.once.Do(func() {
		r, err := uring.New(8, 16, 0)
		if err == nil {
			err = r.Probe(uring.OpEpollWait, uring.OpSend, uring.OpSendmsg, uring.OpAsyncCancel, uring.OpRecv)
			r.Close()
		}
		ringProbe.err = err
	})
	if ringProbe.err != nil {
		t.Skipf("io_uring unavailable: %v", ringProbe.err)
	}
}
