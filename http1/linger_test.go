package http1

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
)

// TestLinger413 has a pipelining client, 50 times over, send six requests
// whose 512 KiB answers it does not read yet (they wait in the sockets and
// the server's queue), then a request whose body is over the limit, and
// keep sending that body while it reads: it must get the six answers and
// then the 413. A server that closed on the 413 with
// the body's bytes unread made the kernel reset the connection and drop the
// answers still in its socket, the 413 with them (docs/benchmarks.md
// section 80).
func TestLinger413(t *testing.T) {
	const runs, echoes, part = 50, 6, 512 << 10
	for _, portable := range []bool{false, true} {
		t.Run(map[bool]string{false: "loops", true: "portable"}[portable], func(t *testing.T) {
			cfg := Config{Logger: discardLogger()}
			cfg.Limits.MaxBodyBytes = 1 << 20
			r := NewRouter()
			r.Handle("POST /echo", InlineFunc(func(c *Ctx) { c.Write(c.Body()) }))
			_, addr := startServer(t, cfg, r, engine.Config{Portable: portable})
			good := 0
			var fails []string
			for i := 0; i < runs; i++ {
				if err := pipeline413(addr, echoes, part); err != nil {
					fails = append(fails, err.Error())
					continue
				}
				good++
			}
			if good != runs {
				t.Fatalf("%d of %d runs read every answer and the 413; the others: %q", good, runs, fails)
			}
		})
	}
}

// pipeline413 runs one connection of TestLinger413.
func pipeline413(addr string, echoes, part int) error {
	c, err := net.DialTimeout("tcp", addr, 5*time.Second)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(20 * time.Second))
	go func() {
		body := bytes.Repeat([]byte("e"), part)
		for i := 0; i < echoes; i++ {
			fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", part)
			if _, err := c.Write(body); err != nil {
				return
			}
		}
		fmt.Fprintf(c, "POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: %d\r\n\r\n", 64<<20)
		chunk := make([]byte, 64<<10)
		for i := 0; i < 1024; i++ { // the body, until the server stops taking it
			if _, err := c.Write(chunk); err != nil {
				return
			}
		}
	}()
	br := bufio.NewReader(c)
	for i := 0; i <= echoes; i++ {
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("answer %d: %v", i, err)
		}
		n, err := io.Copy(io.Discard, resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("answer %d: %d bytes, %v", i, n, err)
		}
		want := 200
		if i == echoes {
			want = 413
		}
		if resp.StatusCode != want {
			return fmt.Errorf("answer %d: %d", i, resp.StatusCode)
		}
	}
	return nil
}
