//go:build linux

package poll

import (
	"errors"
	"os"
	"sync/atomic"
	"syscall"
	"time"
	"unsafe"

	"golang.org/x/sys/unix"
)

// Poller wraps an epoll instance and an eventfd used to wake Wait.
type Poller struct {
	epfd   int
	wakefd int
	raw    []unix.EpollEvent
	// file and rc, when set (New's park), put the epoll descriptor itself
	// in Go's netpoller: a Wait with nothing ready parks its goroutine
	// instead of blocking its thread in epoll_wait, which costs less CPU
	// per wake-up when waits are many and short (no system call state
	// for the runtime to track: WebSocket echo at 10k msg/s, 15-18 vs
	// 17-18 µs per message). But a parked loop is woken only when some
	// thread polls the netpoller, and the one thread blocked there takes
	// the first loop that has events, leaving the others' events unseen
	// until a P goes idle or sysmon polls (every 10 ms): busy loops wait
	// for each other (the proxy's p99 under wrk was 1.6x nginx's for it,
	// docs/benchmarks.md section 43).
	file     *os.File
	rc       syscall.RawConn
	deadline time.Time // read deadline set on file
	// pollFn is p.poll bound once: a closure passed to rc.Read on every
	// park would be allocated every time. n and werr carry its results,
	// max its argument.
	pollFn func(fd uintptr) bool
	n, max int
	werr   error
	// woken coalesces Wake calls between two Waits into one eventfd write.
	woken  atomic.Bool
	closed atomic.Bool
}

// New creates a Poller able to return up to maxEvents events per Wait.
// With park, a Wait with nothing ready parks its goroutine in Go's
// netpoller; without, it blocks its thread in epoll_wait (see Parks).
// WARREN_NETPOLL=on or off overrides park, for A/B measurements.
func New(maxEvents int, park bool) (*Poller, error) {
	if maxEvents <= 0 {
		maxEvents = 256
	}
	epfd, err := unix.EpollCreate1(unix.EPOLL_CLOEXEC)
	if err != nil {
		return nil, err
	}
	wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
	if err != nil {
		unix.Close(epfd)
		return nil, err
	}
	p := &Poller{epfd: epfd, wakefd: wfd, raw: make([]unix.EpollEvent, maxEvents)}
	if err := unix.EpollCtl(epfd, unix.EPOLL_CTL_ADD, wfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(wfd)}); err != nil {
		p.Close()
		return nil, err
	}
	switch os.Getenv("WARREN_NETPOLL") {
	case "on", "1", "true":
		park = true
	case "off", "0", "false":
		park = false
	}
	if park {
		if err := unix.SetNonblock(epfd, true); err == nil {
			p.file = os.NewFile(uintptr(epfd), "epoll")
			if rc, err := p.file.SyscallConn(); err == nil {
				p.rc = rc
				p.pollFn = p.poll
			}
		}
	}
	return p, nil
}

// mask is the epoll event set of the interests. EPOLLRDHUP goes with
// EPOLLIN only: polling is level-triggered, so a peer's half-close
// registered on a descriptor that is not read (paused, or past its end of
// stream while output still flushes) would be reported by every Wait and
// spin the loop. EPOLLHUP and EPOLLERR are always reported.
func mask(read, write bool) uint32 {
	var ev uint32
	if read {
		ev |= unix.EPOLLIN | unix.EPOLLRDHUP
	}
	if write {
		ev |= unix.EPOLLOUT
	}
	return ev
}

// Add registers fd with the given interests.
func (p *Poller) Add(fd int, read, write bool) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, fd, &unix.EpollEvent{Events: mask(read, write), Fd: int32(fd)})
}

// Mod changes the interests of a registered fd.
func (p *Poller) Mod(fd int, read, write bool) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_MOD, fd, &unix.EpollEvent{Events: mask(read, write), Fd: int32(fd)})
}

// Del removes fd from the poller.
func (p *Poller) Del(fd int) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_DEL, fd, nil)
}

// Nestable reports whether Nest works on this platform.
const Nestable = true

// Nest registers q inside p: p reports an event with Fd q.Fd() whenever q
// has events ready (or a Wake pending), so one Wait on p serves both. Wait
// on q collects them. q must not be waited on elsewhere while nested.
func (p *Poller) Nest(q *Poller) error {
	return unix.EpollCtl(p.epfd, unix.EPOLL_CTL_ADD, q.epfd, &unix.EpollEvent{Events: unix.EPOLLIN, Fd: int32(q.epfd)})
}

// Unnest undoes Nest.
func (p *Poller) Unnest(q *Poller) error { return p.Del(q.epfd) }

