package websocket

import (
	"context"
	"os/exec"
	"path/filepath"
	"strconv"
	"strings"
	"testing"
	"time"

	gorilla "github.com/gorilla/websocket"

	"github.com/warrenhq/warren/engine"
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

// TestLingerTellsHandlerAtOnce: a peer over the message limit gets 1009
// and, like a gorilla client whose Close waits for its reader, keeps its
// TCP connection open. The close lingers (for up to a minute here), but
// the handler must get OnClose when the close begins, with the 1009 and
// the limit's reason, while the connection is still lingering: a gateway
// that kept the device registered until the linger ended counted its
// immediate reconnect as replacing a connection already closed.
func TestLingerTellsHandlerAtOnce(t *testing.T) {
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "loops", true: "portable"}[portable], func(t *testing.T) {
			rec := newRecorder(false)
			srv := startServer(t, Config{MaxMessageSize: 1 << 10}, rec, serverOpts{portable: portable, linger: time.Minute})
			c, _, err := gorilla.DefaultDialer.Dial("ws://"+srv.addr+"/ws", nil)
			if err != nil {
				t.Fatal(err)
			}
			defer c.Close()
			if err := c.WriteMessage(gorilla.BinaryMessage, make([]byte, 4<<10)); err != nil {
				t.Fatal(err)
			}
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			if _, _, err := c.ReadMessage(); !gorilla.IsCloseError(err, CloseMessageTooBig) {
				t.Fatalf("read %v, want close 1009", err)
			}
			ev := rec.next(t, "close")
			if ev.code != CloseMessageTooBig || ev.reason != engine.ReasonLimitReached {
				t.Fatalf("OnClose code %d reason %v, want 1009 and %v", ev.code, ev.reason, engine.ReasonLimitReached)
			}
			if n := srv.http.Engine().Stats().ByState[engine.StateLingering]; n != 1 {
				t.Fatalf("%d connections lingering when OnClose ran, want 1 (the client has not closed)", n)
			}
			c.Close()
			select {
			case ev := <-rec.events:
				if ev.kind == "close" {
					t.Fatalf("a second OnClose after the linger: %+v", ev)
				}
			case <-time.After(200 * time.Millisecond):
			}
		})
	}
}
