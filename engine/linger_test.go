package engine

import (
	"bytes"
	"context"
	"errors"
	"io"
	"net"
	"runtime"
	"sync"
	"sync/atomic"
	"syscall"
	"testing"
	"time"
)

// lingerHandler answers "bye" with "goodbye\n" and a lingering close;
// "busy" does the same and then blocks its OnData until release closes
// (a handler busy on the worker pool); "work" dispatches a task that
// blocks until release and then lingers; "big" queues size bytes first.
// It counts OnData calls after the close began, which must stay zero.
type lingerHandler struct {
	size    int
	release chan struct{}
	closing atomic.Bool
	late    atomic.Int32
	closed  chan CloseReason
}

func newLingerHandler() *lingerHandler {
	return &lingerHandler{release: make(chan struct{}), closed: make(chan CloseReason, 1024)}
}

func (h *lingerHandler) OnData(c *Conn, in []byte) int {
	if h.closing.Load() {
		h.late.Add(1)
	}
	switch {
	case bytes.HasPrefix(in, []byte("bye")):
	case bytes.HasPrefix(in, []byte("big")):
		c.Write(bytes.Repeat([]byte("b"), h.size))
	case bytes.HasPrefix(in, []byte("busy")):
		c.Write([]byte("goodbye\n"))
		h.closing.Store(true)
		c.CloseLinger(ReasonProtocolError, nil)
		<-h.release
		return len(in)
	case bytes.HasPrefix(in, []byte("work")):
		c.Dispatch(func() { <-h.release })
	default:
		return len(in)
	}
	c.Write([]byte("goodbye\n"))
	h.closing.Store(true)
	c.CloseLinger(ReasonProtocolError, nil)
	return len(in)
}

func (h *lingerHandler) OnClose(c *Conn, r CloseReason, err error) { h.closed <- r }

// lingerConfig is a kind's Config with the given linger timeout.
func lingerConfig(k engineKind, d time.Duration) Config {
	cfg := Config{TickInterval: 10 * time.Millisecond, LingerTimeout: d}
	k.cfg(&cfg)
	return cfg
}

// readAnswer reads what the server sent until its end of stream, which
// must come after "goodbye\n".
func readAnswer(t *testing.T, c net.Conn) {
	t.Helper()
	c.SetReadDeadline(time.Now().Add(10 * time.Second))
	got, err := io.ReadAll(c)
	if !bytes.HasSuffix(got, []byte("goodbye\n")) {
		t.Fatalf("read %q (%d bytes), %v: want the answer then end of stream", lastBytes(got), len(got), err)
	}
	if err != nil {
		t.Fatalf("read the answer, then %v: want end of stream", err)
	}
}

func lastBytes(b []byte) []byte { return b[max(0, len(b)-16):] }

// firstWriteReset reports whether a write to c fails at once with a reset:
// a socket closed by the peer with a FIN takes the first write.
func firstWriteReset(c net.Conn) error {
	_, err := c.Write([]byte("x"))
	return err
}

// TestLingerPeerClosesPromptly: the peer reads the answer and its end of
// stream and closes; the linger ends at once (the linger timeout is a
// minute), cleanly, counted once as eof, and the connection shows as
// lingering until then.
func TestLingerPeerClosesPromptly(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newLingerHandler()
		e, addr := startEngine(t, lingerConfig(k, time.Minute), h)
		c := dial(t, addr)
		c.Write([]byte("bye"))
		readAnswer(t, c)
		eventually(t, 5*time.Second, "a lingering connection", func() bool {
			cs := e.Conns()
			return len(cs) == 1 && cs[0].State == StateLingering
		})
		if n := e.Stats().ByState[StateLingering]; n != 1 {
			t.Fatalf("ByState[lingering] = %d", n)
		}
		c.Close()
		if r := h.awaitClose(t); r != ReasonProtocolError {
			t.Fatalf("closed for %v, want the reason CloseLinger gave", r)
		}
		eventually(t, 5*time.Second, "the linger counted", func() bool { return e.Stats().Lingers[LingerEOF] == 1 })
		st := e.Stats()
		if total := sum(st.Lingers); total != 1 || st.ByState[StateLingering] != 0 || h.late.Load() != 0 {
			t.Fatalf("lingers %v, lingering %d, OnData after the close %d", st.Lingers, st.ByState[StateLingering], h.late.Load())
		}
	})
}

func (h *lingerHandler) awaitClose(t *testing.T) CloseReason {
	t.Helper()
	select {
	case r := <-h.closed:
		return r
	case <-time.After(10 * time.Second):
		t.Fatal("no OnClose")
		return 0
	}
}

func sum(v []uint64) uint64 {
	var n uint64
	for _, x := range v {
		n += x
	}
	return n
}

