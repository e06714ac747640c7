// Command netecho is the peer warren's benchmarks measure against in the
// same run: the idiomatic Go echo server, one goroutine per connection on
// the net package, each with its own 4 KiB buffer.
//
//	netecho -addr 127.0.0.1:0
//
// It prints "listening HOST:PORT" on stdout once it accepts connections,
// writes its Go memory figures ("MEMSTATS {json}") to stderr on SIGUSR1 and
// exits on SIGTERM or SIGINT.
package main

import (
	"crypto/tls"
	"errors"
	"flag"
	"fmt"
	"net"
	"os"
	"os/signal"
	"syscall"
	"time"

	"github.com/warrenhq/warren/bench/internal/benchutil"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "listen address (port 0 picks a free one)")
	bufSize := flag.Int("buf", 4096, "per-connection read buffer bytes")
	certFile := flag.String("tls-cert", "", "PEM certificate: serve crypto/tls (a tls.Conn and its goroutine per connection)")
	keyFile := flag.String("tls-key", "", "PEM key of -tls-cert")
	flag.Parse()

	if _, err := benchutil.RaiseFileLimit(); err != nil {
		fmt.Fprintln(os.Stderr, "netecho: raising the open-file limit:", err)
	}
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		fmt.Fprintln(os.Stderr, "netecho:", err)
		os.Exit(1)
	}
	if *certFile != "" {
		cert, err := tls.LoadX509KeyPair(*certFile, *keyFile)
		if err != nil {
			fmt.Fprintln(os.Stderr, "netecho:", err)
			os.Exit(1)
		}
		ln = tls.NewListener(ln, &tls.Config{Certificates: []tls.Certificate{cert}})
	}
	go serve(ln, *bufSize)
	fmt.Println("listening", ln.Addr())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	stats := make(chan os.Signal, 1)
	benchutil.NotifyStats(stats)
	for {
		select {
		case <-stats:
			benchutil.PrintMem()
		case <-stop:
			// Exiting closes every connection; tracking them for a
			// graceful close would add per-connection state the
			// baseline does not have.
			ln.Close()
			return
		}
	}
}

func serve(ln net.Listener, bufSize int) {
	for {
		c, err := ln.Accept()
		if errors.Is(err, net.ErrClosed) {
			return
		}
		if err != nil { // EMFILE and the like: back off, as net/http does
			time.Sleep(5 * time.Millisecond)
			continue
		}
		go echo(c, bufSize)
	}
}

// echo is the loop a Go programmer writes first: read into a buffer, write
// it back, until the peer goes away.
func echo(c net.Conn, bufSize int) {
	defer c.Close()
	buf := make([]byte, bufSize)
	for {
		n, err := c.Read(buf)
		if n > 0 {
			if _, werr := c.Write(buf[:n]); werr != nil {
				return
			}
		}
		if err != nil {
			return
		}
	}
}
