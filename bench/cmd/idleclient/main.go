// Command idleclient opens many TCP connections to a server and holds them
// idle, so a script can measure what an idle connection costs the server.
//
//	idleclient -addr 127.0.0.1:9000 -n 15000 -hold 60s
//
// It dials from -src-count loopback source addresses starting at -src-base
// (so no address runs out of ephemeral ports), with at most -concurrency
// dials in flight, and sends -payload once on each connection and reads the
// echo back to prove the connection is live. When every dial has finished
// it prints a one-line JSON summary and then "READY n" (n connections open)
// on stdout, holds the connections until -hold has passed or it gets
// SIGTERM or SIGINT, closes them all and exits: 0 when every connection
// opened, 1 otherwise.
//
// One process can hold at most its open-file limit of connections (it
// raises the soft limit to the hard one); past that, run several processes
// with different -src-base values.
package main

import (
	"bytes"
	"context"
	"crypto/tls"
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"net"
	"os"
	"os/signal"
	"sync"
	"sync/atomic"
	"syscall"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
)

// summary is the JSON line printed once every dial has finished.
type summary struct {
	Opened    int            `json:"opened"`
	Failed    int            `json:"failed"`
	ElapsedMS int64          `json:"elapsed_ms"`
	FileLimit uint64         `json:"file_limit"`
	Errors    map[string]int `json:"errors,omitempty"`
}

func main() {
	addr := flag.String("addr", "", "server address HOST:PORT (required)")
	n := flag.Int("n", 15000, "connections to open")
	srcBase := flag.String("src-base", "127.0.1.1", "first loopback source address (empty: let the kernel pick)")
	srcCount := flag.Int("src-count", 60, "number of consecutive source addresses to rotate over")
	conc := flag.Int("concurrency", 200, "dials in flight at once")
	payload := flag.String("payload", "hi\n", "bytes sent once per connection and read back (empty: none)")
	hold := flag.Duration("hold", 60*time.Second, "how long to hold the connections at most")
	dialTimeout := flag.Duration("dial-timeout", 5*time.Second, "timeout of one dial and its echo")
	openTimeout := flag.Duration("open-timeout", 120*time.Second, "bound on the whole opening phase")
	tlsVersion := flag.String("tls", "", "speak TLS: 1.2 or 1.3 (certificate not verified); empty: plain TCP")
	flag.Parse()
	switch *tlsVersion {
	case "1.2":
		tlsConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	case "1.3":
		tlsConfig = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	}
	if *addr == "" || *n < 1 || *conc < 1 {
		flag.Usage()
		os.Exit(2)
	}

	limit, err := benchutil.RaiseFileLimit()
	if err != nil {
		fatal("raising the open-file limit: %v", err)
	}
	if limit > 0 && uint64(*n)+64 > limit {
		fatal("-n %d needs more descriptors than the open-file limit %d allows; run several processes with different -src-base", *n, limit)
	}
	srcs, err := benchutil.SourceAddrs(*srcBase, *srcCount)
	if err != nil {
		fatal("%v", err)
	}

	// SIGTERM or SIGINT cancels the opening phase (ctx) and ends the hold
	// (quit), whichever is running.
	ctx, cancel := context.WithTimeout(context.Background(), *openTimeout)
	quit := make(chan struct{})
	sig := make(chan os.Signal, 1)
	signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
	go func() {
		<-sig
		cancel()
		close(quit)
	}()

	start := time.Now()
	conns, errs := open(ctx, *addr, *n, *conc, srcs, []byte(*payload), *dialTimeout)
	cancel()
	s := summary{Opened: len(conns), Failed: *n - len(conns), ElapsedMS: time.Since(start).Milliseconds(),
		FileLimit: limit, Errors: errs.byKind}
	line, _ := json.Marshal(s)
	fmt.Printf("%s\nREADY %d\n", line, len(conns))

	t := time.NewTimer(*hold)
	select {
	case <-t.C:
	case <-quit:
	}
	t.Stop()
	for _, c := range conns {
		c.Close()
	}
	if s.Failed > 0 {
		os.Exit(1)
	}
}

// dialErrors counts failures by kind, keeping the map small.
type dialErrors struct {
	mu     sync.Mutex
	byKind map[string]int
}

func (d *dialErrors) add(err error) {
	kind := err.Error()
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Err != nil {
		kind = oe.Op + ": " + oe.Err.Error() // drop the addresses
	}
	d.mu.Lock()
	defer d.mu.Unlock()
	if d.byKind == nil {
		d.byKind = make(map[string]int)
	}
	if _, ok := d.byKind[kind]; !ok && len(d.byKind) >= 8 {
		kind = "other"
	}
	d.byKind[kind]++
}

// open dials n connections with at most conc in flight and returns those
// that opened (and echoed the payload), in dial order.
func open(ctx context.Context, addr string, n, conc int, srcs []*net.TCPAddr, payload []byte,
	timeout time.Duration) ([]net.Conn, *dialErrors) {
	slots := make([]net.Conn, n)
	errs := &dialErrors{}
	var next atomic.Int64
	var wg sync.WaitGroup
	for range min(conc, n) {
		wg.Add(1)
		go func() {
			defer wg.Done()
			buf := make([]byte, len(payload))
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if ctx.Err() != nil {
					errs.add(ctx.Err())
					continue
				}
				c, err := dialOne(ctx, benchutil.Dialer(srcs, i, timeout), addr, payload, buf, timeout)
				if err != nil {
					errs.add(err)
					continue
				}
				slots[i] = c
			}
		}()
	}
	wg.Wait()
	conns := slots[:0]
	for _, c := range slots {
		if c != nil {
			conns = append(conns, c)
		}
	}
	return conns, errs
}

// tlsConfig, set by -tls, makes every connection a TLS client.
var tlsConfig *tls.Config

func dialOne(ctx context.Context, d *net.Dialer, addr string, payload, buf []byte, timeout time.Duration) (net.Conn, error) {
	c, err := d.DialContext(ctx, "tcp", addr)
	if err != nil {
		return nil, err
	}
	if tlsConfig != nil {
		tc := tls.Client(c, tlsConfig)
		c.SetDeadline(time.Now().Add(timeout))
		if err := tc.HandshakeContext(ctx); err != nil {
			c.Close()
			return nil, err
		}
		c = tc
	}
	if len(payload) == 0 {
		return c, nil
	}
	c.SetDeadline(time.Now().Add(timeout))
	if _, err := c.Write(payload); err != nil {
		c.Close()
		return nil, err
	}
	if _, err := io.ReadFull(c, buf); err != nil {
		c.Close()
		return nil, err
	}
	if !bytes.Equal(buf, payload) {
		c.Close()
		return nil, fmt.Errorf("echo mismatch: got %q", buf)
	}
	c.SetDeadline(time.Time{})
	return c, nil
}

func fatal(format string, args ...any) {
	fmt.Fprintf(os.Stderr, "idleclient: "+format+"\n", args...)
	os.Exit(2)
}
