package websocket

import (
	"context"
	"net"
	"os/exec"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// TestLingerTooBigPython: a Python websockets client that sends a message
// over MaxMessageSize, many times over, must see the server's Close 1009
// with its reason every time, on both engine kinds. The server refuses
// the frame at its header while the client still sends the rest, and its
// Close frame waits behind echoes the client has not read yet: a server
// that closed its socket with the client's input unread made the kernel
// send a reset, which discarded the Close frame (1006, every run before
// the lingering close).
func TestLingerTooBigPython(t *testing.T) {
	py := python(t)
	runs := "30"
	if testing.Short() {
		runs = "6"
	}
	for _, portable := range []bool{false, true} {
		name := map[bool]string{false: "loops", true: "portable"}[portable]
		t.Run(name, func(t *testing.T) {
			// A shorter linger than the default 1 s: the client waits for
			// the server to close after it answers the Close, so each run
			// lasts the linger.
			srv := startServer(t, Config{MaxMessageSize: 64 << 10, CloseLinger: 300 * time.Millisecond}, HandlerFuncs{
				Message: func(c *Conn, op Opcode, data []byte) { c.WriteMessage(op, data) },
			}, serverOpts{portable: portable})
			ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, filepath.Join("interop", "python_toobig.py"),
				"ws://"+srv.addr+"/ws", "1048576", runs, "64").CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			bad := 0
			for _, l := range lines {
				if !strings.HasPrefix(l, "1009 ") || !strings.Contains(l, "too big") {
					bad++
				}
			}
			if bad > 0 || len(lines) != atoi(runs) {
				t.Fatalf("%d of %d runs did not see 1009 with its reason:\n%s", bad, len(lines), out)
			}
			if st := srv.ws.Stats(); st.Lingers != uint64(atoi(runs)) || st.LingerBytesHit != 0 {
				t.Fatalf("lingers %d, cut by bytes %d", st.Lingers, st.LingerBytesHit)
			}
		})
	}
}

func atoi(s string) int {
	n := 0
	for _, r := range s {
		n = n*10 + int(r-'0')
	}
	return n
}

// TestLingerEnds: after failing a connection (a frame over
// MaxMessageSize: 1009), the server keeps reading until the peer closes
// its side (and then closes with the failure's reason, not as closed by
// the peer), until CloseLingerBytes were discarded, or until CloseLinger
// has passed; on both engine kinds. The bounds other than the one tested
// are set far beyond the test's 5 s wait for the end of stream.
func TestLingerEnds(t *testing.T) {
	for _, portable := range []bool{false, true} {
		kind := map[bool]string{false: "loops", true: "portable"}[portable]
		for _, c := range []struct {
			name   string
			linger time.Duration
			bytes  int
			client func(rc *rawClient)
		}{
			{"peer closes", time.Minute, 1 << 30, func(rc *rawClient) { rc.nc.(*net.TCPConn).CloseWrite() }},
			{"bytes", time.Minute, 64 << 10, func(rc *rawClient) {
				junk := make([]byte, 16<<10)
				for range 32 { // 512 KiB at most; the server closes past 64 KiB
					if _, err := rc.nc.Write(junk); err != nil {
						return
					}
				}
			}},
			{"time", 200 * time.Millisecond, 1 << 30, func(*rawClient) {}},
		} {
			t.Run(kind+"/"+c.name, func(t *testing.T) {
				rec := newRecorder(true)
				srv := startServer(t, Config{MaxMessageSize: 1024, CloseLinger: c.linger, CloseLingerBytes: c.bytes},
					rec, serverOpts{portable: portable})
				rc := dialRaw(t, srv.addr)
				rec.next(t, "open")
				// A binary frame declaring 1 MiB: refused at its header.
				hdr := AppendMaskedFrame(nil, OpBinary, true, NewMask(), make([]byte, 1<<20))
				rc.sendRaw(hdr[:4096])
				if code, _ := rc.expectClose(); code != CloseMessageTooBig {
					t.Fatalf("close %d, want 1009", code)
				}
				go c.client(rc)
				rc.expectEOF()
				ev := rec.next(t, "close")
				if ev.reason != engine.ReasonLimitReached || ev.code != CloseMessageTooBig {
					t.Fatalf("closed %v %d, want limit_reached 1009", ev.reason, ev.code)
				}
				st := srv.ws.Stats()
				if want := map[bool]uint64{false: 0, true: 1}[c.name == "bytes"]; st.Lingers != 1 || st.LingerBytesHit != want {
					t.Fatalf("lingers %d, cut by bytes %d (want %d)", st.Lingers, st.LingerBytesHit, want)
				}
			})
		}
	}
}

// TestLingerOff: a negative CloseLinger closes a failed connection at once
// (before the peer closes), as before lingering.
func TestLingerOff(t *testing.T) {
	rec := newRecorder(true)
	srv := startServer(t, Config{MaxMessageSize: 1024, CloseLinger: -1}, rec)
	rc := dialRaw(t, srv.addr)
	rec.next(t, "open")
	rc.sendRaw(AppendMaskedFrame(nil, OpBinary, true, NewMask(), make([]byte, 2048))[:100])
	if code, _ := rc.expectClose(); code != CloseMessageTooBig {
		t.Fatalf("close %d", code)
	}
	rc.expectEOF()
	if st := srv.ws.Stats(); st.Lingers != 0 {
		t.Fatalf("lingers %d", st.Lingers)
	}
}
