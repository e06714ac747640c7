// Command nethttp-hello is the net/http peer for warren's HTTP benchmarks:
// GET / answers 200 text/plain "hello", like `warren echo`.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"syscall"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8082", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("nethttp listening addr=%s", ln.Addr())
	hello := []byte("hello")
	s := &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(hello)
	})}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		s.Shutdown(context.Background())
	}()
	if err := s.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
}
