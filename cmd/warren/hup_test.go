//go:build !windows

package main

import (
	"os"
	"os/signal"
	"syscall"
	"testing"
	"time"
)

// TestHoldSIGHUP: after holdSIGHUP a SIGHUP no longer ends the process
// (without it, this test binary dies here), and a watcher registered later
// still receives the next one, as tlsx.Server.Watch does.
func TestHoldSIGHUP(t *testing.T) {
	if !holdsSIGHUP("serve") || !holdsSIGHUP("echo") || !holdsSIGHUP("proxy") || holdsSIGHUP("load") {
		t.Fatal("holdsSIGHUP: wrong subcommands")
	}
	holdSIGHUP()
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	time.Sleep(100 * time.Millisecond) // delivered: the process is still here
	watch := make(chan os.Signal, 1)
	signal.Notify(watch, syscall.SIGHUP)
	defer signal.Stop(watch)
	if err := syscall.Kill(os.Getpid(), syscall.SIGHUP); err != nil {
		t.Fatal(err)
	}
	select {
	case <-watch:
	case <-time.After(5 * time.Second):
		t.Fatal("a watcher registered after holdSIGHUP got no SIGHUP")
	}
}
