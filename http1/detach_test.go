package http1

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"strings"
	"sync"
	"testing"
	"time"

	"github.com/warrenhq/warren/engine"
	"github.com/warrenhq/warren/internal/testutil"
)

// later is a detached request the test answers.
type later struct {
	c *Ctx
	d *Detached
}

// detachRouter serves /later/{id} (inline) and /later-worker/{id} (on a
// worker) by detaching: the test answers them from its own goroutine.
func detachRouter(got chan<- later) *Router {
	r := testRouter()
	h := func(c *Ctx) {
		d, err := c.Detach()
		if err != nil {
			c.SetStatus(500)
			c.WriteString(err.Error())
			return
		}
		got <- later{c, d}
	}
	r.Handle("GET /later/{id}", InlineFunc(h))
	r.HandleFunc("GET /later-worker/{id}", h)
	r.HandleFunc("POST /later-worker/{id}", h)
	return r
}

// answer writes the answer to a detached request from another goroutine,
// reading the request's parameter, query and body as it does.
func answer(l later) {
	go func() {
		l.c.WriteString("later " + l.c.Param("id") + " " + string(l.c.Query("q")) + " " + string(l.c.Body()))
		l.d.Finish()
	}()
}

func TestDetachAnswersLaterInOrder(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		for _, path := range []string{"/later/", "/later-worker/"} {
			t.Run(strings.Trim(path, "/"), func(t *testing.T) {
				got := make(chan later, 4)
				s, addr := startServer(t, cfg, detachRouter(got), ec)
				c := dial(t, addr)
				// Three requests in one write: the second may reach its
				// handler only once the first is answered.
				c.Write([]byte("GET " + path + "a?q=1 HTTP/1.1\r\nHost: x\r\n\r\n" +
					"GET " + path + "b?q=2 HTTP/1.1\r\nHost: x\r\n\r\n" +
					"POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc"))
				first := <-got
				testutil.Eventually(t, 0, "one detached request", func() bool { return s.Stats().Detached == 1 })
				select {
				case l := <-got:
					t.Fatalf("request %q reached its handler while the first was detached", l.c.Param("id"))
				case <-time.After(100 * time.Millisecond):
				}
				answer(first)
				answer(<-got)
				br := bufio.NewReader(c)
				c.SetReadDeadline(time.Now().Add(5 * time.Second))
				for _, want := range []string{"later a 1 ", "later b 2 ", "abc"} {
					resp, err := http.ReadResponse(br, nil)
					if err != nil {
						t.Fatal(err)
					}
					b, _ := io.ReadAll(resp.Body)
					if resp.StatusCode != 200 || string(b) != want {
						t.Fatalf("answer %d %q, want 200 %q", resp.StatusCode, b, want)
					}
				}
				testutil.Eventually(t, 0, "no detached request", func() bool { return s.Stats().Detached == 0 })
			})
		}
	})
}

func TestDetachHoldsNoWorker(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		ec.Workers = 2
		got := make(chan later, 64)
		s, addr := startServer(t, cfg, detachRouter(got), ec)
		// Twenty requests detached from worker handlers at once, with two
		// workers: had each kept its worker, the third would wait.
		const n = 20
		conns := make([]net.Conn, n)
		for i := range conns {
			conns[i] = dial(t, addr)
			fmt.Fprintf(conns[i], "POST /later-worker/%d HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\n\r\nbody", i)
		}
		var pending []later
		for range n {
			pending = append(pending, <-got)
		}
		if d := s.Stats().Detached; d != n {
			t.Fatalf("detached %d, want %d", d, n)
		}
		// A worker route still answers while all of them wait.
		st, body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/delay?ms=0")
		if st != 200 || body != "hello" {
			t.Fatalf("worker route: %d %q", st, body)
		}
		for _, l := range pending {
			answer(l)
		}
		for i, c := range conns {
			c.SetReadDeadline(time.Now().Add(5 * time.Second))
			resp, err := http.ReadResponse(bufio.NewReader(c), nil)
			if err != nil {
				t.Fatal(err)
			}
			b, _ := io.ReadAll(resp.Body)
			if want := fmt.Sprintf("later %d  body", i); string(b) != want {
				t.Fatalf("answer %q, want %q", b, want)
			}
		}
	})
}

func TestDetachFinishBeforeReturn(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		r := testRouter()
		h := func(c *Ctx) {
			d, err := c.Detach()
			if err != nil {
				t.Error(err)
				return
			}
			var wg sync.WaitGroup
			wg.Add(1)
			go func() {
				defer wg.Done()
				c.SetStatus(201)
				c.WriteString("made")
				d.Finish()
				d.Finish() // a second call does nothing
			}()
			wg.Wait() // Finish runs before the handler returns
		}
		r.Handle("GET /now", InlineFunc(h))
		r.HandleFunc("GET /now-worker", h)
		_, addr := startServer(t, cfg, r, ec)
		client := &http.Client{Timeout: 5 * time.Second}
		for range 3 { // the connection is reused
			for _, p := range []string{"/now", "/now-worker"} {
				resp, err := client.Get("http://" + addr + p)
				if err != nil {
					t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				if resp.StatusCode != 201 || string(b) != "made" {
					t.Fatalf("%s: %d %q", p, resp.StatusCode, b)
				}
			}
		}
	})
}

