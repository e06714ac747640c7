// Command reqcount sends exactly -n keep-alive requests on each of -c
// connections, one outstanding per connection, and checks that every answer
// is a 200 with a Content-Length body. It exits non-zero on the first wrong
// answer.
//
// A fixed count, not a fixed time, is what bench/instr.sh needs: it divides
// the instructions a server executed by the requests it answered, a figure
// that does not depend on the machine's neighbours the way CPU time does.
//
//	reqcount -addr 127.0.0.1:8080 -c 16 -n 3000 -path /
package main

import (
	"bufio"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"strconv"
	"strings"
	"sync"
	"time"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8080", "server address")
	conns := flag.Int("c", 16, "connections")
	n := flag.Int("n", 1000, "requests per connection")
	path := flag.String("path", "/", "request path")
	timeout := flag.Duration("timeout", 10*time.Second, "bound on each answer")
	flag.Parse()

	req := []byte("GET " + *path + " HTTP/1.1\r\nHost: bench\r\n\r\n")
	var wg sync.WaitGroup
	errs := make(chan error, *conns)
	t0 := time.Now()
	for range *conns {
		wg.Add(1)
		go func() {
			defer wg.Done()
			if err := run(*addr, req, *n, *timeout); err != nil {
				errs <- err
			}
		}()
	}
	wg.Wait()
	close(errs)
	for err := range errs {
		fmt.Fprintln(os.Stderr, "reqcount:", err)
		os.Exit(1)
	}
	fmt.Printf("reqcount: %d requests in %v\n", *conns**n, time.Since(t0).Round(time.Millisecond))
}

// run makes n requests on one connection.
func run(addr string, req []byte, n int, timeout time.Duration) error {
	c, err := net.DialTimeout("tcp", addr, timeout)
	if err != nil {
		return err
	}
	defer c.Close()
	r := bufio.NewReader(c)
	for k := range n {
		c.SetDeadline(time.Now().Add(timeout))
		if _, err := c.Write(req); err != nil {
			return err
		}
		if err := answer(r); err != nil {
			return fmt.Errorf("request %d: %w", k, err)
		}
	}
	return nil
}

// answer reads one response, which must be a 200 with a Content-Length.
func answer(r *bufio.Reader) error {
	line, err := r.ReadString('\n')
	if err != nil {
		return err
	}
	if !strings.HasPrefix(line, "HTTP/1.1 200") {
		return fmt.Errorf("status line %q", strings.TrimSpace(line))
	}
	length := -1
	for {
		h, err := r.ReadString('\n')
		if err != nil {
			return err
		}
		if h == "\r\n" {
			break
		}
		if name, v, ok := strings.Cut(h, ":"); ok && strings.EqualFold(name, "content-length") {
			if length, err = strconv.Atoi(strings.TrimSpace(v)); err != nil {
				return fmt.Errorf("content-length %q", strings.TrimSpace(v))
			}
		}
	}
	if length < 0 {
		return errors.New("no content-length")
	}
	_, err = io.CopyN(io.Discard, r, int64(length))
	return err
}
