// Command gorilla-echo is the goroutine-per-connection WebSocket peer for
// warren's benchmarks: net/http with github.com/gorilla/websocket, written
// the way its examples write it. GET / answers 200 text/plain "hello" and
// GET /ws echoes every message back as received, like `warren echo`.
//
// SIGTERM or SIGINT closes every WebSocket with 1001 (going away) and
// exits, so the drain benchmark can run against it too.
package main

import (
	"context"
	"flag"
	"log"
	"net"
	"net/http"
	"os"
	"os/signal"
	"sync"
	"syscall"
	"time"

	"github.com/gorilla/websocket"
)

func main() {
	addr := flag.String("addr", "127.0.0.1:8083", "listen address")
	flag.Parse()
	ln, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatal(err)
	}
	log.Printf("gorilla listening addr=%s", ln.Addr())

	var mu sync.Mutex
	conns := map[*websocket.Conn]struct{}{}
	upgrader := websocket.Upgrader{} // default 4 KiB read and write buffers
	hello := []byte("hello")
	mux := http.NewServeMux()
	mux.HandleFunc("GET /{$}", func(w http.ResponseWriter, r *http.Request) {
		w.Header().Set("Content-Type", "text/plain; charset=utf-8")
		w.Write(hello)
	})
	mux.HandleFunc("GET /ws", func(w http.ResponseWriter, r *http.Request) {
		c, err := upgrader.Upgrade(w, r, nil)
		if err != nil {
			return
		}
		mu.Lock()
		conns[c] = struct{}{}
		mu.Unlock()
		defer func() {
			mu.Lock()
			delete(conns, c)
			mu.Unlock()
			c.Close()
		}()
		for {
			mt, msg, err := c.ReadMessage()
			if err != nil {
				return
			}
			if err := c.WriteMessage(mt, msg); err != nil {
				return
			}
		}
	})
	s := &http.Server{Handler: mux}
	go func() {
		sig := make(chan os.Signal, 1)
		signal.Notify(sig, syscall.SIGTERM, syscall.SIGINT)
		<-sig
		ctx, cancel := context.WithTimeout(context.Background(), 10*time.Second)
		defer cancel()
		s.Shutdown(ctx) // hijacked connections are not tracked by net/http
		msg := websocket.FormatCloseMessage(websocket.CloseGoingAway, "server shutting down")
		mu.Lock()
		for c := range conns {
			c.WriteControl(websocket.CloseMessage, msg, time.Now().Add(time.Second))
		}
		mu.Unlock()
		os.Exit(0)
	}()
	if err := s.Serve(ln); err != nil && err != http.ErrServerClosed {
		log.Fatal(err)
	}
	select {} // the signal goroutine exits
}
