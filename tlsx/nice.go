package tlsx

import (
	"runtime"
	"sync"
	"time"
)

// Handshakes at a low OS priority (Config.HandshakeNice).
//
// Go's scheduler has no priorities, and HandshakeCPU keeps at most one or
// two handshake goroutines runnable; the kernel's has. On two cores
// through a reconnect storm the threads that carry a command (the event
// loops, the NATS clients, the API handlers, in three processes) each
// waited for a core behind the threads computing handshakes
// (docs/benchmarks.md §26, §47). Each handshake worker therefore locks
// its goroutine to an OS thread of its own and lowers that thread's
// priority (Linux: setpriority on the thread id; a nice value is per
// thread there), so the kernel runs every thread of the command path
// ahead of handshake crypto and gives handshakes what is left.
//
// A lowered thread cannot be raised again without CAP_SYS_NICE, so it
// stays the worker's for the worker's life and ends with it (a goroutine
// that exits locked takes its thread with it); the runtime never clones
// a new thread from a locked one (it asks its template thread), so the
// priority does not leak to threads that run other goroutines.
//
// Priority inversion: a lowered thread that holds one of the process's Ps
// while the kernel runs others holds that P for as long, and every
// goroutine queued on it waits (a prefork worker of warren serve has one
// P). So while handshakes run, the Server raises GOMAXPROCS by
// HandshakeCPU — one spare P for each handshake allowed to compute at
// once — and puts it back when none has run for SpareLinger: the loops
// and their peers always find a P not held by a lowered thread.

// SpareLinger is how long after the last handshake, with none in
// progress, a Server gives back the Ps it added (Config.HandshakeNice).
const SpareLinger = 5 * time.Second

// spareLinger is SpareLinger; tests shorten it before New.
var spareLinger = SpareLinger

// procRaise is the process-wide account of the Ps the Servers added: the
// first holder saves the GOMAXPROCS it finds and adds its own; the last
// to let go puts the saved one back, unless someone changed it meanwhile.
var procRaise struct {
	mu      sync.Mutex
	holders int
	base    int // GOMAXPROCS found by the first holder
	added   int // Ps added over base (the most a holder asked)
}

// holdProcs raises GOMAXPROCS to at least base+k while held.
func holdProcs(k int) {
	procRaise.mu.Lock()
	defer procRaise.mu.Unlock()
	if procRaise.holders == 0 {
		procRaise.base, procRaise.added = runtime.GOMAXPROCS(0), 0
	}
	procRaise.holders++
	if k > procRaise.added && runtime.GOMAXPROCS(0) == procRaise.base+procRaise.added {
		runtime.GOMAXPROCS(procRaise.base + k)
		procRaise.added = k
	}
}

// releaseProcs ends a holdProcs.
func releaseProcs() {
	procRaise.mu.Lock()
	defer procRaise.mu.Unlock()
	procRaise.holders--
	if procRaise.holders == 0 {
		if procRaise.added > 0 && runtime.GOMAXPROCS(0) == procRaise.base+procRaise.added {
			runtime.GOMAXPROCS(procRaise.base)
		}
		procRaise.added = 0
	}
}

// niced reports whether this Server's handshakes run on lowered threads.
func (s *Server) niced() bool { return niceSupported && s.cfg.HandshakeNice > 0 }

// lowerWorker runs at a handshake worker's start: it locks the worker to
// its thread and lowers the thread's priority. It reports whether it did
// (the thread then ends with the worker), and whether it handed the
// worker to a new goroutine instead, which the caller then leaves to it:
// a worker on the process's main thread does not lower it (tools show
// its nice value as the process's, and the runtime cannot end it with the
// worker) but starts its replacement while it keeps the main thread
// locked, so that the replacement runs on another.
func (s *Server) lowerWorker(resident bool, ready chan<- struct{}) (lowered, moved bool) {
	if !s.niced() {
		return false, false
	}
	runtime.LockOSThread()
	err := lowerThread(s.cfg.HandshakeNice)
	if err == errMainThread && ready == nil {
		ready := make(chan struct{})
		s.wg.Add(1)
		go s.workerOn(resident, ready)
		<-ready
		runtime.UnlockOSThread()
		return false, true
	}
	if err != nil {
		runtime.UnlockOSThread()
		s.lowerFailed.Store(true) // no thread lowered: no spare Ps either
		s.lowerErr.Do(func() {
			s.log.Warn("tls: handshake threads keep the process's priority", "nice", s.cfg.HandshakeNice, "error", err)
		})
		return false, false
	}
	s.lowered.Add(1)
	return true, false
}

// holdSpare adds the spare Ps when a handshake is queued and none are
// held, and (re)arms their release. The loop calls it: runtime.GOMAXPROCS
// stops the world, and a lowered thread that the kernel held back in the
// middle of that would stop the whole process with it.
func (s *Server) holdSpare() {
	if !s.niced() || s.lowerFailed.Load() {
		return
	}
	s.lastStart.Store(time.Now().UnixNano())
	if s.spareHeld.Load() {
		return
	}
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	if s.spareHeld.Load() || s.spareClosed {
		return
	}
	holdProcs(s.spareN)
	s.spareHeld.Store(true)
	if s.spareT == nil {
		s.spareT = time.AfterFunc(s.spareLinger, s.spareCheck)
	} else {
		s.spareT.Reset(s.spareLinger)
	}
}

// spareCheck gives the spare Ps back once no handshake is in progress and
// none has started for spareLinger; otherwise it looks again later.
func (s *Server) spareCheck() {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	if !s.spareHeld.Load() {
		return
	}
	idle := time.Since(time.Unix(0, s.lastStart.Load()))
	if s.demand.Load() > 0 || idle < s.spareLinger {
		s.spareT.Reset(max(s.spareLinger-idle, s.spareLinger/4))
		return
	}
	// Clear the flag first, then look again: a handshake queued meanwhile
	// either sees the flag cleared (and takes spareMu, after this) or
	// stored its start before this second look sees it.
	last := s.lastStart.Load()
	s.spareHeld.Store(false)
	if s.demand.Load() > 0 || s.lastStart.Load() != last {
		s.spareHeld.Store(true)
		s.spareT.Reset(s.spareLinger)
		return
	}
	releaseProcs()
}

// closeSpare gives the spare Ps back for good (Close).
func (s *Server) closeSpare() {
	s.spareMu.Lock()
	defer s.spareMu.Unlock()
	s.spareClosed = true
	if s.spareT != nil {
		s.spareT.Stop()
	}
	if s.spareHeld.Load() {
		s.spareHeld.Store(false)
		releaseProcs()
	}
}

// spareProcs is the warren_tls_spare_procs gauge: Ps this Server holds added.
func (s *Server) spareProcs() int {
	if s.spareHeld.Load() {
		return s.spareN
	}
	return 0
}
