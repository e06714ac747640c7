package main

import (
	"context"
	"flag"
	"fmt"
	"io"
	"log/slog"
	"time"

	"github.com/warrenhq/warren/internal/schedslice"
)

// schedSliceFlag registers -sched-slice, whose threads the usage names
// (internal/schedslice; docs/benchmarks.md §63).
func schedSliceFlag(fs *flag.FlagSet, whose string) *time.Duration {
	return fs.Duration("sched-slice", 0, "time slice asked of the kernel for "+whose+
		", 100µs to 100ms (Linux 6.12+, EEVDF): a thread that wakes may preempt a running one with a longer slice instead of waiting for it, for more context switches; set at start and on new threads every second (0: the kernel's slice)")
}

// startSweeper starts -sched-slice's sweeper for the command named cmd,
// stopped by the returned function; on a refused slice it says why on
// stderr and returns nil (the command exits 2).
func startSweeper(cmd string, slice time.Duration, log *slog.Logger, stderr io.Writer) (*schedslice.Sweeper, func()) {
	sweeper, err := schedslice.New(schedslice.Config{Slice: slice, Logger: log})
	if err != nil {
		fmt.Fprintf(stderr, "warren %s: -sched-slice: %v\n", cmd, err)
		return nil, nil
	}
	ctx, stop := context.WithCancel(context.Background())
	go sweeper.Run(ctx)
	return sweeper, stop
}