// TestLingerSenderReadsAnswer: a peer that keeps sending after its request
// (an HTTP body, a WebSocket message over the limit) and reads
// concurrently gets the whole answer and then the end of stream; past
// LingerBytes its sending stalls, and LingerTimeout resets it.
func TestLingerSenderReadsAnswer(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newLingerHandler()
		cfg := lingerConfig(k, 300*time.Millisecond)
		cfg.LingerBytes = 1 << 20
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.Write([]byte("bye"))
		werr := make(chan error, 1)
		go func() {
			chunk := make([]byte, 64<<10)
			for i := 0; i < 4096; i++ { // up to 256 MiB: the reset stops it long before
				c.SetWriteDeadline(time.Now().Add(10 * time.Second))
				if _, err := c.Write(chunk); err != nil {
					werr <- err
					return
				}
			}
			werr <- nil
		}()
		readAnswer(t, c)
		if err := <-werr; !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("the sender's writes ended with %v, want a reset", err)
		}
		h.awaitClose(t)
		eventually(t, 5*time.Second, "the linger counted", func() bool { return e.Stats().Lingers[LingerBytes] == 1 })
		if st := e.Stats(); sum(st.Lingers) != 1 {
			t.Fatalf("lingers %v", st.Lingers)
		}
	})
}

// TestLingerPeerClosesPastBytes: a peer that reads the answer, sends more
// than LingerBytes (so the linger stops reading it) and then closes has
// closed its side, as the linger waits for: it ends at once, counted eof.
// The poll engine saw the hang-up of a connection it no longer read and
// counted it aborted, which README reserves for Abort and the shutdown
// deadline. The portable engine cannot see the end of stream past
// LingerBytes (it would have to read): it holds the linger to
// LingerTimeout, as Config.LingerBytes says, so it is not run here.
func TestLingerPeerClosesPastBytes(t *testing.T) {
	for _, k := range kinds[:2] {
		t.Run(k.name, func(t *testing.T) {
			h := newLingerHandler()
			cfg := lingerConfig(k, time.Minute)
			cfg.LingerBytes = 1
			e, addr := startEngine(t, cfg, h)
			c := dial(t, addr)
			c.Write([]byte("bye"))
			readAnswer(t, c)
			c.Write(make([]byte, 8<<10))
			eventually(t, 5*time.Second, "the input past LingerBytes read", func() bool { return e.Stats().BytesIn > 1+3 })
			c.Close()
			eventually(t, 5*time.Second, "the linger counted", func() bool { return sum(e.Stats().Lingers) == 1 })
			if st := e.Stats(); st.Lingers[LingerEOF] != 1 {
				t.Fatalf("lingers %v, want one eof", st.Lingers)
			}
			h.awaitClose(t)
		})
	}
}

// TestLingerSilentPeerReset: a peer that neither reads nor closes is reset
// once LingerTimeout has passed.
func TestLingerSilentPeerReset(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newLingerHandler()
		e, addr := startEngine(t, lingerConfig(k, 100*time.Millisecond), h)
		c := dial(t, addr)
		c.Write([]byte("bye"))
		h.awaitClose(t)
		eventually(t, 5*time.Second, "the linger counted", func() bool { return e.Stats().Lingers[LingerTimeout] == 1 })
		if err := firstWriteReset(c); !errors.Is(err, syscall.ECONNRESET) && !errors.Is(err, syscall.EPIPE) {
			t.Fatalf("a write after the linger: %v, want a reset", err)
		}
	})
}

// TestLingerSlowReader: output queued for a peer that reads slowly is
// flushed whole before the end of stream, while what the peer sends
// meanwhile is thrown away; a reset would drop the rest of the output.
func TestLingerSlowReader(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		const size = 8 << 20
		h := newLingerHandler()
		h.size = size
		cfg := lingerConfig(k, time.Minute)
		cfg.WriteHighWater = 64 << 20
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.Write([]byte("big"))
		// Keep sending while not reading: the answer waits in the sockets
		// and the server's queue, behind unread input.
		for i := 0; i < 16; i++ {
			c.SetWriteDeadline(time.Now().Add(5 * time.Second))
			if _, err := c.Write(make([]byte, 16<<10)); err != nil {
				t.Fatal(err)
			}
		}
		c.SetReadDeadline(time.Now().Add(10 * time.Second))
		got, err := io.ReadAll(c)
		if err != nil || len(got) != size+len("goodbye\n") || !bytes.HasSuffix(got, []byte("goodbye\n")) {
			t.Fatalf("read %d bytes ending %q, %v: want %d and end of stream", len(got), lastBytes(got), err, size+8)
		}
		c.Close()
		h.awaitClose(t)
		eventually(t, 5*time.Second, "the linger counted", func() bool { return e.Stats().Lingers[LingerEOF] == 1 })
	})
}

