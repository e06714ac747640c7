package websocket

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"
)

// TestLingerPythonTooBig has a real peer, Python's websockets, send six
// messages the server echoes, without reading the echoes yet (a busy
// client: its socket stops being read), then a message four times the
// server's limit, on 50 connections in turn: every one must get the
// server's Close frame, 1009 with its reason, after the echoes the server
// sent before it (a slow handler's last echo may come too late, after the
// Close frame: it is not sent). A server
// that closed TCP while the big message was still arriving had the kernel
// reset the connection and drop the echoes and the Close frame still in
// its socket: the peer saw 1006 in 48 of 50 runs (docs/benchmarks.md
// section 80).
func TestLingerPythonTooBig(t *testing.T) {
	py := python(t)
	const runs, limit = 50, 1 << 20
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "loops", true: "portable"}[portable], func(t *testing.T) {
			rec := newRecorder(true)
			srv := startServer(t, Config{MaxMessageSize: limit}, rec, serverOpts{portable: portable})
			ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
			defer cancel()
			out, err := exec.CommandContext(ctx, py, filepath.Join("interop", "python_toobig.py"),
				"ws://"+srv.addr+"/ws", strconv.Itoa(runs), strconv.Itoa(4*limit), "6").CombinedOutput()
			if err != nil {
				t.Fatalf("python: %v\n%s", err, out)
			}
			lines := strings.Split(strings.TrimSpace(string(out)), "\n")
			good := 0
			for _, l := range lines {
				if strings.HasSuffix(l, " close 1009 message too big") {
					good++
				}
			}
			if good != runs {
				t.Fatalf("%d of %d runs saw 1009 with its reason; the peer saw:\n%s", good, runs, out)
			}
		})
	}
}
