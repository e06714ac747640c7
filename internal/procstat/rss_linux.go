package procstat

import (
	"bytes"
	"os"
	"strconv"
)

var pageSize = uint64(os.Getpagesize())

func residentPages() (uint64, bool) {
	b, err := os.ReadFile("/proc/self/statm")
	if err != nil {
		return 0, false
	}
	// size resident shared text lib data dt, in pages.
	f := bytes.Fields(b)
	if len(f) < 2 {
		return 0, false
	}
	n, err := strconv.ParseUint(string(f[1]), 10, 64)
	if err != nil {
		return 0, false
	}
	return n * pageSize, true
}
