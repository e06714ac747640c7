//go:build linux

package main

import (
	"bufio"
	"bytes"
	"fmt"
	"io"
	"net"
	"net/http"
	"net/netip"
	"runtime"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/sys/unix"
)

// startBackend serves HTTP/1.1 keep-alive: GET /N answers a body of N
// bytes (a repeating pattern). It counts the connections that ended.
func startBackend(t *testing.T) (netip.AddrPort, *atomic.Int64) {
	t.Helper()
	ln, err := net.Listen("tcp4", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { ln.Close() })
	var ended atomic.Int64
	go func() {
		for {
			c, err := ln.Accept()
			if err != nil {
				return
			}
			go func() {
				defer ended.Add(1)
				defer c.Close()
				br := bufio.NewReader(c)
				for {
					req, err := http.ReadRequest(br)
					if err != nil {
						return
					}
					n, err := strconv.Atoi(strings.TrimPrefix(req.URL.Path, "/"))
					if err != nil {
						return
					}
					head := fmt.Sprintf("HTTP/1.1 200 OK\r\nContent-Length: %d\r\n\r\n", n)
					if _, err := c.Write(append([]byte(head), body(n)...)); err != nil {
						return
					}
				}
			}()
		}
	}()
	return netip.MustParseAddrPort(ln.Addr().String()), &ended
}

func body(n int) []byte {
	b := make([]byte, n)
	for i := range b {
		b[i] = byte('a' + i%26)
	}
	return b
}

// TestRelayRoundTrips sends keep-alive requests through the relay in
// both modes (uring with and without the bounded wait for a round's own
// sends), on several connections at once, with bodies from a few
// bytes to many times a receive buffer, and checks every byte; closing
// the clients must close the relay's backend connections, and stop must
// end the loops.
func TestRelayRoundTrips(t *testing.T) {
	for _, tc := range []struct {
		name, mode string
		minWait    time.Duration
	}{
		{"epoll", "epoll", 0},
		{"uring", "uring", 50 * time.Microsecond},
		{"uring-wait-one", "uring", 0},
		{"uring-epoll", "uring-epoll", 50 * time.Microsecond},
		{"uring-epoll-wait-one", "uring-epoll", 0},
	} {
		t.Run(tc.name, func(t *testing.T) {
			if tc.mode != "epoll" {
				skipWithoutUring(t, tc.mode == "uring-epoll")
			}
			backend, ended := startBackend(t)
			r, err := startRelay(relayConfig{Listen: netip.MustParseAddrPort("127.0.0.1:0"), Backend: backend, Loops: 2,
				Mode: tc.mode, MinWait: tc.minWait})
			if err != nil {
				t.Fatal(err)
			}
			stopped := false
			defer func() {
				if !stopped {
					r.stop()
				}
			}()
			const conns, requests = 8, 40
			sizes := []int{5, 4096, 5000, 300_000, 0, 17}
			var wg sync.WaitGroup
			errs := make(chan error, conns)
			for i := range conns {
				wg.Add(1)
				go func() {
					defer wg.Done()
					errs <- client(r.addr.String(), i, requests, sizes)
				}()
			}
			wg.Wait()
			close(errs)
			for err := range errs {
				if err != nil {
					t.Fatal(err)
				}
			}
			deadline := time.Now().Add(10 * time.Second)
			for ended.Load() < conns && time.Now().Before(deadline) {
				time.Sleep(10 * time.Millisecond)
			}
			if got := ended.Load(); got != conns {
				t.Fatalf("backend connections ended: %d, want %d (the relay did not close them after the clients)", got, conns)
			}
			var accepts uint64
			for _, st := range r.stats {
				accepts += st.accepts.Load()
			}
			if accepts != conns {
				t.Fatalf("accepts %d, want %d", accepts, conns)
			}
			stopped = true
			if err := r.stop(); err != nil {
				t.Fatal(err)
			}
		})
	}
}

// skipWithoutUring skips where io_uring cannot be set up (an old kernel,
// kernel.io_uring_disabled, a seccomp profile) or, with epollWait, where
// the kernel predates IORING_OP_EPOLL_WAIT (Linux 6.15).
func skipWithoutUring(t *testing.T, epollWait bool) {
	t.Helper()
	runtime.LockOSThread()
	defer runtime.UnlockOSThread()
	r, err := newRing(8, 16)
	if err != nil {
		t.Skipf("io_uring unavailable: %v", err)
	}
	r.Close()
	if !epollWait {
		return
	}
	var u unix.Utsname
	if err := unix.Uname(&u); err != nil {
		t.Fatal(err)
	}
	var major, minor int
	fmt.Sscanf(unix.ByteSliceToString(u.Release[:]), "%d.%d", &major, &minor)
	if major < 6 || major == 6 && minor < 15 {
		t.Skipf("kernel %d.%d predates IORING_OP_EPOLL_WAIT (6.15)", major, minor)
	}
}

func client(addr string, id, requests int, sizes []int) error {
	c, err := net.Dial("tcp4", addr)
	if err != nil {
		return err
	}
	defer c.Close()
	c.SetDeadline(time.Now().Add(30 * time.Second))
	br := bufio.NewReader(c)
	for k := range requests {
		n := sizes[(id+k)%len(sizes)]
		if _, err := fmt.Fprintf(c, "GET /%d HTTP/1.1\r\nHost: x\r\n\r\n", n); err != nil {
			return err
		}
		resp, err := http.ReadResponse(br, nil)
		if err != nil {
			return fmt.Errorf("client %d request %d: %w", id, k, err)
		}
		got, err := io.ReadAll(resp.Body)
		resp.Body.Close()
		if err != nil {
			return fmt.Errorf("client %d request %d body: %w", id, k, err)
		}
		if !bytes.Equal(got, body(n)) {
			return fmt.Errorf("client %d request %d: body of %d bytes differs (want %d)", id, k, len(got), n)
		}
	}
	return nil
}
