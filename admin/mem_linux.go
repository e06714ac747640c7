package admin

import (
	"bytes"
	"os"
	"strconv"
)

var pageSize = uint64(os.Getpagesize())

// residentBytes returns the process's resident set size from
// /proc/self/statm, or Go's view of its memory if that fails.
func residentBytes() uint64 {
	b, err := os.ReadFile("/proc/self/statm")
	if err == nil {
		// size resident shared text lib data dt, in pages.
		if f := bytes.Fields(b); len(f) > 1 {
			if n, err := strconv.ParseUint(string(f[1]), 10, 64); err == nil {
				return n * pageSize
			}
		}
	}
	return goMemoryBytes()
}
