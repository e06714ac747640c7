package prefork_test

import (
	"context"
	"log"
	"net/http"
	"time"

	"github.com/warrenhq/warren/prefork"
)

// A program becomes a prefork server by checking Worker first: a worker
// serves on the address it was given (with SO_REUSEPORT); the parent starts
// the workers, serves their merged metrics and drains them on shutdown.
func Example() {
	if i, addr, ok := prefork.Worker(); ok {
		log.Printf("worker %d serving on %s", i, addr)
		// ... start the engine with Config{ReusePort: true} on addr, and
		// prefork.ReportAdmin(adminAddr) once its admin listener is up.
		return
	}
	sup, err := prefork.Start(prefork.Config{Procs: 4, Addr: "127.0.0.1:8080"})
	if err != nil {
		log.Fatal(err)
	}
	go http.ListenAndServe("127.0.0.1:9901", sup.AdminHandler())
	// ... on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sup.Shutdown(ctx)
}
