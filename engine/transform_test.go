package engine_test

import (
	"bytes"
	"io"
	"net"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// xor is a toy Transform: every byte is XORed with 0x5a both ways, Final
// sends "BYE" (XORed), and Open keeps nothing back.
type xor struct{ out []byte }

func (x *xor) Open(c *engine.Conn, in []byte) ([]byte, error) {
	for i := range in {
		in[i] ^= 0x5a
	}
	return in, nil
}
func (x *xor) OpenDone() {}
func (x *xor) Seal(bufs [][]byte, total int) ([]byte, error) {
	out := make([]byte, 0, total)
	for _, b := range bufs {
		for _, v := range b {
			out = append(out, v^0x5a)
		}
	}
	return out, nil
}
func (x *xor) Final() []byte {
	b := []byte("BYE")
	for i := range b {
		b[i] ^= 0x5a
	}
	return b
}
func (x *xor) Release([]byte) {}

// upperT answers each read with its bytes upper-cased, and "quit" with a
// graceful close.
type upperT struct{}

func (upperT) Inline() bool { return true }
func (upperT) OnData(c *engine.Conn, in []byte) int {
	if bytes.Equal(in, []byte("quit")) {
		c.Close()
		return len(in)
	}
	c.Write(bytes.ToUpper(in))
	return len(in)
}

// gate holds the connection until it reads "start", then installs the
// transform and hands over to upper, injecting what followed "start".
type gate struct{}

func (gate) Inline() bool { return true }
func (gate) OnData(c *engine.Conn, in []byte) int {
	i := bytes.Index(in, []byte("start"))
	if i < 0 {
		return 0
	}
	rest := append([]byte(nil), in[i+5:]...)
	c.SetTransform(&xor{})
	c.SetHandler(upperT{})
	c.InjectInput(rest)
	return len(in)
}

func xorBytes(s string) []byte {
	b := []byte(s)
	for i := range b {
		b[i] ^= 0x5a
	}
	return b
}

// TestTransform: bytes after the switch go through the transform both ways,
// input read ahead is injected, and a graceful close sends Final's bytes.
func TestTransform(t *testing.T) {
	for _, portable := range []bool{false, true} {
		e := testutil.StartEngine(t, engine.Config{Portable: portable})
		addr := testutil.Listen(t, e, gate{})
		nc, err := net.Dial("tcp", addr)
		if err != nil {
			t.Fatal(err)
		}
		nc.SetDeadline(time.Now().Add(5 * time.Second))
		// "start" in the clear, then XORed bytes in the same write.
		nc.Write(append([]byte("start"), xorBytes("hello")...))
		got := make([]byte, 5)
		if _, err := io.ReadFull(nc, got); err != nil || string(got) != string(xorBytes("HELLO")) {
			t.Fatalf("portable=%v: injected input answered %q, %v", portable, got, err)
		}
		nc.Write(xorBytes("quit"))
		rest, _ := io.ReadAll(nc)
		if string(rest) != string(xorBytes("BYE")) {
			t.Fatalf("portable=%v: close sent %q, want Final's bytes", portable, rest)
		}
		nc.Close()
	}
}

// closingXor is xor with a TransformCloser hook that counts its calls.
type closingXor struct {
	xor
	closed chan engine.CloseReason
}

func (x *closingXor) Closed(c *engine.Conn, r engine.CloseReason) { x.closed <- r }

// closeGate installs a closingXor and hands over to upperT.
type closeGate struct{ t *closingXor }

func (g closeGate) Inline() bool { return true }
func (g closeGate) OnData(c *engine.Conn, in []byte) int {
	rest := append([]byte(nil), in[1:]...)
	c.SetTransform(g.t)
	c.SetHandler(upperT{})
	c.InjectInput(rest)
	return len(in)
}

// TestTransformCloser: Closed runs once when the connection closes, by the
// peer's close or the server's, on both engines.
func TestTransformCloser(t *testing.T) {
	for _, portable := range []bool{false, true} {
		for _, peer := range []bool{false, true} {
			tr := &closingXor{closed: make(chan engine.CloseReason, 4)}
			e := testutil.StartEngine(t, engine.Config{Portable: portable})
			addr := testutil.Listen(t, e, closeGate{tr})
			nc, err := net.Dial("tcp", addr)
			if err != nil {
				t.Fatal(err)
			}
			nc.SetDeadline(time.Now().Add(5 * time.Second))
			nc.Write([]byte("x"))
			nc.Write(xorBytes("hi"))
			got := make([]byte, 2)
			if _, err := io.ReadFull(nc, got); err != nil {
				t.Fatalf("portable=%v: %v", portable, err)
			}
			if peer {
				nc.Close()
			} else {
				nc.Write(xorBytes("quit"))
			}
			select {
			case r := <-tr.closed:
				want := engine.ReasonLocal
				if peer {
					want = engine.ReasonPeerClosed
				}
				if r != want {
					t.Fatalf("portable=%v peer=%v: Closed with %v, want %v", portable, peer, r, want)
				}
			case <-time.After(5 * time.Second):
				t.Fatalf("portable=%v peer=%v: Closed never ran", portable, peer)
			}
			select {
			case <-tr.closed:
				t.Fatalf("portable=%v peer=%v: Closed ran twice", portable, peer)
			case <-time.After(50 * time.Millisecond):
			}
			nc.Close()
		}
	}
}
