//go:build darwin || freebsd

package poll

import (
	"errors"
	"sync/atomic"

	"golang.org/x/sys/unix"
)

const wakeIdent = 0

// Poller wraps a kqueue instance; Wake triggers an EVFILT_USER event.
type Poller struct {
	kq     int
	raw    []unix.Kevent_t
	woken  atomic.Bool
	closed atomic.Bool
}

// New creates a Poller able to return up to maxEvents events per Wait.
// A Wait with nothing ready blocks its thread in kevent; park is ignored.
func New(maxEvents int, park bool) (*Poller, error) {
	if maxEvents <= 0 {
		maxEvents = 256
	}
	kq, err := unix.Kqueue()
	if err != nil {
		return nil, err
	}
	unix.CloseOnExec(kq)
	p := &Poller{kq: kq, raw: make([]unix.Kevent_t, maxEvents)}
	ev := unix.Kevent_t{Ident: wakeIdent, Filter: unix.EVFILT_USER, Flags: unix.EV_ADD | unix.EV_CLEAR}
	if _, err := unix.Kevent(kq, []unix.Kevent_t{ev}, nil, nil); err != nil {
		unix.Close(kq)
		return nil, err
	}
	return p, nil
}

func (p *Poller) ctl(fd int, read, write bool, del bool) error {
	var changes [2]unix.Kevent_t
	rflag, wflag := uint16(unix.EV_ADD|unix.EV_ENABLE), uint16(unix.EV_ADD|unix.EV_ENABLE)
	if !read {
		rflag = unix.EV_ADD | unix.EV_DISABLE
	}
	if !write {
		wflag = unix.EV_ADD | unix.EV_DISABLE
	}
	if del {
		rflag, wflag = unix.EV_DELETE, unix.EV_DELETE
	}
	unix.SetKevent(&changes[0], fd, unix.EVFILT_READ, int(rflag))
	unix.SetKevent(&changes[1], fd, unix.EVFILT_WRITE, int(wflag))
	_, err := unix.Kevent(p.kq, changes[:], nil, nil)
	if del && err == unix.ENOENT {
		return nil
	}
	return err
}

// Add registers fd with the given interests.
func (p *Poller) Add(fd int, read, write bool) error { return p.ctl(fd, read, write, false) }

// Mod changes the interests of a registered fd.
func (p *Poller) Mod(fd int, read, write bool) error { return p.ctl(fd, read, write, false) }

// Del removes fd from the poller.
func (p *Poller) Del(fd int) error { return p.ctl(fd, false, false, true) }

// Wake makes a concurrent or the next Wait return promptly.
func (p *Poller) Wake() error {
	if p.woken.Swap(true) {
		return nil
	}
	ev := unix.Kevent_t{Ident: wakeIdent, Filter: unix.EVFILT_USER, Fflags: unix.NOTE_TRIGGER}
	_, err := unix.Kevent(p.kq, []unix.Kevent_t{ev}, nil, nil)
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
	var ts *unix.Timespec
	if timeoutMs >= 0 {
		t := unix.NsecToTimespec(int64(timeoutMs) * 1e6)
		ts = &t
	}
	n, err := unix.Kevent(p.kq, nil, p.raw[:max], ts)
	if err != nil {
		if err == unix.EINTR {
			return 0, nil
		}
		return 0, err
	}
	j := 0
	for i := 0; i < n; i++ {
		r := &p.raw[i]
		if r.Filter == unix.EVFILT_USER {
			p.woken.Store(false)
			continue
		}
		ev := Event{Fd: int(r.Ident)}
		switch r.Filter {
		case unix.EVFILT_READ:
			ev.Readable = true
		case unix.EVFILT_WRITE:
			ev.Writable = true
		}
		if r.Flags&(unix.EV_EOF|unix.EV_ERROR) != 0 {
			ev.Hangup = r.Flags&unix.EV_ERROR != 0
			ev.Readable = true
		}
		events[j] = ev
		j++
	}
	return j, nil
}

// Close releases the kqueue descriptor.
func (p *Poller) Close() error {
	if p.closed.Swap(true) {
		return nil
	}
	return unix.Close(p.kq)
}

// Parks reports false: a Wait with nothing ready blocks its thread in
// kevent.
func (p *Poller) Parks() bool { return false }

// Nestable reports whether Nest works on this platform.
const Nestable = false

// Nest is not supported on kqueue yet: it returns errors.ErrUnsupported and
// callers keep the pollers apart.
func (p *Poller) Nest(q *Poller) error { return errors.ErrUnsupported }

// Unnest undoes Nest; like Nest it returns errors.ErrUnsupported.
func (p *Poller) Unnest(q *Poller) error { return errors.ErrUnsupported }

// Fd is the descriptor p's events would carry when nested.
func (p *Poller) Fd() int { return p.kq }
