//go:build linux

// Command uringrelay is an experiment, not a product: a minimal TCP relay
// (HTTP/1.1 keep-alive traffic passes through it byte for byte) with N
// event loops, each a goroutine locked to its OS thread with its own
// SO_REUSEPORT listener, and one backend connection per client
// connection, dialled at accept on the same loop. It measures what
// io_uring saves against epoll in system-call transitions per request on
// the same relay (docs/benchmarks.md §83, bench/uring-relay.sh):
//
//	uringrelay -listen 127.0.0.1:8080 -backend 127.0.0.1:9000 -loops 2 -mode epoll
//	uringrelay -listen 127.0.0.1:8080 -backend 127.0.0.1:9000 -loops 2 -mode uring
//
// -mode epoll waits in epoll_wait (level-triggered) and then makes one
// read() per readable socket and one write() of those bytes to its peer,
// as warren's engine does. -mode uring keeps one io_uring per loop with a
// multishot recv armed on every socket, its data landing in a provided
// buffer ring; a round is one io_uring_enter that submits the sends the
// previous round queued (straight from the received buffer) and waits for
// the next completions, so readiness, reads and writes share one
// transition into the kernel. -mode uring-epoll keeps epoll's readiness
// and read() but waits with IORING_OP_EPOLL_WAIT (Linux 6.15) submitted
// with the round's sends in one io_uring_enter: writes deferred to the
// round's end, the smallest change warren's engine could make.
//
// A send to a socket with room completes inside the enter that submits
// it, so a round that waited for one completion would return at once with
// its own sends' completions; -min-wait (default 50µs; Linux 6.12's
// min_wait_usec) makes a round wait for its sends and one more completion
// for that long, then for any one. -min-wait 0 waits for one completion
// (a second enter in a round that sent); the two cost the same
// (docs/benchmarks.md §83).
//
// It prints "listening HOST:PORT" once its listeners are bound, prints its
// counters ("STATS rounds=… enters=… events=…") to stderr on SIGUSR1 and
// exits on SIGTERM, SIGINT or after -max.
package main

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"os/signal"
	"runtime"
	"sync/atomic"
	"syscall"
	"time"

	"golang.org/x/sys/unix"
)

// stats are one loop's counters, read by the SIGUSR1 handler.
type stats struct {
	rounds  atomic.Uint64 // loop iterations (one wait each)
	enters  atomic.Uint64 // io_uring_enter calls (uring) or epoll_wait calls (epoll)
	events  atomic.Uint64 // completions (uring) or ready descriptors (epoll)
	reads   atomic.Uint64 // read() calls (epoll) or recv completions with data (uring)
	writes  atomic.Uint64 // write() calls (epoll) or sends issued (uring)
	nobufs  atomic.Uint64 // uring: recvs that found the buffer ring empty
	accepts atomic.Uint64
}

func (s *stats) String() string {
	return fmt.Sprintf("rounds=%d enters=%d events=%d reads=%d writes=%d nobufs=%d accepts=%d",
		s.rounds.Load(), s.enters.Load(), s.events.Load(), s.reads.Load(), s.writes.Load(), s.nobufs.Load(), s.accepts.Load())
}

func main() {
	listen := flag.String("listen", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	backend := flag.String("backend", "", "backend HOST:PORT (IPv4)")
	loops := flag.Int("loops", 2, "event loops, each with its own SO_REUSEPORT listener")
	mode := flag.String("mode", "epoll", "epoll, uring or uring-epoll")
	maxRun := flag.Duration("max", 30*time.Minute, "exit after this long")
	minWait := flag.Duration("min-wait", 50*time.Microsecond, "uring: how long a round waits for its sends' completions and one more before any one completion ends the wait (0: wait for one)")
	flag.Parse()

	cfg := relayConfig{Loops: *loops, Mode: *mode, MinWait: *minWait}
	var err error
	if cfg.Backend, err = netip.ParseAddrPort(*backend); err != nil {
		fmt.Fprintln(os.Stderr, "uringrelay: -backend:", err)
		os.Exit(2)
	}
	if cfg.Listen, err = netip.ParseAddrPort(*listen); err != nil {
		fmt.Fprintln(os.Stderr, "uringrelay: -listen:", err)
		os.Exit(2)
	}
	r, err := startRelay(cfg)
	if err != nil {
		fmt.Fprintln(os.Stderr, "uringrelay:", err)
		os.Exit(1)
	}
	fmt.Println("listening", r.addr)

	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT, syscall.SIGUSR1)
	deadline := time.After(*maxRun)
	for {
		select {
		case s := <-sig:
			if s == syscall.SIGUSR1 {
				for i, st := range r.stats {
					fmt.Fprintf(os.Stderr, "STATS loop=%d %s\n", i, st)
				}
				continue
			}
		case <-deadline:
		}
		if err := r.stop(); err != nil {
			fmt.Fprintln(os.Stderr, "uringrelay:", err)
			os.Exit(1)
		}
		return
	}
}

type relayConfig struct {
	Listen  netip.AddrPort
	Backend netip.AddrPort
	Loops   int
	Mode    string // "epoll", "uring" or "uring-epoll"
	// MinWait (uring) bounds a round's wait for its own sends'
	// completions and one more; zero waits for one completion only (and
	// so costs a second io_uring_enter in a round that sent).
	MinWait time.Duration
}