// TestLingerBusyHandler: a handler busy on the worker pool (its OnData
// blocked, or a task it dispatched) does not keep a lingering connection
// open past LingerTimeout.
func TestLingerBusyHandler(t *testing.T) {
	for _, cmd := range []string{"busy", "work"} {
		t.Run(cmd, func(t *testing.T) {
			forEachKind(t, func(t *testing.T, k engineKind) {
				if cmd == "busy" && k.name != "loops-worker" {
					t.Skip("OnData blocks on the worker pool only there")
				}
				h := newLingerHandler()
				defer close(h.release)
				e, addr := startEngine(t, lingerConfig(k, 300*time.Millisecond), h)
				c := dial(t, addr)
				c.Write([]byte(cmd))
				eventually(t, 10*time.Second, "lingering", func() bool { return e.Stats().ByState[StateLingering] == 1 })
				eventually(t, 10*time.Second, "the connection closed while its handler is busy", func() bool {
					return e.NumConns() == 0
				})
				if st := e.Stats(); st.Lingers[LingerTimeout] != 1 || sum(st.Lingers) != 1 {
					t.Fatalf("lingers %v", st.Lingers)
				}
			})
		})
	}
}

// TestLingerShutdownBounded: a drain does not wait for a silent lingering
// peer past LingerTimeout (the shutdown's own deadline is far off), and an
// engine closed under a linger counts it as aborted.
func TestLingerShutdownBounded(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		h := newLingerHandler()
		e, addr := startEngine(t, lingerConfig(k, 300*time.Millisecond), h)
		c := dial(t, addr)
		c.Write([]byte("bye"))
		eventually(t, 5*time.Second, "lingering", func() bool { return e.Stats().ByState[StateLingering] == 1 })
		ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
		defer cancel()
		if err := e.Shutdown(ctx); err != nil {
			t.Fatalf("Shutdown: %v", err)
		}
		if st := e.Stats(); st.Lingers[LingerTimeout] != 1 {
			t.Fatalf("lingers %v", st.Lingers)
		}

		h = newLingerHandler()
		e, addr = startEngine(t, lingerConfig(k, time.Minute), h)
		c = dial(t, addr)
		c.Write([]byte("bye"))
		eventually(t, 5*time.Second, "lingering", func() bool { return e.Stats().ByState[StateLingering] == 1 })
		e.Close()
		if st := e.Stats(); st.Lingers[LingerAborted] != 1 || sum(st.Lingers) != 1 {
			t.Fatalf("lingers %v", st.Lingers)
		}
	})
}

// TestLingerNoLeak lingers on 300 connections whose peers, once they
// have read the answer and the end of stream, close, reset or stay silent,
// and checks that each linger is counted once, by how it ended, and that
// no descriptor or goroutine is left.
func TestLingerNoLeak(t *testing.T) {
	for _, k := range []engineKind{kinds[1], kinds[2]} {
		t.Run(k.name, func(t *testing.T) {
			fds0, g0 := fdCount(t), runtime.NumGoroutine()
			h := newLingerHandler()
			e, err := New(lingerConfig(k, 200*time.Millisecond), h)
			if err != nil {
				t.Fatal(err)
			}
			if err := e.Start("127.0.0.1:0"); err != nil {
				t.Fatal(err)
			}
			const total = 300
			var wg sync.WaitGroup
			silent := make(chan net.Conn, total)
			for i := 0; i < total; i++ {
				c, err := net.DialTimeout("tcp", e.Addr().String(), 5*time.Second)
				if err != nil {
					t.Fatal(err)
				}
				wg.Add(1)
				go func(i int, c net.Conn) {
					defer wg.Done()
					c.Write([]byte("bye"))
					c.SetReadDeadline(time.Now().Add(10 * time.Second))
					if got, err := io.ReadAll(c); err != nil || string(got) != "goodbye\n" {
						t.Errorf("read %q, %v", got, err)
					}
					switch i % 3 {
					case 0: // closes
						c.Close()
					case 1: // resets
						c.(*net.TCPConn).SetLinger(0)
						c.Close()
					case 2: // stays silent until the linger times out
						silent <- c
					}
				}(i, c)
			}
			wg.Wait()
			eventually(t, 10*time.Second, "all closed", func() bool { return e.NumConns() == 0 })
			close(silent)
			for c := range silent {
				c.Close()
			}
			st := e.Stats()
			want := []uint64{total / 3, 0, total / 3, total / 3, 0}
			if !slicesEqual(st.Lingers, want) || st.Closed[ReasonProtocolError] != total {
				t.Fatalf("lingers %v, want %v; closed %d, want %d", st.Lingers, want, st.Closed[ReasonProtocolError], total)
			}
			if err := e.Close(); err != nil {
				t.Fatal(err)
			}
			eventually(t, 10*time.Second, "descriptors released", func() bool { return fdCount(t) <= fds0 })
			eventually(t, 10*time.Second, "goroutines released", func() bool { return runtime.NumGoroutine() <= g0+1 })
		})
	}
}

func slicesEqual(a, b []uint64) bool {
	if len(a) != len(b) {
		return false
	}
	for i := range a {
		if a[i] != b[i] {
			return false
		}
	}
	return true
}
