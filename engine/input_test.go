package engine

import (
	"bytes"
	"io"
	"testing"
	"time"

	"github.com/warrenhq/warren/internal/pool"
)

// TestInputHolder checks the out-of-line unconsumed input (Conn.in): a
// connection holds a holder only while it has bytes pending, an empty
// buffer is never kept, and taking the input hands the buffer over.
func TestInputHolder(t *testing.T) {
	var c Conn
	if c.input() != nil || c.pending() {
		t.Fatal("a new Conn has input")
	}
	c.setInput(nil)
	if c.in != nil {
		t.Fatal("setInput(nil) made a holder")
	}
	c.setInput(pool.Get(10)[:0]) // empty: back to the pool, no holder
	if c.in != nil || c.pending() {
		t.Fatal("setInput(empty) kept a holder")
	}

	b := append(pool.Get(5)[:0], "hello"...)
	c.setInput(b)
	if got := c.input(); string(got) != "hello" || !c.pending() {
		t.Fatalf("input %q, pending %v", got, c.pending())
	}
	h := c.in
	b = append(pool.Grow(c.input(), 4096), bytes.Repeat([]byte("x"), 4096)...)
	c.setInput(b)
	if c.in != h || len(c.input()) != 4101 {
		t.Fatalf("replacing the buffer changed the holder or lost bytes (len %d)", len(c.input()))
	}

	got := c.takeInput()
	if len(got) != 4101 || c.in != nil || c.input() != nil || c.pending() {
		t.Fatalf("takeInput: len %d, holder %p", len(got), c.in)
	}
	if h.b != nil {
		t.Fatal("a released holder still points at the buffer")
	}
	if c.takeInput() != nil {
		t.Fatal("takeInput on none returned a buffer")
	}

	c.setInput(got[:copy(got, "rest")])
	h = c.in
	c.dropInput()
	if c.in != nil || c.pending() {
		t.Fatal("dropInput kept the input")
	}
	if h.b != nil {
		t.Fatalf("a holder went back to its pool with a %d-byte buffer (over inKeep)", cap(h.b))
	}
	c.dropInput() // none: nothing to do

	// newInput copies; a small buffer stays with its holder, emptied, for
	// the next straddling message.
	src := []byte("partial message")
	c.newInput(src)
	src[0] = 'X'
	if got := string(c.input()); got != "partial message" {
		t.Fatalf("newInput: input %q", got)
	}
	h = c.in
	c.dropInput()
	if len(h.b) != 0 || cap(h.b) == 0 || cap(h.b) > inKeep {
		t.Fatalf("a small buffer left its holder: len %d cap %d", len(h.b), cap(h.b))
	}
	// A holder's buffer too small for the data is replaced.
	h2 := &inBuf{b: pool.Get(256)[:0]}
	c.in = h2
	big := bytes.Repeat([]byte("q"), 1000)
	c.newInput(big)
	if !bytes.Equal(c.input(), big) || c.in != h2 || cap(h2.b) < 1000 {
		t.Fatalf("newInput over a small buffer: len %d cap %d", len(c.input()), cap(h2.b))
	}
	c.dropInput()

	c.flags |= fMessage
	if !c.pending() {
		t.Fatal("SetMessagePending's flag is not pending")
	}
}

// TestStraddlingInput sends lines cut across reads, on every engine: the
// unconsumed tail is kept and completed by the next read, a partial line
// shows as the connection's read buffer and makes it Active, and once it is
// consumed the connection is Idle with nothing held.
func TestStraddlingInput(t *testing.T) {
	forEachKind(t, func(t *testing.T, k engineKind) {
		cfg := Config{IdleTimeout: time.Hour}
		k.cfg(&cfg)
		h := &lineHandler{*newEcho()}
		e, addr := startEngine(t, cfg, h)
		c := dial(t, addr)
		c.SetDeadline(time.Now().Add(10 * time.Second))

		readBuffer := func() (int, State) {
			cs := e.Conns()
			if len(cs) != 1 {
				return -1, StateNew
			}
			return cs[0].ReadBuffer, cs[0].State
		}
		// waitHeld waits until the server holds n bytes of input (the
		// portable engine does not report its read buffer: only the state).
		waitHeld := func(n int, want State) {
			t.Helper()
			eventually(t, 5*time.Second, "the held input", func() bool {
				rb, st := readBuffer()
				return st == want && (cfg.Portable || rb == n)
			})
		}

		for i, parts := range [][]string{
			{"hel", "lo wor", "ld\n"},
			{"one\ntw", "o\nthr", "ee\n"},
			{string(bytes.Repeat([]byte("y"), 9000)), string(bytes.Repeat([]byte("z"), 300)) + "\n"},
		} {
			var want []byte
			for j, p := range parts {
				if _, err := c.Write([]byte(p)); err != nil {
					t.Fatal(err)
				}
				want = append(want, p...)
				if j < len(parts)-1 {
					tail := want[bytes.LastIndexByte(want, '\n')+1:]
					waitHeld(len(tail), StateActive)
				}
			}
			got := make([]byte, len(want))
			if _, err := io.ReadFull(c, got); err != nil {
				t.Fatalf("case %d: read echo: %v", i, err)
			}
			if !bytes.Equal(got, want) {
				t.Fatalf("case %d: echo %q, want %q", i, got, want)
			}
			waitHeld(0, StateIdle)
		}
	})
}