func TestDetachRefused(t *testing.T) {
	r := testRouter()
	r.HandleFunc("GET /flushed", func(c *Ctx) {
		c.Flush()
		if _, err := c.Detach(); !errors.Is(err, ErrNotDetachable) {
			t.Errorf("Detach after Flush: %v", err)
		}
	})
	r.HandleFunc("GET /twice", func(c *Ctx) {
		d, err := c.Detach()
		if err != nil {
			t.Error(err)
			return
		}
		if _, err := c.Detach(); !errors.Is(err, ErrNotDetachable) {
			t.Errorf("second Detach: %v", err)
		}
		c.WriteString("once")
		d.Finish()
	})
	r.Handle("POST /streamed", StreamBody(HandlerFunc(func(c *Ctx) {
		io.Copy(io.Discard, c.BodyReader())
		if _, err := c.Detach(); !errors.Is(err, ErrNotDetachable) {
			t.Errorf("Detach of a streamed body: %v", err)
		}
		c.WriteString("streamed")
	}), 1<<20))
	_, addr := startServer(t, Config{}, r)
	client := &http.Client{Timeout: 5 * time.Second}
	for _, p := range []string{"/flushed", "/twice"} {
		if st, body, _ := get(t, client, "http://"+addr+p); st != 200 || (p == "/twice" && body != "once") {
			t.Fatalf("%s: %d %q", p, st, body)
		}
	}
	resp, err := client.Post("http://"+addr+"/streamed", "text/plain", strings.NewReader("data"))
	if err != nil {
		t.Fatal(err)
	}
	b, _ := io.ReadAll(resp.Body)
	resp.Body.Close()
	if string(b) != "streamed" {
		t.Fatalf("streamed: %q", b)
	}
}

func TestDetachClientGone(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		got := make(chan later, 4)
		s, addr := startServer(t, cfg, detachRouter(got), ec)
		for _, path := range []string{"/later/x", "/later-worker/x"} {
			c := dial(t, addr)
			c.Write([]byte("GET " + path + " HTTP/1.1\r\nHost: x\r\n\r\n"))
			l := <-got
			ctx := l.c.Context()
			c.Close()
			select {
			case <-ctx.Done():
			case <-time.After(10 * time.Second):
				t.Fatal("the detached request's context did not end when its client left")
			}
			if cause := context.Cause(ctx); !errors.Is(cause, ErrClientGone) {
				t.Fatalf("cause %v, want ErrClientGone", cause)
			}
			l.c.WriteString("nobody reads this")
			l.d.Finish()
			testutil.Eventually(t, 0, "the connection gone and no detached request", func() bool {
				return s.Engine().NumConns() == 0 && s.Stats().Detached == 0
			})
		}
	})
}

func TestDetachedPanicCloses(t *testing.T) {
	r := testRouter()
	var mu sync.Mutex
	var ds []*Detached
	r.HandleFunc("GET /detach-panic", func(c *Ctx) {
		d, _ := c.Detach()
		mu.Lock()
		ds = append(ds, d)
		mu.Unlock()
		panic("after detach")
	})
	s, addr := startServer(t, Config{Logger: discardLogger()}, r)
	out := rawExchange(t, addr, "GET /detach-panic HTTP/1.1\r\nHost: x\r\n\r\n", 5*time.Second)
	if out != "" {
		t.Fatalf("a detached request whose handler panicked got %q, want a close", out)
	}
	testutil.Eventually(t, 0, "the close counted as a panic", func() bool {
		return s.Engine().Stats().Closed[engine.ReasonPanic] == 1
	})
	// Abandoned: the gauge is back without a Finish, and a late Finish
	// does nothing.
	testutil.Eventually(t, 0, "no detached request", func() bool { return s.Stats().Detached == 0 })
	mu.Lock()
	ds[0].Finish()
	mu.Unlock()
	if d := s.Stats().Detached; d != 0 {
		t.Fatalf("detached %d after a late Finish", d)
	}
	if st, body, _ := get(t, &http.Client{Timeout: 5 * time.Second}, "http://"+addr+"/"); st != 200 || body != "hello" {
		t.Fatal("server broken after a detached panic")
	}
}

func TestShutdownWaitsForDetached(t *testing.T) {
	forEachEngine(t, func(t *testing.T, cfg Config, ec engine.Config) {
		got := make(chan later, 4)
		s, addr := startServer(t, cfg, detachRouter(got), ec)
		c := dial(t, addr)
		c.Write([]byte("GET /later-worker/d HTTP/1.1\r\nHost: x\r\n\r\n"))
		l := <-got
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		shut := make(chan error, 1)
		go func() { shut <- s.Shutdown(ctx) }()
		testutil.Eventually(t, 0, "the drain to begin", s.Engine().Draining)
		select {
		case err := <-shut:
			t.Fatalf("Shutdown returned %v with a detached request in progress", err)
		case <-time.After(100 * time.Millisecond):
		}
		answer(l)
		if err := <-shut; err != nil {
			t.Fatal(err)
		}
		c.SetReadDeadline(time.Now().Add(5 * time.Second))
		out, _ := io.ReadAll(c)
		if !strings.Contains(string(out), "Connection: close") || !strings.HasSuffix(string(out), "later d  ") {
			t.Fatalf("detached response on shutdown: %q", out)
		}
	})
}