// relay is a running relay: its loops, their stop eventfds and errors.
type relay struct {
	addr  netip.AddrPort
	stats []*stats
	wakes []int
	done  chan error
}

// startRelay binds the listeners and starts the loops.
func startRelay(cfg relayConfig) (*relay, error) {
	if cfg.Mode != "epoll" && cfg.Mode != "uring" && cfg.Mode != "uring-epoll" {
		return nil, fmt.Errorf("unknown -mode %q", cfg.Mode)
	}
	if cfg.Loops < 1 {
		return nil, fmt.Errorf("-loops %d: need at least 1", cfg.Loops)
	}
	r := &relay{addr: cfg.Listen, done: make(chan error, cfg.Loops)}
	lfds := make([]int, 0, cfg.Loops)
	fail := func(err error) (*relay, error) {
		for _, fd := range lfds {
			unix.Close(fd)
		}
		for _, fd := range r.wakes {
			unix.Close(fd)
		}
		return nil, err
	}
	for range cfg.Loops {
		fd, port, err := listenReusePort(r.addr)
		if err != nil {
			return fail(err)
		}
		lfds = append(lfds, fd)
		r.addr = netip.AddrPortFrom(r.addr.Addr(), port)
		wfd, err := unix.Eventfd(0, unix.EFD_NONBLOCK|unix.EFD_CLOEXEC)
		if err != nil {
			return fail(fmt.Errorf("eventfd: %w", err))
		}
		r.wakes = append(r.wakes, wfd)
		r.stats = append(r.stats, &stats{})
	}
	// Each loop sets itself up on its own locked thread (an io_uring with
	// IORING_SETUP_SINGLE_ISSUER belongs to the thread that made it) and
	// reports whether that worked before it runs.
	ready := make(chan error, cfg.Loops)
	for i := range cfg.Loops {
		newLoop := newEpollLoop
		switch cfg.Mode {
		case "uring":
			newLoop = newUringLoop
		case "uring-epoll":
			newLoop = newUringEpollLoop
		}
		go func() {
			runtime.LockOSThread()
			defer runtime.UnlockOSThread()
			run, err := newLoop(lfds[i], r.wakes[i], cfg, r.stats[i])
			ready <- err
			if err != nil {
				unix.Close(lfds[i])
				r.done <- nil
				return
			}
			r.done <- run()
		}()
	}
	var first error
	for range cfg.Loops {
		if err := <-ready; err != nil && first == nil {
			first = err
		}
	}
	if first != nil {
		// The loops that did start stop; those that failed closed their listeners.
		r.stop()
		return nil, first
	}
	return r, nil
}

// stop wakes every loop, waits for them to close their sockets and return.
func (r *relay) stop() error {
	one := []byte{1, 0, 0, 0, 0, 0, 0, 0}
	for _, fd := range r.wakes {
		unix.Write(fd, one)
	}
	var first error
	for range r.wakes {
		if err := <-r.done; err != nil && first == nil {
			first = err
		}
	}
	for _, fd := range r.wakes {
		unix.Close(fd)
	}
	return first
}

// listenReusePort binds a non-blocking SO_REUSEPORT listener and returns
// it with its port.
func listenReusePort(ap netip.AddrPort) (int, uint16, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_NONBLOCK|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, 0, fmt.Errorf("socket: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEADDR, 1); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("SO_REUSEADDR: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.SOL_SOCKET, unix.SO_REUSEPORT, 1); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("SO_REUSEPORT: %w", err)
	}
	if err := unix.Bind(fd, &unix.SockaddrInet4{Port: int(ap.Port()), Addr: ap.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("bind %s: %w", ap, err)
	}
	if err := unix.Listen(fd, 4096); err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("listen: %w", err)
	}
	sa, err := unix.Getsockname(fd)
	if err != nil {
		unix.Close(fd)
		return -1, 0, fmt.Errorf("getsockname: %w", err)
	}
	return fd, uint16(sa.(*unix.SockaddrInet4).Port), nil
}

// dial connects a non-blocking TCP socket to the backend. The connect
// itself blocks (a loopback connect completes at once): this relay dials
// only at accept, outside the measured requests.
func dial(backend netip.AddrPort) (int, error) {
	fd, err := unix.Socket(unix.AF_INET, unix.SOCK_STREAM|unix.SOCK_CLOEXEC, 0)
	if err != nil {
		return -1, fmt.Errorf("socket: %w", err)
	}
	if err := unix.Connect(fd, &unix.SockaddrInet4{Port: int(backend.Port()), Addr: backend.Addr().As4()}); err != nil {
		unix.Close(fd)
		return -1, fmt.Errorf("connect %s: %w", backend, err)
	}
	if err := setupConn(fd); err != nil {
		unix.Close(fd)
		return -1, err
	}
	return fd, nil
}

// setupConn makes a connected socket non-blocking with TCP_NODELAY, as
// warren's engine, nginx and HAProxy have theirs.
func setupConn(fd int) error {
	if err := unix.SetNonblock(fd, true); err != nil {
		return fmt.Errorf("nonblock: %w", err)
	}
	if err := unix.SetsockoptInt(fd, unix.IPPROTO_TCP, unix.TCP_NODELAY, 1); err != nil {
		return fmt.Errorf("TCP_NODELAY: %w", err)
	}
	return nil
}
