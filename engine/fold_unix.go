//go:build linux || darwin || freebsd

package engine

import (
	"errors"
	"slices"
	"sync/atomic"
	"time"

	"github.com/warrenhq/warren/internal/poll"
)

// Folding. Every loop parks its goroutine when it has nothing to do, and
// each wake-up costs a thread switch in the kernel: at a steady, moderate
// message rate two loops each waking for a message or two cost more CPU per
// message than one loop waking for both (WebSocket echo at 15,000
// connections and 10,000 msg/s on 2 cores: 0.275 against 0.19 voluntary
// context switches and 23.2–23.8 against 18.8–20.8 µs of CPU per message;
// docs/benchmarks.md section 7). So a loop that is mostly idle, while loop 0 is too, folds into
// loop 0: it nests its poller in loop 0's and parks for good, and loop 0 runs
// its events, mailbox and timers besides its own. When loop 0 gets busy it
// hands its folded loops back. Connections never move: a folded loop keeps
// its connections, buffers and timers; only the goroutine running them
// changes, and the hand-overs go through the mailbox lock and a channel.

// The policy's figures; variables so tests can make loops fold and unfold
// all the time.
var (
	// foldWindow is how often a loop measures its load and decides.
	foldWindow = 250 * time.Millisecond
	// foldBelow: a loop folds into loop 0 when the two together were busy
	// less than this share of the last window.
	foldBelow = 0.3
	// unfoldAbove: loop 0 hands one folded loop back when it was busy more
	// than this share of the window, and all of them above unfoldAllAbove.
	// The gap to foldBelow is the hysteresis: one loop does the work of two
	// in less time, so after a hand-back the two loops' sum is above the
	// 60% that caused it, far from 30%.
	unfoldAbove    = 0.6
	unfoldAllAbove = 0.9
	// refoldAfter keeps loops apart for a while after a hand-back, so a
	// load that wavers around the thresholds does not fold them back and
	// forth.
	refoldAfter = time.Second
)

// folding is a loop's part in folding.
type folding struct {
	load      loadMeter
	canFold   bool                 // more than one loop, nesting supported, not Config.FixedLoops
	folded    []*loop              // loops this one runs besides itself (loop 0 only)
	ready     bool                 // folded: its poller reported events, poll it
	resume    chan struct{}        // folded: the host hands the loop back here
	hostedBy  atomic.Pointer[loop] // folded and adopted: the host
	lastSplit atomic.Int64         // host: when it last handed a loop back (monoNs)
	lastFold  atomic.Int64         // host: when a loop last folded into it (monoNs)
}

// monoBase anchors monoNs: the loops compare times across goroutines as
// monotonic nanoseconds, which a wall clock step cannot move.
var monoBase = time.Now()

func monoNs(t time.Time) int64 { return int64(t.Sub(monoBase)) }

// loadMeter measures the share of wall time a loop spends awake.
type loadMeter struct {
	since, woke time.Time
	busy        time.Duration
}

func (m *loadMeter) start(now time.Time) { m.since, m.woke, m.busy = now, now, 0 }
func (m *loadMeter) idle(now time.Time)  { m.busy += now.Sub(m.woke) }
func (m *loadMeter) wake(now time.Time)  { m.woke = now }

// take returns the busy share since the window started and starts another.
func (m *loadMeter) take(now time.Time) float64 {
	u := float64(m.busy) / float64(now.Sub(m.since))
	m.since, m.busy = now, 0
	return u
}

func (l *loop) initFolding(loops int) {
	l.canFold = poll.Nestable && loops > 1 && !l.e.cfg.FixedLoops && !l.uring
	l.stats.host.Store(int32(l.idx))
	l.resume = make(chan struct{}, 1)
}