// Fd is the descriptor p's events carry when p is nested in another Poller.
func (p *Poller) Fd() int { return p.epfd }

// Wake makes a concurrent or the next Wait return promptly.
func (p *Poller) Wake() error {
	if p.woken.Swap(true) {
		return nil
	}
	var one = [8]byte{1}
	_, err := unix.Write(p.wakefd, one[:])
	if err == unix.EAGAIN {
		return nil
	}
	return err
}

// Wait blocks for at most timeoutMs milliseconds (negative: forever) and
// fills events. Wake-ups are consumed internally and not reported.
func (p *Poller) Wait(events []Event, timeoutMs int) (int, error) {
	if p.closed.Load() {
		return 0, ErrClosed
	}
	max := len(events)
	if max > len(p.raw) {
		max = len(p.raw)
	}
	var n int
	var err error
	if timeoutMs != 0 && p.rc != nil {
		n, err = p.park(max, timeoutMs) // polls first, parks only when idle
	} else if timeoutMs == 0 {
		n, err = pollNow(p.epfd, p.raw[:max])
	} else {
		n, err = unix.EpollWait(p.epfd, p.raw[:max], timeoutMs)
	}
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, err
	}
	return p.Events(p.raw[:n], events), nil
}

// Parks reports whether a Wait with nothing ready parks its goroutine in
// Go's netpoller rather than blocking its thread in epoll_wait. A poller
// that blocks holds its P in a system call, which the runtime takes away
// after a while unless another P is idle: the engine keeps one spare
// (engine.Config.BlockingPoll).
func (p *Poller) Parks() bool { return p.rc != nil }

// Close releases the poller's descriptors.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	unix.Close(p.wakefd)
	if p.file != nil {
		return p.file.Close()
	}
	return unix.Close(p.epfd)
}

// park collects ready events, waiting in Go's netpoller for the epoll
// descriptor to become readable when there are none.
func (p *Poller) park(max, timeoutMs int) (int, error) {
	// A deadline still ahead is kept: resetting the netpoller's timer on
	// every park would cost more than an occasional early tick.
	if timeoutMs > 0 {
		if now := time.Now(); !now.Before(p.deadline) {
			p.deadline = now.Add(time.Duration(timeoutMs) * time.Millisecond)
			p.file.SetReadDeadline(p.deadline)
		}
	}
	p.max = max
	err := p.rc.Read(p.pollFn)
	n, werr := p.n, p.werr
	if err != nil {
		if errors.Is(err, os.ErrDeadlineExceeded) {
			return 0, nil
		}
		if errors.Is(err, os.ErrClosed) {
			return 0, ErrClosed
		}
		return 0, err
	}
	return n, werr
}

// poll is rc.Read's callback: it collects ready events without waiting and
// reports whether there were any (or an error).
func (p *Poller) poll(fd uintptr) bool {
	p.n, p.werr = pollNow(int(fd), p.raw[:p.max])
	return p.n > 0 || (p.werr != nil && p.werr != unix.EINTR)
}

// pollNow collects ready events without waiting. It is a raw system call:
// it cannot block, so the scheduler need not hand the thread's P away.
func pollNow(epfd int, events []unix.EpollEvent) (int, error) {
	r, _, e := syscall.RawSyscall6(unix.SYS_EPOLL_PWAIT, uintptr(epfd), uintptr(unsafe.Pointer(&events[0])), uintptr(len(events)), 0, 0, 0)
	if e != 0 {
		return 0, e
	}
	return int(r), nil
}

// Events translates raw epoll events that a wait on Fd made elsewhere
// filled (the engine's io_uring IORING_OP_EPOLL_WAIT) into events, as many
// as fit, as Wait does: wake-ups are consumed and not reported. It returns
// how many it filled. Wait uses it for its own events.
func (p *Poller) Events(raw []unix.EpollEvent, events []Event) int {
	j := 0
	for i := 0; i < len(raw) && j < len(events); i++ {
		r := &raw[i]
		fd := int(r.Fd)
		if fd == p.wakefd {
			var buf [8]byte
			unix.Read(p.wakefd, buf[:])
			p.woken.Store(false)
			continue
		}
		events[j] = Event{
			Fd:       fd,
			Readable: r.Events&(unix.EPOLLIN|unix.EPOLLERR|unix.EPOLLHUP|unix.EPOLLRDHUP) != 0,
			Writable: r.Events&(unix.EPOLLOUT|unix.EPOLLERR) != 0,
			Hangup:   r.Events&(unix.EPOLLHUP|unix.EPOLLERR) != 0,
		}
		j++
	}
	return j
}
