//go:build linux

package engine

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// TestRingArmPastHighWater: a write the ring defers (its arm posted to
// the loop), then, before the loop has handled that arm, a write that
// takes the queue past the high watermark: under SlowPause the connection
// stops reading and its write is timed, as armWrite does for a queue past
// the watermark (a shortcut that skipped armWrite for ring output would
// fail here; docs/benchmarks.md §102). Once
// the peer reads everything, reading resumes and every byte arrives in
// order.
func TestRingArmPastHighWater(t *testing.T) {
	for _, k := range ringKinds() {
		t.Run(k.name, func(t *testing.T) {
			const hw = 64 << 10
			cfg := Config{Loops: 1, WriteHighWater: hw, SlowPolicy: SlowPause, WriteTimeout: time.Minute}
			k.cfg(&cfg)
			big := bytes.Repeat([]byte("b"), 200<<10)
			var sc atomic.Pointer[Conn]
			var inputs atomic.Int32
			h := HandlerFunc(func(c *Conn, in []byte) int {
				if inputs.Add(1) == 1 {
					unix.SetsockoptInt(int(c.fd), unix.SOL_SOCKET, unix.SO_SNDBUF, 4096)
					sc.Store(c)
					c.Write([]byte("first"))
					c.Write(big)
				} else {
					c.Write(in)
				}
				return len(in)
			})
			e, addr := startEngine(t, cfg, h)
			// Small socket buffers on both sides, set before the connect,
			// so the big write leaves most of its bytes queued.
			d := net.Dialer{Timeout: 5 * time.Second, Control: func(_, _ string, rc syscall.RawConn) error {
				return rc.Control(func(fd uintptr) { unix.SetsockoptInt(int(fd), unix.SOL_SOCKET, unix.SO_RCVBUF, 4096) })
			}}
			c, err := d.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			c.Write([]byte("go"))
			eventually(t, 5*time.Second, "the first input", func() bool { return sc.Load() != nil })
			s := sc.Load()
			var paused, timed bool
			eventually(t, 5*time.Second, "reading paused past the high watermark", func() bool {
				onLoopState(t, e, 0, func(l *loop) {
					paused = s.flags&fSlowPaused != 0 && s.interest&ioRead == 0
					timed = s.timer.Scheduled()
				})
				return paused
			})
			if !timed {
				t.Fatal("the write past the high watermark is not timed")
			}
			c.Write([]byte("echo"))
			want := append(append([]byte("first"), big...), "echo"...)
			c.SetReadDeadline(time.Now().Add(10 * time.Second))
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("read: %v", err)
			}
			if !bytes.Equal(got, want) {
				t.Fatal("the output arrived out of order or altered")
			}
		})
	}
}

// TestRingWritersRace: a handler writing on its loop and a goroutine
// writing to the same connection at the same time, each its own numbered
// lines, the loop's writes deferred to the ring's sends: every line
// arrives whole, each writer's in its order, none lost, and the
// connection ends clean (no write is left unarmed: the last lines of
// either writer arrive).
func TestRingWritersRace(t *testing.T) {
	const n = 3000
	for _, k := range append(ringKinds(), kindNamed("loops-uring-worker"), kindNamed("loops-uring-locked")) {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Loops: 1}
			k.cfg(&cfg)
			var wg sync.WaitGroup
			var started atomic.Bool
			h := HandlerFunc(func(c *Conn, in []byte) int {
				if started.CompareAndSwap(false, true) {
					wg.Add(1)
					go func() {
						defer wg.Done()
						for i := range n {
							if _, err := c.Write(fmt.Appendf(nil, "G%06d\n", i)); err != nil {
								return
							}
						}
					}()
				}
				for _, b := range in {
					if _, err := c.Write(fmt.Appendf(nil, "L%06d\n", int(b))); err != nil {
						break
					}
				}
				return len(in)
			})
			_, addr := startEngine(t, cfg, h)
			t.Cleanup(wg.Wait)
			c := dial(t, addr)
			done := make(chan error, 1)
			go func() {
				r := bufio.NewReader(c)
				next := map[byte]int{'L': 0, 'G': 0}
				for next['L'] < n || next['G'] < n {
					line, err := r.ReadString('\n')
					if err != nil {
						done <- fmt.Errorf("after L %d, G %d: %w", next['L'], next['G'], err)
						return
					}
					var who byte
					var i int
					if _, err := fmt.Sscanf(line, "%c%06d\n", &who, &i); err != nil || len(line) != 8 {
						done <- fmt.Errorf("line %q: %v", line, err)
						return
					}
					if who == 'L' {
						i = next['L'] // the loop's lines carry the input byte, not a count
						if line[1:7] != fmt.Sprintf("%06d", i%256) {
							done <- fmt.Errorf("loop line %q, want %06d", line, i%256)
							return
						}
					} else if i != next['G'] {
						done <- fmt.Errorf("goroutine line %d, want %d", i, next['G'])
						return
					}
					next[who]++
				}
				done <- nil
			}()
			c.SetDeadline(time.Now().Add(20 * time.Second))
			in := make([]byte, n)
			for i := range in {
				in[i] = byte(i)
			}
			for off := 0; off < n; off += 100 { // many rounds, each a few writes
				if _, err := c.Write(in[off : off+100]); err != nil {
					t.Fatal(err)
				}
				time.Sleep(time.Millisecond)
			}
			if err := <-done; err != nil {
				t.Fatal(err)
			}
		})
	}
}