// adapt closes a load window and folds or unfolds loops by it.
func (l *loop) adapt(now time.Time) {
	u := l.load.take(now)
	l.stats.busy.Store(uint32(u * 1000))
	if !l.canFold || l.stopping {
		return
	}
	mono := monoNs(now)
	if len(l.folded) > 0 {
		if u > unfoldAbove {
			n := 1
			if u > unfoldAllAbove {
				n = len(l.folded)
			}
			l.releaseLast(n)
			l.lastSplit.Store(mono)
		}
		return
	}
	if l.idx == 0 {
		return
	}
	h := l.e.loops[0]
	if float64(h.stats.busy.Load())/1000+u >= foldBelow || mono-h.lastSplit.Load() < int64(refoldAfter) {
		return
	}
	// One loop folds per window: h's figure does not count loads already
	// on their way to it.
	last := h.lastFold.Load()
	if mono-last < int64(foldWindow) || !h.lastFold.CompareAndSwap(last, mono) {
		return
	}
	l.foldInto(h)
}

// foldInto hands l to h and parks l's goroutine until h hands it back.
func (l *loop) foldInto(h *loop) {
	l.ready = true // poll once on adoption: events may be waiting already
	// Until h has nested l's poller, every post must wake it (the nesting
	// reports a poller that is already readable).
	l.sleeping.Store(true)
	if !h.post(op{kind: opAdopt, fn: func() { h.adopt(l) }}) {
		return // h has stopped
	}
	<-l.resume
	l.load.start(time.Now())
}

// adopt runs on h: it starts running f, or hands it straight back when it
// cannot.
func (h *loop) adopt(f *loop) {
	if h.stopping || h.poller.Nest(f.poller) != nil {
		f.resume <- struct{}{}
		return
	}
	h.folded = append(h.folded, f)
	// From now on a post to f wakes it (and so h) only when h sleeps; h
	// checks f's mailbox before it does.
	f.hostedBy.Store(h)
	f.sleeping.Store(false)
	f.stats.host.Store(int32(h.idx))
	f.stats.busy.Store(0) // its goroutine is parked; h's figure counts its work
}

// release hands h.folded[i] back to its own goroutine.
func (h *loop) release(i int) {
	f := h.folded[i]
	h.folded = slices.Delete(h.folded, i, i+1)
	if !f.stopping && !h.stopping {
		h.poller.Unnest(f.poller)
	}
	f.hostedBy.Store(nil) // f's own loop checks its mailbox before it sleeps
	f.stats.host.Store(int32(f.idx))
	f.resume <- struct{}{}
}

// releaseLast hands the n loops folded last back.
func (h *loop) releaseLast(n int) {
	for ; n > 0 && len(h.folded) > 0; n-- {
		h.release(len(h.folded) - 1)
	}
}

// unfoldAll hands every folded loop back (h is stopping).
func (h *loop) unfoldAll() { h.releaseLast(len(h.folded)) }

// foldedMail reports whether a folded loop has mail waiting.
func (h *loop) foldedMail() bool {
	for _, f := range h.folded {
		if f.mbLen.Load() > 0 {
			return true
		}
	}
	return false
}

// mustWake reports whether a post to l must wake its poller: l sleeps, or
// the loop running l does.
func (l *loop) mustWake() bool {
	if l.sleeping.Load() {
		return true
	}
	h := l.hostedBy.Load()
	return h != nil && h.sleeping.Load()
}

// markFolded notes that the folded loop whose poller has descriptor fd has
// events.
func (h *loop) markFolded(fd int) {
	for _, f := range h.folded {
		if f.poller.Fd() == fd {
			f.ready = true
			return
		}
	}
}

// runFolded runs one round of every folded loop: its events when its
// poller reported some, its mailbox and its timers.
func (h *loop) runFolded(now time.Time) {
	for i := 0; i < len(h.folded); i++ {
		f := h.folded[i]
		n, fnow := 0, now
		if f.ready {
			f.ready = false
			var err error
			if n, err = f.poller.Wait(f.events, 0); err != nil && !errors.Is(err, poll.ErrClosed) {
				h.e.errLog.Log("engine: poll wait", err)
			}
			if n > 0 {
				// Its events may have come after the host woke, during
				// the host's round: the round's time (Conn.Now) must not
				// be earlier than the input it stamps.
				fnow = time.Now()
			}
		}
		f.process(n, fnow)
		if f.stopping {
			h.release(i)
			i--
		}
	}
}
