package prefork_test

import (
	"context"
	"log"
	"os"
	"time"

	"github.com/warrenhq/warren/admin"
	"github.com/warrenhq/warren/prefork"
)

// A program becomes a prefork server by checking Worker first: a worker
// serves on the address it was given (with SO_REUSEPORT); the parent starts
// the workers, serves their merged metrics and drains them on shutdown.
// The parent and the workers share one admin token: the parent's endpoint
// requires it, and the parent sends it to scrape the workers.
func Example() {
	token := os.Getenv("WARREN_ADMIN_TOKEN")
	if i, addr, ok := prefork.Worker(); ok {
		log.Printf("worker %d serving on %s", i, addr)
		// ... start the engine with Config{ReusePort: true} on addr, its
		// admin.Server with Token: token on 127.0.0.1:0, and
		// prefork.ReportAdmin(adminAddr) once that is up.
		return
	}
	sup, err := prefork.Start(prefork.Config{Procs: 4, Addr: "127.0.0.1:8080", AdminToken: token})
	if err != nil {
		log.Fatal(err)
	}
	adm := admin.NewHTTPServer(sup.AdminHandler(), nil) // AdminHandler checks the token itself
	adm.Addr = "127.0.0.1:9901"
	go adm.ListenAndServe()
	// ... on SIGTERM:
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	sup.Shutdown(ctx)
	adm.Shutdown(ctx)
}