// closeWriter is a handler that, on "close", writes "bye", closes and
// writes again; it writes in OnClose too, and records what those writes
// returned.
type closeWriter struct {
	after   chan error // the write after Close, in OnData
	inClose chan error // the write in OnClose
}

func (h *closeWriter) OnData(c *Conn, in []byte) int {
	if bytes.Equal(in, []byte("close")) {
		c.Write([]byte("bye"))
		c.Close()
		_, err := c.Write([]byte("after"))
		h.after <- err
		return len(in)
	}
	c.Write(in)
	return len(in)
}

func (h *closeWriter) OnClose(c *Conn, r CloseReason, err error) {
	_, werr := c.Write([]byte("late"))
	h.inClose <- werr
}

// TestRingWritesAroundClose: a write the ring defers just before a Close
// goes out before the connection ends (the close waits for it), and the
// writes after Close and inside OnClose fail with ErrClosed, on the ring
// as on epoll.
func TestRingWritesAroundClose(t *testing.T) {
	for _, k := range append(ringKinds(), kindNamed("loops-uring-worker"), kindNamed("loops-uring-locked")) {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Loops: 1}
			k.cfg(&cfg)
			h := &closeWriter{after: make(chan error, 1), inClose: make(chan error, 1)}
			_, addr := startEngine(t, cfg, h)
			c := dial(t, addr)
			roundTrip(t, c, "ping")
			c.Write([]byte("close"))
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			got, err := io.ReadAll(c)
			if err != nil || string(got) != "bye" {
				t.Fatalf("read %q, %v; want \"bye\" then EOF", got, err)
			}
			for what, ch := range map[string]chan error{"after Close": h.after, "in OnClose": h.inClose} {
				select {
				case err := <-ch:
					if err != ErrClosed {
						t.Fatalf("the write %s returned %v, want ErrClosed", what, err)
					}
				case <-time.After(5 * time.Second):
					t.Fatalf("no write %s", what)
				}
			}
		})
	}
}

// TestRingWritesDuringStop: goroutines writing to their connections while
// the engine stops (the loop deferring some of those writes to the ring
// in its last rounds) end with an error, none panics or hangs, and no
// queued byte is left counted.
func TestRingWritesDuringStop(t *testing.T) {
	for _, k := range append(ringKinds(), kindNamed("loops-uring-worker"), kindNamed("loops-uring-locked")) {
		t.Run(k.name, func(t *testing.T) {
			cfg := Config{Loops: 2}
			k.cfg(&cfg)
			var wg sync.WaitGroup
			var conns sync.Map
			h := HandlerFunc(func(c *Conn, in []byte) int {
				if _, loaded := conns.LoadOrStore(c, true); !loaded {
					wg.Add(1)
					go func() {
						defer wg.Done()
						msg := bytes.Repeat([]byte("w"), 512)
						for i := 0; i < 1_000_000; i++ {
							if _, err := c.Write(msg); err != nil {
								return
							}
						}
					}()
				}
				c.Write(in) // on the loop, deferred to the ring
				return len(in)
			})
			e, err := New(cfg, h)
			if err != nil {
				t.Fatal(err)
			}
			if cfg.IOUring {
				skipWithoutRing(t)
			}
			if err := e.Start("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			addr := e.Addr().String()
			var readers sync.WaitGroup
			for range 8 {
				c := dial(t, addr)
				readers.Add(1)
				go func() { // a peer that reads (so sends complete) and writes
					defer readers.Done()
					buf := make([]byte, 64<<10)
					c.SetDeadline(time.Now().Add(20 * time.Second))
					for i := 0; ; i++ {
						if i%16 == 0 {
							if _, err := c.Write([]byte("x")); err != nil {
								return
							}
						}
						if _, err := c.Read(buf); err != nil {
							return
						}
					}
				}()
			}
			eventually(t, 5*time.Second, "every connection written to", func() bool {
				n := 0
				conns.Range(func(any, any) bool { n++; return true })
				return n == 8
			})
			time.Sleep(20 * time.Millisecond) // writes under way
			done := make(chan struct{})
			go func() { e.Close(); close(done) }()
			select {
			case <-done:
			case <-time.After(20 * time.Second):
				t.Fatal("Close did not return")
			}
			wg.Wait() // every writer got its error
			readers.Wait()
			if q := e.Stats().QueuedBytes; q != 0 {
				t.Fatalf("QueuedBytes %d after the stop, want 0", q)
			}
		})
	}
}
