// Command tlshs measures a TLS server's full-handshake rate: -c goroutines
// each dial, complete a handshake (no session resumption: no client
// session cache), and close, for -d; it prints one JSON line with the
// handshakes completed and per second. It offers an X25519 key share only
// (P-256 listed second, for TLS 1.2 peers that check the certificate's curve) unless -pq:
// Go's default hybrid X25519MLKEM768 costs a Go server an ML-KEM
// encapsulation that a peer without it (OpenSSL 3.0) never does.
//
//	tlshs -addr 127.0.0.1:8443 -c 32 -d 10s -tls 1.3
package main

import (
	"context"
	"crypto/tls"
	"encoding/json"
	"flag"
	"fmt"
	"net"
	"os"
	"sync"
	"sync/atomic"
	"time"
)

func main() {
	addr := flag.String("addr", "", "server HOST:PORT (required)")
	conc := flag.Int("c", 32, "handshakes in flight")
	dur := flag.Duration("d", 10*time.Second, "how long to run")
	ver := flag.String("tls", "1.3", "TLS version: 1.2 or 1.3")
	pq := flag.Bool("pq", false, "offer Go's default key shares (X25519MLKEM768 first); default: X25519 only, the ECDHE every peer speaks")
	flag.Parse()
	if *addr == "" {
		flag.Usage()
		os.Exit(2)
	}
	cfg := &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS13}
	if *ver == "1.2" {
		cfg = &tls.Config{InsecureSkipVerify: true, MinVersion: tls.VersionTLS12, MaxVersion: tls.VersionTLS12}
	}
	if !*pq {
		// X25519 is the only key share; P-256 is listed after it because a
		// TLS 1.2 server on OpenSSL (nginx) refuses an ECDSA P-256
		// certificate's handshake when the client's supported groups lack
		// its curve (RFC 8422 §5.1): with X25519 alone, every TLS 1.2
		// handshake with nginx failed.
		cfg.CurvePreferences = []tls.CurveID{tls.X25519, tls.CurveP256}
	}
	var ok, failed atomic.Int64
	ctx, cancel := context.WithTimeout(context.Background(), *dur)
	defer cancel()
	start := time.Now()
	var wg sync.WaitGroup
	for i := range *conc {
		wg.Add(1)
		go func() {
			defer wg.Done()
			// Each goroutine dials from its own loopback source address,
			// so TIME_WAIT does not exhaust one address's ports.
			src := &net.TCPAddr{IP: net.IPv4(127, 0, 2, byte(1+i%250))}
			d := &net.Dialer{Timeout: 5 * time.Second, LocalAddr: src}
			for ctx.Err() == nil {
				c, err := d.DialContext(ctx, "tcp", *addr)
				if err != nil {
					failed.Add(1)
					continue
				}
				tc := tls.Client(c, cfg)
				tc.SetDeadline(time.Now().Add(5 * time.Second))
				if err := tc.Handshake(); err != nil {
					if ctx.Err() == nil {
						failed.Add(1)
					}
				} else {
					ok.Add(1)
				}
				c.Close()
			}
		}()
	}
	wg.Wait()
	el := time.Since(start).Seconds()
	out, _ := json.Marshal(map[string]any{"handshakes": ok.Load(), "failed": failed.Load(), "seconds": el,
		"per_second": float64(ok.Load()) / el})
	fmt.Println(string(out))
}
