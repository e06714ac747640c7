package main

import (
	"flag"
	"time"
)

// schedSliceFlag registers -sched-slice, whose threads the usage names
// (internal/schedslice; docs/benchmarks.md §63).
func schedSliceFlag(fs *flag.FlagSet, whose string) *time.Duration {
	return fs.Duration("sched-slice", 0, "time slice asked of the kernel for "+whose+
		", 100µs to 100ms (Linux 6.12+, EEVDF): a thread that wakes may preempt a running one with a longer slice instead of waiting for it, for more context switches; set at start and on new threads every second (0: the kernel's slice)")
}
