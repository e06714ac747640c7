//go:build linux

package main

import "github.com/warrenhq/warren/internal/uring"

// The relay's ring sizes; the ring itself is internal/uring's (the
// engine's Config.IOUring uses the same code).
const (
	defaultSQEntries = 256
	defaultCQEntries = 4096
	defaultBufCount  = 1024
	defaultBufSize   = 4096
)

// newRing sets up one io_uring owned by one goroutine locked to its OS
// thread (IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN:
// completions' task work runs only inside that thread's io_uring_enter).
func newRing(sqEntries, cqEntries uint32) (*uring.Ring, error) {
	return uring.New(sqEntries, cqEntries, uring.SetupSubmitAll|uring.SetupCoopTaskrun|uring.SetupSingleIssuer|uring.SetupDeferTaskrun)
}
