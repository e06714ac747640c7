// Command fasthttp-hello is the fasthttp peer for warren's HTTP benchmarks:
// GET / answers 200 text/plain "hello", like `warren echo`.
package main

import (
	"flag"
	"log"
	"net"
	"os"
	"os/signal"
	"syscall"

	"github.com/valyala/fasthttp"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8081", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("fasthttp listening addr=%s", ln.Addr())
	hello := []byte("hello")
	s := &fasthttp.Server{Handler: func(ctx *fasthttp.RequestCtx) {
		ctx.SetContentType("text/plain; charset=utf-8")
		ctx.Write(hello)
	}}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		s.Shutdown()
	}()
	if err := s.Serve(ln); err != nil {
		log.Fatal(err)
	}
}
